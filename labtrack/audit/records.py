"""The batch record closed by its audit: the chain verified and the newest checkpoint (requirements §8).

Here rather than in the documents service, since audit reads batches through the services
and never the other way round.
"""

from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy.orm import Session

from labtrack.audit import chains, checkpoints
from labtrack.documents.record import RecordView
from labtrack.domain.actors import Actor
from labtrack.services import batches, documents


def record_view(session: Session, actor: Actor, din: str, *, zone: str, public_key: Ed25519PublicKey) -> RecordView:
    """The batch record for ``actor`` (QA; the batch's own clinic), with the batch's chain verified against
    ``public_key`` (``keys.trusted_public_key``) and the newest checkpoint."""
    # Who may not see the batch is told so before anything is verified; read with what the record shows.
    batch = batches.get(session, actor, din, with_specification=True, with_parties=True)
    chain = chains.verify_batch(session, None, batch.din, public_key=public_key)  # no tree rebuilt (R-SCL-3)
    return documents.record_view(session, actor, batch, zone=zone, chain=chain, checkpoint=checkpoints.latest(session))
