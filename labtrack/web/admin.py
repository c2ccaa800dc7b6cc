"""Admin pages: users, clinics, reagent lots, equipment and specifications (R-ACC-2).

Each page lists what exists and offers the changes the API offers, through the
same ``reference`` and ``specifications`` services; every change is audited there.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from flask import redirect, render_template, url_for
from sqlalchemy.orm import Session
from werkzeug.datastructures import MultiDict
from werkzeug.exceptions import BadRequest

from labtrack.api.schemas import (
    ClinicCreateSchema,
    EquipmentCreateSchema,
    EquipmentUpdateSchema,
    LotCreateSchema,
    LotUpdateSchema,
    SignedSchema,
    SpecificationProposalCreateSchema,
    UserCreateSchema,
    UserUpdateSchema,
    WithdrawalCreateSchema,
)
from labtrack.clock import utcnow
from labtrack.db import database, read_session
from labtrack.domain.actors import Actor, Role
from labtrack.domain.decisions import Decision
from labtrack.domain.errors import ValidationFailed
from labtrack.domain.materials import SETTABLE_LOT_STATUSES, EquipmentStatus, equipment_usable, lot_usable
from labtrack.domain.process import TissueSource
from labtrack.glossary import words
from labtrack.models import Equipment, ReagentLot, Specification, SpecificationProposal
from labtrack.services import reference, specifications, steps
from labtrack.web import bp
from labtrack.web.auth import actor, roles
from labtrack.web.forms import given, load_form, parse_number, respond
from labtrack.web.pages import at_path

# The numbers of a specification an admin edits on the page, by their path in its body; the rest is kept.
SPEC_FIELDS = (
    ("stability_hours", "Stability window", "h"),
    ("transport_temperature_c.min", "Transport temperature, lowest", "°C"),
    ("transport_temperature_c.max", "Transport temperature, highest", "°C"),
    ("tests.viability_pct.min", "Viability, at least", "%"),
    ("tests.tnc_total.min", "Total nucleated cells, at least", "cells"),
    ("tests.endotoxin_eu_per_ml.max_eu_per_kg", "Endotoxin dose, at most", "EU/kg"),
)


@bp.app_template_global("unusable")
def unusable(row: ReagentLot | Equipment) -> str | None:
    """Why a lot or instrument cannot be used in a step today (R-MAT-1, R-MAT-2), or None."""
    today = utcnow().date()
    if isinstance(row, ReagentLot):
        return lot_usable(steps.lot_view(row), today)
    return equipment_usable(steps.equipment_view(row), today)


def _write(work: Any) -> Any:
    return database().write(work)


@bp.get("/admin")
@roles(Role.ADMIN)
def admin_home():
    return redirect(url_for("web.admin_users"))


@bp.route("/admin/users", methods=["GET", "POST"])
@roles(Role.ADMIN)
def admin_users():
    who = actor()

    def create(form: MultiDict) -> str:
        body = load_form(UserCreateSchema(), given(form, "username", "full_name", "role", "clinic", "password"))
        user = _write(lambda s: reference.create_user(s, who, **body))
        return f"User {user.username} created."

    def update(form: MultiDict) -> str:
        username = form.get("username", "")
        change = form.get("change", "")
        if change not in ("deactivate", "reactivate", "unlock"):
            raise BadRequest("Unknown change.")
        if change == "deactivate" and form.get("confirmed") != "yes":
            raise ValidationFailed({"confirmed": [f"confirm that {username} is to be deactivated"]})
        payload = {"unlock": True} if change == "unlock" else {"active": change == "reactivate"}
        body = load_form(UserUpdateSchema(), payload)
        _write(lambda s: reference.update_user(s, who, username, **body))
        return f"User {username}: {change}d." if change != "unlock" else f"User {username} unlocked."

    def edit(form: MultiDict) -> str:
        username = form.get("username", "")
        body = load_form(UserUpdateSchema(), given(form, "full_name", "role", "clinic"))

        def work(session) -> str:  # said inside the unit of work: the user's clinic is read there
            user = reference.update_user(session, who, username, **body)
            clinic = f", clinic {user.clinic.code}" if user.clinic else ""
            return f"User {username}: {user.full_name}, {user.role}{clinic}."

        return _write(work)

    def reset(form: MultiDict) -> str:
        username = form.get("username", "")
        body = load_form(UserUpdateSchema(), given(form, "password"))
        if "password" not in body:
            raise ValidationFailed({"password": ["give a temporary password"]})
        _write(lambda s: reference.update_user(s, who, username, **body))
        return f"Password of {username} reset: they choose a new one at their next sign-in; their sessions ended."

    return respond(
        {"create": create, "update": update, "edit": edit, "reset": reset},
        lambda failure: render_template(
            "admin/users.html",
            users=reference.list_users(read_session(), who),
            clinics=reference.list_clinics(read_session(), who),
            roles=tuple(Role),
            failure=failure,
        ),
    )


@bp.route("/admin/clinics", methods=["GET", "POST"])
@roles(Role.ADMIN)
def admin_clinics():
    who = actor()

    def create(form: MultiDict) -> str:
        body = load_form(ClinicCreateSchema(), given(form, "code", "name", "webhook_url", "webhook_secret"))
        clinic = _write(lambda s: reference.create_clinic(s, who, **body))
        return f"Clinic {clinic.code} created."

    return respond(
        {"create": create},
        lambda failure: render_template(
            "admin/clinics.html", clinics=reference.list_clinics(read_session(), who), failure=failure
        ),
    )


@bp.route("/admin/lots", methods=["GET", "POST"])
@roles(Role.ADMIN)
def admin_lots():
    who = actor()

    def create(form: MultiDict) -> str:
        body = load_form(LotCreateSchema(), given(form, "kind", "name", "lot_number", "expires_on", "status"))
        lot = _write(lambda s: reference.create_lot(s, who, **body))
        return f"Reagent lot {lot.lot_number} registered ({lot.status})."

    def update(form: MultiDict) -> str:
        lot_id = parse_number(form.get("lot_id", ""))
        if not isinstance(lot_id, int):
            raise BadRequest("The form is missing its lot.")
        body = load_form(LotUpdateSchema(), given(form, "status", "expires_on"))
        lot = _write(lambda s: reference.update_lot(s, who, lot_id, body))
        return f"Reagent lot {lot.lot_number} is {lot.status}, expires {lot.expires_on}."

    return respond(
        {"create": create, "update": update},
        lambda failure: render_template(
            "admin/lots.html",
            lots=reference.list_lots(read_session(), who),
            statuses=SETTABLE_LOT_STATUSES,
            failure=failure,
        ),
    )


@bp.route("/admin/equipment", methods=["GET", "POST"])
@roles(Role.ADMIN)
def admin_equipment():
    who = actor()

    def create(form: MultiDict) -> str:
        body = load_form(EquipmentCreateSchema(), given(form, "code", "kind", "name", "calibration_due_on", "status"))
        item = _write(lambda s: reference.create_equipment(s, who, **body))
        return f"Equipment {item.code} registered."

    def update(form: MultiDict) -> str:
        code = form.get("code", "")
        body = load_form(EquipmentUpdateSchema(), given(form, "status", "calibration_due_on"))
        item = _write(lambda s: reference.update_equipment(s, who, code, body))
        return f"Equipment {item.code} is {item.status.replace('_', ' ')}, calibration due {item.calibration_due_on}."

    return respond(
        {"create": create, "update": update},
        lambda failure: render_template(
            "admin/equipment.html",
            equipment=reference.list_equipment(read_session(), who),
            statuses=tuple(EquipmentStatus),
            failure=failure,
        ),
    )


def _set(body: dict[str, Any], path: str, value: Any) -> None:
    *parents, last = path.split(".")
    for name in parents:
        body = body.setdefault(name, {})
    body[last] = value


@dataclass
class SpecPanel:
    """One tissue source on the specifications page: the version in force, the open proposal beside it, and
    what this user may do with it (``labtrack.domain.specifications.decide_proposal``)."""

    in_force: Specification
    proposal: SpecificationProposal | None
    decisions: dict[str, Decision]
    history: list[Specification]
    decided: list[SpecificationProposal]

    @property
    def changes(self) -> list[tuple[str, str, str, Any, Any]]:
        """(path, label, unit, in force, proposed) for every field the page edits."""
        proposed = self.proposal.body if self.proposal else {}
        return [
            (p, label, unit, at_path(self.in_force.body, p), at_path(proposed, p)) for p, label, unit in SPEC_FIELDS
        ]


def _spec_panels(session: Session, who: Actor) -> list[SpecPanel]:
    panels = []
    all_proposals = specifications.proposals(session, who)
    for source in TissueSource:
        mine = [p for p in all_proposals if p.tissue_source == source.value]
        open_ = next((p for p in mine if p.status == "proposed"), None)
        decided = {d.action: d for d in specifications.decisions_for(session, who, open_)} if open_ else {}
        panels.append(
            SpecPanel(
                specifications.current(session, source),
                open_,
                decided,
                specifications.history(session, source),
                [p for p in mine if p.status != "proposed"],
            )
        )
    return panels


@bp.route("/admin/specifications", methods=["GET", "POST"])
@roles(Role.ADMIN, Role.QA)
def admin_specifications():
    """R-QC-6: propose a version with a reason; another QA user approves it, signed; or it is withdrawn."""
    who = actor()

    def propose(form: MultiDict) -> str:
        source = form.get("tissue_source", "")
        if source not in {t.value for t in TissueSource}:
            raise BadRequest("Unknown tissue source.")
        body = copy.deepcopy(specifications.current(read_session(), source).body)
        read_session().rollback()
        for path, _label, _unit in SPEC_FIELDS:
            _set(body, path, parse_number(form.get(path, "")))
        payload = load_form(SpecificationProposalCreateSchema(), {"body": body, "reason": form.get("reason", "")})
        found = _write(lambda s: specifications.propose(s, who, source, body=payload["body"], reason=payload["reason"]))
        return f"Proposal {found.id} for {words(source)} recorded: it takes force when another QA user approves it."

    def approve(form: MultiDict) -> str:
        body = load_form(
            SignedSchema(), {"signature": {k: form.get(f"signature.{k}", "") for k in ("password", "meaning")}}
        )
        found = _write(lambda s: specifications.approve(s, who, _proposal_id(form), **body))
        return f"Version {found.version} of the {words(found.tissue_source)} specification is in force from now on."

    def withdraw(form: MultiDict) -> str:
        body = load_form(WithdrawalCreateSchema(), given(form, "reason"))
        found = _write(lambda s: specifications.withdraw(s, who, _proposal_id(form), **body))
        return f"Proposal {found.id} withdrawn; version {found.base_version} stays in force."

    return respond(
        {"propose": propose, "approve": approve, "withdraw": withdraw},
        lambda failure: render_template(
            "admin/specifications.html",
            panels=_spec_panels(read_session(), who),
            fields=SPEC_FIELDS,
            failure=failure,
        ),
    )


def _proposal_id(form: MultiDict) -> int:
    value = parse_number(form.get("proposal_id", ""))
    if not isinstance(value, int):
        raise BadRequest("The form is missing its proposal.")
    return value
