"""Investigations (R-ADV-1..4, R-LBK-1..5): adverse reactions, lookbacks and recalls."""

from __future__ import annotations

from flask import Response, current_app
from flask_smorest import Blueprint

from labtrack.api import exports
from labtrack.api.common import actor, authenticate, read_session, write
from labtrack.api.errors import refusals
from labtrack.api.investigation_schemas import (
    AdverseReactionCloseSchema,
    AdverseReactionCreateSchema,
    AdverseReactionQueryArgsSchema,
    AdverseReactionSchema,
    LookbackCloseSchema,
    LookbackCreateSchema,
    LookbackQueryArgsSchema,
    LookbackSchema,
    RecallCreateSchema,
    RecallSchema,
)
from labtrack.documents.adverse_reaction import render_worksheet
from labtrack.services import adverse_reactions, lookbacks
from labtrack.services import exports as export_service

blp = Blueprint("investigations", __name__, description="Adverse reactions, lookbacks and recalls.")
blp.before_request(authenticate)


def _zone() -> str:
    return current_app.config["LABTRACK_TIMEZONE"]


@blp.post("/batches/<string:din>/adverse-reactions")
@blp.arguments(AdverseReactionCreateSchema)
@blp.response(201, AdverseReactionSchema)
@refusals(blp, 403, 404, 409, 413)
def report_reaction(body: dict, din: str):
    """Report an adverse reaction on an administered batch (its clinic, or QA); 409 `not_administered` otherwise.

    Seriousness, reportability and the report's due day follow 21 CFR 1271.350(a) (R-ADV-2); an infection or a
    suspected communicable disease opens a lookback seeded with the batch (R-ADV-4).
    """
    return write(lambda s: adverse_reactions.report(s, actor(), din, zone=_zone(), **body), AdverseReactionSchema())


@blp.get("/adverse-reactions")
@blp.arguments(AdverseReactionQueryArgsSchema, location="query")
@blp.response(200, AdverseReactionSchema(many=True))
@exports.also_csv(blp, AdverseReactionSchema(many=True))
@refusals(blp, 403, 404)
def list_reactions(args: dict):
    """Adverse reactions, newest first (QA; clinic users: their own clinic's); `format=csv`: as a spreadsheet."""
    if args.pop("format") == "csv":
        return exports.csv_download(
            lambda s: export_service.adverse_reactions_csv(s, actor(), **args), "adverse-reactions"
        )
    return adverse_reactions.search(read_session(), actor(), **args)


@blp.get("/adverse-reactions/<int:reaction_id>")
@blp.response(200, AdverseReactionSchema)
@refusals(blp, 403, 404, 422)
def get_reaction(reaction_id: int):
    """One adverse reaction (QA; clinic users: their own clinic's)."""
    return adverse_reactions.get(read_session(), actor(), reaction_id)


@blp.post("/adverse-reactions/<int:reaction_id>/close")
@blp.arguments(AdverseReactionCloseSchema)
@blp.response(200, AdverseReactionSchema)
@refusals(blp, 403, 404, 409, 413)
def close_reaction(body: dict, reaction_id: int):
    """QA closes a reaction with a conclusion signed with meaning `reviewed`; a reportable one needs
    `reported_to_authority_on` (R-ADV-3)."""
    return write(
        lambda s: adverse_reactions.close(s, actor(), reaction_id, zone=_zone(), **body),
        AdverseReactionSchema(),
        status=200,
    )


@blp.get("/adverse-reactions/<int:reaction_id>/report.pdf")
@blp.response(200, description="A MedWatch 3500A worksheet (PDF), not a filing.", content_type="application/pdf")
@refusals(blp, 403, 404, 422)
def reaction_worksheet(reaction_id: int):
    """The facts a MedWatch 3500A report needs: product and DIN, dates, description, seriousness, outcome."""
    view = adverse_reactions.worksheet(read_session(), actor(), reaction_id, zone=_zone())
    return Response(
        render_worksheet(view),
        mimetype="application/pdf",
        headers={"Content-Disposition": f'inline; filename="adverse-reaction-{view.reaction_id}.pdf"'},
    )


@blp.post("/lookbacks")
@blp.arguments(LookbackCreateSchema)
@blp.response(201, LookbackSchema)
@refusals(blp, 403, 413)
def open_lookback(body: dict):
    """QA opens a lookback from a reagent lot, equipment, an operator or a batch (R-LBK-1); every affected batch
    not yet used is held (R-LBK-2) and each clinic is told of its own batches. A seed that does not exist is a 422
    naming it."""
    return write(lambda s: lookbacks.open_by_qa(s, actor(), **body), LookbackSchema())


@blp.get("/lookbacks")
@blp.arguments(LookbackQueryArgsSchema, location="query")
@blp.response(200, LookbackSchema(many=True))
@refusals(blp, 403)
def list_lookbacks(args: dict):
    """Lookbacks, newest first (QA; clinic users: those naming their batches, and only their batches)."""
    return lookbacks.search(read_session(), actor(), **args)


@blp.get("/lookbacks/<int:lookback_id>")
@blp.response(200, LookbackSchema)
@refusals(blp, 403, 404, 422)
def get_lookback(lookback_id: int):
    """One lookback with its affected batches and which clinics acknowledged (clinic users: their own part)."""
    return lookbacks.get(read_session(), actor(), lookback_id)


@blp.post("/lookbacks/<int:lookback_id>/acknowledge")
@blp.response(200, LookbackSchema)
@refusals(blp, 403, 404, 422)
def acknowledge_lookback(lookback_id: int):
    """A clinic user acknowledges the lookback for the clinic (R-LBK-3); again, it changes nothing."""
    return write(lambda s: lookbacks.acknowledge(s, actor(), lookback_id), LookbackSchema(), status=200)


@blp.post("/lookbacks/<int:lookback_id>/close")
@blp.arguments(LookbackCloseSchema)
@blp.response(200, LookbackSchema)
@refusals(blp, 403, 404, 409, 413)
def close_lookback(body: dict, lookback_id: int):
    """QA closes the lookback with a conclusion signed with meaning `reviewed` (R-LBK-4); the batches' lookback
    deviations stay open, to be disposed of one by one."""
    return write(lambda s: lookbacks.close(s, actor(), lookback_id, **body), LookbackSchema(), status=200)


@blp.post("/reagent-lots/<int:lot_id>/recall")
@blp.arguments(RecallCreateSchema)
@blp.response(200, RecallSchema)
@refusals(blp, 403, 404, 409, 413)
def recall_lot(body: dict, lot_id: int):
    """An admin recalls a reagent lot with a reason: refused in steps from now on, and a lookback seeded with it
    is opened (R-LBK-5)."""

    def work(session):
        lot, lookback = lookbacks.recall_lot(session, actor(), lot_id, **body)
        affected = len(lookbacks.view(session, actor(), lookback).affected)
        return {
            "lot_id": lot.id,
            "lot_number": lot.lot_number,
            "status": lot.status,
            "lookback_id": lookback.id,
            "affected": affected,
        }

    return write(work, RecallSchema(), status=200)
