"""The batch card and the batch record.

The card shows what a batch is and the next actions the process allows that this
user may take, each as a form that posts back to the card. Which forms appear is
read from the services (allowed actions, usable materials, possible recipients,
release blockers); whether an action is recorded is decided by the service the
form calls, the same one the API calls.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from flask import Response, current_app, render_template
from sqlalchemy.orm import Session
from werkzeug.datastructures import MultiDict
from werkzeug.exceptions import BadRequest

from labtrack.api.schemas import (
    DeviationCreateSchema,
    DispositionCreateSchema,
    HandoffCreateSchema,
    QcCreateSchema,
    ReceiptCreateSchema,
    RejectCreateSchema,
    SignedSchema,
    StepCreateSchema,
)
from labtrack.audit import export, keys, records
from labtrack.clock import utcnow
from labtrack.db import database, read_session
from labtrack.documents.labels import render_label
from labtrack.documents.record import render_record
from labtrack.domain import lifecycle
from labtrack.domain.actors import Action, Actor, Role, can
from labtrack.domain.din import Din, parse_din
from labtrack.domain.lifecycle import TERMINAL, Status, allowed_actions
from labtrack.domain.process import PROCESSES, Performer, StepDefinition, TissueSource
from labtrack.domain.qc import NUMERIC_TESTS, STERILITY, STERILITY_PENDING, TEXT_TESTS
from labtrack.domain.release import READY_STATUSES
from labtrack.models import Batch, Equipment, QcResult, ReagentLot, User
from labtrack.services import batches, custody, deviations, documents, qc, release, steps
from labtrack.web import bp, interop
from labtrack.web.auth import actor
from labtrack.web.forms import given, in_hand_fields, load, number, respond, step_data

RECENT_EVENTS = 12
# Who takes an action the viewer cannot: said in words on the card.
WHO = {
    "harvest": "clinic staff",
    "administration": "clinic staff",
    "handoff": "the custodian",
    "receipt": "the named recipient",
    "qc": "lab staff",
    "release": "QA",
}


@dataclass
class StepForm:
    step: StepDefinition
    lots: dict[str, list[ReagentLot]] = field(default_factory=dict)  # by required kind: usable ones only
    equipment: dict[str, list[Equipment]] = field(default_factory=dict)


@dataclass
class QcRow:
    test: str
    unit: str | None
    choices: tuple[str, ...] | None  # word results; None for numbers
    results: list[QcResult]
    can_enter: bool
    final_choices: tuple[str, ...] = ()  # the sterility culture's final result, entered whenever it comes


@dataclass
class Card:
    batch: Batch
    din: Din
    next_actions: list[str]
    step_forms: list[StepForm]
    others: list[tuple[str, str]]  # (action, who takes it)
    recipients: list[User]
    can_receive: bool
    qc_rows: list[QcRow]
    can_verify: Callable[[QcResult], bool]
    release_blockers: list[dict[str, str]] | None
    can_release: bool
    can_reject: bool
    deviations: list[Any]
    can_dispose: bool
    can_open_deviation: bool
    readiness: dict[str, Any]
    label_kinds: list[str]
    can_read_record: bool
    events: list[Any]
    show_patient_name: bool


def card_view(session: Session, who: Actor, din: str) -> Card:
    batch = batches.get(session, who, din)
    state = lifecycle.state_of(batch)
    next_actions = allowed_actions(state)
    process = PROCESSES[TissueSource(batch.tissue_source)]
    clinic_id = batch.clinic_id
    step_forms, others = [], []
    for name in next_actions:
        definition = process.step(name)
        if definition is None:
            continue
        at_clinic = definition.performer == Performer.CLINIC
        if not can(who, Action.LOG_CLINIC_STEP if at_clinic else Action.LOG_LAB_STEP, clinic_id):
            others.append((name, WHO.get(name, "a technician")))
            continue
        form = StepForm(definition)
        if not at_clinic:
            lots, items = steps.usable_materials(session, who, definition, utcnow().date())
            form.lots = {kind: [lot for lot in lots if lot.kind == kind] for kind in definition.reagent_kinds}
            form.equipment = {kind: [i for i in items if i.kind == kind] for kind in definition.equipment_kinds}
        step_forms.append(form)
    recipients = (
        custody.recipients(session, who, batch) if "handoff" in next_actions and can(who, Action.CUSTODY) else []
    )
    can_receive = "receipt" in next_actions and batch.transfer_to_id == who.id
    if "receipt" in next_actions and not can_receive and batch.transfer_to is not None:
        others.append(("receipt", f"{batch.transfer_to.full_name} ({batch.transfer_to.username})"))
    for name in ("qc", "release"):
        if name in next_actions and not can(who, Action.QC_ENTRY if name == "qc" else Action.RELEASE):
            others.append((name, WHO[name]))
    status = Status(batch.status)
    may_release = can(who, Action.RELEASE, clinic_id)
    return Card(
        batch=batch,
        din=Din(batch.din),
        next_actions=next_actions,
        step_forms=step_forms,
        others=others,
        recipients=recipients,
        can_receive=can_receive,
        qc_rows=_qc_rows(session, who, batch, next_actions),
        can_verify=lambda r: can(who, Action.QC_VERIFY) and r.verified_by_id is None and r.entered_by_id != who.id,
        release_blockers=release.blockers_for_release(session, batch, who)
        if may_release and status == Status.AWAITING_RELEASE
        else None,
        can_release=may_release and status == Status.AWAITING_RELEASE,
        can_reject=may_release and status not in TERMINAL,
        deviations=deviations.for_batch(session, batch.id),
        can_dispose=can(who, Action.DISPOSITION, clinic_id),
        can_open_deviation=can(who, Action.OPEN_DEVIATION, clinic_id),
        readiness=release.readiness(session, batch),
        label_kinds=_label_kinds(who, batch, status),
        can_read_record=can(who, Action.READ_RECORD, clinic_id),
        events=list(reversed(batches.events(session, batch)[-RECENT_EVENTS:])),
        show_patient_name=who.role == Role.CLINIC,
    )


def _qc_rows(session: Session, who: Actor, batch: Batch, next_actions: list[str]) -> list[QcRow]:
    results = qc.results(session, batch)
    entering = "qc" in next_actions and can(who, Action.QC_ENTRY, batch.clinic_id)
    rows = []
    for test, rule in batch.specification.body["tests"].items():
        mine = [r for r in results if r.test == test]
        final: tuple[str, ...] = ()
        if test == STERILITY and can(who, Action.QC_ENTRY, batch.clinic_id):
            values = [r.value["v"] for r in mine]
            if STERILITY_PENDING in values and all(v == STERILITY_PENDING for v in values):
                final = tuple(v for v in TEXT_TESTS[STERILITY] if v != STERILITY_PENDING)
        choices = (STERILITY_PENDING,) if test == STERILITY else TEXT_TESTS.get(test)
        rows.append(QcRow(test, rule.get("unit"), choices, mine, entering and not mine, final))
    return rows


def _label_kinds(who: Actor, batch: Batch, status: Status) -> list[str]:
    if not can(who, Action.PRINT_LABEL, batch.clinic_id):
        return []
    if status in READY_STATUSES:
        return ["product"]
    return ["collection"] if status in (Status.REGISTERED, Status.COLLECTED) else []


# --- actions: each loads its form with the API's schema and calls the API's service function ---


def _signed(form: MultiDict) -> dict[str, Any]:
    return {"signature": {"password": form.get("signature.password", ""), "meaning": form.get("signature.meaning", "")}}


def _int(form: MultiDict, name: str) -> int:
    value = number(form.get(name, ""))
    if not isinstance(value, int):
        raise BadRequest(f"The form is missing its {name}.")
    return value


def _step(who: Actor, din: str, form: MultiDict) -> str:
    name = form.get("step", "")
    tissue = TissueSource(batches.get(read_session(), who, din).tissue_source)
    read_session().rollback()
    definition = PROCESSES[tissue].step(name)
    body = load(
        StepCreateSchema(),
        {
            "step": name,
            "data": step_data(definition, form) if definition else {},
            "reagent_lots": [number(v) for v in form.getlist("reagent_lots") if v],
            "equipment": [v for v in form.getlist("equipment") if v],
            **in_hand_fields(form),
        },
    )
    event = database().write(lambda s: steps.log_step(s, who, din, **body))
    return f"{name.capitalize()} recorded (event {event.seq})."


def _handoff(who: Actor, din: str, form: MultiDict) -> str:
    body = load(HandoffCreateSchema(), in_hand_fields(form) | given(form, "to_username", "seal_id", "temperature_c"))
    database().write(lambda s: custody.handoff(s, who, din, **body))
    return f"Handed off to {body['to_username']}; the batch is in transit until they receive it."


def _receipt(who: Actor, din: str, form: MultiDict) -> str:
    body = load(ReceiptCreateSchema(), in_hand_fields(form) | given(form, "seal_id", "temperature_c", "condition"))
    database().write(lambda s: custody.receipt(s, who, din, **body))
    return "Receipt recorded: you are the custodian."


def _qc(who: Actor, din: str, form: MultiDict) -> str:
    test = form.get("test", "")
    value: Any = form.get("value", "").strip()
    if test in NUMERIC_TESTS and value:
        value = number(value)
    body = load(QcCreateSchema(), in_hand_fields(form) | given(form, "method") | {"test": test, "value": value})
    result = database().write(lambda s: qc.record(s, who, din, **body))
    verdict = "within spec" if result.within_spec else "OUT OF SPEC: a deviation was opened"
    return f"{test} = {result.value['v']} recorded ({verdict}); it awaits a second person's verification."


def _verify(who: Actor, din: str, form: MultiDict) -> str:
    qc_id = _int(form, "qc_id")
    body = load(SignedSchema(), _signed(form))
    result = database().write(lambda s: qc.verify(s, who, din, qc_id, **body))
    return f"{result.test} verified and signed."


def _release(who: Actor, din: str, form: MultiDict) -> str:
    body = load(SignedSchema(), _signed(form))
    batch = database().write(lambda s: release.release(s, who, din, **body))
    return "Released" + (" (conditional release: sterility pending)." if batch.conditional_release else ".")


def _reject(who: Actor, din: str, form: MultiDict) -> str:
    body = load(RejectCreateSchema(), given(form, "reason") | _signed(form))
    database().write(lambda s: release.reject(s, who, din, **body))
    return "The batch is rejected."


def _dispose(who: Actor, din: str, form: MultiDict) -> str:
    deviation_id = _int(form, "deviation_id")
    body = load(DispositionCreateSchema(), given(form, "decision", "justification") | _signed(form))
    deviation = database().write(lambda s: release.dispose(s, who, deviation_id, **body))
    return f"Deviation {deviation.id} closed: {deviation.decision}."


def _open_deviation(who: Actor, din: str, form: MultiDict) -> str:
    body = load(DeviationCreateSchema(), given(form, "description"))
    deviation = database().write(lambda s: deviations.open_manual(s, who, din, **body))
    return f"Deviation {deviation.id} opened; the batch is held until QA closes it."


def _label(who: Actor, din: str, form: MultiDict) -> Response:
    kind = form.get("kind", "")
    if kind not in documents.LABEL_KINDS:
        raise BadRequest("Unknown label kind.")
    config = current_app.config
    view = database().write(
        lambda s: documents.print_label(
            s, who, din, kind=kind, facility=config["LABTRACK_FIN"], zone=config["LABTRACK_TIMEZONE"]
        )
    )
    return _pdf(render_label(view), f"label-{view.din}-{view.kind}.pdf")


ACTIONS: dict[str, Callable[[Actor, str, MultiDict], str | Response]] = {
    "step": _step,
    "handoff": _handoff,
    "receipt": _receipt,
    "qc": _qc,
    "verify": _verify,
    "release": _release,
    "reject": _reject,
    "dispose": _dispose,
    "deviation": _open_deviation,
    "label": _label,
    "temperatures": interop.upload_temperatures,
    "print_label": interop.send_label,
}


def _pdf(content: bytes, name: str) -> Response:
    return Response(content, mimetype="application/pdf", headers={"Content-Disposition": f'inline; filename="{name}"'})


@bp.route("/batches/<din>", methods=["GET", "POST"])
def card(din: str):
    """The batch card; its forms post here and the page comes back with the outcome."""
    who = actor()

    def run(handler: Callable[[Actor, str, MultiDict], str | Response]) -> Callable[[MultiDict], str | Response]:
        return lambda form: handler(who, din, form)

    return respond(
        {name: run(handler) for name, handler in ACTIONS.items()},
        lambda failure: render_template("batch/card.html", card=card_view(read_session(), who, din), failure=failure),
    )


@bp.get("/batches/<din>/record")
def record(din: str):
    """The batch record as QA reviews it: the same view the printed record is made from."""
    view = records.record_view(
        read_session(),
        actor(),
        din,
        zone=current_app.config["LABTRACK_TIMEZONE"],
        public_key=keys.trusted_public_key(current_app.config),
    )
    return render_template("batch/record.html", record=view)


@bp.get("/batches/<din>/record.pdf")
def record_pdf(din: str):
    view = records.record_view(
        read_session(),
        actor(),
        din,
        zone=current_app.config["LABTRACK_TIMEZONE"],
        public_key=keys.trusted_public_key(current_app.config),
    )
    return _pdf(render_record(view), f"batch-record-{view.din}.pdf")


@bp.get("/batches/<din>/audit-export")
def audit_export(din: str):
    """The offline-verifiable export (R-AUD-4), as the API serves it, for the signed-in user."""
    lines = export.export(
        database(), actor(), din, keys.lab_key(current_app.config), current_app.config["LABTRACK_FIN"]
    )
    name = f"audit-export-{parse_din(din).value}.jsonl"
    return Response(
        "\n".join(lines) + "\n",
        mimetype="application/x-ndjson",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )
