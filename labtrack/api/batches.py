"""Batches: registration, reads, steps, custody and deviations."""

from __future__ import annotations

from flask import current_app
from flask_smorest import Blueprint

from labtrack.api.common import actor, authenticate, read_session, write
from labtrack.api.schemas import (
    BatchCreateSchema,
    BatchDetailSchema,
    BatchPageSchema,
    BatchQueryArgsSchema,
    BatchSchema,
    DeviationCreateSchema,
    DeviationQueryArgsSchema,
    DeviationSchema,
    EventSchema,
    HandoffCreateSchema,
    ReadinessSchema,
    ReceiptCreateSchema,
    StepCreateSchema,
)
from labtrack.services import batches, custody, deviations, steps

blp = Blueprint("batches", __name__, description="Batches from registration through processing.")
blp.before_request(authenticate)


@blp.post("/batches")
@blp.arguments(BatchCreateSchema)
@blp.response(201, BatchSchema)
def register_batch(body: dict):
    """Register a batch for a patient; allocates its DIN (clinic: own patients; technician)."""
    facility = current_app.config["LABTRACK_FIN"]
    return write(lambda s: batches.register(s, actor(), facility=facility, **body), BatchSchema())


@blp.get("/batches")
@blp.arguments(BatchQueryArgsSchema, location="query")
@blp.response(200, BatchPageSchema)
def list_batches(args: dict):
    """Batches, newest first, filtered and paginated (clinic users: own clinic)."""
    filters = batches.BatchFilter(**args)
    items, total = batches.search(read_session(), actor(), filters)
    return {"items": items, "page": filters.page, "per_page": filters.per_page, "total": total}


@blp.get("/batches/<string:din>")
@blp.response(200, BatchDetailSchema)
def get_batch(din: str):
    """One batch with custody, deviations, steps done and the next allowed actions."""
    session = read_session()
    batch = batches.get(session, actor(), din)
    batch.deviations = deviations.for_batch(session, batch.id)
    return batch


@blp.get("/batches/<string:din>/events")
@blp.response(200, EventSchema(many=True))
def list_events(din: str):
    """The batch's event stream with its hash chain and canonical text (R-AUD-1)."""
    session = read_session()
    return batches.events(session, batches.get(session, actor(), din))


@blp.get("/batches/<string:din>/readiness")
@blp.response(200, ReadinessSchema)
def readiness(din: str):
    """Ready for the clinic, or every blocker with its stable code (R-RDY-1)."""
    session = read_session()
    return batches.readiness(session, batches.get(session, actor(), din))


@blp.post("/batches/<string:din>/steps")
@blp.arguments(StepCreateSchema)
@blp.response(201, EventSchema)
def log_step(body: dict, din: str):
    """Record a process step with the container scanned (R-COI-1, R-SEQ-1..2, R-MAT-1..3)."""
    return write(
        lambda s: steps.log_step(
            s,
            actor(),
            din,
            step=body["step"],
            scanned_din=body["scanned_din"],
            data=body["data"],
            occurred_at=body["occurred_at"],
            late_entry_reason=body["late_entry_reason"],
            reagent_lot_ids=body["reagent_lots"],
            equipment_codes=body["equipment"],
        ),
        EventSchema(),
    )


@blp.post("/batches/<string:din>/custody/handoff")
@blp.arguments(HandoffCreateSchema)
@blp.response(201, EventSchema)
def handoff(body: dict, din: str):
    """The custodian hands the sealed batch to one named user (R-CUS-1)."""
    return write(lambda s: custody.handoff(s, actor(), din, **body), EventSchema())


@blp.post("/batches/<string:din>/custody/receipt")
@blp.arguments(ReceiptCreateSchema)
@blp.response(201, EventSchema)
def receipt(body: dict, din: str):
    """The named recipient receives; seal, condition and temperature are checked (R-CUS-4)."""
    return write(lambda s: custody.receipt(s, actor(), din, **body), EventSchema())


@blp.post("/batches/<string:din>/deviations")
@blp.arguments(DeviationCreateSchema)
@blp.response(201, DeviationSchema)
def open_deviation(body: dict, din: str):
    """Open a manual deviation; the batch is held while it is open (R-DEV-1)."""
    return write(lambda s: deviations.open_manual(s, actor(), din, **body), DeviationSchema())


@blp.get("/deviations")
@blp.arguments(DeviationQueryArgsSchema, location="query")
@blp.response(200, DeviationSchema(many=True))
def list_deviations(args: dict):
    """Deviations, newest first (QA and technicians)."""
    return deviations.search(read_session(), actor(), **args)
