"""The audit export of one batch (R-AUD-4): JSON lines an auditor verifies offline.

Lines, in order::

    {"record": "header", "format": "labtrack-audit-export/1", "din": ..., "head_seq": ..., ...}
    {"record": "event", "seq": 1, ..., "prev_hash": ..., "hash": ..., "canonical": "<the hashed text>"}
    ...
    {"record": "checkpoint", "id": ..., "tree_size": ..., "root": ..., "statement": ..., "signature": ..., ...}
    {"record": "inclusion_proof", "leaf_index": ..., "tree_size": ..., "leaf": "din:seq:hash", "audit_path": [...]}

``canonical`` is the exact text whose UTF-8 bytes were hashed (R-AUD-1); the
other event fields repeat it for people reading the file. The checkpoint is the
newest one, with the batch's leaf in it and its inclusion proof read from the kept
tree (O(log n), R-SCL-3); events recorded after it are exported too and the
offline verifier reports them as not yet covered. An export is a read: it never
signs a checkpoint. A batch no checkpoint covers yet is refused (409) until the
next one (every 10 minutes, or ``POST /audit/checkpoints``).
"""

from __future__ import annotations

import json
from collections.abc import Callable

from sqlalchemy.orm import Session

from labtrack.audit import checkpoints
from labtrack.clock import utcnow
from labtrack.domain.actors import Action, Actor, require
from labtrack.domain.din import Din
from labtrack.domain.errors import Conflict, NotFound
from labtrack.domain.hashing import iso_utc
from labtrack.services import batches

FORMAT = "labtrack-audit-export/1"


class NotCheckpointedYet(Conflict):
    code, title = "not_checkpointed_yet", "Not in a checkpoint yet"


def _line(record: str, body: dict[str, object]) -> str:
    return json.dumps({"record": record} | body, ensure_ascii=False, separators=(",", ":"), default=str)


def export(reader: Callable[[], Session], actor: Actor, din: str) -> list[str]:
    """The export's lines for one batch the actor may read (QA; a clinic its own batches), read in one snapshot
    of a session of its own (``reader``: the Database's ``reader``)."""
    session = reader()
    try:
        if session.get_bind().dialect.name == "postgresql":  # the checkpoint, its tree and the events: one snapshot
            session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
        batch = batches.get(session, actor, din)
        require(actor, Action.READ_RECORD, batch.clinic_id, what="batch")
        checkpoint = checkpoints.latest(session)
        try:
            proof = checkpoints.inclusion_proof(session, checkpoint, batch.din) if checkpoint else None
        except NotFound:
            proof = None
        if checkpoint is None or proof is None:
            raise NotCheckpointedYet(
                f"Batch {Din(batch.din).display} is not in a signed checkpoint yet: the next one is made within "
                "10 minutes (QA can make one now), and the export can be taken then."
            )
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
