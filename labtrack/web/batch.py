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

from labtrack import glossary
from labtrack.api.schemas import (
    CorrectionCreateSchema,
    DeviationCreateSchema,
    DispositionCreateSchema,
    HandoffCreateSchema,
    QcCreateSchema,
    QcPanelCreateSchema,
    ReceiptCreateSchema,
    RejectCreateSchema,
    SignedSchema,
    StepCreateSchema,
)
from labtrack.audit import export, keys, records
from labtrack.clock import utcnow
from labtrack.db import autocommit_read, database, read_session
from labtrack.documents.labels import render_label
from labtrack.documents.record import render_record
from labtrack.domain.actors import Action, Actor, Role, can
from labtrack.domain.decisions import (
    BatchFacts,
    Decision,
    LabelKind,
    blockers_for,
    check_qc_entry,
    decide,
    decision_for,
)
from labtrack.domain.din import Din, parse_din
from labtrack.domain.errors import DomainError, ValidationFailed
from labtrack.domain.lifecycle import Status, allowed_actions
from labtrack.domain.process import PROCESSES, DataField, Performer, StepDefinition, TissueSource
from labtrack.domain.qc import ALL_TESTS, NUMERIC_TESTS, STERILITY, STERILITY_PENDING, TEXT_TESTS, spec_tests
from labtrack.domain.release import BEFORE_RELEASE, Blocker
from labtrack.models import Batch, Equipment, QcResult, ReagentLot, User
from labtrack.services import (
    batches,
    corrections,
    custody,
    decisions,
    deviations,
    documents,
    qc,
    release,
    steps,
)
from labtrack.web import bp, interop
from labtrack.web.auth import actor
from labtrack.web.forms import Recorded, given, in_hand_fields, load_form, parse_number, respond, step_data

RECENT_EVENTS = 12


@dataclass
class StepForm:
    step: StepDefinition
    decision: Decision
    # by required kind: every lot and item, each with why it cannot be used (None when it can)
    lots: dict[str, list[tuple[ReagentLot, str | None]]] = field(default_factory=dict)
    equipment: dict[str, list[tuple[Equipment, str | None]]] = field(default_factory=dict)


@dataclass
class QcRow:
    test: str
    unit: str | None
    choices: tuple[str, ...] | None  # word results; None for numbers
    results: list[QcResult]
    in_panel: bool  # no result yet, and the panel may be entered now
    final_choices: tuple[str, ...] = ()  # the sterility culture's final result, entered whenever it comes


@dataclass
class Card:
    """The batch as this user may act on it: every choice made by ``labtrack.domain.decisions``."""

    batch: Batch
    din: Din
    decisions: list[Decision]
    step_forms: list[StepForm]
    waiting: list[Decision]  # the process's next actions this user does not take, and why
    recipients: list[User]
    receipt: Decision | None
    qc_rows: list[QcRow]
    panel: Decision | None  # QC entry of the whole panel after one scan
    verifications: dict[int, Decision]  # by QC result id
    release_blockers: list[Blocker]
    release: Decision | None
    reject: Decision | None
    deviations: list[Any]
    dispositions: dict[int, Decision]  # by deviation id
    open_deviation: Decision | None
    readiness: dict[str, Any]
    label_kinds: list[str]
    can_read_record: bool
    corrections: list[corrections.Correctable]
    corrections_made: list[Any]
    events: list[Any]
    show_patient_name: bool

    def allowed(self, action: str) -> Decision | None:
        found = decision_for(self.decisions, action)
        return found if found is not None and found.allowed else None

    @property
    def to_verify(self) -> list[QcResult]:
        """The results this user may verify now: one signature covers any of them (R-SIG-3)."""
        return [r for row in self.qc_rows for r in row.results if self.verifications.get(r.id, NO).allowed]


NO = Decision("", False)


def card_view(session: Session, who: Actor, din: str) -> Card:
    batch = batches.get(session, who, din)
    facts = decisions.facts(session, batch)
    found = decide(who, facts)
    process = PROCESSES[TissueSource(batch.tissue_source)]
    step_forms, waiting = [], []
    for decision in found:
        definition = process.step(decision.action)
        if decision.action not in allowed_actions(facts.state):
            continue
        if not decision.allowed:
            waiting.append(decision)
        elif definition is not None:
            step_forms.append(_step_form(session, who, definition, decision))
    allowed = {d.action: d for d in found if d.allowed and d.subject is None}
    status = Status(batch.status)
    show_blockers = who.role == Role.QA
    stream = batches.events(session, batch)
    return Card(
        batch=batch,
        din=Din(batch.din),
        decisions=found,
        step_forms=step_forms,
        waiting=waiting,
        recipients=custody.recipients(session, who, batch) if "handoff" in allowed else [],
        receipt=allowed.get("receipt"),
        qc_rows=_qc_rows(session, who, batch, facts, "qc" in allowed),
        panel=allowed.get("qc"),
        verifications={d.subject: d for d in found if d.action == "verify" and d.subject is not None},
        release_blockers=[b for b in blockers_for(who, facts) if show_blockers or b.code != "segregation_of_duties"]
        if status in BEFORE_RELEASE
        else [],
        release=decision_for(found, "release") if status == Status.AWAITING_RELEASE or who.role == Role.QA else None,
        reject=allowed.get("reject"),
        deviations=deviations.for_batch(session, batch.id),
        dispositions={d.subject: d for d in found if d.action == "dispose" and d.subject is not None},
        open_deviation=allowed.get("open_deviation"),
        readiness=release.readiness(session, batch),
        label_kinds=[kind for kind in LabelKind if f"label:{kind}" in allowed],
        can_read_record="record" in allowed,
        corrections=corrections.correctable(who, batch, stream),
        corrections_made=[e for e in stream if e.type == "correction"],
        events=list(reversed(stream[-RECENT_EVENTS:])),
        show_patient_name=who.role == Role.CLINIC,
    )


def _step_form(session: Session, who: Actor, definition: StepDefinition, decision: Decision) -> StepForm:
    form = StepForm(definition, decision)
    if definition.performer != Performer.CLINIC:
        lots, items = steps.materials(session, who, definition, utcnow().date())
        form.lots = {kind: [pair for pair in lots if pair[0].kind == kind] for kind in definition.reagent_kinds}
        form.equipment = {kind: [p for p in items if p[0].kind == kind] for kind in definition.equipment_kinds}
    return form


def _qc_rows(session: Session, who: Actor, batch: Batch, facts: BatchFacts, panel_open: bool) -> list[QcRow]:
    results = qc.results(session, batch)
    rows = []
    for test, rule in spec_tests(batch.specification.body):
        mine = [r for r in results if r.test == test]
        final: tuple[str, ...] = ()
        if test == STERILITY and can(who, Action.QC_ENTRY, batch.clinic_id):
            values = [r.value["v"] for r in mine]
            try:
                check_qc_entry(facts.state, STERILITY, "no_growth", values)
            except DomainError:
                pass
            else:
                final = tuple(v for v in TEXT_TESTS[STERILITY] if v != STERILITY_PENDING)
        choices = (STERILITY_PENDING,) if test == STERILITY else TEXT_TESTS.get(test)
        rows.append(QcRow(test, rule.get("unit"), choices, mine, panel_open and not mine, final))
    return rows


# --- actions: each loads its form with the API's schema and calls the API's service function ---


def _signed(form: MultiDict) -> dict[str, Any]:
    return {"signature": {"password": form.get("signature.password", ""), "meaning": form.get("signature.meaning", "")}}


def _int(form: MultiDict, name: str) -> int:
    value = parse_number(form.get(name, ""))
    if not isinstance(value, int):
        raise BadRequest(f"The form is missing its {name}.")
    return value


def _step(who: Actor, din: str, form: MultiDict) -> str:
    name = form.get("step", "")
    tissue = TissueSource(batches.get(read_session(), who, din).tissue_source)
    read_session().rollback()
    definition = PROCESSES[tissue].step(name)
    body = load_form(
        StepCreateSchema(),
        {
            "step": name,
            "data": step_data(definition, form) if definition else {},
            "reagent_lots": [parse_number(v) for v in form.getlist("reagent_lots") if v],
            "equipment": [v for v in form.getlist("equipment") if v],
            **in_hand_fields(form),
        },
    )
    event = database().write(lambda s: steps.log_step(s, who, din, **body))
    return f"{name.capitalize()} recorded (event {event.seq})."


def _handoff(who: Actor, din: str, form: MultiDict) -> str:
    body = load_form(
        HandoffCreateSchema(), in_hand_fields(form) | given(form, "to_username", "seal_id", "temperature_c")
    )
    database().write(lambda s: custody.handoff(s, who, din, **body))
    return f"Handed off to {body['to_username']}; the batch is in transit until they receive it."


def _with_deviations(session: Session, event: Any) -> list[str]:
    return [glossary.sentence(d.description) for d in deviations.opened_after(session, event.batch_id, event.seq)]


def _receipt(who: Actor, din: str, form: MultiDict) -> Recorded:
    body = load_form(ReceiptCreateSchema(), in_hand_fields(form) | given(form, "seal_id", "temperature_c", "condition"))

    def receive(s: Session) -> list[str]:
        return _with_deviations(s, custody.receipt(s, who, din, **body))

    opened = database().write(receive)
    if opened:
        found = " ".join(opened)
        return Recorded(f"Receipt recorded with a deviation: {found} The batch is on hold until QA decides.", "warning")
    return Recorded("Receipt recorded: you are the custodian.")


def _qc(who: Actor, din: str, form: MultiDict) -> Recorded:
    test = form.get("test", "")
    value: Any = form.get("value", "").strip()
    if test in NUMERIC_TESTS and value:
        value = parse_number(value)
    body = load_form(QcCreateSchema(), in_hand_fields(form) | given(form, "method") | {"test": test, "value": value})
    result = database().write(lambda s: qc.record(s, who, din, **body))
    said = f"{glossary.words(test)}: {glossary.quantity(result.value['v'], result.unit)} recorded"
    if not result.within_spec:
        return Recorded(f"{said}. Out of specification: a deviation was opened and the batch is held.", "warning")
    return Recorded(f"{said}, within the specification; it awaits a second person's verification.")


def _panel(who: Actor, din: str, form: MultiDict) -> Recorded:
    entries = []
    for test in ALL_TESTS:
        value: Any = form.get(f"value.{test}", "").strip()
        if not value:
            continue
        entries.append({"test": test, "value": parse_number(value) if test in NUMERIC_TESTS else value})
        if form.get(f"method.{test}", "").strip():
            entries[-1]["method"] = form[f"method.{test}"].strip()
    confirmed = form.get("confirm_out_of_spec") == "yes"

    def enter(s: Session) -> list[QcResult]:
        recorded = qc.record_panel(s, who, din, **body)
        out = [r for r in recorded if not r.within_spec]
        if out and not confirmed:
            raise _unconfirmed(out)  # rolls the whole panel back: nothing is recorded until confirmed
        return recorded

    try:
        body = load_form(QcPanelCreateSchema(), in_hand_fields(form) | {"results": entries})
        recorded = database().write(enter)
    except ValidationFailed as error:
        raise ValidationFailed(_panel_fields(error.errors or {}, [e["test"] for e in entries])) from None
    out = [r for r in recorded if not r.within_spec]
    said = f"{len(recorded)} QC result(s) recorded; each awaits a second person's verification."
    if out:
        named = ", ".join(glossary.words(r.test) for r in out)
        return Recorded(
            f"{said} Out of specification, so a deviation was opened and the batch is held: {named}.", "warning"
        )
    return Recorded(said)


def _unconfirmed(out: list[QcResult]) -> ValidationFailed:
    """An out-of-spec value is asked about before it is recorded (a mistyped 55 instead of 85)."""
    fields = {
        f"value.{r.test}": [
            f"{glossary.words(r.test)} {glossary.quantity(r.value['v'], r.unit)} is outside the specification "
            f"({glossary.limit(r.limit, r.unit)}). Check it against the instrument."
        ]
        for r in out
    }
    fields["confirm_out_of_spec"] = [
        "Nothing was recorded yet. If the values are right, tick the box and record them: a deviation opens."
    ]
    return ValidationFailed(fields)


def _correct(who: Actor, din: str, form: MultiDict) -> str:
    seq_text, _, name = form.get("entry", "").partition(":")
    seq = parse_number(seq_text)
    batch = batches.get(read_session(), who, din)
    stream = batches.events(read_session(), batch)
    entry = next((c for c in corrections.correctable(who, batch, stream) if c.seq == seq), None)
    read_session().rollback()
    spec = next((f for f in entry.fields if f.name == name), None) if entry else None
    if spec is None:
        raise ValidationFailed({"entry": ["choose the entry and the value to correct"]})
    raw = form.get("value", "").strip()
    data = {name: step_data(_one_field(spec), {f"data.{name}": raw}).get(name, raw)}
    body = load_form(CorrectionCreateSchema(), {"event_seq": seq, "reason": form.get("reason", ""), "data": data})
    event = database().write(lambda s: corrections.correct(s, who, din, **body))
    return f"Correction recorded (entry {event.seq}); the original value stays in the record."


@bp.app_template_filter("correction_options")
def correction_options(entries: list[corrections.Correctable]) -> list[tuple[str, str]]:
    """Every value this user may correct, as ``seq:field``, each with what it is and its value now."""
    return [
        (
            f"{c.seq}:{f.name}",
            f"{glossary.words(c.subject)}"
            + (f", {glossary.words(f.name)}" if c.type != "qc_recorded" else "")
            + f" (entry {c.seq}): now {glossary.quantity(c.values.get(f.name, '—'), f.unit)}",
        )
        for c in entries
        for f in c.fields
    ]


def _one_field(spec: DataField) -> StepDefinition:
    return StepDefinition("correction", Performer.LAB, (spec,))


def _panel_fields(errors: dict[str, list[str]], tests: list[str]) -> dict[str, list[str]]:
    """``results.<test or index>.value`` (service or schema) as the form's ``value.<test>``."""
    named: dict[str, list[str]] = {}
    for key, messages in errors.items():
        parts = key.split(".")
        if len(parts) == 3 and parts[0] == "results":
            test = tests[int(parts[1])] if parts[1].isdigit() and int(parts[1]) < len(tests) else parts[1]
            key = f"value.{test}"
        named.setdefault(key, []).extend(messages)
    return named


def _verify(who: Actor, din: str, form: MultiDict) -> str:
    qc_ids = [parse_number(v) for v in form.getlist("qc_id")]
    if not qc_ids or not all(isinstance(i, int) for i in qc_ids):
        raise BadRequest("Tick the results this signature covers.")
    body = load_form(SignedSchema(), _signed(form))
    verified = database().write(lambda s: qc.verify_many(s, who, din, qc_ids, **body))
    return f"Verified and signed: {', '.join(glossary.words(r.test) for r in verified)}."


def _release(who: Actor, din: str, form: MultiDict) -> str:
    body = load_form(SignedSchema(), _signed(form))
    batch = database().write(lambda s: release.release(s, who, din, **body))
    return "Released" + (" (conditional release: sterility pending)." if batch.conditional_release else ".")


def _reject(who: Actor, din: str, form: MultiDict) -> str:
    body = load_form(RejectCreateSchema(), given(form, "reason") | _signed(form))
    database().write(lambda s: release.reject(s, who, din, **body))
    return "The batch is rejected."


def _dispose(who: Actor, din: str, form: MultiDict) -> str:
    deviation_id = _int(form, "deviation_id")
    body = load_form(DispositionCreateSchema(), given(form, "decision", "justification") | _signed(form))
    deviation = database().write(lambda s: release.dispose(s, who, deviation_id, **body))
    return f"Deviation {deviation.id} closed: {deviation.decision}."


def _open_deviation(who: Actor, din: str, form: MultiDict) -> str:
    body = load_form(DeviationCreateSchema(), given(form, "description"))
    deviation = database().write(lambda s: deviations.open_manual(s, who, din, **body))
    return f"Deviation {deviation.id} opened; the batch is held until QA closes it."


def _label(who: Actor, din: str, form: MultiDict) -> Response:
    kind = form.get("kind", "")
    if kind not in tuple(LabelKind):
        raise BadRequest("Unknown label kind.")
    config = current_app.config
    view = database().write(
        lambda s: documents.print_label(
            s, who, din, kind=kind, facility=config["LABTRACK_FIN"], zone=config["LABTRACK_TIMEZONE"]
        )
    )
    return _pdf(render_label(view), f"label-{view.din}-{view.kind}.pdf")


ACTIONS: dict[str, Callable[[Actor, str, MultiDict], str | Recorded | Response]] = {
    "step": _step,
    "handoff": _handoff,
    "receipt": _receipt,
    "qc": _qc,
    "qc_panel": _panel,
    "verify": _verify,
    "correct": _correct,
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
@autocommit_read
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
    lines = export.export(database().reader, actor(), din)
    name = f"audit-export-{parse_din(din).value}.jsonl"
    return Response(
        "\n".join(lines) + "\n",
        mimetype="application/x-ndjson",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )
