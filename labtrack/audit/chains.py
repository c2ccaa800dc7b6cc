"""Recompute every hash chain and report the first broken link per stream (R-AUD-3).

Beyond the links themselves, each event's stored canonical text is compared with
its columns (so a changed ``data`` column is found even if the hash was left
alone) and each batch's projection head with its last event (so a deleted tail is
found).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import groupby

from sqlalchemy import select
from sqlalchemy.orm import Session

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

    @property
    def ok(self) -> bool:
        return not self.failures

    def as_dict(self) -> dict[str, object]:
        return {
            "ok": self.ok,
            "batches_checked": self.batches_checked,
            "events_checked": self.events_checked,
            "failures": self.failures,
        }


def _batch_links(rows: list) -> list[StoredLink]:
    return [
        StoredLink(
            seq=row.seq,
            prev_hash=row.prev_hash,
            hash=row.hash,
            canonical=row.canonical,
            expected_canonical=canonical_body(
                stream_key=row.din,
                seq=row.seq,
                type=row.type,
                occurred_at=row.occurred_at,
                recorded_at=row.recorded_at,
                actor=row.username,
                data=row.data,
            ),
        )
        for row in rows
    ]


def _check_head(batch_seq: int, head_hash: str, links: list[StoredLink]) -> BrokenLink | None:
    last = links[-1] if links else None
    if last is None or last.seq != batch_seq or last.hash != head_hash:
        return BrokenLink(batch_seq, "the batch's head does not match its last stored event (events missing?)")
    return None


def verify(session: Session, actor: Actor | None = None, din: str | None = None) -> Report:
    """Verify batch chains (all, or one DIN) and, for a full run, the admin chain."""
    if actor is not None:
        require(actor, Action.AUDIT)
    report = Report()
    heads = select(Batch.id, Batch.din, Batch.seq, Batch.head_hash).order_by(Batch.id)
    if din is not None:
        batch = batches.get(session, actor, din) if actor else batches.find(session, din)
        if batch is None:
            raise NotFound("No such batch.")
        heads = heads.where(Batch.id == batch.id)
    head_rows = {row.id: row for row in session.execute(heads)}
    events = (
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
        .where(BatchEvent.batch_id.in_(list(head_rows)) if din is not None else True)
        .order_by(BatchEvent.batch_id, BatchEvent.seq)
        .execution_options(yield_per=5000)
    )
    seen: set[int] = set()
    for batch_id, rows in groupby(session.execute(events), key=lambda r: r.batch_id):
        rows = list(rows)
        links = _batch_links(rows)
        head = head_rows[batch_id]
        seen.add(batch_id)
        report.batches_checked += 1
        report.events_checked += len(links)
        broken = verify_links(links) or _check_head(head.seq, head.head_hash, links)
        if broken:
            report.failures.append({"din": head.din, "seq": broken.seq, "reason": broken.reason})
    for batch_id, head in head_rows.items():
        if batch_id not in seen:
            report.batches_checked += 1
            report.failures.append({"din": head.din, "seq": 1, "reason": "the batch has no stored events"})
    if din is None:
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
        broken = verify_links(admin_links)
        if broken:
            report.failures.append({"din": ADMIN_STREAM, "seq": broken.seq, "reason": broken.reason})
    report.failures.sort(key=lambda f: (str(f["din"]), int(f["seq"])))
    return report
