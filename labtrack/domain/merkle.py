"""Merkle trees exactly as RFC 6962 §2.1 (R-AUD-4), and inclusion (audit) proofs.

leaf hash = SHA-256(0x00 ‖ data), node hash = SHA-256(0x01 ‖ left ‖ right), the
empty tree's hash = SHA-256(""). The RFC splits n leaves at the largest power of
two k < n; building the tree level by level, pairing neighbours and carrying an
odd last node up unchanged, yields the same tree, in O(n) and without recursion.

The checkpoint's leaves are ``stream:seq:hash`` (a batch's DIN, or ``admin`` for
the reference-data chain), ordered by the stream key's bytes: DINs are upper-case
ASCII, so ``admin`` sorts after every DIN whatever the database's collation.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

LEAF_PREFIX = b"\x00"
NODE_PREFIX = b"\x01"
EMPTY_ROOT = hashlib.sha256(b"").digest()


def leaf_hash(data: bytes) -> bytes:
    return hashlib.sha256(LEAF_PREFIX + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(NODE_PREFIX + left + right).digest()


@dataclass(frozen=True)
class Leaf:
    """One stream head as a checkpoint sees it."""

    stream: str
    seq: int
    hash: str

    @property
    def data(self) -> bytes:
        return f"{self.stream}:{self.seq}:{self.hash}".encode()

    @classmethod
    def parse(cls, text: str) -> Leaf:
        stream, seq, digest = text.rsplit(":", 2)
        return cls(stream, int(seq), digest)

    def __str__(self) -> str:
        return self.data.decode()


def sort_leaves(leaves: Sequence[Leaf]) -> list[Leaf]:
    return sorted(leaves, key=lambda leaf: leaf.stream.encode())


class MerkleTree:
    """All levels of one tree, so the root and any number of proofs cost one build."""

    def __init__(self, leaf_data: Sequence[bytes]) -> None:
        level = [leaf_hash(data) for data in leaf_data]
        self.levels: list[list[bytes]] = [level]
        while len(level) > 1:
            paired = [node_hash(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
            if len(level) % 2:
                paired.append(level[-1])
            level = paired
            self.levels.append(level)

    @property
    def size(self) -> int:
        return len(self.levels[0])

    @property
    def root(self) -> bytes:
        return self.levels[-1][0] if self.size else EMPTY_ROOT

    def inclusion_proof(self, index: int) -> list[bytes]:
        """The audit path of RFC 6962 §2.1.1, from the leaf's sibling up to the root's child."""
        if not 0 <= index < self.size:
            raise IndexError(f"leaf index {index} outside a tree of {self.size}")
        path = []
        for level in self.levels[:-1]:
            sibling = index ^ 1
            if sibling < len(level):
                path.append(level[sibling])
            index >>= 1
        return path


def root_from_proof(leaf: bytes, index: int, tree_size: int, proof: Sequence[bytes]) -> bytes | None:
    """The root an inclusion proof leads to (RFC 9162 §2.1.3.2), or None when its shape is wrong."""
    if not 0 <= index < tree_size:
        return None
    fn, sn = index, tree_size - 1
    result = leaf_hash(leaf)
    for sibling in proof:
        if sn == 0:
            return None
        if fn & 1 or fn == sn:
            result = node_hash(sibling, result)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            result = node_hash(result, sibling)
        fn >>= 1
        sn >>= 1
    return result if sn == 0 else None


def verify_inclusion(leaf: bytes, index: int, tree_size: int, proof: Sequence[bytes], root: bytes) -> bool:
    """Whether the inclusion proof leads from ``leaf`` at ``index`` to ``root`` (RFC 9162 §2.1.3.2)."""
    return root_from_proof(leaf, index, tree_size, proof) == root
