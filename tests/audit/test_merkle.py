"""Tests for the RFC 6962 Merkle tree module.

Expected values never come from the module under test. They come from

- published test vectors (transparency-dev/merkle, the Go library behind Trillian and
  Sigstore: ``testonly/constants.go`` and ``proof/verify_test.go``), and
- a deliberately naive reference written line by line from RFC 6962 section 2.1: recursive,
  slicing lists, splitting at the largest power of two smaller than n, hashing raw entries
  with `hashlib` directly.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from opsgate.audit import _merkle
from opsgate.audit._merkle import (
    EMPTY_ROOT,
    CompactRange,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    node_hash,
    root_from_leaves,
    verify_consistency,
    verify_inclusion,
)

# --------------------------------------------------------------------------------------
# The naive reference, straight from RFC 6962 section 2.1.


def _sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def _ref_k(n: int) -> int:
    """The largest power of two smaller than n (n > 1)."""
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def ref_mth(d: list[bytes]) -> bytes:
    """MTH(D[n]) over raw entries."""
    n = len(d)
    if n == 0:
        return _sha256(b"")
    if n == 1:
        return _sha256(b"\x00" + d[0])
    k = _ref_k(n)
    return _sha256(b"\x01" + ref_mth(d[:k]) + ref_mth(d[k:]))


def ref_path(m: int, d: list[bytes]) -> list[bytes]:
    """PATH(m, D[n])."""
    n = len(d)
    if n == 1:
        return []
    k = _ref_k(n)
    if m < k:
        return [*ref_path(m, d[:k]), ref_mth(d[k:])]
    return [*ref_path(m - k, d[k:]), ref_mth(d[:k])]


def ref_subproof(m: int, d: list[bytes], b: bool) -> list[bytes]:
    """SUBPROOF(m, D[n], b)."""
    n = len(d)
    if m == n:
        return [] if b else [ref_mth(d)]
    k = _ref_k(n)
    if m <= k:
        return [*ref_subproof(m, d[:k], b), ref_mth(d[k:])]
    return [*ref_subproof(m - k, d[k:], False), ref_mth(d[:k])]


def ref_proof(m: int, d: list[bytes]) -> list[bytes]:
    """PROOF(m, D[n])."""
    return ref_subproof(m, d, True)


def ref_inclusion_shape(m: int, n: int) -> list[str]:
    """The side of each PATH(m, D[n]) element, leaf up: all a verifier can know of it."""
    if n == 1:
        return []
    k = _ref_k(n)
    if m < k:
        return [*ref_inclusion_shape(m, k), "right"]
    return [*ref_inclusion_shape(m - k, n - k), "left"]


def ref_consistency_shape(m: int, n: int) -> tuple[bool, list[str]]:
    """(is the old root the seed, side of each further element) for PROOF(m, D[n])."""

    def sub(m: int, n: int, b: bool) -> tuple[bool, list[str]]:
        if m == n:
            return b, []
        k = _ref_k(n)
        if m <= k:
            seed, sides = sub(m, k, b)
            return seed, [*sides, "right"]
        seed, sides = sub(m - k, n - k, False)
        return seed, [*sides, "left"]

    return sub(m, n, True)


def entries(count: int, salt: bytes = b"") -> list[bytes]:
    """Distinct entries of varied lengths (distinct, so no two subtrees hash alike)."""
    return [salt + i.to_bytes(4, "big") * (i % 3 + 1) for i in range(count)]


ENTRIES = entries(220)
LEAVES = [leaf_hash(e) for e in ENTRIES]


# --------------------------------------------------------------------------------------
# Published vectors (transparency-dev/merkle), pinned here as data.

TD_ENTRIES = [
    bytes.fromhex(h)
    for h in (
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    )
]
TD_ROOTS = [
    bytes.fromhex(h)
    for h in (
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    )
]
# Node hashes by level, then position (testonly.NodeHashes()).
_N0 = [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
    "0298d122906dcfc10892cb53a73992fc5b9f493ea4c9badb27b791b4127a7fe7",
    "07506a85fd9dd2f120eb694f86011e5bb4662e5c415a62917033d4a9624487e7",
    "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
    "4271a26be0d8a84f0bd54c8c302e7cb3a3b5d1fa6780a40bcce2873477dab658",
    "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
    "46f6ffadd3d06a09ff3c5860d2755c8b9819db7df44251788c7d8e3180de8eb1",
]
_N1 = [
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
    "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
    "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
]
_N2 = [
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
]
_N3 = ["5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"]
# Compact range state for each size 0..8 (testonly.CompactTrees()).
TD_COMPACT = [
    [],
    [_N0[0]],
    [_N1[0]],
    [_N1[0], _N0[2]],
    [_N2[0]],
    [_N2[0], _N0[4]],
    [_N2[0], _N1[2]],
    [_N2[0], _N1[2], _N0[6]],
    [_N3[0]],
]
# (0-based index, size, proof) from proof/verify_test.go.
TD_INCLUSION = [
    (0, 1, []),
    (0, 8, [_N0[1], _N1[1], _N2[1]]),
    (5, 8, [_N0[4], _N1[3], _N2[0]]),
    (2, 3, [_N1[0]]),
    (1, 5, [_N0[0], _N1[1], _N0[4]]),
]
# (old size, new size, proof) from proof/verify_test.go.
TD_CONSISTENCY = [
    (1, 1, []),
    (1, 8, [_N0[1], _N1[1], _N2[1]]),
    (6, 8, [_N1[2], _N1[3], _N2[0]]),
    (2, 5, [_N1[1], _N0[4]]),
    (6, 7, [_N1[2], _N0[6], _N2[0]]),
]
TD_LEAVES = [leaf_hash(e) for e in TD_ENTRIES]


def _hexes(hashes: list[bytes] | tuple[bytes, ...]) -> list[str]:
    return [h.hex() for h in hashes]


def test_empty_root_is_sha256_of_nothing() -> None:
    assert hashlib.sha256(b"").digest() == EMPTY_ROOT
    assert EMPTY_ROOT.hex() == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    assert root_from_leaves([]) == EMPTY_ROOT
    assert CompactRange().root() == EMPTY_ROOT


def test_leaf_and_node_hashes_use_the_rfc_prefixes() -> None:
    assert leaf_hash(b"") == bytes.fromhex(_N0[0])
    assert leaf_hash(b"abc") == _sha256(b"\x00abc")
    a, b = _sha256(b"a"), _sha256(b"b")
    assert node_hash(a, b) == _sha256(b"\x01" + a + b)
    assert node_hash(a, b) != node_hash(b, a)
    # Domain separation: the two halves of a node cannot be passed off as a leaf.
    assert leaf_hash(a + b) != node_hash(a, b)


@pytest.mark.parametrize("size", range(len(TD_ROOTS)))
def test_published_roots(size: int) -> None:
    assert root_from_leaves(TD_LEAVES[:size]) == TD_ROOTS[size]
    compact = CompactRange()
    for h in TD_LEAVES[:size]:
        compact.append(h)
    assert compact.root() == TD_ROOTS[size]
    assert _hexes(compact.hashes) == TD_COMPACT[size]


@pytest.mark.parametrize(("index", "size", "proof"), TD_INCLUSION)
def test_published_inclusion_proofs(index: int, size: int, proof: list[str]) -> None:
    leaves = TD_LEAVES[:size]
    assert _hexes(inclusion_proof(index, leaves)) == proof
    path = [bytes.fromhex(h) for h in proof]
    assert verify_inclusion(index, size, leaves[index], path, TD_ROOTS[size])


@pytest.mark.parametrize(("old", "new", "proof"), TD_CONSISTENCY)
def test_published_consistency_proofs(old: int, new: int, proof: list[str]) -> None:
    assert _hexes(consistency_proof(old, TD_LEAVES[:new])) == proof
    path = [bytes.fromhex(h) for h in proof]
    assert verify_consistency(old, new, TD_ROOTS[old], TD_ROOTS[new], path)


# --------------------------------------------------------------------------------------
# Known answers from the naive reference, for every small shape.

SMALL = range(1, 65)


@pytest.mark.parametrize("n", [0, *SMALL])
def test_root_matches_reference(n: int) -> None:
    assert root_from_leaves(LEAVES[:n]) == ref_mth(ENTRIES[:n])
    assert root_from_leaves(tuple(LEAVES[:n])) == ref_mth(ENTRIES[:n])  # any Sequence


@pytest.mark.parametrize("n", SMALL)
def test_every_inclusion_proof_matches_reference_and_verifies(n: int) -> None:
    leaves, data = LEAVES[:n], ENTRIES[:n]
    root = ref_mth(data)
    for m in range(n):
        proof = inclusion_proof(m, leaves)
        assert proof == ref_path(m, data), (m, n)
        assert verify_inclusion(m, n, leaves[m], proof, root), (m, n)


@pytest.mark.parametrize("n", SMALL)
def test_every_consistency_proof_matches_reference_and_verifies(n: int) -> None:
    leaves, data = LEAVES[:n], ENTRIES[:n]
    new_root = ref_mth(data)
    for m in range(1, n + 1):
        proof = consistency_proof(m, leaves)
        assert proof == ref_proof(m, data), (m, n)
        assert verify_consistency(m, n, ref_mth(data[:m]), new_root, proof), (m, n)
    assert consistency_proof(n, leaves) == []


@pytest.mark.parametrize("n", [255, 256, 257, 1000])
def test_larger_trees_match_reference(n: int) -> None:
    data = entries(n, salt=b"large")
    leaves = [leaf_hash(e) for e in data]
    root = ref_mth(data)
    assert root_from_leaves(leaves) == root
    for m in {0, 1, n // 3, n // 2, n - 2, n - 1}:
        assert inclusion_proof(m, leaves) == ref_path(m, data)
        assert consistency_proof(m + 1, leaves) == ref_proof(m + 1, data)


def test_builders_reject_out_of_range() -> None:
    for bad_index in (-1, 5, 6):
        with pytest.raises(ValueError):
            inclusion_proof(bad_index, LEAVES[:5])
    with pytest.raises(ValueError):
        inclusion_proof(0, [])
    for bad_size in (-1, 0, 6):
        with pytest.raises(ValueError):
            consistency_proof(bad_size, LEAVES[:5])


def _counting_sha256(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls = [0]
    real: Callable[[bytes], Any] = hashlib.sha256

    def counted(data: bytes) -> Any:
        calls[0] += 1
        return real(data)

    monkeypatch.setattr(_merkle, "_sha256", counted)
    return calls


def test_builders_hash_each_node_once(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _counting_sha256(monkeypatch)
    n = 1000
    leaves = LEAVES[:200] * 5  # content is irrelevant here
    root_from_leaves(leaves)
    assert calls[0] == n - 1
    for m in (0, 357, n - 1):
        calls[0] = 0
        proof = inclusion_proof(m, leaves)
        # The siblings partition the other n - 1 leaves; each costs (its size - 1) hashes.
        assert calls[0] == n - 1 - len(proof)
    calls[0] = 0
    consistency_proof(600, leaves)
    assert calls[0] < n


# --------------------------------------------------------------------------------------
# CompactRange.


def _frontier(data: list[bytes]) -> list[bytes]:
    """Reference: MTH of each perfect subtree of the binary decomposition, largest first."""
    out, start = [], 0
    for bit in reversed(range(len(data).bit_length())):
        if len(data) >> bit & 1:
            out.append(ref_mth(data[start : start + (1 << bit)]))
            start += 1 << bit
    return out


def test_compact_range_tracks_the_root_for_every_size() -> None:
    compact = CompactRange()
    for size in range(201):
        assert compact.size == size
        assert compact.root() == root_from_leaves(LEAVES[:size])
        assert list(compact.hashes) == _frontier(ENTRIES[:size])
        if size < 200:
            compact.append(LEAVES[size])


def test_compact_range_restores_and_continues() -> None:
    saved: list[tuple[int, tuple[bytes, ...]]] = []
    compact = CompactRange()
    for size in range(201):
        saved.append((compact.size, compact.hashes))
        if size < 200:
            compact.append(LEAVES[size])
    for size, hashes in saved:
        restored = CompactRange(size, list(hashes))
        assert restored.root() == root_from_leaves(LEAVES[:size])
        for more in range(size, min(size + 20, len(LEAVES))):
            restored.append(LEAVES[more])
            assert restored.root() == root_from_leaves(LEAVES[: more + 1])


def test_compact_range_state_is_a_copy() -> None:
    hashes = [LEAVES[0], LEAVES[1]]  # size 3 = 0b11: wrong data, right shape
    compact = CompactRange(3, hashes)
    hashes.clear()
    assert compact.hashes == (LEAVES[0], LEAVES[1])
    assert isinstance(compact.hashes, tuple)
    assert "size=3" in repr(compact)


@pytest.mark.parametrize(
    ("size", "hashes"),
    [
        (0, [LEAVES[0]]),
        (1, []),
        (3, [LEAVES[0]]),
        (4, [LEAVES[0], LEAVES[1]]),
        (5, [LEAVES[0], LEAVES[1], LEAVES[2]]),
        (-1, []),
        (2, [b"short"]),
        (2, [LEAVES[0] + b"x"]),
        (2, ["0" * 32]),
    ],
)
def test_compact_range_rejects_inconsistent_state(size: int, hashes: list[Any]) -> None:
    with pytest.raises(ValueError):
        CompactRange(size, hashes)


def test_compact_range_rejects_bad_leaf_and_keeps_state() -> None:
    compact = CompactRange()
    compact.append(LEAVES[0])
    for bad in (b"", LEAVES[1][:31], LEAVES[1] + b"\x00"):
        with pytest.raises(ValueError):
            compact.append(bad)
    assert compact.size == 1
    assert compact.root() == LEAVES[0]


def test_compact_range_append_is_amortised_constant(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _counting_sha256(monkeypatch)
    compact = CompactRange()
    n = 5000
    for i in range(n):
        compact.append(LEAVES[i % 200])
    # A merge per carry: n - popcount(n) node hashes in total, under one per append.
    assert calls[0] == n - n.bit_count()


# --------------------------------------------------------------------------------------
# Properties: every proof verifies, and every tampering is caught.

_FAST = settings(max_examples=150, deadline=None)


def _flip(value: bytes, position: int, mask: int) -> bytes:
    i = position % len(value)
    return value[:i] + bytes([value[i] ^ mask]) + value[i + 1 :]


@st.composite
def trees(draw: st.DrawFn, max_size: int = 300) -> tuple[list[bytes], bytes]:
    n = draw(st.integers(1, max_size))
    salt = draw(st.binary(max_size=8))
    leaves = [leaf_hash(e) for e in entries(n, salt=b"T" + salt)]
    return leaves, root_from_leaves(leaves)


flips = st.tuples(st.integers(0, 31), st.integers(1, 255))


@_FAST
@given(tree=trees(), data=st.data(), flip=flips)
def test_inclusion_proofs_verify_and_tampering_fails(
    tree: tuple[list[bytes], bytes], data: st.DataObject, flip: tuple[int, int]
) -> None:
    leaves, root = tree
    n = len(leaves)
    m = data.draw(st.integers(0, n - 1), label="index")
    leaf = leaves[m]
    proof = inclusion_proof(m, leaves)
    assert verify_inclusion(m, n, leaf, proof, root)

    assert not verify_inclusion(m, n, _flip(leaf, *flip), proof, root)
    assert not verify_inclusion(m, n, leaf, proof, _flip(root, *flip))
    for i in range(len(proof)):
        bad = [*proof[:i], _flip(proof[i], *flip), *proof[i + 1 :]]
        assert not verify_inclusion(m, n, leaf, bad, root)
    assert not verify_inclusion(m, n, leaf, [*proof, root], root)
    assert not verify_inclusion(m, n, leaf, [root, *proof], root)
    if proof:
        assert not verify_inclusion(m, n, leaf, proof[:-1], root)
        assert not verify_inclusion(m, n, leaf, proof[1:], root)

    if n > 1:
        other = data.draw(st.integers(0, n - 1).filter(lambda j: j != m), label="other")
        assert not verify_inclusion(other, n, leaf, proof, root)
    # A proof does not carry the size: another size whose path has the same shape
    # folds the same hashes in the same order, so it verifies too (the size is bound by the
    # signed tree head, not the proof). Any other size must fail.
    size = data.draw(st.integers(0, n + 70).filter(lambda s: s != n), label="size")
    same_shape = m < size and ref_inclusion_shape(m, size) == ref_inclusion_shape(m, n)
    assert verify_inclusion(m, size, leaf, proof, root) == same_shape
    index2 = data.draw(st.integers(0, n + 70), label="index2")
    same_shape = index2 < size and ref_inclusion_shape(index2, size) == ref_inclusion_shape(m, n)
    assert verify_inclusion(index2, size, leaf, proof, root) == same_shape


def test_inclusion_proof_does_not_bind_the_size() -> None:
    """Documented behaviour of RFC 6962, not a bug: why sizes must come from a signed head."""
    leaves = LEAVES[:5]
    root = root_from_leaves(leaves)
    proof = inclusion_proof(0, leaves)
    assert verify_inclusion(0, 6, leaves[0], proof, root)  # same shape as (0, 5)
    assert not verify_inclusion(0, 4, leaves[0], proof, root)
    assert not verify_inclusion(0, 10, leaves[0], proof, root)
    # Leaf 4 of 5 hangs right under the root, next to the subtree of leaves 0..3: to a
    # verifier that is leaf 1 of 2. With the size fixed, no other index verifies.
    proof = inclusion_proof(4, leaves)
    assert verify_inclusion(1, 2, leaves[4], proof, root)
    assert not any(verify_inclusion(i, 5, leaves[4], proof, root) for i in range(4))


@_FAST
@given(tree=trees(), data=st.data(), flip=flips)
def test_consistency_proofs_verify_and_tampering_fails(
    tree: tuple[list[bytes], bytes], data: st.DataObject, flip: tuple[int, int]
) -> None:
    leaves, new_root = tree
    n = len(leaves)
    m = data.draw(st.integers(1, n), label="old_size")
    old_root = root_from_leaves(leaves[:m])
    proof = consistency_proof(m, leaves)
    assert verify_consistency(m, n, old_root, new_root, proof)
    if m == n:
        assert proof == []
        assert not verify_consistency(m, n, old_root, new_root, [old_root])
        assert not verify_consistency(m, n, _flip(old_root, *flip), new_root, proof)
        return

    assert proof
    assert not verify_consistency(m, n, _flip(old_root, *flip), new_root, proof)
    assert not verify_consistency(m, n, old_root, _flip(new_root, *flip), proof)
    assert not verify_consistency(m, n, new_root, old_root, proof)
    for i in range(len(proof)):
        bad = [*proof[:i], _flip(proof[i], *flip), *proof[i + 1 :]]
        assert not verify_consistency(m, n, old_root, new_root, bad)
    assert not verify_consistency(m, n, old_root, new_root, [])
    assert not verify_consistency(m, n, old_root, new_root, proof[:-1])
    assert not verify_consistency(m, n, old_root, new_root, proof[1:])
    assert not verify_consistency(m, n, old_root, new_root, [*proof, new_root])
    assert not verify_consistency(m, n, old_root, new_root, [old_root, *proof])
    # A different old root of the same size (a rewritten history) is caught.
    forged = [*leaves[: m - 1], leaf_hash(b"forged")]
    assert not verify_consistency(m, n, root_from_leaves(forged), new_root, proof)

    # As for inclusion: other sizes verify exactly when the proof has the same shape.
    m2 = data.draw(st.integers(0, n + 5), label="old_size2")
    n2 = data.draw(st.integers(0, n + 70), label="new_size2")
    same_shape = 0 < m2 <= n2 and ref_consistency_shape(m2, n2) == ref_consistency_shape(m, n)
    assert verify_consistency(m2, n2, old_root, new_root, proof) == same_shape


def test_consistency_proof_edge_cases() -> None:
    r1, r5 = root_from_leaves(LEAVES[:1]), root_from_leaves(LEAVES[:5])
    assert verify_consistency(5, 5, r5, r5, [])
    assert not verify_consistency(5, 5, r5, r1, [])
    assert not verify_consistency(0, 5, EMPTY_ROOT, r5, [])  # no proof from the empty tree
    assert not verify_consistency(0, 0, EMPTY_ROOT, EMPTY_ROOT, [])
    assert not verify_consistency(5, 1, r5, r1, consistency_proof(1, LEAVES[:5]))


# --------------------------------------------------------------------------------------
# Malformed input: False, never an exception.

_H = LEAVES[0]


@pytest.mark.parametrize(
    ("index", "size", "leaf", "proof", "root"),
    [
        (0, 0, _H, [], _H),  # empty tree
        (1, 1, _H, [], _H),  # index == size
        (2, 1, _H, [], _H),  # index > size
        (-1, 1, _H, [], _H),
        (0, -1, _H, [], _H),
        (True, 2, _H, [_H], _H),  # a bool is not an index
        (0, 1.0, _H, [], _H),
        ("0", 1, _H, [], _H),
        (0, 1, _H, [_H], _H),  # proof too long
        (0, 2, _H, [], _H),  # proof too short
        (0, 1, _H[:31], [], _H[:31]),  # short hashes
        (0, 1, _H + b"!", [], _H + b"!"),
        (0, 1, bytearray(_H), [], _H),
        (0, 1, _H, [], "not bytes"),
        (0, 2, _H, [_H[:16]], _H),
        (0, 2, _H, [_H.hex()], _H),
        (0, 2, _H, None, _H),
        (0, 2, _H, 5, _H),
        (0, 2, _H, _H, _H),  # a bytes blob, not a list of hashes
        (0, 2, _H, [None], _H),
        (10**40, 10**40 + 1, _H, [_H] * 200, _H),  # huge sizes, long proof
    ],
)
def test_verify_inclusion_malformed(
    index: Any, size: Any, leaf: Any, proof: Any, root: Any
) -> None:
    assert verify_inclusion(index, size, leaf, proof, root) is False


@pytest.mark.parametrize(
    ("old", "new", "old_root", "new_root", "proof"),
    [
        (0, 1, EMPTY_ROOT, _H, []),
        (2, 1, _H, _H, [_H]),
        (-1, 1, _H, _H, [_H]),
        (1, 2, _H, _H, []),  # empty proof
        (1, 1, _H, _H, [_H]),  # equal sizes need an empty proof
        (1, 2, _H, _H, [_H, _H]),  # too long
        (True, 2, _H, _H, [_H]),
        (1, 2.0, _H, _H, [_H]),
        (1, 2, _H[:31], _H, [_H]),
        (1, 2, _H, None, [_H]),
        (1, 2, _H, _H, [b""]),
        (1, 2, _H, _H, [_H + b"\x00"]),
        (1, 2, _H, _H, None),
        (1, 2, _H, _H, 7),
        (1, 2, _H, _H, _H),
        (1, 2, _H, _H, ["x" * 32]),
        (10**40, 10**41, _H, _H, [_H] * 300),
    ],
)
def test_verify_consistency_malformed(
    old: Any, new: Any, old_root: Any, new_root: Any, proof: Any
) -> None:
    assert verify_consistency(old, new, old_root, new_root, proof) is False


_anything = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 40),
    st.integers(),
    st.floats(allow_nan=True),
    st.text(max_size=4),
    st.binary(max_size=40),
    st.sampled_from([_H, LEAVES[1], EMPTY_ROOT]),
    st.lists(
        st.one_of(st.binary(max_size=40), st.sampled_from([_H, LEAVES[1]]), st.none()),
        max_size=8,
    ),
)


@settings(max_examples=300, deadline=None)
@given(st.tuples(_anything, _anything, _anything, _anything, _anything))
def test_verifiers_never_raise(args: tuple[Any, Any, Any, Any, Any]) -> None:
    assert isinstance(verify_inclusion(*args), bool)
    assert isinstance(verify_consistency(*args), bool)


def test_verifiers_accept_any_sequence_of_hashes() -> None:
    leaves = LEAVES[:11]
    root = root_from_leaves(leaves)
    proof = inclusion_proof(6, leaves)
    assert verify_inclusion(6, 11, leaves[6], tuple(proof), root)
    cons = consistency_proof(4, leaves)
    assert verify_consistency(4, 11, root_from_leaves(leaves[:4]), root, tuple(cons))
