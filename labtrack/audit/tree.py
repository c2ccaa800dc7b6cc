"""The newest checkpoint's leaves and Merkle tree, kept in the database (R-SCL-3).

``checkpoint_heads`` holds each stream's leaf with its position among the leaves sorted
by stream (``merkle.sort_leaves``); ``checkpoint_nodes`` every level of the tree exactly as
``merkle.MerkleTree`` builds it (level 0 the leaf hashes; an odd last node carried up
unchanged), so the root is one row and an inclusion proof O(log n) rows.

A checkpoint changes the leaves of the streams that moved and adds the new ones
(``apply``): only those leaves' ancestors are recomputed, reading their siblings, so a
checkpoint costs O(changed streams × log n) rows, in a handful of statements whatever the
number of streams: each step joins against the changed streams as one row set
(``labtrack.audit.rowset``). A new stream sorting before existing ones
moves every leaf after it; new DINs sort after the older ones (the facility and year lead,
then the serial) and before ``admin``, so in practice only the admin leaf moves.

These tables are derived data, not evidence: a checkpoint is checked against its signed
root before anything is built on it, and a full verification compares these leaves with
the append-only ``checkpoint_leaves``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import (
    BigInteger,
    Connection,
    Integer,
    SmallInteger,
    String,
    and_,
    delete,
    func,
    insert,
    or_,
    select,
    true,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.types import TypeEngine

from labtrack.audit.rowset import rowset
from labtrack.db import chunks
from labtrack.domain.merkle import EMPTY_ROOT, Leaf, leaf_hash, node_hash, sort_leaves
from labtrack.models import CheckpointHead, CheckpointLeaf, CheckpointNode


def _lengths(size: int) -> list[int]:
    """The number of nodes at each level of a tree of ``size`` leaves, leaves first."""
    lengths = [size]
    while lengths[-1] > 1:
        lengths.append((lengths[-1] + 1) // 2)
    return lengths


def size(connection: Connection) -> int:
    """How many leaves the kept tree has: one per stream ever signed."""
    top = connection.execute(select(func.max(CheckpointHead.position))).scalar_one_or_none()
    return 0 if top is None else top + 1


def root(connection: Connection, tree_size: int) -> bytes:
    """The stored tree's root (one row), or the empty tree's."""
    if tree_size == 0:
        return EMPTY_ROOT
    top = len(_lengths(tree_size)) - 1
    found = connection.execute(
        select(CheckpointNode.hash).where(CheckpointNode.level == top, CheckpointNode.idx == 0)
    ).scalar_one_or_none()
    return bytes.fromhex(found) if found is not None else b""


_NODE = {"level": SmallInteger(), "idx": BigInteger(), "hash": String()}
_HEAD = {"stream": String(), "position": BigInteger(), "seq": Integer(), "hash": String()}


def _nodes(connection: Connection, keys: Iterable[tuple[int, int]]) -> dict[tuple[int, int], bytes]:
    """The stored nodes at these (level, index) keys: one statement, joined against the keys."""
    wanted = sorted(set(keys))
    found: dict[tuple[int, int], bytes] = {}
    for part in chunks(wanted):
        keyed = rowset(connection, {"level": SmallInteger(), "idx": BigInteger()}, part)
        rows = connection.execute(
            select(CheckpointNode.level, CheckpointNode.idx, CheckpointNode.hash).join(
                keyed, and_(CheckpointNode.level == keyed.c.level, CheckpointNode.idx == keyed.c.idx)
            )
        )
        found.update({(row.level, row.idx): bytes.fromhex(row.hash) for row in rows})
    return found


def _upsert(connection: Connection, nodes: dict[tuple[int, int], bytes]) -> None:
    """Write these nodes, new or changed, in one ``INSERT … SELECT … ON CONFLICT`` per chunk."""
    make = pg_insert if connection.dialect.name == "postgresql" else sqlite_insert
    rows = [(level, idx, digest.hex()) for (level, idx), digest in nodes.items()]
    for part in chunks(rows):
        given = rowset(connection, _NODE, part)
        # WHERE true: SQLite would otherwise read ON CONFLICT as the start of a join's ON
        statement = make(CheckpointNode).from_select(["level", "idx", "hash"], select(given).where(true()))
        connection.execute(
            statement.on_conflict_do_update(index_elements=["level", "idx"], set_={"hash": statement.excluded.hash})
        )


def _siblings(dirty: Iterable[int], lengths: list[int]) -> list[tuple[int, int]]:
    """The nodes that recomputing the ancestors of the ``dirty`` leaves reads and does not itself change."""
    needed = []
    level_nodes = set(dirty)
    for level, length in enumerate(lengths[:-1]):
        needed += [(level, i ^ 1) for i in level_nodes if i ^ 1 < length and i ^ 1 not in level_nodes]
        level_nodes = {i >> 1 for i in level_nodes}
    return needed


def _recompute(connection: Connection, leaves: dict[int, bytes], tree_size: int) -> None:
    """Store the given leaf hashes (by position) and recompute their ancestors; the siblings they need are read
    first, all levels in one statement, and every changed node is written in one more."""
    lengths = _lengths(tree_size)
    stored = _nodes(connection, _siblings(leaves, lengths))
    changed: dict[tuple[int, int], bytes] = {(0, position): digest for position, digest in leaves.items()}
    level_nodes = dict(leaves)
    for level in range(1, len(lengths)):
        below = lengths[level - 1]
        known = level_nodes

        def child(index: int, level: int = level, known: dict[int, bytes] = known) -> bytes:
            return known[index] if index in known else stored[(level - 1, index)]

        level_nodes = {
            parent: node_hash(child(2 * parent), child(2 * parent + 1)) if 2 * parent + 1 < below else child(2 * parent)
            for parent in {index >> 1 for index in known}
        }
        changed.update({(level, index): digest for index, digest in level_nodes.items()})
    _upsert(connection, changed)


def _insert_heads(connection: Connection, rows: list[tuple[str, int, int, str]]) -> None:
    for part in chunks(rows):
        given = rowset(connection, _HEAD, part)
        connection.execute(insert(CheckpointHead).from_select(list(_HEAD), select(given)))


def rebuild(connection: Connection, leaves: Iterable[Leaf]) -> None:
    """Replace the stored leaves and tree with these (the migration's fill; a tree found inconsistent)."""
    ordered = sort_leaves(list(leaves))
    connection.execute(delete(CheckpointNode))
    connection.execute(delete(CheckpointHead))
    _insert_heads(connection, [(leaf.stream, i, leaf.seq, leaf.hash) for i, leaf in enumerate(ordered)])
    if ordered:
        _recompute(connection, {i: leaf_hash(leaf.data) for i, leaf in enumerate(ordered)}, len(ordered))


def _placed(connection: Connection, streams: Iterable[str]) -> dict[str, tuple[int, Leaf]]:
    wanted = sorted(set(streams))
    found: dict[str, tuple[int, Leaf]] = {}
    for part in chunks(wanted):
        keyed = rowset(connection, {"stream": String()}, [(stream,) for stream in part])
        rows = connection.execute(
            select(CheckpointHead.stream, CheckpointHead.position, CheckpointHead.seq, CheckpointHead.hash).join(
                keyed, CheckpointHead.stream == keyed.c.stream
            )
        )
        found.update({row.stream: (row.position, Leaf(row.stream, row.seq, row.hash)) for row in rows})
    return found


def heads_of(connection: Connection, streams: Iterable[str]) -> dict[str, Leaf]:
    """The stored leaves of these streams (absent: not in the newest checkpoint)."""
    return {stream: leaf for stream, (_, leaf) in _placed(connection, streams).items()}


def departs_from(connection: Connection, checkpoint_id: int) -> bool:
    """Whether any leaf row that checkpoint ``checkpoint_id`` wrote (``checkpoint_leaves``) differs from the kept
    leaf: one statement, by ``ix_checkpoint_leaves_checkpoint``, over the streams that checkpoint changed."""
    differing = (
        select(CheckpointLeaf.stream)
        .outerjoin(CheckpointHead, CheckpointHead.stream == CheckpointLeaf.stream)
        .where(
            CheckpointLeaf.checkpoint_id == checkpoint_id,
            or_(
                CheckpointHead.stream.is_(None),
                CheckpointHead.seq != CheckpointLeaf.seq,
                CheckpointHead.hash != CheckpointLeaf.hash,
            ),
        )
        .limit(1)
    )
    return connection.execute(differing).first() is not None


def all_leaves(connection: Connection) -> list[Leaf]:
    """Every kept leaf in tree order: O(streams), for checking the kept tree against a rebuild."""
    rows = connection.execute(
        select(CheckpointHead.stream, CheckpointHead.seq, CheckpointHead.hash).order_by(CheckpointHead.position)
    )
    return [Leaf(row.stream, row.seq, row.hash) for row in rows]


def _stream_at(connection: Connection, position: int) -> str:
    return connection.execute(select(CheckpointHead.stream).where(CheckpointHead.position == position)).scalar_one()


def _insertion_point(connection: Connection, stream: str, tree_size: int) -> int:
    """Where ``stream`` goes among the stored leaves (by the key's bytes), by binary search over positions."""
    low, high = 0, tree_size
    key = stream.encode()
    while low < high:
        middle = (low + high) // 2
        if _stream_at(connection, middle).encode() < key:
            low = middle + 1
        else:
            high = middle
    return low


def _set_heads(connection: Connection, columns: dict[str, TypeEngine[Any]], rows: list[tuple[Any, ...]]) -> None:
    """``UPDATE checkpoint_heads … FROM`` the given rows, keyed by their first column, the stream."""
    for part in chunks(rows):
        given = rowset(connection, {"stream": String()} | columns, part)
        connection.execute(
            update(CheckpointHead)
            .where(CheckpointHead.stream == given.c.stream)
            .values({name: given.c[name] for name in columns})
        )


def apply(connection: Connection, leaves: Iterable[Leaf]) -> int:
    """Set these streams' leaves (changed or new) and update the tree; returns the new tree size.

    Set-based: the kept leaves are read, changed and added in a statement each (per ``rowset.CHUNK``),
    the siblings in one and the recomputed nodes written in one, whatever the number of streams."""
    leaves = list(leaves)
    tree_size = size(connection)
    known = _placed(connection, [leaf.stream for leaf in leaves]) if tree_size else {}
    kept = [leaf for leaf in leaves if leaf.stream in known]
    if kept:
        changes = [(leaf.stream, leaf.seq, leaf.hash) for leaf in kept]
        _set_heads(connection, {"seq": Integer(), "hash": String()}, changes)
    new = sort_leaves([leaf for leaf in leaves if leaf.stream not in known])
    dirty: dict[int, bytes] = {known[leaf.stream][0]: leaf_hash(leaf.data) for leaf in kept}
    if new:
        start = _insertion_point(connection, new[0].stream, tree_size)
        moved = [
            Leaf(row.stream, row.seq, row.hash)
            for row in connection.execute(
                select(CheckpointHead.stream, CheckpointHead.seq, CheckpointHead.hash)
                .where(CheckpointHead.position >= start)
                .order_by(CheckpointHead.position)
            )
        ]
        tail = sort_leaves(moved + new)
        place = {leaf.stream: start + i for i, leaf in enumerate(tail)}
        if moved:  # out of the way of the unique positions first
            connection.execute(
                update(CheckpointHead)
                .where(CheckpointHead.position >= start)
                .values(position=-1 - CheckpointHead.position)
            )
            _set_heads(connection, {"position": BigInteger()}, [(leaf.stream, place[leaf.stream]) for leaf in moved])
        _insert_heads(connection, [(leaf.stream, place[leaf.stream], leaf.seq, leaf.hash) for leaf in new])
        tree_size += len(new)
        dirty.update({start + i: leaf_hash(leaf.data) for i, leaf in enumerate(tail)})
    if dirty:
        _recompute(connection, dirty, tree_size)
    return tree_size


def inclusion_path(connection: Connection, position: int, tree_size: int) -> list[bytes] | None:
    """RFC 6962's audit path for the leaf at ``position`` from the stored nodes: O(log n) rows, one query.
    None when a node on it is missing (the kept tree was altered)."""
    keys = []
    index = position
    for level, length in enumerate(_lengths(tree_size)[:-1]):
        if index ^ 1 < length:
            keys.append((level, index ^ 1))
        index >>= 1
    found = _nodes(connection, keys)
    if len(found) != len(keys):
        return None
    return [found[key] for key in keys]


def position_of(connection: Connection, stream: str) -> tuple[int, Leaf] | None:
    """A stream's place in the kept tree and its current leaf, or None if it was never signed."""
    row = connection.execute(
        select(CheckpointHead.position, CheckpointHead.seq, CheckpointHead.hash).where(CheckpointHead.stream == stream)
    ).first()
    return None if row is None else (row.position, Leaf(stream, row.seq, row.hash))
