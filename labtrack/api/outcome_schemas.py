"""Schemas of the follow-up, photo, outcomes and trends API (R-OUT-1..5, R-SPC-1..3)."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from labtrack.api.schemas import UTC, ExportArgsSchema, SignedSchema, day_field, nonempty_text, one_of, plausible_year
from labtrack.domain import followup
from labtrack.domain.process import TissueSource

ASSESSMENT = validate.Range(min=-3, max=3)


class PlanVisitSchema(Schema):
    visit = fields.String(dump_only=True)
    months = fields.Integer(required=True, strict=True, validate=validate.Range(min=1, max=120))
    window_days = fields.Integer(required=True, strict=True, validate=validate.Range(min=0, max=60))


class PlanBodySchema(Schema):
    baseline_window_days = fields.Integer(required=True, strict=True, validate=validate.Range(min=0, max=90))
    visits = fields.List(fields.Nested(PlanVisitSchema), required=True, validate=validate.Length(min=1, max=12))


class PlanProposalSchema(PlanBodySchema):
    """A proposed plan version (R-OUT-1 under R-QC-6's change control): the plan, and why it changes."""

    reason = nonempty_text(4000, multiline=True, required=True)


class PlanSchema(Schema):
    tissue_source = fields.String()
    version = fields.Integer()
    status = fields.String()
    body = fields.Nested(PlanBodySchema)
    proposed_by = fields.String()
    proposed_at = UTC()
    reason = fields.String(allow_none=True, metadata={"description": "why it changed; none for the default"})
    approved_by = fields.String(allow_none=True)
    approved_at = UTC(allow_none=True)
    signature = fields.Dict(allow_none=True)


class FollowUpSchema(Schema):
    visit = fields.String()
    due_on = fields.Date()
    window_from = fields.Date()
    window_to = fields.Date()
    status = fields.String(metadata={"enum": [str(s) for s in followup.VisitStatus]})
    measured_on = fields.Date(allow_none=True)
    measurement = fields.Dict(allow_none=True)
    late = fields.Boolean()
    recorded_seq = fields.Integer(allow_none=True)


class FollowUpCreateSchema(Schema):
    measured_on = day_field(required=True)
    hair_density_per_cm2 = fields.Float(required=True, allow_nan=False, validate=validate.Range(min=0, max=500))
    hair_shaft_diameter_um = fields.Float(
        load_default=None, allow_none=True, allow_nan=False, validate=validate.Range(min=10, max=150)
    )
    patient_global_assessment = fields.Integer(required=True, strict=True, validate=ASSESSMENT)
    investigator_global_assessment = fields.Integer(required=True, strict=True, validate=ASSESSMENT)
    adverse_reaction = fields.Boolean(required=True)
    note = nonempty_text(2000, multiline=True, load_default=None, allow_none=True)
    photo_ids = fields.List(
        fields.Integer(strict=True, validate=validate.Range(min=1)),
        load_default=list,
        validate=validate.Length(max=followup.MAX_PHOTOS),
    )
    late_reason = nonempty_text(2000, multiline=True, load_default=None, allow_none=True)


class AttachmentUploadSchema(Schema):
    file = fields.Raw(required=True, metadata={"type": "string", "format": "binary"})


class AttachmentSchema(Schema):
    id = fields.Integer()
    sha256 = fields.String()
    content_type = fields.String()
    size_bytes = fields.Integer()
    width = fields.Integer()
    height = fields.Integer()
    uploaded_at = UTC()


class OutcomesQueryArgsSchema(ExportArgsSchema):
    tissue_source = fields.String(validate=one_of(TissueSource))
    date_from = day_field(data_key="from")
    date_to = day_field(data_key="to")


class VisitChangeSchema(Schema):
    visit = fields.String()
    measured_on = fields.Date()
    density_per_cm2 = fields.Float()
    change_per_cm2 = fields.Float()
    change_pct = fields.Float(allow_none=True)
    late = fields.Boolean()


class OutcomeRowSchema(Schema):
    din = fields.String()
    tissue_source = fields.String()
    administered_on = fields.Date()
    baseline_per_cm2 = fields.Float()
    baseline_measured_on = fields.Date()
    tnc_total = fields.Float(allow_none=True)
    viability_pct = fields.Float(allow_none=True)
    viable_cells = fields.Float(allow_none=True)
    visits = fields.List(fields.Nested(VisitChangeSchema))


class EstimateSchema(Schema):
    """What every statistic of the report has: the visit, how many values, a 95 % confidence interval."""

    visit = fields.String()
    n = fields.Integer()
    ci_low = fields.Float(allow_none=True)
    ci_high = fields.Float(allow_none=True)


class VisitSummarySchema(EstimateSchema):
    mean = fields.Float(allow_none=True)
    median = fields.Float(allow_none=True)


class DoseResponseSchema(EstimateSchema):
    x = fields.String()
    y = fields.String()
    slope = fields.Float(allow_none=True)
    intercept = fields.Float(allow_none=True)
    r = fields.Float(allow_none=True)
    p_value = fields.Float(allow_none=True)


class DosePointSchema(Schema):
    viable_cells = fields.Float()
    change_pct = fields.Float()


class CohortSchema(Schema):
    tissue_source = fields.String()
    statistics = fields.String(
        metadata={"description": "`computed`, or `pending` while a worker computes them (ask again shortly)"}
    )
    visits = fields.List(fields.Nested(VisitSummarySchema))
    dose_response = fields.Nested(DoseResponseSchema)
    dose_points = fields.List(fields.Nested(DosePointSchema))


class OutcomesSchema(Schema):
    tissue_source = fields.String(allow_none=True)
    date_from = fields.Date(data_key="from", allow_none=True)
    date_to = fields.Date(data_key="to", allow_none=True)
    batches = fields.List(fields.Nested(OutcomeRowSchema))
    cohorts = fields.List(fields.Nested(CohortSchema))


class TrendPointSchema(Schema):
    din = fields.String()
    at = UTC()
    value = fields.Float()
    moving_range = fields.Float(allow_none=True)
    in_baseline = fields.Boolean()
    flags = fields.List(fields.String())


class TrendSchema(Schema):
    tissue_source = fields.String()
    metric = fields.String()
    unit = fields.String()
    baseline_points = fields.Integer()
    baseline_from = fields.String(allow_none=True)
    baseline_reason = fields.String(allow_none=True)
    points = fields.List(fields.Nested(TrendPointSchema))
    centre = fields.Float(allow_none=True)
    ucl = fields.Float(allow_none=True)
    lcl = fields.Float(allow_none=True)
    mr_bar = fields.Float(allow_none=True)
    mr_ucl = fields.Float(allow_none=True)


class BaselineResetSchema(SignedSchema):
    starts_at = fields.AwareDateTime(required=True, validate=plausible_year)
    reason = nonempty_text(2000, multiline=True, required=True)


class TrendBaselineSchema(Schema):
    tissue_source = fields.String()
    metric = fields.String()
    starts_at = UTC()
    reason = fields.String()
    signature = fields.Dict()
    set_at = UTC()
