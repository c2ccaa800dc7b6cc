"""SQLAlchemy tables. The schema itself is made only by the Alembic migrations.

``batch_events`` and ``admin_events`` are append-only (R-AUD-2: the migrations add
triggers refusing UPDATE and DELETE); ``batches`` and ``deviations`` are
projections of the batch streams, updated in the same transaction as the event.

No relationship loads with its parent (R-SCL-4): each loads on first access, and a query
that needs one for many rows says so with a loader option (``selectinload``, ``joinedload``).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, date, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

from labtrack.clock import utcnow
from labtrack.domain.actors import AuthEventKind, AuthOutcome, Role
from labtrack.domain.decisions import LabelKind
from labtrack.domain.deviations import DeviationKind, DeviationStatus
from labtrack.domain.followup import PlanStatus, VisitStatus
from labtrack.domain.investigations import (
    Activity,
    AffectedAction,
    Category,
    LookbackStatus,
    ReactionOutcome,
    ReactionStatus,
    Relatedness,
    SeedKind,
    Trigger,
)
from labtrack.domain.lifecycle import Status
from labtrack.domain.materials import EquipmentStatus, LotStatus
from labtrack.domain.operations import LabelPrintStatus, OutboxStatus, VerificationKind, VerificationStatus
from labtrack.domain.process import TissueSource
from labtrack.domain.spc import Metric, Rule
from labtrack.domain.specifications import ProposalStatus

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

Json = JSON().with_variant(JSONB(), "postgresql")
BigId = BigInteger().with_variant(Integer(), "sqlite")


class UTCDateTime(TypeDecorator[datetime]):
    """Stores UTC; always hands back timezone-aware UTC datetimes, on SQLite too."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes are not stored")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _partial(name: str, where: str, *columns: str) -> Index:
    """An index of the rows ``where`` holds, on both databases."""
    return Index(name, *columns, sqlite_where=text(where), postgresql_where=text(where))


def _in(column: str, values: Iterable[str]) -> str:
    """``column IN ('a', 'b')``: the CHECK of a column whose values come from a domain enum."""
    return f"{column} IN ({', '.join(repr(str(v)) for v in values)})"


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map: ClassVar[dict[Any, Any]] = {datetime: UTCDateTime(), dict[str, Any]: Json}


class Clinic(Base):
    __tablename__ = "clinics"
    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(16), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    webhook_url: Mapped[str | None] = mapped_column(String(500))
    webhook_secret: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class User(Base):
    __tablename__ = "users"
    __table_args__ = (
        CheckConstraint(_in("role", Role), name="role"),
        CheckConstraint(f"(role = '{Role.CLINIC}') = (clinic_id IS NOT NULL)", name="clinic_users_only_have_clinic"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    full_name: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(16))
    clinic_id: Mapped[int | None] = mapped_column(ForeignKey("clinics.id"))
    password_hash: Mapped[str] = mapped_column(String(200))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    locked_at: Mapped[datetime | None]
    email: Mapped[str | None] = mapped_column(String(254))  # for notifications when SMTP_URL is set
    # Signature failures before this moment no longer count toward a lockout (set on unlock).
    failures_reset_at: Mapped[datetime | None]
    # Set when an admin resets the password: the user chooses a new one before anything else.
    must_change_password: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # An SSO user's signing password (R-OPS-4, migration 0010): signatures check it when set.
    signing_password_hash: Mapped[str | None] = mapped_column(String(200))
    clinic: Mapped[Clinic | None] = relationship()


class ApiToken(Base):
    __tablename__ = "api_tokens"
    id: Mapped[int] = mapped_column(primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(index=True)
    revoked_at: Mapped[datetime | None]


class Patient(Base):
    __tablename__ = "patients"
    __table_args__ = (UniqueConstraint("clinic_id", "mrn", name="uq_patients_clinic_mrn"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    clinic_id: Mapped[int] = mapped_column(ForeignKey("clinics.id"))
    mrn: Mapped[str] = mapped_column(String(64))
    family_name: Mapped[str] = mapped_column(String(100))
    given_name: Mapped[str] = mapped_column(String(100))
    birth_date: Mapped[date] = mapped_column(Date)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    created_by_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    clinic: Mapped[Clinic] = relationship()


# Patient search by part of a name or MRN (``lower(column) LIKE '%text%'``, services/patients.matching): on
# PostgreSQL a trigram index (pg_trgm) serves it; SQLite has no such index and scans its (small) table.
PATIENT_SEARCH_COLUMNS = ("family_name", "given_name", "mrn")
Index(
    "ix_patients_search_trgm",
    *(func.lower(getattr(Patient, name)).label(f"{name}_lower") for name in PATIENT_SEARCH_COLUMNS),
    postgresql_using="gin",
    postgresql_ops={f"{name}_lower": "gin_trgm_ops" for name in PATIENT_SEARCH_COLUMNS},
).ddl_if(dialect="postgresql")


class Specification(Base):
    __tablename__ = "specifications"
    __table_args__ = (
        UniqueConstraint("tissue_source", "version", name="uq_specifications_tissue_version"),
        CheckConstraint(_in("tissue_source", TissueSource), name="tissue_source"),
        CheckConstraint("version >= 1", name="version_positive"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    tissue_source: Mapped[str] = mapped_column(String(16))
    version: Mapped[int] = mapped_column(Integer)
    body: Mapped[dict[str, Any]]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    created_by: Mapped[str] = mapped_column(String(64))


class DinCounter(Base):
    """Next DIN sequence per facility and year (R-DIN-1), advanced under a row lock."""

    __tablename__ = "din_counters"
    facility: Mapped[str] = mapped_column(String(5), primary_key=True)
    year: Mapped[int] = mapped_column(Integer, primary_key=True)
    last_sequence: Mapped[int] = mapped_column(Integer, default=0)


class ReagentLot(Base):
    __tablename__ = "reagent_lots"
    __table_args__ = (
        UniqueConstraint("kind", "lot_number", name="uq_reagent_lots_kind_lot"),
        CheckConstraint(_in("status", LotStatus), name="status"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(200))
    lot_number: Mapped[str] = mapped_column(String(64))
    expires_on: Mapped[date] = mapped_column(Date)
    status: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Equipment(Base):
    __tablename__ = "equipment"
    __table_args__ = (CheckConstraint(_in("status", EquipmentStatus), name="status"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(64), unique=True)
    kind: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(200))
    calibration_due_on: Mapped[date] = mapped_column(Date)
    status: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Batch(Base):
    """Projection of one batch's event stream, kept current in the event's transaction."""

    __tablename__ = "batches"
    __table_args__ = (
        CheckConstraint(_in("status", Status), name="status"),
        CheckConstraint(_in("tissue_source", TissueSource), name="tissue_source"),
        CheckConstraint("seq >= 0", name="seq_not_negative"),
        CheckConstraint("length(din) = 13", name="din_length"),
        Index("ix_batches_clinic_status", "clinic_id", "status"),
        Index("ix_batches_status", "status"),
        # behind the watchers, QA's held list and the lists by date (migration 0011, R-SCL-4)
        _partial("ix_batches_expires_at", "expires_at IS NOT NULL", "expires_at"),
        _partial("ix_batches_transfer_at", "transfer_to_id IS NOT NULL", "transfer_at"),
        Index("ix_batches_held", "id", sqlite_where=text("held IS 1"), postgresql_where=text("held IS TRUE")),
        Index("ix_batches_registered_at", "registered_at"),
    )
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    din: Mapped[str] = mapped_column(String(13), unique=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("patients.id"), index=True)
    clinic_id: Mapped[int] = mapped_column(ForeignKey("clinics.id"))
    tissue_source: Mapped[str] = mapped_column(String(16))
    product: Mapped[str] = mapped_column(String(8))
    specification_id: Mapped[int] = mapped_column(ForeignKey("specifications.id"))
    status: Mapped[str] = mapped_column(String(20))
    custodian_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    transfer_from_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    transfer_to_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    transfer_seal_id: Mapped[str | None] = mapped_column(String(64))
    transfer_status_before: Mapped[str | None] = mapped_column(String(20))
    transfer_at: Mapped[datetime | None]
    held: Mapped[bool] = mapped_column(Boolean, default=False)
    steps_done: Mapped[list[str]] = mapped_column(JSON, default=list)
    planned_administration_at: Mapped[datetime | None]
    expires_at: Mapped[datetime | None]
    released_at: Mapped[datetime | None]
    conditional_release: Mapped[bool] = mapped_column(Boolean, default=False)
    last_physical_at: Mapped[datetime | None]
    registered_at: Mapped[datetime]
    seq: Mapped[int] = mapped_column(Integer)
    head_hash: Mapped[str] = mapped_column(String(64))
    # When the expiry watcher warned the clinic (R-SEQ-3); the outbox rows may be gone (migration 0010).
    expiry_warned_at: Mapped[datetime | None]

    patient: Mapped[Patient] = relationship()
    clinic: Mapped[Clinic] = relationship()
    specification: Mapped[Specification] = relationship()
    custodian: Mapped[User | None] = relationship(foreign_keys=[custodian_id])
    transfer_to: Mapped[User | None] = relationship(foreign_keys=[transfer_to_id])
    transfer_from: Mapped[User | None] = relationship(foreign_keys=[transfer_from_id])


class BatchEvent(Base):
    """One immutable fact about a batch, hash-chained within the batch (R-AUD-1)."""

    __tablename__ = "batch_events"
    __table_args__ = (
        UniqueConstraint("batch_id", "seq", name="uq_batch_events_batch_seq"),
        CheckConstraint("seq >= 1", name="seq_positive"),
        _partial("ix_batch_events_identity_mismatch", "type = 'identity_mismatch'", "id"),
        Index("ix_batch_events_recorded_at", "recorded_at"),
    )
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    batch_id: Mapped[int] = mapped_column(ForeignKey("batches.id"))
    seq: Mapped[int] = mapped_column(Integer)
    type: Mapped[str] = mapped_column(String(40))
    occurred_at: Mapped[datetime]
    recorded_at: Mapped[datetime]
    actor_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    data: Mapped[dict[str, Any]]
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))
    canonical: Mapped[str] = mapped_column(Text)

    actor: Mapped[User] = relationship()


class AdminEvent(Base):
    """Audited changes to reference data (clinics, users, lots, equipment, specs): one chain."""

    __tablename__ = "admin_events"
    __table_args__ = (CheckConstraint("seq >= 1", name="seq_positive"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, unique=True)
    type: Mapped[str] = mapped_column(String(40))
    occurred_at: Mapped[datetime]
    recorded_at: Mapped[datetime]
    actor: Mapped[str] = mapped_column(String(64))
    data: Mapped[dict[str, Any]]
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))
    canonical: Mapped[str] = mapped_column(Text)


class Deviation(Base):
    """Projection of a deviation's events; the batch is held while any is open (R-DEV-1)."""

    __tablename__ = "deviations"
    __table_args__ = (
        CheckConstraint(_in("kind", DeviationKind), name="kind"),
        CheckConstraint(_in("status", DeviationStatus), name="status"),
        Index("ix_deviations_batch_status", "batch_id", "status"),
        Index("ix_deviations_status", "status"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    batch_id: Mapped[int] = mapped_column(ForeignKey("batches.id"))
    kind: Mapped[str] = mapped_column(String(32))
    description: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(8), default=DeviationStatus.OPEN.value)
    opened_by_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    opened_at: Mapped[datetime]
    opened_seq: Mapped[int] = mapped_column(Integer)
    decision: Mapped[str | None] = mapped_column(String(8))
    justification: Mapped[str | None] = mapped_column(Text)
    closed_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    closed_at: Mapped[datetime | None]
    signature: Mapped[dict[str, Any] | None]
    qc_result_id: Mapped[int | None] = mapped_column(ForeignKey("qc_results.id"))

    batch: Mapped[Batch] = relationship()
    opened_by: Mapped[User] = relationship(foreign_keys=[opened_by_id])
    closed_by: Mapped[User | None] = relationship(foreign_keys=[closed_by_id])


class QcResult(Base):
    """Projection of one QC result's events: entry, corrections, verification (R-QC-2..5)."""

    __tablename__ = "qc_results"
    __table_args__ = (
        Index("ix_qc_results_batch", "batch_id", "test"),
        CheckConstraint("verified_by_id IS NULL OR verified_by_id <> entered_by_id", name="second_person"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    batch_id: Mapped[int] = mapped_column(ForeignKey("batches.id"))
    test: Mapped[str] = mapped_column(String(32))
    value: Mapped[dict[str, Any]]  # {"v": number | text}: one column for both kinds of result
    unit: Mapped[str | None] = mapped_column(String(16))
    method: Mapped[str | None] = mapped_column(String(100))
    within_spec: Mapped[bool] = mapped_column(Boolean)
    limit: Mapped[str] = mapped_column(String(200))
    entered_by_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    entered_at: Mapped[datetime]
    entered_seq: Mapped[int] = mapped_column(Integer)
    record_seq: Mapped[int] = mapped_column(Integer)  # the event whose hash a verification signs
    record_hash: Mapped[str] = mapped_column(String(64))
    verified_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    verified_at: Mapped[datetime | None]
    verified_seq: Mapped[int | None] = mapped_column(Integer)
    corrected: Mapped[bool] = mapped_column(Boolean, default=False)
    original_value: Mapped[dict[str, Any] | None]

    entered_by: Mapped[User] = relationship(foreign_keys=[entered_by_id])
    verified_by: Mapped[User | None] = relationship(foreign_keys=[verified_by_id])


class SignatureFailure(Base):
    """A failed signature attempt (R-SIG-1): five within 15 minutes lock the account."""

    __tablename__ = "signature_failures"
    __table_args__ = (Index("ix_signature_failures_user_at", "user_id", "at"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    at: Mapped[datetime]
    meaning: Mapped[str] = mapped_column(String(16))
    batch_id: Mapped[int | None] = mapped_column(ForeignKey("batches.id"))


class AuthEvent(Base):
    """Who signed in, failed to, signed out or was locked out, from where (append-only, migration 0004).

    ``username`` is what was typed (the user may not exist); ``at`` is the server's clock.
    """

    __tablename__ = "auth_events"
    __table_args__ = (
        CheckConstraint(_in("event", AuthEventKind), name="event"),
        CheckConstraint(_in("outcome", AuthOutcome), name="outcome"),
        Index("ix_auth_events_user_at", "user_id", "at"),
        Index("ix_auth_events_at", "at"),
    )
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    at: Mapped[datetime]
    event: Mapped[str] = mapped_column(String(16))
    outcome: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(String(32))
    username: Mapped[str] = mapped_column(String(64))
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    channel: Mapped[str] = mapped_column(String(16))  # api | web | signature
    address: Mapped[str | None] = mapped_column(String(64))
    user_agent: Mapped[str | None] = mapped_column(String(300))


class OutboxMessage(Base):
    """Work for after the commit (notifications, webhooks), written in the event's transaction."""

    __tablename__ = "outbox"
    __table_args__ = (
        CheckConstraint(_in("status", OutboxStatus), name="status"),
        Index("ix_outbox_status_next", "status", "next_attempt_at"),
        Index("ix_outbox_batch_topic", "batch_id", "topic"),
        Index("ix_outbox_status_delivered", "status", "delivered_at"),
    )
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    topic: Mapped[str] = mapped_column(String(40))
    batch_id: Mapped[int | None] = mapped_column(ForeignKey("batches.id"))
    clinic_id: Mapped[int | None] = mapped_column(ForeignKey("clinics.id"))
    payload: Mapped[dict[str, Any]]
    status: Mapped[str] = mapped_column(String(12), default=OutboxStatus.PENDING.value)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    delivered_at: Mapped[datetime | None]
    # Per-channel completion and the sweeper's lease (migration 0002, labtrack.services.outbox).
    notified_at: Mapped[datetime | None]
    emailed_at: Mapped[datetime | None]
    webhook_delivered_at: Mapped[datetime | None]
    locked_until: Mapped[datetime | None]
    locked_by: Mapped[str | None] = mapped_column(String(100))
    last_error: Mapped[str | None] = mapped_column(Text)
    # The X-Request-ID of the request that wrote the row, logged by its delivery (R-OPS-3, migration 0010).
    request_id: Mapped[str | None] = mapped_column(String(64))


class IdempotencyRecord(Base):
    """A replayable response for ``Idempotency-Key`` (24 h), stored in the write's transaction."""

    __tablename__ = "idempotency_keys"
    __table_args__ = (UniqueConstraint("user_id", "key", name="uq_idempotency_user_key"),)
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    key: Mapped[str] = mapped_column(String(200))
    request_hash: Mapped[str] = mapped_column(String(64))
    status_code: Mapped[int] = mapped_column(Integer)
    response_body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)


# --- Workers (issue 4): notifications, delivery log, signed checkpoints (migration 0002) ---------


class Notification(Base):
    """One in-app notification for one user; unique per (outbox row, user), so re-dispatch adds none."""

    __tablename__ = "notifications"
    __table_args__ = (
        UniqueConstraint("outbox_id", "user_id", name="uq_notifications_outbox_user"),
        Index("ix_notifications_user", "user_id", "id"),
    )
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    outbox_id: Mapped[int] = mapped_column(BigId, ForeignKey("outbox.id"))
    topic: Mapped[str] = mapped_column(String(40))
    batch_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("batches.id"))
    din: Mapped[str | None] = mapped_column(String(13))
    message: Mapped[str] = mapped_column(Text)
    payload: Mapped[dict[str, Any]]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    read_at: Mapped[datetime | None] = mapped_column(index=True)


class OutboxDelivery(Base):
    """The delivery log: one row per attempt to reach a webhook or an e-mail recipient."""

    __tablename__ = "outbox_deliveries"
    __table_args__ = (Index("ix_outbox_deliveries_outbox", "outbox_id", "id"),)
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    outbox_id: Mapped[int] = mapped_column(BigId, ForeignKey("outbox.id"))
    channel: Mapped[str] = mapped_column(String(16))  # webhook | email
    attempt: Mapped[int] = mapped_column(Integer)
    target: Mapped[str] = mapped_column(String(500))
    at: Mapped[datetime]
    ok: Mapped[bool] = mapped_column(Boolean)
    status_code: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
    duration_ms: Mapped[int] = mapped_column(Integer)
    worker: Mapped[str] = mapped_column(String(100))


class Checkpoint(Base):
    """A signed Merkle root over every stream head (R-AUD-4); ``statement`` is the exact signed text."""

    __tablename__ = "checkpoints"
    id: Mapped[int] = mapped_column(primary_key=True)
    created_at: Mapped[datetime]
    tree_size: Mapped[int] = mapped_column(Integer)
    root: Mapped[str] = mapped_column(String(64))
    statement: Mapped[str] = mapped_column(Text)
    signature: Mapped[str] = mapped_column(String(128))
    key_id: Mapped[str] = mapped_column(String(64))


class CheckpointLeaf(Base):
    """A stream head as first seen by a checkpoint; checkpoint N's leaves are each stream's row with id <= N."""

    __tablename__ = "checkpoint_leaves"
    __table_args__ = (Index("ix_checkpoint_leaves_checkpoint", "checkpoint_id"),)
    stream: Mapped[str] = mapped_column(String(16), primary_key=True)
    checkpoint_id: Mapped[int] = mapped_column(ForeignKey("checkpoints.id"), primary_key=True)
    seq: Mapped[int] = mapped_column(Integer)
    hash: Mapped[str] = mapped_column(String(64))


# --- Scale (issue 18, migration 0011) -------------------------------------------------------------


class CheckpointHead(Base):
    """Each stream's leaf in the newest checkpoint, at its position among the leaves sorted by stream (R-SCL-3)."""

    __tablename__ = "checkpoint_heads"
    stream: Mapped[str] = mapped_column(String(16), primary_key=True)
    position: Mapped[int] = mapped_column(BigId, unique=True)
    seq: Mapped[int] = mapped_column(Integer)
    hash: Mapped[str] = mapped_column(String(64))


class CheckpointNode(Base):
    """One node of the newest checkpoint's Merkle tree: level 0 the leaf hashes, the top level the root."""

    __tablename__ = "checkpoint_nodes"
    level: Mapped[int] = mapped_column(SmallInteger, primary_key=True)
    idx: Mapped[int] = mapped_column(BigId, primary_key=True)
    hash: Mapped[str] = mapped_column(String(64))  # hex


class AuditVerification(Base):
    """A verification run (R-SCL-2): a full one in the background (progress, resumable) or the incremental
    one after each checkpoint; ``result`` is its report."""

    __tablename__ = "audit_verifications"
    __table_args__ = (
        CheckConstraint(_in("status", VerificationStatus), name="status"),
        CheckConstraint(_in("kind", VerificationKind), name="kind"),
        Index("ix_audit_verifications_status", "status", "id"),
        _partial(
            "ix_audit_verifications_verified",
            f"status = '{VerificationStatus.DONE}' AND checkpoint_id IS NOT NULL",
            "checkpoint_id",
        ),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(12), default=VerificationKind.FULL.value)
    # A run that found nothing wrong vouches for this checkpoint: incremental runs start from the newest such.
    checkpoint_id: Mapped[int | None] = mapped_column(ForeignKey("checkpoints.id"))
    status: Mapped[str] = mapped_column(String(12), default=VerificationStatus.QUEUED.value)
    requested_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    requested_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    heartbeat_at: Mapped[datetime | None]
    batches_total: Mapped[int] = mapped_column(Integer, default=0)
    batches_done: Mapped[int] = mapped_column(Integer, default=0)
    events_done: Mapped[int] = mapped_column(BigId, default=0)
    after_batch_id: Mapped[int] = mapped_column(BigId, default=0)  # resume point: batches up to here are done
    failures: Mapped[list[dict[str, Any]]] = mapped_column(Json, default=list)
    result: Mapped[dict[str, Any] | None]
    error: Mapped[str | None] = mapped_column(Text)


class SpecificationProposal(Base):
    """A proposed specification version (R-QC-6): it takes force only when another QA user approves it,
    signed; at most one open proposal per tissue source."""

    __tablename__ = "specification_proposals"
    __table_args__ = (
        CheckConstraint(_in("tissue_source", TissueSource), name="tissue_source"),
        CheckConstraint(_in("status", ProposalStatus), name="status"),
        CheckConstraint(
            f"(status = '{ProposalStatus.APPROVED}') = (version IS NOT NULL AND signature IS NOT NULL)", name="approved"
        ),
        CheckConstraint(f"status = '{ProposalStatus.PROPOSED}' OR decided_by_id IS NOT NULL", name="decided"),
        CheckConstraint(
            f"status <> '{ProposalStatus.APPROVED}' OR decided_by_id <> proposed_by_id", name="second_person"
        ),
        Index(
            "uq_specification_proposals_open",
            "tissue_source",
            unique=True,
            sqlite_where=text(f"status = '{ProposalStatus.PROPOSED}'"),
            postgresql_where=text(f"status = '{ProposalStatus.PROPOSED}'"),
        ),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    tissue_source: Mapped[str] = mapped_column(String(16))
    base_version: Mapped[int] = mapped_column(Integer)  # the version in force when proposed
    body: Mapped[dict[str, Any]]
    reason: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default=ProposalStatus.PROPOSED.value)
    proposed_by_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    proposed_at: Mapped[datetime]
    record_hash: Mapped[str] = mapped_column(String(64))  # the proposal's admin event: what a signature binds
    decided_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    decided_at: Mapped[datetime | None]
    withdrawal_reason: Mapped[str | None] = mapped_column(Text)
    signature: Mapped[dict[str, Any] | None]
    version: Mapped[int | None] = mapped_column(Integer)  # the version it became
    proposed_by: Mapped[User] = relationship(
        foreign_keys=[proposed_by_id],
    )
    decided_by: Mapped[User | None] = relationship(
        foreign_keys=[decided_by_id],
    )


# --- Interoperability (issue 16): label print jobs, temperature-logger records (migration 0009) ---


class LabelPrint(Base):
    """A request to send a ZPL label to a thermal printer; the print itself is the ``label_printed`` event."""

    __tablename__ = "label_prints"
    __table_args__ = (
        CheckConstraint(_in("kind", LabelKind), name="kind"),
        CheckConstraint(_in("status", LabelPrintStatus), name="status"),
        CheckConstraint(f"(status = '{LabelPrintStatus.PRINTED}') = (event_seq IS NOT NULL)", name="printed_has_event"),
        Index("ix_label_prints_batch", "batch_id", "id"),
    )
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    batch_id: Mapped[int] = mapped_column(BigId, ForeignKey("batches.id"))
    kind: Mapped[str] = mapped_column(String(16))
    printer: Mapped[str] = mapped_column(String(300))
    status: Mapped[str] = mapped_column(String(12), default=LabelPrintStatus.QUEUED.value)
    requested_by_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    requested_at: Mapped[datetime]
    finished_at: Mapped[datetime | None]
    error: Mapped[str | None] = mapped_column(Text)
    event_seq: Mapped[int | None] = mapped_column(Integer)

    batch: Mapped[Batch] = relationship(lazy="raise")
    requested_by: Mapped[User] = relationship()


class TemperatureLog(Base):
    """One transport leg's logger readings and their summary (append-only, R-TMP-1)."""

    __tablename__ = "temperature_logs"
    __table_args__ = (
        UniqueConstraint("batch_id", "leg", name="uq_temperature_logs_batch_leg"),
        UniqueConstraint("batch_id", "file_sha256", name="uq_temperature_logs_batch_file"),
        CheckConstraint("leg >= 1", name="leg_positive"),
    )
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    batch_id: Mapped[int] = mapped_column(BigId, ForeignKey("batches.id"))
    leg: Mapped[int] = mapped_column(Integer)
    file_sha256: Mapped[str] = mapped_column(String(64))
    filename: Mapped[str] = mapped_column(String(255))
    timezone: Mapped[str] = mapped_column(String(64))
    imported_by_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    imported_at: Mapped[datetime]
    event_seq: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[datetime]  # the leg: hand-off
    ended_at: Mapped[datetime]  # and receipt
    low_c: Mapped[float] = mapped_column(Float)  # the transport range in force
    high_c: Mapped[float] = mapped_column(Float)
    min_c: Mapped[float] = mapped_column(Float)
    max_c: Mapped[float] = mapped_column(Float)
    mean_c: Mapped[float] = mapped_column(Float)
    minutes_out_of_range: Mapped[float] = mapped_column(Float)
    readings: Mapped[list[Any]] = mapped_column(Json)  # [[seconds after hand-off, °C], ...] over the leg ± 15 min

    imported_by: Mapped[User] = relationship()


# --- Follow-up outcomes and quality trends (issue 15, migration 0008) --------------------------


class FollowUpPlan(Base):
    """A version of a tissue source's follow-up plan (R-OUT-1): proposed by an admin, approved by QA, signed."""

    __tablename__ = "follow_up_plans"
    __table_args__ = (
        UniqueConstraint("tissue_source", "version", name="uq_follow_up_plans_tissue_version"),
        CheckConstraint(_in("tissue_source", TissueSource), name="tissue_source"),
        CheckConstraint(_in("status", PlanStatus), name="status"),
        CheckConstraint("version >= 1", name="version_positive"),
        CheckConstraint("approved_by IS NULL OR approved_by <> proposed_by", name="second_person"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    tissue_source: Mapped[str] = mapped_column(String(16))
    version: Mapped[int] = mapped_column(Integer)
    body: Mapped[dict[str, Any]]
    status: Mapped[str] = mapped_column(String(12))
    proposed_by: Mapped[str] = mapped_column(String(64))
    proposed_at: Mapped[datetime] = mapped_column(default=utcnow)
    reason: Mapped[str | None] = mapped_column(Text)  # why it changes (R-QC-6); none for the default version 1
    approved_by: Mapped[str | None] = mapped_column(String(64))
    approved_at: Mapped[datetime | None]
    signature: Mapped[dict[str, Any] | None]


class FollowUpVisit(Base):
    """Projection of a batch's follow-up visit: scheduled at administration, recorded by the clinic (R-OUT-2)."""

    __tablename__ = "follow_up_visits"
    __table_args__ = (
        UniqueConstraint("batch_id", "visit", name="uq_follow_up_visits_batch_visit"),
        CheckConstraint(_in("status", VisitStatus), name="status"),
        CheckConstraint("window_from <= window_to", name="window_order"),
        Index("ix_follow_up_visits_status_due", "status", "due_on"),
        Index("ix_follow_up_visits_status_closes", "status", "closes_on"),
    )
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    batch_id: Mapped[int] = mapped_column(BigId, ForeignKey("batches.id"))
    plan_id: Mapped[int] = mapped_column(ForeignKey("follow_up_plans.id"))
    visit: Mapped[str] = mapped_column(String(12))
    due_on: Mapped[date] = mapped_column(Date)
    window_from: Mapped[date] = mapped_column(Date)
    window_to: Mapped[date] = mapped_column(Date)
    closes_on: Mapped[date] = mapped_column(Date)
    status: Mapped[str] = mapped_column(String(8), default=VisitStatus.DUE.value)
    measured_on: Mapped[date | None] = mapped_column(Date)
    measurement: Mapped[dict[str, Any] | None]
    late: Mapped[bool] = mapped_column(Boolean, default=False)
    recorded_seq: Mapped[int | None] = mapped_column(Integer)
    recorded_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    reminded_at: Mapped[datetime | None]
    missed_at: Mapped[datetime | None]

    batch: Mapped[Batch] = relationship(lazy="raise")


class Attachment(Base):
    """A photo for a batch (R-OUT-3), stored without its metadata; append-only, cited by SHA-256."""

    __tablename__ = "attachments"
    __table_args__ = (
        CheckConstraint(_in("content_type", ("image/jpeg", "image/png")), name="content_type"),
        CheckConstraint("length(sha256) = 64", name="sha256_length"),
        Index("ix_attachments_batch", "batch_id"),
    )
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    batch_id: Mapped[int] = mapped_column(BigId, ForeignKey("batches.id"))
    sha256: Mapped[str] = mapped_column(String(64))
    content_type: Mapped[str] = mapped_column(String(16))
    size_bytes: Mapped[int] = mapped_column(Integer)
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    content: Mapped[bytes] = mapped_column(LargeBinary)
    uploaded_by_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    uploaded_at: Mapped[datetime]
    event_seq: Mapped[int] = mapped_column(Integer)


class TrendBaseline(Base):
    """Where a chart's baseline starts (R-SPC-1): set by QA with a signed reason; append-only, newest wins."""

    __tablename__ = "trend_baselines"
    __table_args__ = (
        CheckConstraint(_in("tissue_source", TissueSource), name="tissue_source"),
        CheckConstraint(_in("metric", Metric), name="metric"),
        Index("ix_trend_baselines_chart", "tissue_source", "metric", "id"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    tissue_source: Mapped[str] = mapped_column(String(16))
    metric: Mapped[str] = mapped_column(String(24))
    starts_at: Mapped[datetime]  # the first batch released at or after this opens the baseline
    reason: Mapped[str] = mapped_column(Text)
    signature: Mapped[dict[str, Any]]
    set_by_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    set_at: Mapped[datetime]


class TrendFlag(Base):
    """A Nelson rule tripped by a released batch's value (R-SPC-2), once per chart baseline; QA is told once."""

    __tablename__ = "trend_flags"
    __table_args__ = (
        UniqueConstraint("tissue_source", "metric", "baseline_key", "batch_id", "rule", name="uq_trend_flags_point"),
        CheckConstraint(_in("rule", Rule), name="rule"),
        CheckConstraint(_in("metric", Metric), name="metric"),
    )
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    tissue_source: Mapped[str] = mapped_column(String(16))
    metric: Mapped[str] = mapped_column(String(24))
    baseline_key: Mapped[int] = mapped_column(Integer)  # the trend_baselines id in force, 0 for the first 20 ever
    batch_id: Mapped[int] = mapped_column(BigId, ForeignKey("batches.id"))
    rule: Mapped[str] = mapped_column(String(12))
    value: Mapped[float] = mapped_column(Float)
    flagged_at: Mapped[datetime]


class OutcomeStatistics(Base):
    """A cohort's outcome statistics (R-OUT-5), computed by a worker with scipy and kept under the SHA-256 of
    their inputs: the same numbers always give the same statistics, so a stored answer is never stale."""

    __tablename__ = "outcome_statistics"
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    result: Mapped[dict[str, Any]]
    computed_at: Mapped[datetime] = mapped_column(default=utcnow)


# --- Investigations (issue 14): material and operator use, adverse reactions, lookbacks (migration 0007) ---

_USED = ("reagent_lot_id", "equipment_code", "user_id")


class BatchUse(Base):
    """One use of a reagent lot, an equipment item or an operator by one batch event (R-LBK-1).

    Written in the event's own transaction, so a lookback finds batches by index, never by reading
    event JSON. The event is named by ``(batch_id, seq)``: ``batch_events`` may be partitioned by batch.
    Exactly one of ``reagent_lot_id``, ``equipment_code`` and ``user_id`` is set. Append-only.
    """

    __tablename__ = "batch_uses"
    __table_args__ = (
        CheckConstraint(_in("activity", Activity), name="activity"),
        CheckConstraint(
            " + ".join(f"(CASE WHEN {c} IS NULL THEN 0 ELSE 1 END)" for c in _USED) + " = 1", name="one_thing_used"
        ),
        _partial("ix_batch_uses_lot", "reagent_lot_id IS NOT NULL", "reagent_lot_id", "batch_id"),
        _partial("ix_batch_uses_equipment", "equipment_code IS NOT NULL", "equipment_code", "occurred_at", "batch_id"),
        _partial("ix_batch_uses_user", "user_id IS NOT NULL", "user_id", "occurred_at", "batch_id"),
        Index("ix_batch_uses_batch", "batch_id", "seq"),
    )
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    batch_id: Mapped[int] = mapped_column(BigId, ForeignKey("batches.id"))
    seq: Mapped[int] = mapped_column(Integer)
    event_type: Mapped[str] = mapped_column(String(40))
    activity: Mapped[str] = mapped_column(String(16))
    occurred_at: Mapped[datetime]
    reagent_lot_id: Mapped[int | None] = mapped_column(ForeignKey("reagent_lots.id"))
    equipment_code: Mapped[str | None] = mapped_column(String(64), ForeignKey("equipment.code"))
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))


class AdverseReaction(Base):
    """Projection of a reaction's events on its batch's chain (R-ADV-1..3)."""

    __tablename__ = "adverse_reactions"
    __table_args__ = (
        CheckConstraint(_in("category", Category), name="category"),
        CheckConstraint(_in("outcome", ReactionOutcome), name="outcome"),
        CheckConstraint(_in("status", ReactionStatus), name="status"),
        CheckConstraint(
            "related_to_product IS NULL OR " + _in("related_to_product", Relatedness),
            name="related_to_product",
        ),
        CheckConstraint("reportable = false OR serious = true", name="reportable_is_serious"),
        CheckConstraint("(report_due_on IS NOT NULL) = reportable", name="due_when_reportable"),
        CheckConstraint(
            f"status = '{ReactionStatus.OPEN}' OR reportable = false OR reported_to_authority_on IS NOT NULL",
            name="reported_if_reportable",
        ),
        Index("ix_adverse_reactions_batch", "batch_id"),
        Index("ix_adverse_reactions_status_due", "status", "report_due_on"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    batch_id: Mapped[int] = mapped_column(BigId, ForeignKey("batches.id"))
    reported_seq: Mapped[int] = mapped_column(Integer)
    reported_hash: Mapped[str] = mapped_column(String(64))  # what the closing signature signs
    reported_by_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    reported_at: Mapped[datetime]
    received_on: Mapped[date] = mapped_column(Date)
    onset_at: Mapped[datetime]
    category: Mapped[str] = mapped_column(String(32))
    description: Mapped[str] = mapped_column(Text)
    outcome: Mapped[str] = mapped_column(String(16))
    fatal: Mapped[bool] = mapped_column(Boolean)
    life_threatening: Mapped[bool] = mapped_column(Boolean)
    permanent_impairment: Mapped[bool] = mapped_column(Boolean)
    intervention_required: Mapped[bool] = mapped_column(Boolean)
    communicable_disease_suspected: Mapped[bool] = mapped_column(Boolean)
    serious: Mapped[bool] = mapped_column(Boolean)
    reportable: Mapped[bool] = mapped_column(Boolean)
    report_due_on: Mapped[date | None] = mapped_column(Date)
    status: Mapped[str] = mapped_column(String(8), default=ReactionStatus.OPEN.value)
    lookback_id: Mapped[int | None] = mapped_column(ForeignKey("lookbacks.id"))
    due_warned_at: Mapped[datetime | None]
    overdue_told_at: Mapped[datetime | None]
    conclusion: Mapped[str | None] = mapped_column(Text)
    related_to_product: Mapped[str | None] = mapped_column(String(8))
    reported_to_authority_on: Mapped[date | None] = mapped_column(Date)
    closed_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    closed_at: Mapped[datetime | None]
    closed_seq: Mapped[int | None] = mapped_column(Integer)
    signature: Mapped[dict[str, Any] | None]

    batch: Mapped[Batch] = relationship()
    reported_by: Mapped[User] = relationship(foreign_keys=[reported_by_id])
    closed_by: Mapped[User | None] = relationship(foreign_keys=[closed_by_id])


class Lookback(Base):
    """A backward search from a seed to every batch it may touch (R-LBK-1..5); its facts are on the admin chain."""

    __tablename__ = "lookbacks"
    __table_args__ = (
        CheckConstraint(_in("seed_kind", SeedKind), name="seed_kind"),
        CheckConstraint(_in("trigger", Trigger), name="trigger"),
        CheckConstraint(_in("status", LookbackStatus), name="status"),
        Index("ix_lookbacks_status", "status", "id"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    status: Mapped[str] = mapped_column(String(8), default=LookbackStatus.OPEN.value)
    reason: Mapped[str] = mapped_column(Text)
    seed_kind: Mapped[str] = mapped_column(String(16))
    seed_value: Mapped[str] = mapped_column(String(64))  # lot id, equipment code, username or DIN, as given
    window_from: Mapped[datetime | None]
    window_to: Mapped[datetime | None]
    trigger: Mapped[str] = mapped_column(String(16))
    requested_by: Mapped[str] = mapped_column(String(64))  # who asked: QA, the admin who recalled, the reporter
    opened_by_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    opened_at: Mapped[datetime]
    opened_hash: Mapped[str] = mapped_column(String(64))  # the admin-chain event the closing signature signs
    conclusion: Mapped[str | None] = mapped_column(Text)
    closed_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    closed_at: Mapped[datetime | None]
    signature: Mapped[dict[str, Any] | None]

    opened_by: Mapped[User] = relationship(foreign_keys=[opened_by_id])
    closed_by: Mapped[User | None] = relationship(foreign_keys=[closed_by_id])


class LookbackBatch(Base):
    """An affected batch as the lookback found it, and what was done about it (R-LBK-2)."""

    __tablename__ = "lookback_batches"
    __table_args__ = (
        CheckConstraint(_in("action", AffectedAction), name="action"),
        Index("ix_lookback_batches_batch", "batch_id"),
    )
    lookback_id: Mapped[int] = mapped_column(ForeignKey("lookbacks.id"), primary_key=True)
    batch_id: Mapped[int] = mapped_column(BigId, ForeignKey("batches.id"), primary_key=True)
    clinic_id: Mapped[int] = mapped_column(ForeignKey("clinics.id"))
    status_at_opening: Mapped[str] = mapped_column(String(20))
    action: Mapped[str] = mapped_column(String(12))
    deviation_id: Mapped[int | None] = mapped_column(ForeignKey("deviations.id"))


class LookbackClinic(Base):
    """One clinic told of a lookback: its acknowledgement, the reminder and QA's escalation, each once (R-LBK-3)."""

    __tablename__ = "lookback_clinics"
    __table_args__ = (
        _partial("ix_lookback_clinics_unanswered", "acknowledged_at IS NULL", "notified_at"),
        Index("ix_lookback_clinics_clinic", "clinic_id", "lookback_id"),
    )
    lookback_id: Mapped[int] = mapped_column(ForeignKey("lookbacks.id"), primary_key=True)
    clinic_id: Mapped[int] = mapped_column(ForeignKey("clinics.id"), primary_key=True)
    notified_at: Mapped[datetime]
    acknowledged_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    acknowledged_at: Mapped[datetime | None]
    reminded_at: Mapped[datetime | None]
    escalated_at: Mapped[datetime | None]

    clinic: Mapped[Clinic] = relationship()
    acknowledged_by: Mapped[User | None] = relationship()
