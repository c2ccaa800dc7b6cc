"""The audit export of one batch (R-AUD-4): JSON lines an auditor verifies offline.

Lines, in order::

    {"record": "header", "format": "labtrack-audit-export/1", "din": ..., "head_seq": ..., ...}
    {"record": "event", "seq": 1, ..., "prev_hash": ..., "hash": ..., "canonical": "<the hashed text>"}
    ...
    {"record": "checkpoint", "id": ..., "tree_size": ..., "root": ..., "statement": ..., "signature": ..., ...}
    {"record": "inclusion_proof", "leaf_index": ..., "tree_size": ..., "leaf": "din:seq:hash", "audit_path": [...]}

``canonical`` is the exact text whose UTF-8 bytes were hashed (R-AUD-1); the
other event fields repeat it for people reading the file. When the latest
checkpoint does not yet cover the batch's current head, a checkpoint is made
first, so an export is verifiable end to end the moment it is taken (events
appended while exporting are included and reported as not yet covered).
"""

from __future__ import annotations

import json

from labtrack.audit import checkpoints
from labtrack.audit.keys import LabKey
from labtrack.clock import utcnow
from labtrack.db import Database
from labtrack.domain.actors import Action, Actor, require
from labtrack.domain.din import Din
from labtrack.domain.hashing import iso_utc
from labtrack.domain.merkle import Leaf
from labtrack.services import batches

FORMAT = "labtrack-audit-export/1"


def _line(record: str, body: dict[str, object]) -> str:
    return json.dumps({"record": record} | body, ensure_ascii=False, separators=(",", ":"), default=str)


def export(database: Database, actor: Actor, din: str, key: LabKey, origin: str) -> list[str]:
    """The export's lines for one batch the actor may read (QA; a clinic its own batches)."""
    session = database.reader()
    try:
        batch = batches.get(session, actor, din)
        require(actor, Action.READ_RECORD, batch.clinic_id, what="batch")
        head = Leaf(batch.din, batch.seq, batch.head_hash)
        checkpoint = checkpoints.latest(session)
        covered = checkpoint is not None and checkpoints.leaves_of(session, checkpoint.id).count(head) == 1
        session.rollback()
        if not covered:
            database.write(lambda s: checkpoints.create(s, key, origin))
        checkpoint = checkpoints.latest(session)
        assert checkpoint is not None
        proof = checkpoints.inclusion_proof(session, checkpoint, batch.din)
        events = batches.events(session, batch)
        lines = [
            _line(
                "header",
                {
                    "format": FORMAT,
                    "din": batch.din,
                    "din_display": Din(batch.din).display,
                    "exported_at": iso_utc(utcnow()),
                    "exported_by": actor.username,
                    "head_seq": events[-1].seq if events else 0,
                    "head_hash": events[-1].hash if events else None,
                },
            )
        ]
        lines.extend(
            _line(
                "event",
                {
                    "seq": event.seq,
                    "type": event.type,
                    "occurred_at": iso_utc(event.occurred_at),
                    "recorded_at": iso_utc(event.recorded_at),
                    "actor": event.actor.username,
                    "prev_hash": event.prev_hash,
                    "hash": event.hash,
                    "canonical": event.canonical,
                },
            )
            for event in events
        )
        lines.append(
            _line("checkpoint", checkpoints.as_dict(checkpoint) | {"created_at": iso_utc(checkpoint.created_at)})
        )
        lines.append(_line("inclusion_proof", proof.as_dict()))
        return lines
    finally:
        session.close()
