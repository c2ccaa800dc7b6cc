"""Recompute every hash chain and report the first broken link per stream (R-AUD-3).

Beyond the links themselves, each event's stored canonical text is compared with
its columns (so a changed ``data`` column is found even if the hash was left
alone) and each batch's projection head with its last event (so a deleted tail is
found).

Last, the chains are checked against the latest signed checkpoint (R-AUD-4): an
attacker with database access who rewrites a batch's events and recomputes
every hash leaves a chain that verifies, but cannot re-sign the checkpoint, whose
leaf for that batch no longer matches the stored event.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import groupby

from sqlalchemy import ColumnElement, Select, cast, func, literal_column, select
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.exc import DataError
from sqlalchemy.orm import Session

from labtrack.audit import checkpoints, keys
from labtrack.domain.actors import Action, Actor, require
from labtrack.domain.errors import NotFound
from labtrack.domain.hashing import BrokenLink, StoredLink, canonical_body, verify_links
from labtrack.models import AdminEvent, Batch, BatchEvent, User
from labtrack.services import batches
from labtrack.services.streams import ADMIN_STREAM


@dataclass
class Report:
    batches_checked: int = 0
    events_checked: int = 0
    failures: list[dict[str, object]] = field(default_factory=list)
    checkpoint: dict[str, object] | None = None

    @property
    def ok(self) -> bool:
        return not self.failures

    def as_dict(self) -> dict[str, object]:
        return {
            "ok": self.ok,
            "batches_checked": self.batches_checked,
            "events_checked": self.events_checked,
            "failures": self.failures,
            "checkpoint": self.checkpoint,
        }


def _event_columns() -> Select:
    return (
        select(
            BatchEvent.batch_id,
            Batch.din,
            BatchEvent.seq,
            BatchEvent.type,
            BatchEvent.occurred_at,
            BatchEvent.recorded_at,
            User.username,
            BatchEvent.data,
            BatchEvent.prev_hash,
            BatchEvent.hash,
            BatchEvent.canonical,
        )
        .join(Batch, Batch.id == BatchEvent.batch_id)
        .join(User, User.id == BatchEvent.actor_id)
    )


def _iso_utc_sql(column: ColumnElement) -> ColumnElement:
    """``hashing.iso_utc`` in SQL: UTC, microseconds, ``Z``."""
    return func.to_char(
        func.timezone(literal_column("'UTC'"), column), literal_column('\'YYYY-MM-DD"T"HH24:MI:SS.US"Z"\'')
    )


def _fields_match_sql() -> ColumnElement:
    """On PostgreSQL: does the stored canonical text hold exactly the event's columns?

    jsonb equality (same members, same values, whatever the order) compares them in
    the database, so a full verification does not re-serialise RFC 8785 in Python for
    every event, which made it ~15x slower than reading and hashing the stored text.
    A changed column is still found; a row reported different is recomputed in
    Python (``_expected``), which has the last word.
    """
    body = func.jsonb_build_object(
        literal_column("'batch'::text"), Batch.din,
        literal_column("'seq'::text"), BatchEvent.seq,
        literal_column("'type'::text"), BatchEvent.type,
        literal_column("'occurred_at'::text"), _iso_utc_sql(BatchEvent.occurred_at),
        literal_column("'recorded_at'::text"), _iso_utc_sql(BatchEvent.recorded_at),
        literal_column("'actor'::text"), User.username,
        literal_column("'data'::text"), BatchEvent.data,
    )  # fmt: skip
    return (cast(BatchEvent.canonical, JSONB) == body).label("fields_match")


def _expected(session: Session, row) -> str | None:
    """The canonical text the row's columns give, or None when the database found them equal already."""
    if getattr(row, "fields_match", False):
        return None
    if not hasattr(row, "data"):
        where = (BatchEvent.batch_id == row.batch_id, BatchEvent.seq == row.seq)
        row = session.execute(_event_columns().where(*where)).one()
    return canonical_body(
        stream_key=row.din,
        seq=row.seq,
        type=row.type,
        occurred_at=row.occurred_at,
        recorded_at=row.recorded_at,
        actor=row.username,
        data=row.data,
    )


def _batch_links(session: Session, rows: list) -> list[StoredLink]:
    return [
        StoredLink(
            seq=row.seq,
            prev_hash=row.prev_hash,
            hash=row.hash,
            canonical=row.canonical,
            expected_canonical=_expected(session, row),
        )
        for row in rows
    ]


def _check_head(batch_seq: int, head_hash: str, links: list[StoredLink]) -> BrokenLink | None:
    last = links[-1] if links else None
    if last is None or last.seq != batch_seq or last.hash != head_hash:
        return BrokenLink(batch_seq, "the batch's head does not match its last stored event (events missing?)")
    return None


def _anchored(anchor: checkpoints.Anchor, stream: str, links: list[StoredLink]) -> BrokenLink | None:
    found = anchor.mismatch(stream, {link.seq: link.hash for link in links})
    return BrokenLink(*found) if found else None


def verify(session: Session, actor: Actor | None = None, din: str | None = None) -> Report:
    """Verify batch chains (all, or one DIN) and, for a full run, the admin chain; then the checkpoint."""
    if actor is not None:
        require(actor, Action.AUDIT)
    if session.get_bind().dialect.name == "postgresql":
        try:
            return _verify(session, actor, din, in_database=True)
        except DataError:
            # A stored canonical text that is not even JSON stops the in-database comparison;
            # the Python comparison names the event instead.
            session.rollback()
    return _verify(session, actor, din, in_database=False)


def _verify(session: Session, actor: Actor | None, din: str | None, *, in_database: bool) -> Report:
    report = Report()
    anchor = checkpoints.anchor(session, keys.lab_key().public_key)
    report.checkpoint = anchor.summary()
    if anchor.checkpoint is not None and anchor.problem is not None:
        reason = f"checkpoint {anchor.checkpoint.id}: {anchor.problem}"
        report.failures.append({"din": "checkpoint", "seq": anchor.checkpoint.id, "reason": reason})
    heads = select(Batch.id, Batch.din, Batch.seq, Batch.head_hash).order_by(Batch.id)
    if din is not None:
        batch = batches.get(session, actor, din) if actor else batches.find(session, din)
        if batch is None:
            raise NotFound("No such batch.")
        heads = heads.where(Batch.id == batch.id)
    head_rows = {row.id: row for row in session.execute(heads)}
    if in_database:
        events = (
            select(
                BatchEvent.batch_id,
                BatchEvent.seq,
                BatchEvent.prev_hash,
                BatchEvent.hash,
                BatchEvent.canonical,
                _fields_match_sql(),
            )
            .join(Batch, Batch.id == BatchEvent.batch_id)
            .join(User, User.id == BatchEvent.actor_id)
        )
    else:
        events = _event_columns()
    events = (
        events.where(BatchEvent.batch_id.in_(list(head_rows)) if din is not None else True)
        .order_by(BatchEvent.batch_id, BatchEvent.seq)
        .execution_options(yield_per=5000)
    )
    seen: set[int] = set()
    # Core rows through the session's connection: the ORM's row processing cost more than the hashing.
    for batch_id, rows in groupby(session.connection().execute(events), key=lambda r: r.batch_id):
        rows = list(rows)
        links = _batch_links(session, rows)
        head = head_rows[batch_id]
        seen.add(batch_id)
        report.batches_checked += 1
        report.events_checked += len(links)
        broken = (
            verify_links(links) or _check_head(head.seq, head.head_hash, links) or _anchored(anchor, head.din, links)
        )
        if broken:
            report.failures.append({"din": head.din, "seq": broken.seq, "reason": broken.reason})
    for batch_id, head in head_rows.items():
        if batch_id not in seen:
            report.batches_checked += 1
            report.failures.append({"din": head.din, "seq": 1, "reason": "the batch has no stored events"})
    if din is None:
        present = {head.din for head in head_rows.values()} | {ADMIN_STREAM}
        for stream in sorted(set(anchor.leaves) - present):
            reason = "signed by the checkpoint, missing from the database"
            report.failures.append({"din": stream, "seq": anchor.leaves[stream].seq, "reason": reason})
        admin_rows = session.execute(select(AdminEvent).order_by(AdminEvent.seq)).scalars().all()
        admin_links = [
            StoredLink(
                seq=row.seq,
                prev_hash=row.prev_hash,
                hash=row.hash,
                canonical=row.canonical,
                expected_canonical=canonical_body(
                    stream_key=ADMIN_STREAM,
                    stream_field="stream",
                    seq=row.seq,
                    type=row.type,
                    occurred_at=row.occurred_at,
                    recorded_at=row.recorded_at,
                    actor=row.actor,
                    data=row.data,
                ),
            )
            for row in admin_rows
        ]
        report.events_checked += len(admin_links)
        broken = verify_links(admin_links) or _anchored(anchor, ADMIN_STREAM, admin_links)
        if broken:
            report.failures.append({"din": ADMIN_STREAM, "seq": broken.seq, "reason": broken.reason})
    report.failures.sort(key=lambda f: (str(f["din"]), int(f["seq"])))
    return report
