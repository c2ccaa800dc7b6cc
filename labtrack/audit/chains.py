"""Recompute every hash chain and report the first broken link per stream (R-AUD-3).

Beyond the links themselves, each event's stored canonical text is compared with
its columns (so a changed ``data`` column is found even if the hash was left
alone) and each batch's projection head with its last event (so a deleted tail is
found).

Last, the chains are checked against the latest signed checkpoint (R-AUD-4): an
attacker with database access who rewrites a batch's events and recomputes
every hash leaves a chain that verifies, but cannot re-sign the checkpoint, whose
leaf for that batch no longer matches the stored event.

On PostgreSQL a run reads everything in one REPEATABLE READ snapshot, and a full run over
many events splits the event scan by batch id over two connections that share it
(``pg_export_snapshot``), so that two database processes do the column comparison.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from itertools import groupby
from queue import Full, Queue
from typing import TypeVar

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy import (
    ColumnElement,
    Connection,
    DateTime,
    Result,
    Row,
    Select,
    cast,
    func,
    literal_column,
    select,
    type_coerce,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.exc import DataError
from sqlalchemy.orm import Session

from labtrack.audit import checkpoints
from labtrack.domain.actors import Action, Actor, require
from labtrack.domain.errors import NotFound
from labtrack.domain.hashing import GENESIS_HASH, BrokenLink, StoredLink, canonical_body, link_hash, verify_links
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


def _links_hold(rows: list[Row]) -> bool:
    """The common case, checked without building a ``StoredLink`` per event: seqs 1..n, each
    ``prev_hash`` the previous hash, the columns equal to the canonical text (the database
    compared them), each hash right. On any doubt ``verify_links`` names the first break."""
    expected_prev = GENESIS_HASH
    for position, (_batch_id, seq, _recorded_at, prev_hash, digest, canonical, fields_match) in enumerate(rows, 1):
        if (
            seq != position
            or prev_hash != expected_prev
            or not fields_match
            or link_hash(prev_hash, canonical) != digest
        ):
            return False
        expected_prev = digest
    return True


PREFETCH_ROWS = 5000
SPLIT_FROM_EVENTS = 50_000
"""A full run on PostgreSQL over at least this many events (by the batches' heads) scans them on two
connections; below it, the second connection's set-up is not worth it."""


@contextmanager
def _prefetched(result: Result) -> Iterator[Iterator[Row]]:
    """The rows of a streamed result, fetched by a reader thread a chunk ahead of the caller.

    The database builds the next chunk (the column comparison is most of its work) while
    Python hashes this one, instead of each waiting for the other. The reader starts on
    entry, whether or not the rows are taken yet, and is stopped (and the result closed) on
    exit. The caller must not use the connection meanwhile; an error in the reader
    (``DataError`` for a canonical text that is not JSON) is raised from the rows.
    """
    chunks: Queue[list[Row] | BaseException | None] = Queue(maxsize=2)
    stop = threading.Event()

    def hand_over(item: list[Row] | BaseException | None) -> bool:
        while not stop.is_set():
            try:
                chunks.put(item, timeout=0.1)
                return True
            except Full:
                continue
        return False

    def read() -> None:
        try:
            for chunk in result.partitions(PREFETCH_ROWS):
                if not hand_over(chunk):
                    return
            hand_over(None)
        except BaseException as error:  # handed to the caller's thread, which raises it
            hand_over(error)

    def rows() -> Iterator[Row]:
        while (chunk := chunks.get()) is not None:
            if isinstance(chunk, BaseException):
                raise chunk
            yield from chunk

    reader = threading.Thread(target=read, name="audit-verify-reader", daemon=True)
    reader.start()
    try:
        yield rows()
    finally:
        stop.set()
        reader.join()
        result.close()


_SNAPSHOT_ID = re.compile(r"[0-9A-F]+(-[0-9A-F]+)+")


def _begin_snapshot(session: Session) -> bool:
    """On PostgreSQL, begin the session's transaction at REPEATABLE READ: the checkpoints, the heads and
    every event are then read in one snapshot, which a second connection can share (``_sharing``).

    False on SQLite, or when the session's transaction had begun already (its isolation is the caller's).
    """
    if session.get_bind().dialect.name != "postgresql" or session.in_transaction():
        return False
    session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
    return True


@contextmanager
def _sharing(connection: Connection) -> Iterator[Connection]:
    """Another connection of the same engine, in a transaction that sees exactly ``connection``'s
    (REPEATABLE READ) snapshot; rolled back and returned to the pool on exit."""
    snapshot = connection.execute(select(func.pg_export_snapshot())).scalar_one()
    if not _SNAPSHOT_ID.fullmatch(snapshot):  # it is spelled into the statement: SET takes no parameters
        raise ValueError(f"unexpected snapshot id {snapshot!r}")
    with connection.engine.connect() as other:
        other.execution_options(isolation_level="REPEATABLE READ")
        other.exec_driver_sql(f"SET TRANSACTION SNAPSHOT '{snapshot}'")
        yield other


def _split_point(heads: dict[int, Row], split_from: int | None) -> int | None:
    """The batch id that best halves the events (by the batches' heads, in id order), or None when
    one connection will do: fewer than ``split_from`` events, or a single batch."""
    total = sum(head.seq or 0 for head in heads.values())
    if split_from is None or total < split_from or len(heads) < 2:
        return None
    before, imbalance = 0, []
    for batch_id, head in heads.items():
        imbalance.append((abs(2 * before - total), batch_id))
        before += head.seq or 0
    return min(imbalance[1:])[1]  # [0] would leave the first half empty


T = TypeVar("T")


def _in_turn(streams: Iterable[Iterator[T]]) -> Iterator[T]:
    """One item of each stream in turn until every one is exhausted, so that each stream's reader
    keeps working instead of waiting, its queue full, for the streams before it to end."""
    active = list(streams)
    while active:
        for stream in list(active):
            item = next(stream, None)
            if item is None:
                active.remove(stream)
            else:
                yield item


@contextmanager
def _batches(session: Session, events: Select, split_at: int | None, *, prefetch: bool) -> Iterator[Iterator]:
    """``(batch_id, rows)`` for each batch with events, each batch's rows in seq order.

    With ``split_at``, batches below it are read on the session's connection and the rest on a
    second connection sharing its snapshot, each by its own reader, and handed out in turn.
    """
    connection = session.connection()
    with ExitStack() as stack:
        parts = [(connection, events)]
        if split_at is not None:
            other = stack.enter_context(_sharing(connection))
            parts = [
                (connection, events.where(BatchEvent.batch_id < split_at)),
                (other, events.where(BatchEvent.batch_id >= split_at)),
            ]
        streams = []
        for part_connection, statement in parts:
            result = stack.enter_context(part_connection.execute(statement))
            rows = stack.enter_context(_prefetched(result)) if prefetch else result
            streams.append((batch_id, list(group)) for batch_id, group in groupby(rows, key=lambda r: r.batch_id))
        yield _in_turn(streams)


def _check_head(batch_seq: int, head_hash: str, links: list[StoredLink]) -> BrokenLink | None:
    last = links[-1] if links else None
    if last is not None and last.seq > batch_seq:
        return BrokenLink(batch_seq + 1, "the batch's head does not match its last stored event (events added?)")
    if last is None or last.seq != batch_seq or last.hash != head_hash:
        return BrokenLink(batch_seq, "the batch's head does not match its last stored event (events missing?)")
    return None


def _anchored(anchor: checkpoints.Anchor, stream: str, links: list[StoredLink], rows: list) -> BrokenLink | None:
    if stream not in anchor.leaves:  # nothing signed for this stream: no lookup tables to build
        return None
    recorded = ((row.seq, row.recorded_at) for row in rows)
    found = anchor.mismatch(stream, {link.seq: link.hash for link in links}, recorded)
    return BrokenLink(*found) if found else None


def verify(
    session: Session,
    actor: Actor | None = None,
    din: str | None = None,
    *,
    public_key: Ed25519PublicKey,
    split_from: int | None = SPLIT_FROM_EVENTS,
) -> Report:
    """Verify batch chains (all, or one DIN) and, for a full run, the admin chain; then the checkpoints.

    Checkpoints are checked against ``public_key``: the trusted key (``keys.trusted_public_key``)
    or an auditor's copy of the lab's key. On PostgreSQL, with a session whose
    transaction has not begun, a run over ``split_from`` events or more scans them on two
    connections sharing one snapshot (None: always one); the report is the same either way.
    """
    if actor is not None:
        require(actor, Action.AUDIT)
    trusted = public_key
    if session.get_bind().dialect.name == "postgresql":
        try:
            return _verify(session, actor, din, trusted, in_database=True, split_from=split_from)
        except DataError:
            # A stored canonical text that is not even JSON stops the in-database comparison;
            # the Python comparison names the event instead.
            session.rollback()
    return _verify(session, actor, din, trusted, in_database=False, split_from=None)


def _verify(
    session: Session,
    actor: Actor | None,
    din: str | None,
    public_key: Ed25519PublicKey,
    *,
    in_database: bool,
    split_from: int | None,
) -> Report:
    report = Report()
    one_snapshot = _begin_snapshot(session)
    anchor = checkpoints.anchor(session, public_key)
    report.checkpoint = anchor.summary()
    for checkpoint_id, problem in anchor.rejected:
        reason = f"checkpoint {checkpoint_id}: {problem}"
        report.failures.append({"din": "checkpoint", "seq": checkpoint_id, "reason": reason})
    heads = select(Batch.id, Batch.din, Batch.seq, Batch.head_hash).order_by(Batch.id)
    if din is not None:
        batch = batches.get(session, actor, din) if actor else batches.find(session, din)
        if batch is None:
            raise NotFound("No such batch.")
        heads = heads.where(Batch.id == batch.id)
    head_rows = {row.id: row for row in session.execute(heads)}
    if in_database:
        events = (
            select(  # in the order _links_hold unpacks
                BatchEvent.batch_id,
                BatchEvent.seq,
                # The driver's aware datetime as is: the checkpoint comparison needs no UTC conversion.
                type_coerce(BatchEvent.recorded_at, DateTime(timezone=True)).label("recorded_at"),
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
        .execution_options(yield_per=PREFETCH_ROWS)
    )
    seen: set[int] = set()
    suspects: list[list[Row]] = []

    def check(rows: list, *, sound: bool) -> None:
        """One batch's chain; ``sound`` when ``_links_hold`` found every link right (the rows serve as links)."""
        head = head_rows[rows[0].batch_id]
        links = rows if sound else _batch_links(session, rows)
        broken = (
            (None if sound else verify_links(links))
            or _check_head(head.seq, head.head_hash, links)
            or _anchored(anchor, head.din, links, rows)
        )
        if broken:
            report.failures.append({"din": head.din, "seq": broken.seq, "reason": broken.reason})

    # Core rows through the connections: the ORM's row processing cost more than the hashing.
    split_at = _split_point(head_rows, split_from) if in_database and one_snapshot else None
    with _batches(session, events, split_at, prefetch=in_database) as scanned:
        for batch_id, rows in scanned:
            seen.add(batch_id)
            report.batches_checked += 1
            report.events_checked += len(rows)
            if not in_database:
                check(rows, sound=False)
            elif _links_hold(rows):
                check(rows, sound=True)
            else:
                suspects.append(rows)  # after the scan, when the connection is free to re-read the columns
    for rows in suspects:
        check(rows, sound=False)
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
        broken = verify_links(admin_links) or _anchored(anchor, ADMIN_STREAM, admin_links, admin_rows)
        if broken:
            report.failures.append({"din": ADMIN_STREAM, "seq": broken.seq, "reason": broken.reason})
    report.failures.sort(key=lambda f: (str(f["din"]), int(f["seq"])))
    return report
