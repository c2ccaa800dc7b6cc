"""Admin pages: users, clinics, reagent lots, equipment and specifications (R-ACC-2).

Each page lists what exists and offers the changes the API offers, through the
same ``reference`` and ``specifications`` services; every change is audited there.
"""

from __future__ import annotations

import copy
from typing import Any

from flask import redirect, render_template, url_for
from werkzeug.datastructures import MultiDict
from werkzeug.exceptions import BadRequest

from labtrack.api.schemas import (
    EQUIPMENT_STATUSES,
    LOT_STATUSES,
    ROLES,
    ClinicCreateSchema,
    EquipmentCreateSchema,
    EquipmentUpdateSchema,
    LotCreateSchema,
    LotUpdateSchema,
    SpecificationUpdateSchema,
    UserCreateSchema,
    UserUpdateSchema,
)
from labtrack.clock import utcnow
from labtrack.db import database, read_session
from labtrack.domain.actors import Role
from labtrack.domain.materials import equipment_usable, lot_usable
from labtrack.domain.process import TissueSource
from labtrack.models import Equipment, ReagentLot
from labtrack.services import reference, specifications, steps
from labtrack.web import bp
from labtrack.web.auth import actor, roles
from labtrack.web.forms import given, load, number, respond

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
        body = load(UserCreateSchema(), given(form, "username", "full_name", "role", "clinic", "password"))
        user = _write(lambda s: reference.create_user(s, who, **body))
        return f"User {user.username} created."

    def update(form: MultiDict) -> str:
        username = form.get("username", "")
        change = form.get("change", "")
        if change not in ("deactivate", "reactivate", "unlock"):
            raise BadRequest("Unknown change.")
        payload = {"unlock": True} if change == "unlock" else {"active": change == "reactivate"}
        body = load(UserUpdateSchema(), payload)
        _write(lambda s: reference.update_user(s, who, username, **body))
        return f"User {username}: {change}d." if change != "unlock" else f"User {username} unlocked."

    return respond(
        {"create": create, "update": update},
        lambda failure: render_template(
            "admin/users.html",
            users=reference.list_users(read_session(), who),
            clinics=reference.list_clinics(read_session(), who),
            roles=ROLES,
            failure=failure,
        ),
    )


@bp.route("/admin/clinics", methods=["GET", "POST"])
@roles(Role.ADMIN)
def admin_clinics():
    who = actor()

    def create(form: MultiDict) -> str:
        body = load(ClinicCreateSchema(), given(form, "code", "name", "webhook_url", "webhook_secret"))
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
        body = load(LotCreateSchema(), given(form, "kind", "name", "lot_number", "expires_on", "status"))
        lot = _write(lambda s: reference.create_lot(s, who, **body))
        return f"Reagent lot {lot.lot_number} registered ({lot.status})."

    def update(form: MultiDict) -> str:
        lot_id = number(form.get("lot_id", ""))
        if not isinstance(lot_id, int):
            raise BadRequest("The form is missing its lot.")
        body = load(LotUpdateSchema(), given(form, "status", "expires_on"))
        lot = _write(lambda s: reference.update_lot(s, who, lot_id, body))
        return f"Reagent lot {lot.lot_number} is {lot.status}, expires {lot.expires_on}."

    return respond(
        {"create": create, "update": update},
        lambda failure: render_template(
            "admin/lots.html", lots=reference.list_lots(read_session(), who), statuses=LOT_STATUSES, failure=failure
        ),
    )


@bp.route("/admin/equipment", methods=["GET", "POST"])
@roles(Role.ADMIN)
def admin_equipment():
    who = actor()

    def create(form: MultiDict) -> str:
        body = load(EquipmentCreateSchema(), given(form, "code", "kind", "name", "calibration_due_on", "status"))
        item = _write(lambda s: reference.create_equipment(s, who, **body))
        return f"Equipment {item.code} registered."

    def update(form: MultiDict) -> str:
        code = form.get("code", "")
        body = load(EquipmentUpdateSchema(), given(form, "status", "calibration_due_on"))
        item = _write(lambda s: reference.update_equipment(s, who, code, body))
        return f"Equipment {item.code} is {item.status.replace('_', ' ')}, calibration due {item.calibration_due_on}."

    return respond(
        {"create": create, "update": update},
        lambda failure: render_template(
            "admin/equipment.html",
            equipment=reference.list_equipment(read_session(), who),
            statuses=EQUIPMENT_STATUSES,
            failure=failure,
        ),
    )


def _set(body: dict[str, Any], path: str, value: Any) -> None:
    *parents, last = path.split(".")
    for name in parents:
        body = body.setdefault(name, {})
    body[last] = value


@bp.route("/admin/specifications", methods=["GET", "POST"])
@roles(Role.ADMIN)
def admin_specifications():
    who = actor()

    def publish(form: MultiDict) -> str:
        source = form.get("tissue_source", "")
        if source not in {t.value for t in TissueSource}:
            raise BadRequest("Unknown tissue source.")
        body = copy.deepcopy(specifications.current(read_session(), source).body)
        read_session().rollback()
        for path, _label, _unit in SPEC_FIELDS:
            _set(body, path, number(form.get(path, "")))
        body = load(SpecificationUpdateSchema(), body)
        spec = _write(lambda s: specifications.publish(s, who, source, body))
        return f"Specification for {source.replace('_', ' ')} published as version {spec.version}."

    return respond(
        {"publish": publish},
        lambda failure: render_template(
            "admin/specifications.html",
            specs=specifications.list_current(read_session()),
            fields=SPEC_FIELDS,
            failure=failure,
        ),
    )
