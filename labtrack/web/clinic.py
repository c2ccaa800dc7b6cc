"""The clinic's pages: the readiness board, patient registration and batch ordering.

Harvest, hand-off, receipt and administration are forms on the batch card.
"""

from __future__ import annotations

from flask import current_app, flash, redirect, render_template, request, url_for
from werkzeug.datastructures import MultiDict

from labtrack.api.schemas import BatchCreateSchema, PatientCreateSchema
from labtrack.db import database, read_session
from labtrack.domain.actors import Role
from labtrack.domain.process import TissueSource
from labtrack.services import batches, patients, release
from labtrack.web import bp
from labtrack.web.auth import actor, roles
from labtrack.web.forms import aware, given, load, number, respond

BOARD_SIZE = 100


@bp.get("/clinic")
@roles(Role.CLINIC)
def board():
    """The clinic's batches, newest first: ready, or why not in plain words, and time left (R-RDY-1)."""
    session, who = read_session(), actor()
    items, _ = batches.search(session, who, batches.BatchFilter(per_page=BOARD_SIZE))
    return render_template("clinic/board.html", rows=[(b, release.readiness(session, b)) for b in items])


@bp.route("/clinic/patients", methods=["GET", "POST"])
@roles(Role.CLINIC)
def patients_page():
    who = actor()

    def register(form: MultiDict) -> str:
        body = load(PatientCreateSchema(), given(form, "mrn", "family_name", "given_name", "birth_date"))
        patient = database().write(lambda s: patients.register(s, who, **body))
        return f"Patient {patient.family_name}, {patient.given_name} (MRN {patient.mrn}) registered."

    def order(form: MultiDict):
        payload = given(form, "tissue_source") | {"patient_id": number(form.get("patient_id", ""))}
        if form.get("planned_administration_at", "").strip():
            payload["planned_administration_at"] = aware(form["planned_administration_at"].strip())
        body = load(BatchCreateSchema(), payload)
        facility = current_app.config["LABTRACK_FIN"]
        batch = database().write(lambda s: batches.register(s, who, facility=facility, **body))
        flash(f"Batch {batch.din} ordered. Print its collection label, then record the harvest.", "success")
        return redirect(url_for("web.card", din=batch.din), 303)

    mrn = request.args.get("mrn", "").strip() or None
    return respond(
        {"register": register, "order": order},
        lambda failure: render_template(
            "clinic/patients.html",
            patients=patients.search(read_session(), who, mrn=mrn, per_page=200),
            tissues=[t.value for t in TissueSource],
            mrn=mrn or "",
            failure=failure,
        ),
    )
