"""Signed checkpoints (R-AUD-4): an RFC 6962 Merkle root over every stream head, signed with Ed25519.

A checkpoint's leaves are ``din:seq:hash`` for every batch stream's last event
(read from the events themselves, at the projection's head) and ``admin:seq:hash``
for the reference-data chain, sorted by stream key (labtrack.domain.merkle).

Storage: ``checkpoints`` holds the signed statement; ``checkpoint_leaves`` holds
only the heads that changed since the previous checkpoint, so a checkpoint every
10 minutes costs rows in proportion to the activity, not to the number of
batches. Checkpoint N's leaves are, per stream, the row with the largest
checkpoint id <= N. Checkpoints are made one at a time (an advisory lock on
PostgreSQL; SQLite write transactions are serial anyway) so that each one's
changed-heads delta is computed against its true predecessor.

A checkpoint never launders a rewrite. Before building on its predecessor it
checks that checkpoint's signature and that its stored leaves still produce its
root (else it refuses: 409); and a stream whose previously signed head is no
longer in its chain (events rewritten, hashes recomputed) keeps that signed head
in the new checkpoint, so verification keeps naming the batch.

The signed statement, one item per line, is::

    LabTrack checkpoint v1
    <facility FIN>
    <tree size>
    <root, hex>
    <created_at, ISO 8601 UTC with Z and microseconds>

A verifier checks the Ed25519 signature over exactly these UTF-8 bytes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy import and_, func, insert, select, text, tuple_
from sqlalchemy.orm import Session

from labtrack.audit.keys import ALGORITHM, LabKey, key_id_of, signature_valid
from labtrack.clock import utcnow
from labtrack.domain.actors import Action, Actor, require
from labtrack.domain.errors import Conflict, NotFound
from labtrack.domain.hashing import iso_utc
from labtrack.domain.merkle import Leaf, MerkleTree, sort_leaves
from labtrack.models import AdminEvent, Batch, BatchEvent, Checkpoint, CheckpointLeaf
from labtrack.services.streams import ADMIN_STREAM

STATEMENT_TITLE = "LabTrack checkpoint v1"
_ADVISORY_LOCK = 0x4C54_434B  # "LTCK": one checkpoint at a time


def statement_text(origin: str, tree_size: int, root: str, created_at: str) -> str:
    return f"{STATEMENT_TITLE}\n{origin}\n{tree_size}\n{root}\n{created_at}\n"


def parse_statement(statement: str) -> dict[str, object] | None:
    """The fields of a signed statement, or None when it is not one."""
    lines = statement.split("\n")
    if len(lines) != 6 or lines[0] != STATEMENT_TITLE or lines[5] != "" or not lines[2].isdigit():
        return None
    return {"origin": lines[1], "tree_size": int(lines[2]), "root": lines[3], "created_at": lines[4]}


def current_heads(session: Session) -> list[Leaf]:
    """Every stream's last event, sorted as the tree wants them."""
    rows = session.execute(
        select(Batch.din, BatchEvent.seq, BatchEvent.hash).join(
            BatchEvent, and_(BatchEvent.batch_id == Batch.id, BatchEvent.seq == Batch.seq)
        )
    )
    heads = [Leaf(row.din, row.seq, row.hash) for row in rows]
    admin = session.execute(select(AdminEvent.seq, AdminEvent.hash).order_by(AdminEvent.seq.desc()).limit(1)).first()
    if admin is not None:
        heads.append(Leaf(ADMIN_STREAM, admin.seq, admin.hash))
    return sort_leaves(heads)


def leaves_of(session: Session, checkpoint_id: int) -> list[Leaf]:
    newest = (
        select(CheckpointLeaf.stream, func.max(CheckpointLeaf.checkpoint_id).label("checkpoint_id"))
        .where(CheckpointLeaf.checkpoint_id <= checkpoint_id)
        .group_by(CheckpointLeaf.stream)
        .subquery()
    )
    rows = session.execute(
        select(CheckpointLeaf.stream, CheckpointLeaf.seq, CheckpointLeaf.hash).join(
            newest,
            and_(CheckpointLeaf.stream == newest.c.stream, CheckpointLeaf.checkpoint_id == newest.c.checkpoint_id),
        )
    )
    return sort_leaves([Leaf(row.stream, row.seq, row.hash) for row in rows])


def latest(session: Session) -> Checkpoint | None:
    return session.execute(select(Checkpoint).order_by(Checkpoint.id.desc()).limit(1)).scalar_one_or_none()


def soundness(checkpoint: Checkpoint, leaves: list[Leaf], public_key: Ed25519PublicKey) -> str | None:
    """What is wrong with a stored checkpoint (its key, signature, statement, leaves), or None."""
    fields = parse_statement(checkpoint.statement)
    if checkpoint.key_id != key_id_of(public_key):
        return f"signed by key {checkpoint.key_id[:16]}…, not this lab's key {key_id_of(public_key)[:16]}…"
    if not signature_valid(public_key, checkpoint.signature, checkpoint.statement.encode()):
        return "its signature does not verify: the signed statement was altered"
    if fields is None or fields["tree_size"] != checkpoint.tree_size or fields["root"] != checkpoint.root:
        return "its stored size or root differ from the signed statement"
    if len(leaves) != checkpoint.tree_size or MerkleTree([leaf.data for leaf in leaves]).root.hex() != checkpoint.root:
        return "its stored leaves no longer produce the signed root: checkpoint data was altered"
    return None


def _hashes_at(session: Session, leaves: list[Leaf]) -> dict[str, str]:
    """The stored hash of the event each leaf names (streams whose event is gone are absent)."""
    found: dict[str, str] = {}
    batch_leaves = [(leaf.stream, leaf.seq) for leaf in leaves if leaf.stream != ADMIN_STREAM]
    for start in range(0, len(batch_leaves), 500):
        rows = session.execute(
            select(Batch.din, BatchEvent.hash)
            .join(BatchEvent, BatchEvent.batch_id == Batch.id)
            .where(tuple_(Batch.din, BatchEvent.seq).in_(batch_leaves[start : start + 500]))
        )
        found.update({row.din: row.hash for row in rows})
    for leaf in leaves:
        if leaf.stream == ADMIN_STREAM:
            admin = session.execute(select(AdminEvent.hash).where(AdminEvent.seq == leaf.seq)).scalar_one_or_none()
            if admin is not None:
                found[ADMIN_STREAM] = admin
    return found


def _signable_heads(session: Session, before: dict[str, Leaf]) -> list[Leaf]:
    """Current heads, except that a stream whose signed head left its chain keeps the signed head."""
    heads = {leaf.stream: leaf for leaf in current_heads(session)}
    moved = [leaf for stream, leaf in before.items() if heads.get(stream) != leaf]
    still_there = _hashes_at(session, moved)
    for leaf in moved:
        if still_there.get(leaf.stream) != leaf.hash:
            heads[leaf.stream] = leaf
    return sort_leaves(list(heads.values()))


def create(session: Session, key: LabKey, origin: str, actor: Actor | None = None) -> Checkpoint:
    """Sign the current heads now (the periodic task, ``POST /audit/checkpoints`` and the CLI)."""
    if actor is not None:
        require(actor, Action.AUDIT)
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _ADVISORY_LOCK})
    previous = latest(session)
    before: dict[str, Leaf] = {}
    if previous is not None:
        signed = leaves_of(session, previous.id)
        problem = soundness(previous, signed, key.public_key)
        if problem is not None:
            raise Conflict(f"Checkpoint {previous.id} cannot be built on: {problem}. Investigate before signing more.")
        before = {leaf.stream: leaf for leaf in signed}
    heads = _signable_heads(session, before)
    root = MerkleTree([leaf.data for leaf in heads]).root.hex()
    now = utcnow()
    statement = statement_text(origin, len(heads), root, iso_utc(now))
    checkpoint = Checkpoint(
        created_at=now,
        tree_size=len(heads),
        root=root,
        statement=statement,
        signature=key.sign(statement.encode()),
        key_id=key.key_id,
    )
    session.add(checkpoint)
    session.flush()
    changed = [
        {"stream": leaf.stream, "checkpoint_id": checkpoint.id, "seq": leaf.seq, "hash": leaf.hash}
        for leaf in heads
        if before.get(leaf.stream) != leaf
    ]
    if changed:
        session.execute(insert(CheckpointLeaf), changed)
    return checkpoint


def listing(session: Session, actor: Actor, limit: int = 50) -> list[Checkpoint]:
    require(actor, Action.AUDIT)
    return list(session.execute(select(Checkpoint).order_by(Checkpoint.id.desc()).limit(limit)).scalars())


@dataclass(frozen=True)
class InclusionProof:
    leaf_index: int
    tree_size: int
    leaf: Leaf
    audit_path: list[str]

    def as_dict(self) -> dict[str, object]:
        return {
            "leaf_index": self.leaf_index,
            "tree_size": self.tree_size,
            "leaf": str(self.leaf),
            "audit_path": self.audit_path,
        }


def inclusion_proof(session: Session, checkpoint: Checkpoint, stream: str) -> InclusionProof:
    leaves = leaves_of(session, checkpoint.id)
    index = next((i for i, leaf in enumerate(leaves) if leaf.stream == stream), None)
    if index is None:
        raise NotFound(f"Checkpoint {checkpoint.id} does not cover {stream}.")
    path = MerkleTree([leaf.data for leaf in leaves]).inclusion_proof(index)
    return InclusionProof(index, len(leaves), leaves[index], [node.hex() for node in path])


def as_dict(checkpoint: Checkpoint) -> dict[str, object]:
    return {
        "id": checkpoint.id,
        "created_at": checkpoint.created_at,
        "tree_size": checkpoint.tree_size,
        "root": checkpoint.root,
        "statement": checkpoint.statement,
        "signature": checkpoint.signature,
        "algorithm": ALGORITHM,
        "key_id": checkpoint.key_id,
    }


@dataclass
class Anchor:
    """The latest checkpoint as verification sees it: its own soundness, and the heads it vouches for."""

    checkpoint: Checkpoint | None = None
    problem: str | None = None
    leaves: dict[str, Leaf] = field(default_factory=dict)

    def summary(self) -> dict[str, object] | None:
        if self.checkpoint is None:
            return None
        return {
            "id": self.checkpoint.id,
            "created_at": self.checkpoint.created_at,
            "tree_size": self.checkpoint.tree_size,
            "root": self.checkpoint.root,
            "ok": self.problem is None,
        }

    def mismatch(self, stream: str, hashes_by_seq: dict[int, str]) -> tuple[int, str] | None:
        """Whether a stream's stored events still contain the head this checkpoint signed."""
        leaf = self.leaves.get(stream)
        if leaf is None or self.checkpoint is None:
            return None
        stored = hashes_by_seq.get(leaf.seq)
        if stored is None:
            return leaf.seq, f"event {leaf.seq}, signed by checkpoint {self.checkpoint.id}, is missing"
        if stored != leaf.hash:
            return leaf.seq, (
                f"event {leaf.seq} differs from the head signed by checkpoint {self.checkpoint.id}: "
                "the history was rewritten after it was checkpointed"
            )
        return None


def anchor(session: Session, public_key: Ed25519PublicKey) -> Anchor:
    """Check the latest checkpoint against the lab's key and its own leaves (R-AUD-3, R-AUD-4)."""
    checkpoint = latest(session)
    if checkpoint is None:
        return Anchor()
    leaves = leaves_of(session, checkpoint.id)
    return Anchor(checkpoint, soundness(checkpoint, leaves, public_key), {leaf.stream: leaf for leaf in leaves})
