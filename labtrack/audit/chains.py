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
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from itertools import groupby
from queue import Full, Queue
from typing import TypeVar

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy import (
    ColumnElement,
    Connection,
    DateTime,
    Engine,
    Integer,
    Row,
    Select,
    String,
    Subquery,
    and_,
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
from labtrack.audit.rowset import rowset
from labtrack.db import chunks, rows_by_id
from labtrack.domain.actors import Action, Actor, require
from labtrack.domain.errors import NotFound
from labtrack.domain.hashing import GENESIS_HASH, BrokenLink, StoredLink, canonical_body, link_hash, verify_links
from labtrack.domain.operations import VerificationKind
from labtrack.models import AdminEvent, Batch, BatchEvent, Checkpoint, User
from labtrack.services import batches
from labtrack.services.streams import ADMIN_STREAM


@dataclass
class Report:
    batches_checked: int = 0
    events_checked: int = 0
    failures: list[dict[str, object]] = field(default_factory=list)
    checkpoint: dict[str, object] | None = None
    mode: str = VerificationKind.FULL.value  # or incremental (R-SCL-2)
    since_checkpoint: int | None = None  # an incremental run's base

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
            "mode": self.mode,
            "since_checkpoint": self.since_checkpoint,
        }


def _event_columns(din: ColumnElement) -> list[ColumnElement]:
    """What the Python check reads of an event, in the order ``_expected`` and the links take it; ``din`` the
    batch's DIN (its column, or the one a joined set of batches carries)."""
    return [
        BatchEvent.batch_id,
        din.label("din"),
        BatchEvent.seq,
        BatchEvent.type,
        BatchEvent.occurred_at,
        BatchEvent.recorded_at,
        User.username,
        BatchEvent.data,
        BatchEvent.prev_hash,
        BatchEvent.hash,
        BatchEvent.canonical,
    ]


def _with_actors(columns: list[ColumnElement]) -> Select:
    return select(*columns).select_from(BatchEvent).join(User, User.id == BatchEvent.actor_id)


def _iso_utc_sql(column: ColumnElement) -> ColumnElement:
    """``hashing.iso_utc`` in SQL: UTC, microseconds, ``Z``."""
    return func.to_char(
        func.timezone(literal_column("'UTC'"), column), literal_column('\'YYYY-MM-DD"T"HH24:MI:SS.US"Z"\'')
    )


def _fields_match_sql(din: ColumnElement) -> ColumnElement:
    """On PostgreSQL: does the stored canonical text hold exactly the event's columns (``din`` its batch's)?

    jsonb equality (same members, same values, whatever the order) compares them in
    the database, so a full verification does not re-serialise RFC 8785 in Python for
    every event, which made it ~15x slower than reading and hashing the stored text.
    A changed column is still found; a row reported different is recomputed in
    Python (``_expected``), which has the last word.
    """
    body = func.jsonb_build_object(
        literal_column("'batch'::text"), din,
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
        columns = _with_actors(_event_columns(Batch.din)).join(Batch, Batch.id == BatchEvent.batch_id)
        row = session.execute(columns.where(*where)).one()
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
EXTEND_CHUNK = 5000  # batches whose new events one statement reads in incremental verification
_FROM = {"batch_id": Integer(), "seq": Integer(), "din": String()}
SPLIT_FROM_EVENTS = 50_000
"""A full run on PostgreSQL over at least this many events (by the batches' heads) scans them on two
connections; below it, the second connection's set-up is not worth it."""


@contextmanager
def _prefetched(connection: Connection, statements: list[Select]) -> Iterator[Iterator[Row]]:
    """The rows of ``statements``, one after the other, streamed by a reader thread a chunk ahead of the caller.

    The database builds the next chunk (the column comparison is most of its work) while
    Python hashes this one, instead of each waiting for the other. The reader starts on
    entry, whether or not the rows are taken yet, and is stopped (and its result closed) on
    exit. The caller must not use the connection meanwhile; an error in the reader
    (``DataError`` for a canonical text that is not JSON) is raised from the rows.
    """
    handed: Queue[list[Row] | BaseException | None] = Queue(maxsize=2)
    stop = threading.Event()

    def hand_over(item: list[Row] | BaseException | None) -> bool:
        while not stop.is_set():
            try:
                handed.put(item, timeout=0.1)
                return True
            except Full:
                continue
        return False

    def read() -> None:
        try:
            for statement in statements:
                with connection.execute(statement) as result:
                    for chunk in result.partitions(PREFETCH_ROWS):
                        if not hand_over(chunk):
                            return
            hand_over(None)
        except BaseException as error:  # handed to the caller's thread, which raises it
            hand_over(error)

    def rows() -> Iterator[Row]:
        while (chunk := handed.get()) is not None:
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


def _split_point(heads: dict[int, Row], split_from: int | None, reads: dict[int, int] | None = None) -> int | None:
    """The batch id that best halves the events to read (in id order), or None when one connection will do:
    fewer than ``split_from`` events, or a single batch. A batch's events to read are ``reads[batch_id]``, by
    default its head's seq (all of them)."""
    counts = reads if reads is not None else {batch_id: head.seq or 0 for batch_id, head in heads.items()}
    total = sum(counts.values())
    if split_from is None or total < split_from or len(counts) < 2:
        return None
    before, imbalance = 0, []
    for batch_id in heads:
        imbalance.append((abs(2 * before - total), batch_id))
        before += counts[batch_id]
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
def _batches(session: Session, parts: list[list[Select]], *, prefetch: bool) -> Iterator[Iterator]:
    """``(batch_id, rows)`` for each batch with events, each batch's rows in seq order.

    ``parts`` are one or two lists of statements (each over batches in id order, its rows in batch and seq
    order), a list's statements read one after the other. The first part is read on the session's
    connection, a second on another connection sharing its snapshot, each by its own reader, and the
    batches are handed out in turn.
    """
    connection = session.connection()
    with ExitStack() as stack:
        connections = [connection]
        if len(parts) > 1:
            connections.append(stack.enter_context(_sharing(connection)))
        streams = []
        for part_connection, statements in zip(connections, parts, strict=True):
            if prefetch:
                rows = stack.enter_context(_prefetched(part_connection, statements))
            else:
                rows = (row for statement in statements for row in part_connection.execute(statement))
            streams.append((batch_id, list(group)) for batch_id, group in groupby(rows, key=lambda r: r.batch_id))
        yield _in_turn(streams)


def _halves(events: Select, split_at: int) -> list[list[Select]]:
    """``events`` as the two parts of ``_batches``: the batches below ``split_at``, and the rest."""
    return [[events.where(BatchEvent.batch_id < split_at)], [events.where(BatchEvent.batch_id >= split_at)]]


def _columns_match(rows: list[Row]) -> bool:
    """Whether the database found each row's columns equal to its canonical text (``_fields_match_sql``)."""
    return all(row.fields_match for row in rows)


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


def _own_session(session: Session) -> Session:
    """A session of its own on the caller's engine: a run never ends or rolls back the caller's transaction."""
    return Session(bind=session.get_bind(), autoflush=False, expire_on_commit=False)


def verify(
    session: Session,
    actor: Actor | None = None,
    din: str | None = None,
    *,
    public_key: Ed25519PublicKey,
    split_from: int | None = SPLIT_FROM_EVENTS,
) -> Report:
    """Full verification of batch chains (all, or one DIN) and, for all, the admin chain; then the checkpoints.

    Checkpoints are checked against ``public_key``: the trusted key (``keys.trusted_public_key``)
    or an auditor's copy of the lab's key. On PostgreSQL a run over ``split_from``
    events or more scans them on two connections sharing one snapshot (None: always one); the
    report is the same either way. The run reads through sessions of its own on ``session``'s
    engine. A full run over everything belongs to the CLI and the background task
    (``labtrack.audit.runs``); HTTP requests verify one DIN, or incrementally (``verify_recent``).
    """
    if actor is not None:
        require(actor, Action.AUDIT)
    trusted = public_key
    if session.get_bind().dialect.name == "postgresql":
        try:
            with _own_session(session) as own:
                return _Run(own, trusted, in_database=True).full(actor, din, split_from)
        except DataError:
            pass  # a stored canonical text that is not even JSON: the Python comparison names the event
    with _own_session(session) as own:
        return _Run(own, trusted, in_database=False).full(actor, din, None)


class _Run:
    """One verification's state: the anchor, the heads being checked, the report."""

    def __init__(self, session: Session, public_key: Ed25519PublicKey, *, in_database: bool) -> None:
        self.session = session
        self.public_key = public_key
        self.in_database = in_database
        self.report = Report()
        self.anchor = checkpoints.Anchor()
        self.heads: dict[int, Row] = {}
        self.one_snapshot = False  # whether the run began the session's transaction in its snapshot

    def fail(self, stream: str, broken: BrokenLink) -> None:
        self.report.failures.append({"din": stream, "seq": broken.seq, "reason": broken.reason})

    def begin(self) -> bool:
        """Begin the run's snapshot unless it has begun (``_begin_snapshot``), before its first read: whether
        the run reads in one REPEATABLE READ snapshot that a second connection can share."""
        if not self.session.in_transaction():
            self.one_snapshot = _begin_snapshot(self.session)
        return self.one_snapshot

    def full(self, actor: Actor | None, din: str | None, split_from: int | None, *, anchored: bool = False) -> Report:
        one_snapshot = self.begin()
        if not anchored:
            self.anchor = checkpoints.anchor(self.session, self.public_key)
        self._checkpoint_failures()
        heads = select(Batch.id, Batch.din, Batch.seq, Batch.head_hash).order_by(Batch.id)
        if din is not None:
            batch = batches.get(self.session, actor, din) if actor else batches.find(self.session, din)
            if batch is None:
                raise NotFound("No such batch.")
            heads = heads.where(Batch.id == batch.id)
        self.heads = {row.id: row for row in self.session.execute(heads)}
        events = self._events()
        if din is not None:
            events = events.where(BatchEvent.batch_id.in_(list(self.heads)))
        split_at = _split_point(self.heads, split_from) if self.in_database and one_snapshot else None
        seen = self._scan([[events]] if split_at is None else _halves(events, split_at))
        for batch_id, head in self.heads.items():
            if batch_id not in seen:
                self.report.batches_checked += 1
                self.fail(head.din, BrokenLink(1, "the batch has no stored events"))
        if din is None:
            self._unsigned_streams({head.din for head in self.heads.values()})
            self._admin_chain()
        return self._done()

    def batches_after(self, after_id: int, limit: int) -> int | None:
        """A chunk of a full run: the next ``limit`` batches by id after ``after_id``; the last one's id
        (None: none left). The findings are in ``report``."""
        self.begin()
        heads = select(Batch.id, Batch.din, Batch.seq, Batch.head_hash).where(Batch.id > after_id)
        self.heads = {row.id: row for row in self.session.execute(heads.order_by(Batch.id).limit(limit))}
        if not self.heads:
            return None
        last = max(self.heads)
        seen = self._scan([[self._events().where(BatchEvent.batch_id > after_id, BatchEvent.batch_id <= last)]])
        for batch_id, head in self.heads.items():
            if batch_id not in seen:
                self.report.batches_checked += 1
                self.fail(head.din, BrokenLink(1, "the batch has no stored events"))
        return last

    def _checkpoint_failures(self) -> None:
        self.report.checkpoint = self.anchor.summary()
        for checkpoint_id, problem in self.anchor.rejected:
            self.fail("checkpoint", BrokenLink(checkpoint_id, f"checkpoint {checkpoint_id}: {problem}"))

    def _events(self, given: Subquery | None = None) -> Select:
        """Every event's columns as the chain check reads them, in batch and seq order. Joined to ``given``
        (rows of batch id, start seq and DIN: ``_extensions``), each of its batches' events from its start,
        the batches' DINs taken from it; else the batches are joined for them."""
        din = Batch.din if given is None else given.c.din
        if self.in_database:
            events = _with_actors(
                [  # in the order _links_hold unpacks
                    BatchEvent.batch_id,
                    BatchEvent.seq,
                    # The driver's aware datetime as is: the checkpoint comparison needs no UTC conversion.
                    type_coerce(BatchEvent.recorded_at, DateTime(timezone=True)).label("recorded_at"),
                    BatchEvent.prev_hash,
                    BatchEvent.hash,
                    BatchEvent.canonical,
                    _fields_match_sql(din),
                ]
            )
        else:
            events = _with_actors(_event_columns(din))
        if given is None:
            events = events.join(Batch, Batch.id == BatchEvent.batch_id)
        else:
            events = events.join(given, and_(BatchEvent.batch_id == given.c.batch_id, BatchEvent.seq >= given.c.seq))
        return events.order_by(BatchEvent.batch_id, BatchEvent.seq).execution_options(yield_per=PREFETCH_ROWS)

    def _each_batch(self, parts: list[list[Select]], sure: Callable[[list[Row]], bool]) -> Iterator[tuple[list, bool]]:
        """Each batch's rows (``_batches``) as they arrive (Core rows: the ORM's row processing cost more than
        the hashing), with whether ``sure`` found them sound, so that they can serve as links. On PostgreSQL
        batches in doubt come after the scan, when the connection is free for ``_expected`` to re-read
        their columns."""
        doubtful: list[list[Row]] = []
        with _batches(self.session, parts, prefetch=self.in_database) as scanned:
            for _batch_id, rows in scanned:
                if not self.in_database:
                    yield rows, False
                elif sure(rows):
                    yield rows, True
                else:
                    doubtful.append(rows)
        for rows in doubtful:
            yield rows, False

    def _scan(self, parts: list[list[Select]]) -> set[int]:
        """Check each batch's whole chain as its rows arrive; the ids of the batches with events."""
        seen: set[int] = set()
        for rows, sound in self._each_batch(parts, _links_hold):
            seen.add(rows[0].batch_id)
            self.report.batches_checked += 1
            self.report.events_checked += len(rows)
            self.check(rows, sound=sound)
        return seen

    def check(self, rows: list, *, sound: bool) -> None:
        """One batch's whole chain; ``sound`` when ``_links_hold`` found every link right (the rows serve as links)."""
        head = self.heads[rows[0].batch_id]
        links = rows if sound else _batch_links(self.session, rows)
        broken = (
            (None if sound else verify_links(links))
            or _check_head(head.seq, head.head_hash, links)
            or _anchored(self.anchor, head.din, links, rows)
        )
        if broken:
            self.fail(head.din, broken)

    def _unsigned_streams(self, present: set[str]) -> None:
        for stream in sorted(set(self.anchor.leaves) - present - {ADMIN_STREAM}):
            self.fail(
                stream,
                BrokenLink(self.anchor.leaves[stream].seq, "signed by the checkpoint, missing from the database"),
            )

    def _admin_chain(self) -> None:
        rows = self.session.execute(select(AdminEvent).order_by(AdminEvent.seq)).scalars().all()
        links = [
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
            for row in rows
        ]
        self.report.events_checked += len(links)
        broken = verify_links(links) or _anchored(self.anchor, ADMIN_STREAM, links, rows)
        if broken:
            self.fail(ADMIN_STREAM, broken)

    def _done(self) -> Report:
        self.report.failures.sort(key=lambda f: (str(f["din"]), int(f["seq"])))
        return self.report

    def one(self, actor: Actor | None, din: str) -> Report:
        """One batch's whole chain against the newest checkpoint's kept leaf for it: no tree rebuilt (R-SCL-3).
        Should the newest checkpoint not be sound, the full anchor (``checkpoints.anchor``) is taken instead."""
        self.begin()
        newest = checkpoints.latest(self.session)
        self.anchor = checkpoints.anchor_on(self.session, self.public_key, newest, streams=[din])
        if self.anchor.problem is not None:
            self.anchor = checkpoints.anchor(self.session, self.public_key)
        report = self.full(actor, din, None, anchored=True)
        report.mode = "batch"
        return report

    # --- incremental (R-SCL-2) -------------------------------------------------------------------

    def recent(self, base: Checkpoint | None, split_from: int | None) -> Report:
        """The events of every batch with one recorded since ``base`` (every batch without one), each chain
        checked from the head ``base`` signed for it, which must still be there; then the admin chain's.
        Over ``split_from`` events to read or more (on PostgreSQL), the batches are read on two connections
        sharing the run's snapshot, which must have begun (``begin``) before ``base`` was read."""
        if base is None:  # nothing verified yet: everything was appended since, and is read against every checkpoint
            return self.full(None, None, split_from)
        one_snapshot = self.begin()
        self.anchor = checkpoints.anchor_on(self.session, self.public_key, base)
        self._checkpoint_failures()
        since = base.created_at - checkpoints.COMMIT_MARGIN
        self.heads = self._heads_since(since)
        self.anchor.leaves = checkpoints.leaves_for(self.session, base, [head.din for head in self.heads.values()])
        starts = {head.id: getattr(self.anchor.leaves.get(head.din), "seq", 1) for head in self.heads.values()}
        reads = {batch_id: max(self.heads[batch_id].seq - start + 1, 0) for batch_id, start in starts.items()}
        split_at = _split_point(self.heads, split_from, reads) if self.in_database and one_snapshot else None
        halves = [list(starts.items())]
        if split_at is not None:
            halves = [[s for s in halves[0] if s[0] < split_at], [s for s in halves[0] if s[0] >= split_at]]
        seen: set[int] = set()
        for rows, _sound in self._each_batch([self._extensions(half) for half in halves], _columns_match):
            seen.add(rows[0].batch_id)
            self._extend(rows[0].batch_id, rows)
        for batch_id in sorted(self.heads.keys() - seen):
            self._extend(batch_id, [])
        self._admin_chain()
        return self._done()

    def _heads_since(self, since: datetime) -> dict[int, Row]:
        """The projection heads of the batches with an event recorded since ``since``, by id: the ids first
        (the ``recorded_at`` index), then those batches by primary key (``rows_by_id``), so the cost follows
        the batches that moved."""
        recent = select(BatchEvent.batch_id).where(BatchEvent.recorded_at >= since).distinct()
        ids = sorted(self.session.execute(recent).scalars())
        heads = select(Batch.id, Batch.din, Batch.seq, Batch.head_hash).order_by(Batch.id)
        return {row.id: row for row in rows_by_id(self.session, lambda part: heads.where(Batch.id.in_(part)), ids)}

    def _extensions(self, starts: list[tuple[int, int]]) -> list[Select]:
        """The statements reading these batches' events from each one's start seq, ``EXTEND_CHUNK`` batches each.

        Each statement is driven by its batches (id, start, DIN) by index, never by the batches table, and
        bounded by their ids, so that the planner keeps only the partitions that hold them: its cost is the
        new events', whatever the history."""
        statements = []
        for chunk in chunks(starts, EXTEND_CHUNK):
            rows = [(batch_id, seq, self.heads[batch_id].din) for batch_id, seq in chunk]
            given = rowset(self.session.connection(), _FROM, rows)  # joined, not a long OR to plan
            ids = [batch_id for batch_id, _seq in chunk]
            statements.append(self._events(given).where(BatchEvent.batch_id.between(min(ids), max(ids))))
        return statements

    def _extend(self, batch_id: int, rows: list[Row]) -> None:
        """One batch's events from the head the base signed for it (from seq 1 for a batch it did not)."""
        head = self.heads[batch_id]
        leaf = self.anchor.leaves.get(head.din)
        signed = leaf is not None and bool(rows) and rows[0].seq == leaf.seq
        new = rows[1:] if signed else rows
        self.report.batches_checked += 1
        self.report.events_checked += len(new)
        first, prev = (leaf.seq + 1, leaf.hash) if leaf is not None else (1, GENESIS_HASH)
        broken = (
            _anchored(self.anchor, head.din, rows, rows)
            or verify_links(_batch_links(self.session, new), first=first, prev_hash=prev)
            or _check_head(head.seq, head.head_hash, rows)
        )
        if broken:
            self.fail(head.din, broken)


class Chunked:
    """A full verification in pieces, for the background run (``labtrack.audit.runs``): the checkpoints are
    checked once, then each chunk of batches is read in a snapshot and a session of its own."""

    def __init__(self, engine: Engine, public_key: Ed25519PublicKey) -> None:
        self.engine, self.public_key = engine, public_key
        self.in_database = engine.dialect.name == "postgresql"
        self.anchor = checkpoints.Anchor()

    def __enter__(self) -> Chunked:
        with Session(self.engine) as session:
            self.anchor = checkpoints.anchor(session, self.public_key)
        return self

    def __exit__(self, *_: object) -> None:
        self.anchor = checkpoints.Anchor()

    def _run(self, session: Session, *, in_database: bool) -> _Run:
        run = _Run(session, self.public_key, in_database=in_database)
        run.anchor = self.anchor
        return run

    def batches_after(self, after_id: int, limit: int) -> ChunkOutcome | None:
        """Check the next ``limit`` batches after ``after_id``; None when there are none."""
        for in_database in (True, False) if self.in_database else (False,):
            try:
                with Session(self.engine) as session:
                    run = self._run(session, in_database=in_database)
                    last = run.batches_after(after_id, limit)
                    if last is None:
                        return None
                    return ChunkOutcome(
                        last, run.report.batches_checked, run.report.events_checked, run.report.failures
                    )
            except DataError:
                continue
        raise AssertionError("unreachable: the Python comparison raises no DataError")

    def finish(self, failures: list[dict[str, object]], batches: int, events: int) -> Report:
        """The run's report: the chunks' findings, the checkpoints, the vanished signed streams, the admin chain."""
        with Session(self.engine) as session:
            run = self._run(session, in_database=False)
            run._checkpoint_failures()
            run.report.failures.extend(failures)
            run.report.batches_checked, run.report.events_checked = batches, events
            run._unsigned_streams(set(session.execute(select(Batch.din)).scalars()))
            run._admin_chain()
            return run._done()


@dataclass
class ChunkOutcome:
    last_batch_id: int
    batches: int
    events: int
    failures: list[dict[str, object]]


def verify_batch(session: Session, actor: Actor | None, din: str, public_key: Ed25519PublicKey | None = None) -> Report:
    """One batch's whole chain and its leaf in the newest checkpoint (the API's and pages' ``din``, the batch
    record): the cost of the batch's events and O(log n) for the checkpoint, never the whole tree."""
    if actor is not None:
        require(actor, Action.AUDIT)
    trusted = public_key
    with _own_session(session) as own:
        return _Run(own, trusted, in_database=False).one(actor, din)


def verify_recent(
    session: Session,
    actor: Actor | None = None,
    *,
    public_key: Ed25519PublicKey,
    split_from: int | None = SPLIT_FROM_EVENTS,
) -> Report:
    """Incremental verification (R-SCL-2): what was appended since the newest verified checkpoint.

    The base is the newest checkpoint a verification run vouched for (``labtrack.audit.runs``), or
    none yet, when every chain is read. Its signature and kept tree are checked (O(log n)); each batch
    with an event recorded since it must still hold the head it signed, and its later events must
    extend that head link by link; the admin chain is read whole (it is small). Cost: the new events,
    not the history. Rewrites of events before the base are the full run's to find. On PostgreSQL the
    run reads in one snapshot, begun before the base is read, and over ``split_from`` new events or more
    it reads them on two connections sharing it (None: always one); the report is the same either way.
    """
    if actor is not None:
        require(actor, Action.AUDIT)
    from labtrack.audit import runs  # runs builds on this module

    trusted = public_key
    for in_database in (True, False) if session.get_bind().dialect.name == "postgresql" else (False,):
        try:
            with _own_session(session) as own:
                run = _Run(own, trusted, in_database=in_database)
                run.begin()  # the base is read in the run's snapshot
                base = runs.verified_checkpoint(own)
                report = run.recent(base, split_from)
                report.mode = VerificationKind.INCREMENTAL.value
                report.since_checkpoint = base.id if base is not None else None
                return report
        except DataError:
            continue
    raise AssertionError("unreachable: the Python comparison raises no DataError")
