"""Investigation pages (R-ADV, R-LBK): QA's investigations page, reporting a reaction, acknowledging a lookback.

Thin adapters like the other pages: forms are loaded with the API's own input schemas and
call the services the API calls. The batch card and every page of a clinic user show what
concerns them through two partial templates and the globals below.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flask import current_app, flash, redirect, render_template, request, url_for
from werkzeug.datastructures import MultiDict

from labtrack.api.investigation_schemas import (
    AdverseReactionCloseSchema,
    AdverseReactionCreateSchema,
    LookbackCloseSchema,
    LookbackCreateSchema,
)
from labtrack.db import database, read_session
from labtrack.domain.actors import Action, Role, can
from labtrack.domain.din import Din
from labtrack.domain.investigations import Category, ReactionOutcome, ReactionStatus, Relatedness, SeedKind
from labtrack.domain.lifecycle import Status
from labtrack.models import AdverseReaction, Batch
from labtrack.services import adverse_reactions, batches, lookbacks
from labtrack.services.adverse_reactions import today_in
from labtrack.web import bp
from labtrack.web.auth import actor, roles
from labtrack.web.forms import aware, given, load_form, parse_number, respond

FLAGS = ("fatal", "life_threatening", "permanent_impairment", "intervention_required", "communicable_disease_suspected")


def _zone() -> str:
    return current_app.config["LABTRACK_TIMEZONE"]


def _signed(form: MultiDict) -> dict[str, Any]:
    return {"signature": {"password": form.get("signature.password", ""), "meaning": form.get("signature.meaning", "")}}


def _ident(form: MultiDict, name: str) -> int:
    value = parse_number(form.get(name, ""))
    return value if isinstance(value, int) else 0


@dataclass(frozen=True)
class BatchInvestigations:
    """What the batch card shows of investigations: reactions, lookbacks naming it, what the viewer may do."""

    reactions: list[AdverseReaction]
    lookbacks: list[tuple[Any, Any]]  # (lookback, its row for this batch)
    can_report: bool
    unacknowledged: list[Any]  # lookbacks naming this batch that the viewer's clinic has not acknowledged


@bp.app_template_global("investigations_of")
def investigations_of(batch: Batch) -> BatchInvestigations:
    session, who = read_session(), actor()
    named = lookbacks.for_batch(session, who, batch)
    waiting = {view.id for view in lookbacks.unacknowledged(session, who)}
    return BatchInvestigations(
        reactions=adverse_reactions.for_batch(session, batch),
        lookbacks=named,
        can_report=batch.status == Status.ADMINISTERED and can(who, Action.REPORT_REACTION, batch.clinic_id),
        unacknowledged=[lookback for lookback, _row in named if lookback.id in waiting],
    )


@bp.app_template_global("lookbacks_to_acknowledge")
def lookbacks_to_acknowledge() -> list[Any]:
    """The banner of a clinic user: open lookbacks naming the clinic's batches, not yet acknowledged."""
    who = actor()
    return lookbacks.unacknowledged(read_session(), who) if who.role == Role.CLINIC else []


@bp.app_template_filter("days_left")
def days_left(reaction: AdverseReaction) -> str:
    """A reportable reaction's due day in words: how many days are left, or how late it is."""
    if reaction.report_due_on is None:
        return "no report due"
    left = (reaction.report_due_on - today_in(_zone())).days
    if left < 0:
        return f"OVERDUE by {-left} day{'s' if left != -1 else ''}"
    return "due today" if left == 0 else f"{left} day{'s' if left != 1 else ''} left"


# --- QA's investigations page ----------------------------------------------------------------


@bp.route("/investigations", methods=["GET", "POST"])
@roles(Role.QA)
def investigations():
    """Open reactions with their due days; lookbacks with their affected batches and who acknowledged."""
    who = actor()

    def open_lookback(form: MultiDict) -> str:
        payload: dict[str, Any] = given(form, "reason")
        payload["seed"] = given(form, "seed.kind", "seed.value")
        payload["seed"] = {key.removeprefix("seed."): value for key, value in payload["seed"].items()}
        for name in ("from", "to"):
            if form.get(name, "").strip():
                payload[name] = aware(form[name].strip())
        body = load_form(LookbackCreateSchema(), payload)
        view = database().write(lambda s: lookbacks.open_by_qa(s, who, **body))
        held = sum(1 for a in view.affected if a.action == "held")
        return f"Lookback {view.id} opened: {len(view.affected)} batch(es) named, {held} held."

    def close_lookback(form: MultiDict) -> str:
        lookback_id = _ident(form, "lookback_id")
        body = load_form(LookbackCloseSchema(), given(form, "conclusion") | _signed(form))
        database().write(lambda s: lookbacks.close(s, who, lookback_id, **body))
        return f"Lookback {lookback_id} closed and signed. Its batches' deviations stay open for disposition."

    def close_reaction(form: MultiDict) -> str:
        reaction_id = _ident(form, "reaction_id")
        fields = given(form, "conclusion", "related_to_product", "reported_to_authority_on")
        body = load_form(AdverseReactionCloseSchema(), fields | _signed(form))
        database().write(lambda s: adverse_reactions.close(s, who, reaction_id, zone=_zone(), **body))
        return f"Adverse reaction {reaction_id} closed and signed."

    session = read_session()
    return respond(
        {"open_lookback": open_lookback, "close_lookback": close_lookback, "close_reaction": close_reaction},
        lambda failure: render_template(
            "investigations/page.html",
            reactions=adverse_reactions.search(session, who, status=ReactionStatus.OPEN),
            lookbacks=lookbacks.search(session, who),
            seed_kinds=[kind.value for kind in SeedKind],
            relatedness=[value.value for value in Relatedness],
            failure=failure,
        ),
    )


# --- the clinic (or QA) reports a reaction ---------------------------------------------------


@bp.route("/batches/<din>/adverse-reaction", methods=["GET", "POST"])
@roles(Role.CLINIC, Role.QA)
def report_reaction(din: str):
    """R-ADV-1: the form to report an adverse reaction on an administered batch."""
    who = actor()
    batch = batches.get(read_session(), who, din)

    def report(form: MultiDict):
        payload: dict[str, Any] = given(form, "category", "description", "outcome")
        if form.get("onset_at", "").strip():
            payload["onset_at"] = aware(form["onset_at"].strip())
        payload |= {flag: form.get(flag) == "yes" for flag in FLAGS}
        body = load_form(AdverseReactionCreateSchema(), payload)
        made = database().write(lambda s: adverse_reactions.report(s, who, din, zone=_zone(), **body))
        words = "reportable to the FDA" if made.reportable else "serious" if made.serious else "not serious"
        lookback = f" Lookback {made.lookback_id} was opened on the batch." if made.lookback_id else ""
        flash(f"Adverse reaction {made.id} reported ({words}).{lookback}", "success")
        return redirect(url_for("web.card", din=batch.din), 303)

    return respond(
        {"report": report},
        lambda failure: render_template(
            "investigations/report.html",
            batch=batch,
            din=Din(batch.din),
            categories=[c.value for c in Category],
            outcomes=[o.value for o in ReactionOutcome],
            flags=FLAGS,
            failure=failure,
        ),
    )


# --- a clinic acknowledges a lookback ---------------------------------------------------------


@bp.post("/lookbacks/<int:lookback_id>/acknowledge")
@roles(Role.CLINIC)
def acknowledge(lookback_id: int):
    """R-LBK-3: acknowledge for the clinic, then back to the page the banner was on."""
    who = actor()
    database().write(lambda s: lookbacks.acknowledge(s, who, lookback_id))
    flash(f"Lookback {lookback_id} acknowledged for your clinic.", "success")
    back = request.form.get("next", "")
    return redirect(back if back.startswith("/") and not back.startswith("//") else url_for("web.board"), 303)
