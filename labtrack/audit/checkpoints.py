"""Signed checkpoints (R-AUD-4): an RFC 6962 Merkle root over every stream head, signed with Ed25519.

A checkpoint's leaves are ``din:seq:hash`` for every batch stream's last event
(read from the events themselves, at the projection's head) and ``admin:seq:hash``
for the reference-data chain, sorted by stream key (labtrack.domain.merkle).

Storage: ``checkpoints`` holds the signed statement; ``checkpoint_leaves`` holds
only the heads that changed since the previous checkpoint, so a checkpoint every
10 minutes costs rows in proportion to the activity, not to the number of
batches. Checkpoint N's leaves are, per stream, the row with the largest
checkpoint id <= N. The newest checkpoint's leaves and Merkle tree are also kept
current (``labtrack.audit.tree``, R-SCL-3): a checkpoint reads only the streams
with events recorded since its predecessor (less ``COMMIT_MARGIN``) and recomputes
only their leaves' ancestors, and one batch's inclusion proof reads O(log n) nodes.
Checkpoints are made one at a time (an advisory lock on PostgreSQL; SQLite write
transactions are serial anyway) so that each one's changed-heads delta is computed
against its true predecessor.

A checkpoint never launders a rewrite. Before building on its predecessor it
checks that checkpoint's signature and that its stored leaves still produce its
root (else it refuses: 409); and a stream whose previously signed head is no
longer in its chain (events rewritten, hashes recomputed), or whose events after
that head claim to have been recorded before the predecessor was signed (events
inserted later, backdated), keeps that signed head in the new checkpoint, so
verification keeps naming the batch.

Verification anchors on the newest checkpoint that is sound under the trusted key
(``keys.trusted_public_key``): a forged or altered newer one is reported, and the
genuine one before it still exposes what the forger rewrote.

The signed statement, one item per line, is::

    LabTrack checkpoint v1
    <facility FIN>
    <tree size>
    <root, hex>
    <created_at, ISO 8601 UTC with Z and microseconds>

A verifier checks the Ed25519 signature over exactly these UTF-8 bytes.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy import Integer, String, and_, func, insert, literal, select, text
from sqlalchemy.orm import Session

from labtrack.audit import tree
from labtrack.audit.keys import ALGORITHM, LabKey, key_id_of, signature_valid
from labtrack.audit.rowset import rowset
from labtrack.audit.statement import COMMIT_MARGIN, parse_statement, statement_text
from labtrack.clock import utcnow
from labtrack.db import chunks
from labtrack.domain.actors import Action, Actor, require
from labtrack.domain.errors import Conflict, NotFound
from labtrack.domain.hashing import iso_utc
from labtrack.domain.merkle import Leaf, MerkleTree, sort_leaves, verify_inclusion
from labtrack.models import AdminEvent, Batch, BatchEvent, Checkpoint, CheckpointLeaf
from labtrack.services.streams import ADMIN_STREAM

_ADVISORY_LOCK = 0x4C54_434B  # "LTCK": one checkpoint at a time


def current_heads(session: Session, since: datetime | None = None) -> list[Leaf]:
    """Every stream's last event, sorted as the tree wants them; with ``since``, only the batch streams
    with an event recorded since then (an index range, R-SCL-3), and the admin stream."""
    query = select(Batch.din, BatchEvent.seq, BatchEvent.hash).join(
        BatchEvent, and_(BatchEvent.batch_id == Batch.id, BatchEvent.seq == Batch.seq)
    )
    if since is not None:
        query = query.where(Batch.id.in_(select(BatchEvent.batch_id).where(BatchEvent.recorded_at >= since)))
    heads = [Leaf(row.din, row.seq, row.hash) for row in session.execute(query)]
    admin = session.execute(select(AdminEvent.seq, AdminEvent.hash).order_by(AdminEvent.seq.desc()).limit(1)).first()
    if admin is not None:
        heads.append(Leaf(ADMIN_STREAM, admin.seq, admin.hash))
    return sort_leaves(heads)


def leaves_of(session: Session, checkpoint_id: int) -> list[Leaf]:
    """The leaves checkpoint ``checkpoint_id`` signed, each stream's newest leaf row up to it: O(streams), for
    proving against an older checkpoint and for the full run, never for the newest."""
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
    """The newest checkpoint, or None before the first."""
    return session.execute(select(Checkpoint).order_by(Checkpoint.id.desc()).limit(1)).scalar_one_or_none()


def _signed_soundness(checkpoint: Checkpoint, public_key: Ed25519PublicKey) -> str | None:
    """What is wrong with a checkpoint's key, signature or statement (cheap: no leaves read), or None."""
    fields = parse_statement(checkpoint.statement)
    if checkpoint.key_id != key_id_of(public_key):
        return f"signed by key {checkpoint.key_id[:16]}…, not this lab's key {key_id_of(public_key)[:16]}…"
    if not signature_valid(public_key, checkpoint.signature, checkpoint.statement.encode()):
        return "its signature does not verify: the signed statement was altered or signed with another key"
    if fields is None or fields["tree_size"] != checkpoint.tree_size or fields["root"] != checkpoint.root:
        return "its stored size or root differ from the signed statement"
    return None


def _leaves_soundness(checkpoint: Checkpoint, leaves: list[Leaf]) -> str | None:
    if len(leaves) != checkpoint.tree_size or MerkleTree([leaf.data for leaf in leaves]).root.hex() != checkpoint.root:
        return "its stored leaves no longer produce the signed root: checkpoint data was altered"
    return None


_AT = {"stream": String(), "seq": Integer()}


def _batch_rows(leaves: list[Leaf]) -> list[tuple[str, int]]:
    return [(leaf.stream, leaf.seq) for leaf in leaves if leaf.stream != ADMIN_STREAM]


def _hashes_at(session: Session, leaves: list[Leaf]) -> dict[str, str]:
    """The stored hash of the event each leaf names (streams whose event is gone are absent): one statement
    joined against the leaves."""
    found: dict[str, str] = {}
    for part in chunks(_batch_rows(leaves)):
        given = rowset(session.connection(), _AT, part)
        rows = session.execute(
            select(Batch.din, BatchEvent.hash)
            .select_from(given)
            .join(Batch, Batch.din == given.c.stream)
            .join(BatchEvent, and_(BatchEvent.batch_id == Batch.id, BatchEvent.seq == given.c.seq))
        )
        found.update({row.din: row.hash for row in rows})
    for leaf in leaves:
        if leaf.stream == ADMIN_STREAM:
            admin = session.execute(select(AdminEvent.hash).where(AdminEvent.seq == leaf.seq)).scalar_one_or_none()
            if admin is not None:
                found[ADMIN_STREAM] = admin
    return found


def _recorded_before(session: Session, leaves: list[Leaf], cutoff: datetime) -> set[str]:
    """The streams with an event after the given head that claims to have been recorded before ``cutoff``:
    one statement joined against the leaves."""
    found: set[str] = set()
    for part in chunks(_batch_rows(leaves)):
        given = rowset(session.connection(), _AT, part)
        older = (
            select(BatchEvent.id)
            .where(BatchEvent.batch_id == Batch.id, BatchEvent.seq > given.c.seq, BatchEvent.recorded_at < cutoff)
            .exists()
        )
        found.update(
            session.execute(select(given.c.stream).join(Batch, Batch.din == given.c.stream).where(older)).scalars()
        )
    for leaf in leaves:
        if leaf.stream == ADMIN_STREAM:
            later = select(AdminEvent.id).where(AdminEvent.seq > leaf.seq, AdminEvent.recorded_at < cutoff).limit(1)
            if session.execute(later).first() is not None:
                found.add(ADMIN_STREAM)
    return found


def _signable_heads(session: Session, previous: Checkpoint | None) -> list[Leaf]:
    """The heads that changed since ``previous`` (all, for the first checkpoint), except that a stream keeps
    its signed head when that head left its chain (rewritten) or when events after it claim to be older
    than the previous checkpoint (inserted)."""
    since = previous.created_at - COMMIT_MARGIN if previous is not None else None
    heads = current_heads(session, since)
    before = tree.heads_of(session.connection(), [leaf.stream for leaf in heads])
    moved = [before[leaf.stream] for leaf in heads if before.get(leaf.stream, leaf) != leaf]
    still_there = _hashes_at(session, moved)
    backdated = _recorded_before(session, moved, since) if since is not None else set()
    kept = {leaf.stream for leaf in moved if still_there.get(leaf.stream) != leaf.hash or leaf.stream in backdated}
    return [leaf for leaf in heads if leaf.stream not in kept and before.get(leaf.stream) != leaf]


_KEPT_ALTERED = "the current leaves kept for it no longer produce its signed root: checkpoint data was altered"


def _tree_soundness(session: Session, checkpoint: Checkpoint) -> str | None:
    """Whether the kept leaves and tree (``labtrack.audit.tree``) still give the checkpoint's signed root (O(log n)),
    and the leaf rows it wrote itself still equal the kept ones (O(streams it changed), one statement)."""
    connection = session.connection()
    size = tree.size(connection)
    if size != checkpoint.tree_size or tree.root(connection, size).hex() != checkpoint.root:
        return _KEPT_ALTERED
    if tree.departs_from(connection, checkpoint.id):
        return "its stored leaves no longer produce the signed root: checkpoint data was altered"
    return None


def _proven_leaves(session: Session, checkpoint: Checkpoint, streams: list[str]) -> dict[str, Leaf] | None:
    """These streams' leaves in the newest checkpoint, each proven against its signed root: the leaf row it
    stands on (``leaves_for``) equals the kept leaf, whose audit path from the kept tree leads to the root
    (RFC 9162 §2.1.3.2). O(log n) rows a stream, whatever the number of streams the checkpoint wrote. None
    when the kept tree no longer proves one of them; a stream never signed has no leaf and nothing to prove."""
    connection = session.connection()
    if tree.size(connection) != checkpoint.tree_size:
        return None
    signed = leaves_for(session, checkpoint, streams)
    proven: dict[str, Leaf] = {}
    for stream in streams:
        placed = tree.position_of(connection, stream)
        if placed is None and stream not in signed:
            continue
        if placed is None or placed[1] != signed.get(stream):
            return None
        position, leaf = placed
        path = tree.inclusion_path(connection, position, checkpoint.tree_size)
        root = bytes.fromhex(checkpoint.root)
        if path is None or not verify_inclusion(leaf.data, position, checkpoint.tree_size, path, root):
            return None
        proven[stream] = leaf
    return proven


def sign_root(root: str, tree_size: int, key: LabKey, origin: str) -> Checkpoint:
    """A checkpoint stating ``root`` over ``tree_size`` leaves, signed now with ``key``; not yet in a session."""
    now = utcnow()
    statement = statement_text(origin, tree_size, root, iso_utc(now))
    return Checkpoint(
        created_at=now,
        tree_size=tree_size,
        root=root,
        statement=statement,
        signature=key.sign(statement.encode()),
        key_id=key.key_id,
    )


def create(session: Session, key: LabKey, origin: str, actor: Actor | None = None) -> Checkpoint:
    """Sign the current heads now (the periodic task, ``POST /audit/checkpoints`` and the CLI)."""
    if actor is not None:
        require(actor, Action.AUDIT)
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _ADVISORY_LOCK})
    previous = latest(session)
    if previous is not None:
        problem = _signed_soundness(previous, key.public_key) or _tree_soundness(session, previous)
        if problem is not None:
            raise Conflict(f"Checkpoint {previous.id} cannot be built on: {problem}. Investigate before signing more.")
    changed = _signable_heads(session, previous)
    connection = session.connection()
    size = tree.apply(connection, changed)
    checkpoint = sign_root(tree.root(connection, size).hex(), size, key, origin)
    session.add(checkpoint)
    session.flush()
    for part in chunks([(leaf.stream, leaf.seq, leaf.hash) for leaf in changed]):
        given = rowset(connection, _AT | {"hash": String()}, part)
        session.execute(
            insert(CheckpointLeaf).from_select(
                ["stream", "checkpoint_id", "seq", "hash"],
                select(given.c.stream, literal(checkpoint.id), given.c.seq, given.c.hash),
            )
        )
    return checkpoint


def listing(session: Session, actor: Actor, limit: int = 50) -> list[Checkpoint]:
    """The newest ``limit`` checkpoints, newest first, for an auditor (R-AUD-4)."""
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
    """The stream's leaf in ``checkpoint`` and its audit path: from the kept tree (O(log n)) for the newest
    checkpoint, else rebuilt from that checkpoint's stored leaves."""
    if checkpoint.id == _latest_id(session):
        connection = session.connection()
        placed = tree.position_of(connection, stream)
        if placed is None:
            raise NotFound(f"Checkpoint {checkpoint.id} does not cover {stream}.")
        position, leaf = placed
        path = tree.inclusion_path(connection, position, checkpoint.tree_size)
        if path is None:
            raise Conflict(
                f"The kept tree of checkpoint {checkpoint.id} lacks a node on {stream}'s audit path: "
                "checkpoint data was altered; run a full verification."
            )
        return InclusionProof(position, checkpoint.tree_size, leaf, [node.hex() for node in path])
    leaves = leaves_of(session, checkpoint.id)
    index = next((i for i, leaf in enumerate(leaves) if leaf.stream == stream), None)
    if index is None:
        raise NotFound(f"Checkpoint {checkpoint.id} does not cover {stream}.")
    path = MerkleTree([leaf.data for leaf in leaves]).inclusion_proof(index)
    return InclusionProof(index, len(leaves), leaves[index], [node.hex() for node in path])


def _latest_id(session: Session) -> int | None:
    return session.execute(select(func.max(Checkpoint.id))).scalar_one_or_none()


def as_dict(checkpoint: Checkpoint) -> dict[str, object]:
    """A checkpoint as the API and the export publish it: the signed statement with its signature and key."""
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
    """The checkpoints as verification sees them.

    ``checkpoint`` is the latest one and ``problem`` what is wrong with it. Verification
    anchors on ``trusted``, the newest checkpoint that is sound under the trusted key, and
    its leaves: a forged or altered newer checkpoint (listed in ``rejected``) is reported
    but never hides a rewrite that an older, genuine one still exposes.
    """

    checkpoint: Checkpoint | None = None
    problem: str | None = None
    trusted: Checkpoint | None = None
    leaves: dict[str, Leaf] = field(default_factory=dict)
    rejected: list[tuple[int, str]] = field(default_factory=list)

    def summary(self) -> dict[str, object] | None:
        if self.checkpoint is None:
            return None
        return {
            "id": self.checkpoint.id,
            "created_at": self.checkpoint.created_at,
            "tree_size": self.checkpoint.tree_size,
            "root": self.checkpoint.root,
            "ok": self.problem is None,
            "anchored_on": self.trusted.id if self.trusted is not None else None,
        }

    def mismatch(
        self, stream: str, hashes_by_seq: dict[int, str], recorded: Iterable[tuple[int, datetime]]
    ) -> tuple[int, str] | None:
        """Whether a stream's stored events still contain the head the trusted checkpoint signed,
        and none after it claims to have been recorded before that checkpoint."""
        leaf = self.leaves.get(stream)
        if leaf is None or self.trusted is None:
            return None
        name = f"checkpoint {self.trusted.id}"
        stored = hashes_by_seq.get(leaf.seq)
        if stored is None:
            return leaf.seq, f"event {leaf.seq}, signed by {name}, is missing"
        if stored != leaf.hash:
            return leaf.seq, (
                f"event {leaf.seq} differs from the head signed by {name}: "
                "the history was rewritten after it was checkpointed"
            )
        if max(hashes_by_seq) == leaf.seq:
            return None
        cutoff = self.trusted.created_at - COMMIT_MARGIN
        backdated = sorted(seq for seq, at in recorded if seq > leaf.seq and at < cutoff)
        if backdated:
            return backdated[0], (
                f"event {backdated[0]} claims to have been recorded before {name}, which signed seq {leaf.seq} "
                "as the head: it was inserted afterwards"
            )
        return None


def anchor(session: Session, public_key: Ed25519PublicKey) -> Anchor:
    """Check the checkpoints, newest first, against the trusted key and their own leaves (R-AUD-3, R-AUD-4).

    The walk stops at the first sound one; key, signature and statement are checked before
    any leaves are read, so forged checkpoints cost little. Older checkpoints signed by
    another key mean the signing key was replaced: each is reported too.
    """
    found = Anchor()
    newest_first = select(Checkpoint).order_by(Checkpoint.id.desc()).execution_options(yield_per=50)
    with session.execute(newest_first) as result:
        for checkpoint in result.scalars():
            problem = _signed_soundness(checkpoint, public_key)
            leaves: list[Leaf] = []
            if problem is None:
                leaves = leaves_of(session, checkpoint.id)
                problem = _leaves_soundness(checkpoint, leaves)
            if found.checkpoint is None:
                found.checkpoint, found.problem = checkpoint, problem
            if problem is not None:
                found.rejected.append((checkpoint.id, problem))
                continue
            if checkpoint is found.checkpoint and tree.all_leaves(session.connection()) != leaves:
                # derived data, not evidence: reported, and the genuine checkpoint still anchors
                found.rejected.append((checkpoint.id, "the current leaves kept for it differ from its signed leaves"))
            found.trusted, found.leaves = checkpoint, {leaf.stream: leaf for leaf in leaves}
            break
    if found.trusted is not None:
        older = session.execute(
            select(Checkpoint)
            .where(Checkpoint.id < found.trusted.id, Checkpoint.key_id != found.trusted.key_id)
            .order_by(Checkpoint.id)
        ).scalars()
        found.rejected.extend(
            (
                checkpoint.id,
                f"signed by key {checkpoint.key_id[:16]}…, but checkpoint {found.trusted.id} by the trusted key "
                f"{found.trusted.key_id[:16]}…: the lab's signing key was replaced",
            )
            for checkpoint in older
        )
    return found


def anchor_on(
    session: Session, public_key: Ed25519PublicKey, base: Checkpoint | None, streams: Iterable[str] | None = None
) -> Anchor:
    """The anchor of an incremental verification (R-SCL-2): ``base``, a checkpoint already verified, and every
    newer one checked by key, signature and statement, the newest also by its kept tree (O(log n) rows).

    The leaves are left for the caller to fill for the streams it reads (``leaves_for``). Given ``streams``
    (one batch's record), the newest checkpoint is checked for those streams only, each leaf by its inclusion
    proof (``_proven_leaves``), and the anchor carries their leaves.
    """
    found = Anchor()
    newer = select(Checkpoint).order_by(Checkpoint.id.desc())
    if base is not None:
        newer = newer.where(Checkpoint.id >= base.id)
    for checkpoint in session.execute(newer.limit(1000)).scalars():
        problem = _signed_soundness(checkpoint, public_key)
        if problem is None and found.checkpoint is None:
            if streams is None:
                problem = _tree_soundness(session, checkpoint)
            else:
                proven = _proven_leaves(session, checkpoint, list(streams))
                problem = _KEPT_ALTERED if proven is None else None
                found.leaves = proven or {}
        if found.checkpoint is None:
            found.checkpoint, found.problem = checkpoint, problem
        if problem is not None:
            found.rejected.append((checkpoint.id, problem))
        if base is not None and checkpoint.id == base.id and problem is None:
            found.trusted = checkpoint
        if base is None or checkpoint.id == base.id:
            break
    return found


def leaves_for(session: Session, checkpoint: Checkpoint | None, streams: Iterable[str]) -> dict[str, Leaf]:
    """These streams' leaves in ``checkpoint`` (from the append-only delta rows, by index: O(streams × log n)),
    in one statement over the streams: each stream's newest row up to ``checkpoint``, read backwards on the
    primary key. Joined to ``checkpoint_leaves`` instead, the planner hashes every leaf ever signed."""
    found: dict[str, Leaf] = {}
    if checkpoint is None:
        return found
    for part in chunks(sorted(set(streams))):
        given = rowset(session.connection(), {"stream": String()}, [(stream,) for stream in part])
        newest = [
            select(column)
            .where(CheckpointLeaf.stream == given.c.stream, CheckpointLeaf.checkpoint_id <= checkpoint.id)
            .order_by(CheckpointLeaf.checkpoint_id.desc())
            .limit(1)
            .scalar_subquery()
            for column in (CheckpointLeaf.seq, CheckpointLeaf.hash)
        ]
        rows = session.execute(select(given.c.stream, newest[0].label("seq"), newest[1].label("hash")))
        found.update({row.stream: Leaf(row.stream, row.seq, row.hash) for row in rows if row.seq is not None})
    return found
