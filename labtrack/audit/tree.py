"""The newest checkpoint's leaves and Merkle tree, kept in the database (R-SCL-3).

``checkpoint_heads`` holds each stream's leaf with its position among the leaves sorted
by stream (``merkle.sort_leaves``); ``checkpoint_nodes`` every level of the tree exactly as
``merkle.MerkleTree`` builds it (level 0 the leaf hashes; an odd last node carried up
unchanged), so the root is one row and an inclusion proof O(log n) rows.

A checkpoint changes the leaves of the streams that moved and adds the new ones
(``apply``): only those leaves' ancestors are recomputed, reading their siblings, so a
checkpoint costs O(changed streams × log n). A new stream sorting before existing ones
moves every leaf after it; new DINs sort after the older ones (the facility and year lead,
then the serial) and before ``admin``, so in practice only the admin leaf moves.

These tables are derived data, not evidence: a checkpoint is checked against its signed
root before anything is built on it, and a full verification compares these leaves with
the append-only ``checkpoint_leaves``.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import Connection, bindparam, delete, func, insert, select, tuple_, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from labtrack.domain.merkle import EMPTY_ROOT, Leaf, leaf_hash, node_hash, sort_leaves
from labtrack.models import CheckpointHead, CheckpointNode

CHUNK = 500


def _lengths(size: int) -> list[int]:
    """The number of nodes at each level of a tree of ``size`` leaves, leaves first."""
    lengths = [size]
    while lengths[-1] > 1:
        lengths.append((lengths[-1] + 1) // 2)
    return lengths


def size(connection: Connection) -> int:
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


def _nodes(connection: Connection, keys: Iterable[tuple[int, int]]) -> dict[tuple[int, int], bytes]:
    wanted = sorted(set(keys))
    found: dict[tuple[int, int], bytes] = {}
    for start in range(0, len(wanted), CHUNK):
        rows = connection.execute(
            select(CheckpointNode.level, CheckpointNode.idx, CheckpointNode.hash).where(
                tuple_(CheckpointNode.level, CheckpointNode.idx).in_(wanted[start : start + CHUNK])
            )
        )
        found.update({(row.level, row.idx): bytes.fromhex(row.hash) for row in rows})
    return found


def _upsert(connection: Connection, nodes: dict[tuple[int, int], bytes]) -> None:
    dialect = connection.dialect.name
    make = pg_insert if dialect == "postgresql" else sqlite_insert
    rows = [{"level": level, "idx": idx, "hash": digest.hex()} for (level, idx), digest in nodes.items()]
    for start in range(0, len(rows), 2000):
        statement = make(CheckpointNode).values(rows[start : start + 2000])
        statement = statement.on_conflict_do_update(
            index_elements=["level", "idx"], set_={"hash": statement.excluded.hash}
        )
        connection.execute(statement)


def _recompute(connection: Connection, leaves: dict[int, bytes], tree_size: int) -> None:
    """Store the given leaf hashes (by position) and recompute their ancestors, reading siblings as needed."""
    lengths = _lengths(tree_size)
    changed: dict[tuple[int, int], bytes] = {(0, position): digest for position, digest in leaves.items()}
    level_nodes = dict(leaves)
    for level in range(1, len(lengths)):
        below = lengths[level - 1]
        parents = sorted({index >> 1 for index in level_nodes})
        missing = [
            (level - 1, child)
            for parent in parents
            for child in (2 * parent, 2 * parent + 1)
            if child < below and child not in level_nodes
        ]
        known = {index: digest for (_, index), digest in _nodes(connection, missing).items()} | level_nodes
        level_nodes = {
            parent: (
                node_hash(known[2 * parent], known[2 * parent + 1]) if 2 * parent + 1 < below else known[2 * parent]
            )
            for parent in parents
        }
        changed.update({(level, index): digest for index, digest in level_nodes.items()})
    _upsert(connection, changed)


def rebuild(connection: Connection, leaves: Iterable[Leaf]) -> None:
    """Replace the stored leaves and tree with these (the migration's fill; a tree found inconsistent)."""
    ordered = sort_leaves(list(leaves))
    connection.execute(delete(CheckpointNode))
    connection.execute(delete(CheckpointHead))
    rows = [
        {"stream": leaf.stream, "position": i, "seq": leaf.seq, "hash": leaf.hash} for i, leaf in enumerate(ordered)
    ]
    for start in range(0, len(rows), 2000):
        connection.execute(insert(CheckpointHead), rows[start : start + 2000])
    if ordered:
        _recompute(connection, {i: leaf_hash(leaf.data) for i, leaf in enumerate(ordered)}, len(ordered))


def _placed(connection: Connection, streams: Iterable[str]) -> dict[str, tuple[int, Leaf]]:
    wanted = sorted(set(streams))
    found: dict[str, tuple[int, Leaf]] = {}
    for start in range(0, len(wanted), CHUNK):
        rows = connection.execute(
            select(CheckpointHead.stream, CheckpointHead.position, CheckpointHead.seq, CheckpointHead.hash).where(
                CheckpointHead.stream.in_(wanted[start : start + CHUNK])
            )
        )
        found.update({row.stream: (row.position, Leaf(row.stream, row.seq, row.hash)) for row in rows})
    return found


def heads_of(connection: Connection, streams: Iterable[str]) -> dict[str, Leaf]:
    """The stored leaves of these streams (absent: not in the newest checkpoint)."""
    return {stream: leaf for stream, (_, leaf) in _placed(connection, streams).items()}


def all_leaves(connection: Connection) -> list[Leaf]:
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


def apply(connection: Connection, leaves: Iterable[Leaf]) -> int:
    """Set these streams' leaves (changed or new) and update the tree; returns the new tree size."""
    leaves = list(leaves)
    tree_size = size(connection)
    known = _placed(connection, [leaf.stream for leaf in leaves])
    kept = [leaf for leaf in leaves if leaf.stream in known]
    if kept:
        connection.execute(
            update(CheckpointHead)
            .where(CheckpointHead.stream == bindparam("s"))
            .values(seq=bindparam("q"), hash=bindparam("h")),
            [{"s": leaf.stream, "q": leaf.seq, "h": leaf.hash} for leaf in kept],
        )
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
            connection.execute(
                update(CheckpointHead).where(CheckpointHead.stream == bindparam("s")).values(position=bindparam("p")),
                [{"s": leaf.stream, "p": place[leaf.stream]} for leaf in moved],
            )
        connection.execute(
            insert(CheckpointHead),
            [
                {"stream": leaf.stream, "position": place[leaf.stream], "seq": leaf.seq, "hash": leaf.hash}
                for leaf in new
            ],
        )
        tree_size += len(new)
        dirty.update({start + i: leaf_hash(leaf.data) for i, leaf in enumerate(tail)})
    if dirty:
        _recompute(connection, dirty, tree_size)
    return tree_size


def inclusion_path(connection: Connection, position: int, tree_size: int) -> list[bytes]:
    """RFC 6962's audit path for the leaf at ``position`` from the stored nodes: O(log n) rows, one query."""
    keys = []
    index = position
    for level, length in enumerate(_lengths(tree_size)[:-1]):
        if index ^ 1 < length:
            keys.append((level, index ^ 1))
        index >>= 1
    found = _nodes(connection, keys)
    return [found[key] for key in keys]


def position_of(connection: Connection, stream: str) -> tuple[int, Leaf] | None:
    row = connection.execute(
        select(CheckpointHead.position, CheckpointHead.seq, CheckpointHead.hash).where(CheckpointHead.stream == stream)
    ).first()
    return None if row is None else (row.position, Leaf(stream, row.seq, row.hash))
