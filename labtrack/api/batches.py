"""Batches: registration, reads, steps, custody and deviations."""

from __future__ import annotations

from flask import current_app
from flask_smorest import Blueprint

from labtrack.api import exports
from labtrack.api.common import actor, authenticate, read_session, write
from labtrack.api.errors import refusals
from labtrack.api.schemas import (
    BatchCreateSchema,
    BatchDetailSchema,
    BatchPageSchema,
    BatchQueryArgsSchema,
    BatchSchema,
    CorrectionCreateSchema,
    DeviationCreateSchema,
    DeviationPageSchema,
    DeviationQueryArgsSchema,
    DeviationSchema,
    DispositionCreateSchema,
    EventSchema,
    HandoffCreateSchema,
    QcCreateSchema,
    QcPanelCreateSchema,
    QcResultSchema,
    QcVerifyManySchema,
    ReadinessSchema,
    ReceiptCreateSchema,
    RejectCreateSchema,
    SignedSchema,
    StepCreateSchema,
)
from labtrack.db import autocommit_read
from labtrack.services import batches, corrections, custody, decisions, deviations, qc, release, steps
from labtrack.services import exports as export_service

blp = Blueprint("batches", __name__, description="Batches from registration through processing.")
blp.before_request(authenticate)
# The answers' schemas, made once: a marshmallow schema copies its declared fields when it is made
# (~0.1 ms each), and dumping does not change it.
BATCH = BatchSchema()
DEVIATION = DeviationSchema()
EVENT = EventSchema()
QC_RESULT = QcResultSchema()


@blp.post("/batches")
@blp.arguments(BatchCreateSchema)
@blp.response(201, BatchSchema)
@refusals(blp, 403, 409, 413)
def register_batch(body: dict):
    """Register a batch for a patient; allocates its DIN (clinic: own patients; technician)."""
    facility = current_app.config["LABTRACK_FIN"]
    return write(lambda s: batches.register(s, actor(), facility=facility, **body), BATCH)


@blp.get("/batches")
@blp.arguments(BatchQueryArgsSchema, location="query")
@blp.response(200, BatchPageSchema)
@refusals(blp, 403)
@exports.also_csv(blp, BatchPageSchema)
def list_batches(args: dict):
    """Batches, newest first, filtered, a keyset page at a time (clinic users: own clinic);
    `format=csv`: every matching one."""
    if args.pop("format") == "csv":
        filters = batches.filter_of(actor(), args)
        return exports.csv_download(lambda s: export_service.batches_csv(s, actor(), filters), "batches")
    return batches.listing(read_session(), actor(), args)


@blp.get("/batches/<string:din>")
@blp.response(200, BatchDetailSchema)
@refusals(blp, 404, 422)
@autocommit_read
def get_batch(din: str):
    """One batch with custody, deviations, steps done and the next allowed actions."""
    session = read_session()
    batch = batches.get(session, actor(), din, with_specification=True, with_parties=True)
    batch.deviations = deviations.for_batch(session, batch.id)
    batch.qc = qc.results(session, batch)
    batch.decisions = [d.as_dict() for d in decisions.for_actor(session, actor(), batch)]
    return batch


@blp.get("/batches/<string:din>/events")
@blp.response(200, EventSchema(many=True))
@refusals(blp, 404, 422)
def list_events(din: str):
    """The batch's event stream with its hash chain and canonical text (R-AUD-1)."""
    session = read_session()
    return batches.events(session, batches.get(session, actor(), din))


@blp.get("/batches/<string:din>/readiness")
@blp.response(200, ReadinessSchema)
@refusals(blp, 404, 422)
@autocommit_read
def readiness(din: str):
    """Ready for the clinic, or every blocker with its stable code (R-RDY-1)."""
    session = read_session()
    return release.readiness(session, batches.get(session, actor(), din, with_specification=True))


@blp.post("/batches/<string:din>/steps")
@blp.arguments(StepCreateSchema)
@blp.response(201, EventSchema)
@refusals(blp, 403, 404, 409, 413)
def log_step(body: dict, din: str):
    """Record a process step with the container scanned (R-COI-1, R-SEQ-1..2, R-MAT-1..3)."""
    return write(
        lambda s: steps.log_step(s, actor(), din, **body),
        EVENT,
    )


@blp.post("/batches/<string:din>/custody/handoff")
@blp.arguments(HandoffCreateSchema)
@blp.response(201, EventSchema)
@refusals(blp, 403, 404, 409, 413)
def handoff(body: dict, din: str):
    """The custodian hands the sealed batch to one named user (R-CUS-1)."""
    return write(lambda s: custody.handoff(s, actor(), din, **body), EVENT)


@blp.post("/batches/<string:din>/custody/receipt")
@blp.arguments(ReceiptCreateSchema)
@blp.response(201, EventSchema)
@refusals(blp, 403, 404, 409, 413)
def receipt(body: dict, din: str):
    """The named recipient receives; seal, condition and temperature are checked (R-CUS-4)."""
    return write(lambda s: custody.receipt(s, actor(), din, **body), EVENT)


@blp.post("/batches/<string:din>/deviations")
@blp.arguments(DeviationCreateSchema)
@blp.response(201, DeviationSchema)
@refusals(blp, 403, 404, 409, 413)
def open_deviation(body: dict, din: str):
    """Open a manual deviation; the batch is held while it is open (R-DEV-1)."""
    return write(lambda s: deviations.open_manual(s, actor(), din, **body), DEVIATION)


@blp.get("/deviations")
@blp.arguments(DeviationQueryArgsSchema, location="query")
@blp.response(200, DeviationPageSchema)
@refusals(blp, 403)
@exports.also_csv(blp, DeviationPageSchema)
def list_deviations(args: dict):
    """Deviations, newest first, a keyset page at a time (QA and technicians); `format=csv`: every matching one."""
    if args.pop("format") == "csv":
        wanted = {k: v for k, v in args.items() if k not in ("limit", "after")}
        return exports.csv_download(lambda s: export_service.deviations_csv(s, actor(), **wanted), "deviations")
    return deviations.search(read_session(), actor(), **args)


@blp.post("/batches/<string:din>/qc")
@blp.arguments(QcCreateSchema)
@blp.response(201, QcResultSchema)
@refusals(blp, 403, 404, 409, 413)
def record_qc(body: dict, din: str):
    """Record a QC result with the sample's DIN scanned; evaluated against the batch's spec (R-QC-2)."""
    return write(lambda s: qc.record(s, actor(), din, **body), QC_RESULT)


@blp.post("/batches/<string:din>/qc/panel")
@blp.arguments(QcPanelCreateSchema)
@blp.response(201, QcResultSchema(many=True))
@refusals(blp, 403, 404, 409, 413)
def record_qc_panel(body: dict, din: str):
    """Record several QC results of one sample after one scan, all or none (R-COI-1, R-QC-2)."""
    return write(lambda s: qc.record_panel(s, actor(), din, **body), QcResultSchema(many=True))


@blp.post("/batches/<string:din>/qc/verify")
@blp.arguments(QcVerifyManySchema)
@blp.response(200, QcResultSchema(many=True))
@refusals(blp, 403, 404, 409, 413)
def verify_qc_results(body: dict, din: str):
    """Verify several results with one signature meaning `verified` that lists each (R-QC-3, R-SIG-1, R-SIG-3)."""
    return write(lambda s: qc.verify_many(s, actor(), din, **body), QcResultSchema(many=True), status=200)


@blp.post("/batches/<string:din>/qc/<int:qc_id>/verify")
@blp.arguments(SignedSchema)
@blp.response(200, QcResultSchema)
@refusals(blp, 403, 404, 409, 413)
def verify_qc(body: dict, din: str, qc_id: int):
    """A second person verifies a result with a signature meaning `verified` (R-QC-3, R-SIG-1)."""
    return write(lambda s: qc.verify(s, actor(), din, qc_id, **body), QC_RESULT, status=200)


@blp.post("/deviations/<int:deviation_id>/disposition")
@blp.arguments(DispositionCreateSchema)
@blp.response(200, DeviationSchema)
@refusals(blp, 403, 404, 409, 413)
def dispose_deviation(body: dict, deviation_id: int):
    """QA closes a deviation: accept (use as is) or reject (the batch is rejected), signed (R-DEV-2)."""
    return write(lambda s: release.dispose(s, actor(), deviation_id, **body), DEVIATION, status=200)


@blp.post("/batches/<string:din>/release")
@blp.arguments(SignedSchema)
@blp.response(200, BatchSchema)
@refusals(blp, 403, 404, 409, 413)
def release_batch(body: dict, din: str):
    """QA releases with a signature meaning `approved`, or gets 409 release_blocked listing every blocker."""
    return write(lambda s: release.release(s, actor(), din, **body), BATCH, status=200)


@blp.post("/batches/<string:din>/reject")
@blp.arguments(RejectCreateSchema)
@blp.response(200, BatchSchema)
@refusals(blp, 403, 404, 409, 413)
def reject_batch(body: dict, din: str):
    """QA rejects the batch with a reason and a signature meaning `rejected`; terminal (R-REL-3)."""
    return write(lambda s: release.reject(s, actor(), din, **body), BATCH, status=200)


@blp.post("/batches/<string:din>/corrections")
@blp.arguments(CorrectionCreateSchema)
@blp.response(201, EventSchema)
@refusals(blp, 403, 404, 409, 413)
def correct(body: dict, din: str):
    """Correct an earlier entry with a reason; the original stays readable (R-COR-1)."""
    return write(lambda s: corrections.correct(s, actor(), din, **body), EVENT)
