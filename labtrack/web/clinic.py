"""The clinic's pages: the readiness board, patient registration and batch ordering.

Harvest, hand-off, receipt and administration are forms on the batch card.
"""

from __future__ import annotations

from dataclasses import dataclass

from flask import current_app, flash, redirect, render_template, request, url_for
from werkzeug.datastructures import MultiDict

from labtrack import glossary
from labtrack.api.schemas import BatchCreateSchema, PatientCreateSchema
from labtrack.db import database, read_session
from labtrack.domain.actors import Role
from labtrack.domain.lifecycle import TERMINAL, Status
from labtrack.domain.process import TissueSource
from labtrack.models import Batch
from labtrack.services import batches, patients, release
from labtrack.web import bp
from labtrack.web.auth import actor, roles
from labtrack.web.forms import aware, given, load_form, parse_number, respond
from labtrack.web.pages import local

AT_THE_LAB = frozenset({Status.RECEIVED, Status.PROCESSING, Status.PROCESSED, Status.AWAITING_RELEASE})
# What stands in the way, as a clinic says it: one phrase per kind of reason, not the lab's list.
IN_THE_WAY = {
    "qc_missing": "The lab is still testing the product.",
    "qc_unverified": "The lab's test results are being checked.",
    "qc_out_of_spec": "A test result is outside the specification: the lab's QA will contact you.",
    "open_deviation": "On hold at the lab for a quality review.",
    "expired": "The product has expired and cannot be used.",
}
SERIOUS = frozenset({"qc_out_of_spec", "open_deviation", "expired"})


@dataclass(frozen=True)
class BoardRow:
    batch: Batch
    where: str  # where the product is, in the clinic's words
    ready: bool
    conditional: bool
    in_the_way: list[str]


def where(batch: Batch, who_id: int) -> str:
    """Where the product is now, as the clinic asks it."""
    status = Status(batch.status)
    in_your_hands = batch.custodian_id == who_id and batch.transfer_to_id is None
    if status == Status.REGISTERED:
        return "Not harvested yet."
    if status in (Status.COLLECTED, Status.DELIVERED):
        return "In your hands." if in_your_hands else f"At the clinic, with {batch.custodian.full_name}."
    if status == Status.IN_TRANSIT:
        return f"On its way to the lab since {local(batch.transfer_at)}."
    if status in AT_THE_LAB:
        return "At the lab."
    if status == Status.RELEASED:
        return f"Released at the lab on {local(batch.released_at)}; not yet dispatched."
    if status == Status.DISPATCHED:
        return f"Dispatched at {local(batch.transfer_at)} to {batch.transfer_to.full_name}."
    return glossary.words(status.value).capitalize() + "."


def in_the_way(status: Status, blockers: list[dict[str, str]]) -> list[str]:
    """The reasons it is not ready, each said once in the clinic's words; the stage itself is in ``where``."""
    said: list[str] = []
    kinds = {found["code"].partition(":")[0] for found in blockers}
    if kinds & SERIOUS:  # the serious reasons say it all; "still testing" beside them is noise
        blockers = [found for found in blockers if found["code"].partition(":")[0] in SERIOUS | {"not_ready"}]
    for found in blockers:
        kind = found["code"].partition(":")[0]
        phrase = IN_THE_WAY.get(kind) if kind != "qc_missing" or status in AT_THE_LAB else None
        if kind == "not_ready" and status in TERMINAL:
            phrase = f"The batch is {glossary.words(status.value)}: it will not be administered."
        if phrase and phrase not in said:
            said.append(phrase)
    return said


@bp.get("/clinic")
@roles(Role.CLINIC)
def board():
    """The clinic's batches, newest first: where each product is, ready or what stands in the way in
    the clinic's words, planned administration and time left (R-RDY-1); keyset pages."""
    session, who = read_session(), actor()
    listed = batches.search(session, who, batches.BatchFilter(), after=request.args.get("after") or None)
    rows = []
    for b in listed.items:
        readiness = release.readiness(session, b)
        status = Status(b.status)
        rows.append(
            BoardRow(
                b,
                where(b, who.id),
                readiness["ready"],
                b.conditional_release,
                in_the_way(status, readiness["blockers"]),
            )
        )
    return render_template("clinic/board.html", rows=rows, listed=listed)


@bp.route("/clinic/patients", methods=["GET", "POST"])
@roles(Role.CLINIC)
def patients_page():
    who = actor()

    def register(form: MultiDict) -> str:
        body = load_form(PatientCreateSchema(), given(form, "mrn", "family_name", "given_name", "birth_date"))
        patient = database().write(lambda s: patients.register(s, who, **body))
        return f"Patient {patient.family_name}, {patient.given_name} (MRN {patient.mrn}) registered."

    def order(form: MultiDict):
        payload = given(form, "tissue_source") | {"patient_id": parse_number(form.get("patient_id", ""))}
        if form.get("planned_administration_at", "").strip():
            payload["planned_administration_at"] = aware(form["planned_administration_at"].strip())
        body = load_form(BatchCreateSchema(), payload)
        facility = current_app.config["LABTRACK_FIN"]
        batch = database().write(lambda s: batches.register(s, who, facility=facility, **body))
        flash(f"Batch {batch.din} ordered. Print its collection label, then record the harvest.", "success")
        return redirect(url_for("web.card", din=batch.din), 303)

    q = request.args.get("q", "").strip()
    return respond(
        {"register": register, "order": order},
        lambda failure: render_template(
            "clinic/patients.html",
            listed=patients.search(read_session(), who, q=q or None, after=request.args.get("after") or None),
            tissues=[t.value for t in TissueSource],
            q=q,
            failure=failure,
        ),
    )
