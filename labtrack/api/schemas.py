"""Marshmallow schemas, named by their job: ``XSchema`` (output), ``XCreateSchema`` (input),
``XQueryArgsSchema`` (query string). Validation of a request's shape lives here; the
rules about what it means live in ``labtrack.domain``."""

from __future__ import annotations

import re
from datetime import date
from typing import Any

from marshmallow import Schema, ValidationError, fields, validate

from labtrack.domain import formats
from labtrack.domain.actors import Role
from labtrack.domain.deviations import DeviationKind, DeviationStatus, Disposition
from labtrack.domain.din import Din
from labtrack.domain.hashing import iso_utc
from labtrack.domain.lifecycle import ContainerCondition, Status, allowed_actions, state_of
from labtrack.domain.materials import SETTABLE_LOT_STATUSES, EquipmentStatus
from labtrack.domain.process import ALL_STEP_NAMES, TissueSource
from labtrack.domain.qc import ALL_TESTS as QC_TESTS
from labtrack.domain.signatures import Meaning
from labtrack.domain.specifications import ProposalStatus
from labtrack.services.paging import LIMIT_DEFAULT, LIMIT_MAX


def one_of(values: Any) -> validate.OneOf:
    """A choice among a domain enum's values (or some of them), published as the OpenAPI ``enum``: the
    allowed values of every choice come from ``labtrack.domain``, as the models' CHECK constraints do."""
    return validate.OneOf(tuple(str(value) for value in values))


class Formatted(validate.Regexp):
    """Text of a format of ``labtrack.domain.formats`` (its pattern is published in OpenAPI), matched whole."""

    def __init__(self, format: formats.Format) -> None:
        super().__init__(format.pattern, error=format.message)
        self.format = format

    def __call__(self, value: str) -> str:
        if not self.format.matches(value):
            raise ValidationError(self._format_error(value))
        return value


KIND = Formatted(formats.KIND)


# Text refuses control characters (NUL, BEL, ESC, DEL, the C1 range...) and lone UTF-16 surrogates: NUL
# is refused by PostgreSQL but kept by SQLite, a surrogate cannot be encoded at all, and the others
# garble printed records and logs. Free text (a description, a reason) keeps tab and line breaks.
_CONTROL = r"\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f-\u009f"  # regex text, for Python and OpenAPI
_SURROGATES = r"\ud800-\udfff"


class Printable(validate.Validator):
    """Refuses control characters in a string, or in every key and string nested in a dict or list."""

    def __init__(self, *, multiline: bool = False) -> None:
        refused = _CONTROL if multiline else r"\t\n\r" + _CONTROL
        self.pattern = f"^[^{refused}]*$"  # documented in OpenAPI (JSON Schema has no surrogates to exclude)
        self.refused = re.compile(f"[{refused}{_SURROGATES}]")
        self.error = "must not contain control characters" + (" (tab and line breaks are allowed)" if multiline else "")

    def __call__(self, value: Any) -> Any:
        if isinstance(value, dict):
            for key, item in value.items():
                self(key)
                self(item)
        elif isinstance(value, list):
            for item in value:
                self(item)
        elif isinstance(value, str) and self.refused.search(value):
            raise ValidationError(self.error)
        return value


class Text(fields.String):
    """A string of printable characters; ``multiline`` allows tab and line breaks."""

    def __init__(
        self, *, multiline: bool = False, validate: Any = None, metadata: dict | None = None, **kwargs: Any
    ) -> None:
        printable = Printable(multiline=multiline)
        super().__init__(
            validate=[printable] if validate is None else [printable, validate],
            metadata={"pattern": printable.pattern} | (metadata or {}),
            **kwargs,
        )


class Data(fields.Dict):
    """A JSON object given as is (step data, a correction, a specification): its text is printable too."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(validate=Printable(multiline=True), **kwargs)


def _email(**kwargs: Any) -> fields.String:
    """An e-mail address, in the one format ``labtrack.domain.formats.EMAIL``."""
    metadata = {"format": "email"} | kwargs.pop("metadata", {})
    return fields.String(validate=Formatted(formats.EMAIL), metadata=metadata, **kwargs)


def nonempty_text(max_length: int = 200, *, multiline: bool = False, **kwargs: Any) -> Text:
    return Text(multiline=multiline, validate=validate.Length(min=1, max=max_length), **kwargs)


# A date or time outside these years is a typing slip, not a lab record (and iso_utc would give
# year 792 as "792-...", not ISO 8601).
YEARS = range(1900, 2200)


def plausible_year(moment: date) -> None:
    if moment.year not in YEARS:
        raise ValidationError(f"must be between the years {YEARS.start} and {YEARS.stop - 1}")


def day_field(**kwargs: Any) -> fields.Date:
    return fields.Date(validate=plausible_year, **kwargs)


def moment_field(**kwargs: Any) -> fields.AwareDateTime:
    return fields.AwareDateTime(validate=plausible_year, load_default=None, allow_none=True, **kwargs)


class UTC(fields.DateTime):
    """Responses give times in UTC with ``Z``."""

    def _serialize(self, value: Any, attr: Any, obj: Any, **kwargs: Any) -> str | None:
        return None if value is None else iso_utc(value)


class Problem(Schema):
    type = fields.String()
    title = fields.String()
    status = fields.Integer()
    detail = fields.String()
    code = fields.String()
    errors = fields.Dict(keys=fields.String(), values=fields.List(fields.String()))
    blockers = fields.List(fields.Dict())
    allowed_actions = fields.List(fields.String())
    retry_after = fields.Integer(metadata={"description": "429: seconds to wait (also the Retry-After header)"})
    reason = fields.String(metadata={"description": "503: why the database is out of service"})


# --- auth -----------------------------------------------------------------------------------


class TokenCreateSchema(Schema):
    username = nonempty_text(64, required=True)
    password = nonempty_text(1000, required=True)


class PasswordChangeSchema(TokenCreateSchema):
    """Choose a new password (required after an admin reset): the current one, then the new one."""

    new_password = nonempty_text(1000, required=True)


class UserSummarySchema(Schema):
    username = fields.String()
    full_name = fields.String()


class UserSchema(UserSummarySchema):
    role = fields.String()
    clinic = fields.Function(lambda u: u.clinic.code if u.clinic else None)
    active = fields.Boolean()
    locked = fields.Function(lambda u: u.locked_at is not None)
    email = fields.String(allow_none=True)
    must_change_password = fields.Boolean(metadata={"description": "reset by an admin: no token until changed"})
    created_at = UTC()


class TokenSchema(Schema):
    token = fields.String()
    expires_at = UTC()
    user = fields.Nested(UserSchema)


# --- reference data -------------------------------------------------------------------------


class ClinicCreateSchema(Schema):
    code = fields.String(required=True, validate=Formatted(formats.CLINIC_CODE))
    name = nonempty_text(required=True)
    webhook_url = fields.Url(load_default=None, allow_none=True, schemes={"http", "https"}, validate=Printable())
    webhook_secret = Text(load_default=None, allow_none=True, validate=validate.Length(min=16, max=200))


class ClinicSchema(Schema):
    id = fields.Integer()
    code = fields.String()
    name = fields.String()
    webhook_url = fields.String(allow_none=True)
    webhook_secret_set = fields.Function(lambda c: bool(c.webhook_secret))
    created_at = UTC()


class UserCreateSchema(Schema):
    username = fields.String(required=True, validate=Formatted(formats.USERNAME))
    full_name = nonempty_text(required=True)
    role = fields.String(required=True, validate=one_of(Role))
    clinic = Text(load_default=None, allow_none=True)
    password = nonempty_text(1000, required=True, load_only=True)
    email = _email(load_default=None, allow_none=True, metadata={"description": "for e-mail notifications"})


class UserUpdateSchema(Schema):
    active = fields.Boolean()
    role = fields.String(validate=one_of(Role))
    unlock = fields.Boolean(load_default=False)
    email = _email(allow_none=True, metadata={"description": "null removes it"})
    full_name = nonempty_text(200)
    clinic = nonempty_text(16)  # a clinic user's clinic, by code
    password = nonempty_text(
        1000, load_only=True
    )  # reset: a temporary password the user must replace at the next sign-in


class LotCreateSchema(Schema):
    kind = fields.String(required=True, validate=KIND)
    name = nonempty_text(required=True)
    lot_number = nonempty_text(64, required=True)  # the format of formats.LOT_NUMBER, which the service checks
    expires_on = day_field(required=True)
    status = fields.String(required=True, validate=one_of(SETTABLE_LOT_STATUSES))


class LotUpdateSchema(Schema):
    name = nonempty_text()
    expires_on = day_field()
    status = fields.String(validate=one_of(SETTABLE_LOT_STATUSES))


class LotSchema(Schema):
    id = fields.Integer()
    kind = fields.String()
    name = fields.String()
    lot_number = fields.String()
    expires_on = fields.Date()
    status = fields.String()


class EquipmentCreateSchema(Schema):
    code = fields.String(required=True, validate=Formatted(formats.EQUIPMENT_CODE))
    kind = fields.String(required=True, validate=KIND)
    name = nonempty_text(required=True)
    calibration_due_on = day_field(required=True)
    status = fields.String(required=True, validate=one_of(EquipmentStatus))


class EquipmentUpdateSchema(Schema):
    name = nonempty_text()
    calibration_due_on = day_field()
    status = fields.String(validate=one_of(EquipmentStatus))


class EquipmentSchema(Schema):
    code = fields.String()
    kind = fields.String()
    name = fields.String()
    calibration_due_on = fields.Date()
    status = fields.String()


class SpecificationSchema(Schema):
    tissue_source = fields.String()
    version = fields.Integer()
    body = fields.Dict()
    created_at = UTC()
    created_by = fields.String()


# --- patients and batches -------------------------------------------------------------------


class PatientCreateSchema(Schema):
    clinic = Text(load_default=None, allow_none=True)
    mrn = nonempty_text(64, required=True)
    family_name = nonempty_text(100, required=True)
    given_name = nonempty_text(100, required=True)
    birth_date = day_field(required=True)


class PageArgsSchema(Schema):
    """Keyset paging of a list (R-SCL-4): ``limit`` rows after the opaque cursor ``after``."""

    limit = fields.Integer(load_default=LIMIT_DEFAULT, validate=validate.Range(min=1, max=LIMIT_MAX))
    after = fields.String(validate=validate.Length(min=1, max=200))


def page_of(item: type[Schema], name: str) -> type[Schema]:
    """The answer of a paged list: ``{items, next}``, ``next`` the following page's cursor or null."""
    return Schema.from_dict(
        {"items": fields.List(fields.Nested(item)), "next": fields.String(allow_none=True)}, name=name
    )


class PatientQueryArgsSchema(PageArgsSchema):
    clinic = Text()
    mrn = Text()
    q = Text(metadata={"description": "part of a family or given name or an MRN, or a birth date (YYYY-MM-DD)"})


class PatientSchema(Schema):
    id = fields.Integer()
    clinic = fields.Function(lambda p: p.clinic.code)
    mrn = fields.String()
    family_name = fields.String()
    given_name = fields.String()
    birth_date = fields.Date()


class BatchCreateSchema(Schema):
    patient_id = fields.Integer(required=True, strict=True)
    tissue_source = fields.String(required=True, validate=one_of(TissueSource))
    planned_administration_at = moment_field()


class ExportArgsSchema(Schema):
    """``?format=csv`` turns a list into a CSV download of every matching row (R-EXP-1)."""

    format = fields.String(
        load_default="json",
        validate=validate.OneOf(("json", "csv")),
        metadata={"description": "csv: every matching row (not one page) as text/csv"},
    )


class BatchQueryArgsSchema(PageArgsSchema, ExportArgsSchema):
    status = fields.String(validate=one_of(Status))
    clinic = Text()
    tissue_source = fields.String(validate=one_of(TissueSource))
    held = fields.Boolean()
    waiting_for_me = fields.Boolean(
        metadata={"description": "only batches handed to you, or in your custody and not yet finished"}
    )
    patient = Text(metadata={"description": "part of the patient's name or MRN, or their birth date (YYYY-MM-DD)"})


class PendingTransferSchema(Schema):
    from_user = fields.Function(lambda b: b.transfer_from.username if b.transfer_from else None, data_key="from")
    to = fields.Function(lambda b: b.transfer_to.username)
    to_full_name = fields.Function(lambda b: b.transfer_to.full_name)
    seal_id = fields.String(attribute="transfer_seal_id")
    since = UTC(attribute="transfer_at")


def _din(b: Any) -> Din:
    return Din(b.din)


class BatchSchema(Schema):
    din = fields.String()
    din_display = fields.Function(lambda b: _din(b).display)
    check_character = fields.Function(lambda b: _din(b).check)
    barcode_data = fields.Function(lambda b: _din(b).barcode_data)
    status = fields.String()
    tissue_source = fields.String()
    product = fields.String()
    patient = fields.Nested(PatientSchema)
    clinic = fields.Function(lambda b: b.clinic.code)
    custodian = fields.Nested(UserSummarySchema, allow_none=True)
    pending_transfer = fields.Method("_transfer", allow_none=True)
    held = fields.Boolean()
    expires_at = UTC(allow_none=True)
    released_at = UTC(allow_none=True)
    conditional_release = fields.Boolean()
    planned_administration_at = UTC(allow_none=True)
    registered_at = UTC()
    specification_version = fields.Function(lambda b: b.specification.version)
    next_actions = fields.Method("_next_actions")
    steps_done = fields.List(fields.String())
    seq = fields.Integer()
    head_hash = fields.String()

    def _transfer(self, batch: Any) -> dict[str, Any] | None:
        return PendingTransferSchema().dump(batch) if batch.transfer_to_id else None

    def _next_actions(self, batch: Any) -> list[str]:
        return allowed_actions(state_of(batch))


BatchPageSchema = page_of(BatchSchema, "BatchPage")
PatientPageSchema = page_of(PatientSchema, "PatientPage")


class DeviationSchema(Schema):
    id = fields.Integer()
    din = fields.Function(lambda d: d.batch.din)
    kind = fields.String()
    description = fields.String()
    status = fields.String()
    opened_by = fields.Nested(UserSummarySchema)
    opened_at = UTC()
    decision = fields.String(allow_none=True)
    justification = fields.String(allow_none=True)
    closed_by = fields.Nested(UserSummarySchema, allow_none=True)
    closed_at = UTC(allow_none=True)
    signature = fields.Dict(allow_none=True)


DeviationPageSchema = page_of(DeviationSchema, "DeviationPage")


class QcResultSchema(Schema):
    id = fields.Integer()
    test = fields.String()
    value = fields.Function(lambda r: r.value["v"])
    unit = fields.String(allow_none=True)
    method = fields.String(allow_none=True)
    within_spec = fields.Boolean()
    spec = fields.String(attribute="limit")
    verified = fields.Function(lambda r: r.verified_by_id is not None)
    entered_by = fields.Nested(UserSummarySchema)
    entered_at = UTC()
    verified_by = fields.Nested(UserSummarySchema, allow_none=True)
    verified_at = UTC(allow_none=True)
    corrected = fields.Boolean()
    original_value = fields.Function(lambda r: r.original_value["v"] if r.original_value else None)
    record_seq = fields.Integer()


class DecisionSchema(Schema):
    """One action on the batch for the signed-in user: allowed, or refused with why and who can instead."""

    action = fields.String(metadata={"description": "a process step, handoff, receipt, qc, verify, release, ..."})
    allowed = fields.Boolean()
    reason = fields.String(allow_none=True, metadata={"description": "why it is refused, in words"})
    by = fields.String(allow_none=True, metadata={"description": "who can take it instead, in words"})
    code = fields.String(allow_none=True, metadata={"description": "the refusal's stable code"})
    warning = fields.String(allow_none=True, metadata={"description": "what taking it entails"})
    sentence = fields.String(allow_none=True, metadata={"description": "the refusal or warning as one sentence"})
    subject = fields.Integer(allow_none=True, metadata={"description": "the QC result or deviation it concerns"})


class BatchDetailSchema(BatchSchema):
    deviations = fields.List(fields.Nested(DeviationSchema))
    qc = fields.List(fields.Nested(QcResultSchema))
    decisions = fields.List(fields.Nested(DecisionSchema))


class EventSchema(Schema):
    seq = fields.Integer()
    type = fields.String()
    occurred_at = UTC()
    recorded_at = UTC()
    actor = fields.Nested(UserSummarySchema)
    data = fields.Dict()
    prev_hash = fields.String()
    hash = fields.String()
    canonical = fields.String()
    signature = fields.Function(lambda e: e.data.get("signature"), allow_none=True)
    corrected_by = fields.List(fields.Integer(), dump_default=list)


class BlockerSchema(Schema):
    code = fields.String()
    detail = fields.String()


class ReadinessSchema(Schema):
    din = fields.String()
    status = fields.String()
    ready = fields.Boolean()
    held = fields.Boolean()
    expires_at = UTC(allow_none=True)
    released_at = UTC(allow_none=True)
    conditional_release = fields.Boolean()
    custodian = fields.Nested(UserSummarySchema, allow_none=True)
    blockers = fields.List(fields.Nested(BlockerSchema))


class InHandSchema(Schema):
    """A write made with the product in hand: the container's DIN is scanned (R-COI-1)."""

    scanned_din = nonempty_text(40, required=True)
    occurred_at = moment_field()
    late_entry_reason = Text(multiline=True, load_default=None, allow_none=True, validate=validate.Length(max=1000))


class StepCreateSchema(InHandSchema):
    step = fields.String(required=True, validate=validate.OneOf(ALL_STEP_NAMES))
    data = Data(required=True)
    reagent_lots = fields.List(fields.Integer(strict=True), load_default=list, validate=validate.Length(max=20))
    equipment = fields.List(Text(validate=validate.Length(max=64)), load_default=list, validate=validate.Length(max=20))


class HandoffCreateSchema(InHandSchema):
    to_username = nonempty_text(64, required=True)
    seal_id = nonempty_text(64, required=True)
    temperature_c = fields.Float(
        load_default=None, allow_none=True, allow_nan=False, validate=validate.Range(min=-200, max=100)
    )


class ReceiptCreateSchema(InHandSchema):
    seal_id = nonempty_text(64, required=True)
    temperature_c = fields.Float(required=True, allow_nan=False, validate=validate.Range(min=-200, max=100))
    condition = fields.String(required=True, validate=one_of(ContainerCondition))


class DeviationCreateSchema(Schema):
    kind = fields.String(load_default=DeviationKind.MANUAL.value, validate=one_of((DeviationKind.MANUAL,)))
    description = nonempty_text(4000, multiline=True, required=True)


class SignatureSchema(Schema):
    """An electronic signature: the signer's password, re-entered now, and its meaning (R-SIG-1)."""

    password = nonempty_text(1000, required=True, load_only=True)
    meaning = fields.String(required=True, validate=one_of(Meaning))


class SignedSchema(Schema):
    signature = fields.Nested(SignatureSchema, required=True)


class QcCreateSchema(InHandSchema):
    test = fields.String(required=True, validate=validate.OneOf(QC_TESTS))
    value = fields.Raw(
        required=True,
        validate=Printable(),
        metadata={"description": "a number, or for gram_stain / sterility_culture a word"},
    )
    method = Text(load_default=None, allow_none=True, validate=validate.Length(max=100))


class DispositionCreateSchema(SignedSchema):
    decision = fields.String(required=True, validate=one_of(Disposition))
    justification = nonempty_text(4000, multiline=True, required=True)


class RejectCreateSchema(SignedSchema):
    reason = nonempty_text(4000, multiline=True, required=True)


class CorrectionCreateSchema(Schema):
    event_seq = fields.Integer(required=True, strict=True, validate=validate.Range(min=1))
    reason = nonempty_text(4000, multiline=True, required=True)
    data = Data(required=True)


class SpecificationUpdateSchema(Schema):
    stability_hours = fields.Float(required=True, allow_nan=False)
    transport_temperature_c = Data(required=True)
    tests = Data(required=True)


class DeviationQueryArgsSchema(PageArgsSchema, ExportArgsSchema):
    status = fields.String(validate=one_of(DeviationStatus))
    din = Text()


class AuditQueryArgsSchema(Schema):
    din = Text()


class AuditFailureSchema(Schema):
    din = fields.String()
    seq = fields.Integer()
    reason = fields.String()


class AuditCheckpointSummarySchema(Schema):
    id = fields.Integer()
    created_at = UTC()
    tree_size = fields.Integer()
    root = fields.String()
    ok = fields.Boolean(metadata={"description": "signature and stored leaves verify"})
    anchored_on = fields.Integer(
        allow_none=True,
        metadata={"description": "id of the newest checkpoint that verifies, which the chains were checked against"},
    )


class AuditReportSchema(Schema):
    ok = fields.Boolean()
    batches_checked = fields.Integer()
    events_checked = fields.Integer()
    failures = fields.List(fields.Nested(AuditFailureSchema))
    checkpoint = fields.Nested(
        AuditCheckpointSummarySchema,
        allow_none=True,
        metadata={"description": "the latest signed checkpoint the chains were checked against (R-AUD-4)"},
    )
    mode = fields.String(
        metadata={
            "description": "incremental: the events since the newest verified checkpoint (R-SCL-2); "
            "batch: one batch's whole chain; full: every chain (a background run's result)"
        }
    )
    since_checkpoint = fields.Integer(
        allow_none=True, metadata={"description": "incremental: the verified checkpoint it started from (none: all)"}
    )


class QcPanelEntrySchema(Schema):
    test = fields.String(required=True, validate=validate.OneOf(QC_TESTS))
    value = fields.Raw(
        required=True,
        validate=Printable(),
        metadata={"description": "a number, or for gram_stain / sterility_culture a word"},
    )
    method = Text(load_default=None, allow_none=True, validate=validate.Length(max=100))


class QcPanelCreateSchema(InHandSchema):
    """Several QC results of one sample after one scan (R-COI-1), recorded all or none."""

    results = fields.List(
        fields.Nested(QcPanelEntrySchema), required=True, validate=validate.Length(min=1, max=len(QC_TESTS))
    )


class QcVerifyManySchema(SignedSchema):
    """Verify several results with one signature whose manifestation lists each one (R-QC-3, R-SIG-3)."""

    qc_ids = fields.List(
        fields.Integer(strict=True, validate=validate.Range(min=1)),
        required=True,
        validate=validate.Length(min=1, max=50),
    )


class SpecificationProposalCreateSchema(Schema):
    """A proposed specification version (R-QC-6): the whole body, and why it changes."""

    body = fields.Nested(SpecificationUpdateSchema, required=True)
    reason = nonempty_text(4000, multiline=True, required=True)


class SpecificationProposalSchema(Schema):
    id = fields.Integer()
    tissue_source = fields.String()
    status = fields.String(metadata={"description": "proposed, approved or withdrawn"})
    base_version = fields.Integer(metadata={"description": "the version in force when it was proposed"})
    body = fields.Dict()
    reason = fields.String()
    proposed_by = fields.Nested(UserSummarySchema)
    proposed_at = UTC()
    record_hash = fields.String(metadata={"description": "the hash an approval's signature binds (R-SIG-3)"})
    decided_by = fields.Nested(UserSummarySchema, allow_none=True)
    decided_at = UTC(allow_none=True)
    withdrawal_reason = fields.String(allow_none=True)
    signature = fields.Dict(allow_none=True)
    version = fields.Integer(allow_none=True, metadata={"description": "the version it became, once approved"})


class ProposalQueryArgsSchema(Schema):
    status = fields.String(validate=one_of(ProposalStatus))
    tissue_source = fields.String(validate=one_of(TissueSource))


class WithdrawalCreateSchema(Schema):
    reason = nonempty_text(4000, multiline=True, required=True)
