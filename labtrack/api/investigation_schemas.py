"""Schemas of the investigations API (adverse reactions, lookbacks, recalls), named by their job."""

from __future__ import annotations

from marshmallow import Schema, fields

from labtrack.api.schemas import (
    UTC,
    ExportArgsSchema,
    SignatureSchema,
    UserSummarySchema,
    day_field,
    moment_field,
    nonempty_text,
    one_of,
    plausible_year,
)
from labtrack.domain.din import Din
from labtrack.domain.investigations import (
    Category,
    LookbackStatus,
    ReactionOutcome,
    ReactionStatus,
    Relatedness,
    SeedKind,
)


def _flag(description: str) -> fields.Boolean:
    return fields.Boolean(required=True, metadata={"description": description})


class AdverseReactionCreateSchema(Schema):
    onset_at = fields.AwareDateTime(required=True, validate=plausible_year)
    category = fields.String(required=True, validate=one_of(Category))
    description = nonempty_text(4000, multiline=True, required=True)
    outcome = fields.String(required=True, validate=one_of(ReactionOutcome))
    fatal = _flag("21 CFR 1271.350(a)(1)(i)")
    life_threatening = _flag("21 CFR 1271.350(a)(1)(ii)")
    permanent_impairment = _flag("results in permanent impairment of a body function or damage to a body structure")
    intervention_required = _flag("necessitates medical or surgical intervention")
    communicable_disease_suspected = _flag("a communicable disease is suspected")


class AdverseReactionQueryArgsSchema(ExportArgsSchema):
    status = fields.String(validate=one_of(ReactionStatus))
    din = nonempty_text(40)


class AdverseReactionSchema(Schema):
    id = fields.Integer()
    din = fields.Function(lambda r: r.batch.din)
    din_display = fields.Function(lambda r: Din(r.batch.din).display)
    clinic = fields.Function(lambda r: r.batch.clinic.code)
    product = fields.Function(lambda r: r.batch.product)
    status = fields.String()
    onset_at = UTC()
    category = fields.String()
    description = fields.String()
    outcome = fields.String()
    fatal = fields.Boolean()
    life_threatening = fields.Boolean()
    permanent_impairment = fields.Boolean()
    intervention_required = fields.Boolean()
    communicable_disease_suspected = fields.Boolean()
    serious = fields.Boolean()
    reportable = fields.Boolean(metadata={"description": "serious and involving a communicable disease"})
    received_on = fields.Date()
    report_due_on = fields.Date(allow_none=True, metadata={"description": "15 calendar days after receipt"})
    reported_by = fields.Nested(UserSummarySchema)
    reported_at = UTC()
    reported_seq = fields.Integer()
    lookback_id = fields.Integer(allow_none=True)
    conclusion = fields.String(allow_none=True)
    related_to_product = fields.String(allow_none=True)
    reported_to_authority_on = fields.Date(allow_none=True)
    closed_by = fields.Nested(UserSummarySchema, allow_none=True)
    closed_at = UTC(allow_none=True)
    signature = fields.Dict(allow_none=True)


class AdverseReactionCloseSchema(Schema):
    conclusion = nonempty_text(4000, multiline=True, required=True)
    related_to_product = fields.String(required=True, validate=one_of(Relatedness))
    reported_to_authority_on = day_field(load_default=None, allow_none=True)
    signature = fields.Nested(SignatureSchema, required=True)


class SeedSchema(Schema):
    kind = fields.String(required=True, validate=one_of(SeedKind))
    value = nonempty_text(64, required=True)  # lot id, equipment code, username or DIN


class LookbackCreateSchema(Schema):
    reason = nonempty_text(4000, multiline=True, required=True)
    seed = fields.Nested(SeedSchema, required=True)
    from_ = moment_field(data_key="from")
    to = moment_field()


class LookbackQueryArgsSchema(Schema):
    status = fields.String(validate=one_of(LookbackStatus))


class AffectedSchema(Schema):
    din = fields.String()
    din_display = fields.Function(lambda a: Din(a.din).display)
    clinic = fields.String()
    status = fields.String()
    status_at_opening = fields.String()
    administered = fields.Boolean()
    action = fields.String(metadata={"description": "held (a lookback deviation holds it), follow_up or none"})
    deviation_id = fields.Integer(allow_none=True)


class LookbackClinicSchema(Schema):
    clinic = fields.Function(lambda c: c.clinic.code)
    notified_at = UTC()
    acknowledged_at = UTC(allow_none=True)
    acknowledged_by = fields.Nested(UserSummarySchema, allow_none=True)
    reminded_at = UTC(allow_none=True)
    escalated_at = UTC(allow_none=True)


class LookbackSchema(Schema):
    id = fields.Integer()
    status = fields.String()
    reason = fields.String()
    seed = fields.Function(lambda v: {"kind": v.seed_kind, "value": v.seed_value})
    from_ = UTC(attribute="window_from", data_key="from", allow_none=True)
    to = UTC(attribute="window_to", allow_none=True)
    trigger = fields.String()
    requested_by = fields.String()
    opened_by = fields.Nested(UserSummarySchema)
    opened_at = UTC()
    affected = fields.List(fields.Nested(AffectedSchema))
    clinics = fields.List(fields.Nested(LookbackClinicSchema))
    conclusion = fields.String(allow_none=True)
    closed_by = fields.Nested(UserSummarySchema, allow_none=True)
    closed_at = UTC(allow_none=True)
    signature = fields.Dict(allow_none=True)


class LookbackCloseSchema(Schema):
    conclusion = nonempty_text(4000, multiline=True, required=True)
    signature = fields.Nested(SignatureSchema, required=True)


class RecallCreateSchema(Schema):
    reason = nonempty_text(4000, multiline=True, required=True)


class RecallSchema(Schema):
    lot_id = fields.Integer()
    lot_number = fields.String()
    status = fields.String()
    lookback_id = fields.Integer()
    affected = fields.Integer(metadata={"description": "batches the lookback names"})
