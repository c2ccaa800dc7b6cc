"""RFC 6962 Merkle trees against the published test vectors (R-AUD-4)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from labtrack.domain.merkle import (
    EMPTY_ROOT,
    Leaf,
    MerkleTree,
    leaf_hash,
    node_hash,
    root_from_proof,
    sort_leaves,
    verify_inclusion,
)

VECTORS = json.loads((Path(__file__).parent / "vectors" / "rfc6962.json").read_text())
LEAF_INPUTS = [bytes.fromhex(h) for h in VECTORS["leaf_inputs_hex"]]
ROOTS = [bytes.fromhex(h) for h in VECTORS["root_by_tree_size_hex"]]


def reference_root(leaves: list[bytes]) -> bytes:
    """MTH exactly as RFC 6962 §2.1 writes it, recursively: the oracle for the fast tree."""
    if not leaves:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return leaf_hash(leaves[0])
    k = 1 << ((len(leaves) - 1).bit_length() - 1)
    return node_hash(reference_root(leaves[:k]), reference_root(leaves[k:]))


def reference_path(index: int, leaves: list[bytes]) -> list[bytes]:
    """PATH(m, D[n]) of RFC 6962 §2.1.1, recursively."""
    if len(leaves) <= 1:
        return []
    k = 1 << ((len(leaves) - 1).bit_length() - 1)
    if index < k:
        return [*reference_path(index, leaves[:k]), reference_root(leaves[k:])]
    return [*reference_path(index - k, leaves[k:]), reference_root(leaves[:k])]


@pytest.mark.parametrize("size", range(len(ROOTS)))
def test_r_aud_4_root_matches_rfc6962_vector(size: int) -> None:
    assert MerkleTree(LEAF_INPUTS[:size]).root == ROOTS[size]


def test_r_aud_4_empty_tree_is_sha256_of_nothing() -> None:
    assert EMPTY_ROOT == ROOTS[0] == MerkleTree([]).root


@pytest.mark.parametrize("size", range(1, len(ROOTS)))
def test_r_aud_4_every_inclusion_proof_of_the_vectors_verifies(size: int) -> None:
    tree = MerkleTree(LEAF_INPUTS[:size])
    for index in range(size):
        proof = tree.inclusion_proof(index)
        assert proof == reference_path(index, LEAF_INPUTS[:size])
        assert verify_inclusion(LEAF_INPUTS[index], index, size, proof, ROOTS[size])


def test_r_aud_4_proof_for_another_leaf_or_index_or_size_fails() -> None:
    tree = MerkleTree(LEAF_INPUTS)
    proof = tree.inclusion_proof(5)
    root = ROOTS[8]
    assert verify_inclusion(LEAF_INPUTS[5], 5, 8, proof, root)
    assert not verify_inclusion(LEAF_INPUTS[4], 5, 8, proof, root)
    assert not verify_inclusion(LEAF_INPUTS[5], 4, 8, proof, root)
    # the tree size changes the path's shape; it is bound to the root by the signed checkpoint
    assert not verify_inclusion(LEAF_INPUTS[5], 5, 6, proof, root)
    assert root_from_proof(LEAF_INPUTS[5], 5, 8, [*proof, proof[0]]) is None  # too long
    assert root_from_proof(LEAF_INPUTS[5], 5, 8, proof[:-1]) is None  # too short
    assert root_from_proof(LEAF_INPUTS[5], 8, 8, proof) is None  # index outside the tree
    tampered = [bytes([proof[0][0] ^ 1]) + proof[0][1:], *proof[1:]]
    assert not verify_inclusion(LEAF_INPUTS[5], 5, 8, tampered, root)


@given(st.lists(st.binary(max_size=8), max_size=70), st.data())
def test_r_aud_4_tree_equals_the_rfc_definition_for_any_size(leaves: list[bytes], data: st.DataObject) -> None:
    tree = MerkleTree(leaves)
    assert tree.root == reference_root(leaves)
    if leaves:
        index = data.draw(st.integers(0, len(leaves) - 1))
        proof = tree.inclusion_proof(index)
        assert proof == reference_path(index, leaves)
        assert verify_inclusion(leaves[index], index, len(leaves), proof, tree.root)


def test_r_aud_4_leaves_are_din_seq_hash_sorted_by_din_with_admin_last() -> None:
    leaves = sort_leaves(
        [Leaf("admin", 3, "c" * 64), Leaf("A999926000002", 5, "b" * 64), Leaf("A999926000001", 9, "a" * 64)]
    )
    assert [str(leaf) for leaf in leaves] == [
        f"A999926000001:9:{'a' * 64}",
        f"A999926000002:5:{'b' * 64}",
        f"admin:3:{'c' * 64}",
    ]
    assert Leaf.parse(str(leaves[0])) == leaves[0]
