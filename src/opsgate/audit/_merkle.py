"""RFC 6962 / RFC 9162 Merkle tree hashing for the tamper-evident audit log.

Why a Merkle tree: a hash chain proves that a log was not edited, but only to someone who
replays it from the first entry. A Merkle tree over the entries gives one 32-byte root that
commits to the whole log *and* two short proofs about it:

- an **inclusion proof** shows that an entry is at a given position of the tree that has a
  given root, with about log2(n) hashes, without the rest of the log;
- a **consistency proof** shows that the tree of ``old_size`` entries is a prefix of the
  tree of ``new_size`` entries: the log only grew, nothing earlier was rewritten or dropped.

Why RFC 6962 exactly (and not "some" Merkle tree): it is what Certificate Transparency,
Trillian, transparency-dev/merkle and Sigstore Rekor use, so a root or a proof produced here
can be checked by their verifiers (in any language) and the other way round. The details
that must not drift are the ones that make it interoperable and safe:

- leaves are hashed as ``SHA-256(0x00 || entry)`` and interior nodes as
  ``SHA-256(0x01 || left || right)``. The two prefixes keep a leaf from being passed off as
  an interior node (the second-preimage attack on plain Merkle trees);
- a tree of ``n > 1`` leaves splits at the largest power of two *strictly smaller* than
  ``n`` (not at the midpoint), so the left subtree is always perfect and the tree of a
  prefix of the log is a part of the tree of the whole log;
- the empty tree's hash is ``SHA-256("")``.

`CompactRange` keeps the running root of an append-only log in O(log n) state (the hashes
of the perfect subtrees along its right edge, one per set bit of the size), so a writer can
append and publish roots without keeping, or rereading, the whole tree. Its state is the
same "compact range" as Trillian's and can be saved and restored.

The verifiers follow the algorithms of RFC 9162 section 2.1.3.2 and 2.1.4.2. They run on
data that comes from outside (a proof served by someone else), so they return ``False``
for anything malformed instead of raising: a caller only has one outcome to handle.

Note what a proof does *not* do: it binds an entry (or an old root) to a root, and the
root binds the size only through whoever signs the pair ``(size, root)``. Verify against
the size and root of a signed tree head, never against sizes the prover supplies.

Everything here is pure: SHA-256 from `hashlib`, no I/O, no third-party code.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence

__all__ = [
    "EMPTY_ROOT",
    "HASH_SIZE",
    "CompactRange",
    "consistency_proof",
    "inclusion_proof",
    "leaf_hash",
    "node_hash",
    "root_from_leaves",
    "verify_consistency",
    "verify_inclusion",
]

_sha256 = hashlib.sha256

_LEAF_PREFIX = b"\x00"
_NODE_PREFIX = b"\x01"

HASH_SIZE = 32
"""Length in bytes of every hash here (SHA-256)."""

EMPTY_ROOT: bytes = _sha256(b"").digest()
"""The Merkle tree hash of the empty tree: SHA-256 of the empty string (RFC 6962 2.1)."""


def leaf_hash(entry: bytes) -> bytes:
    """Hash one log entry as a leaf: ``SHA-256(0x00 || entry)``.

    Args:
        entry: The serialised log entry (any length).

    Returns:
        The 32-byte leaf hash.
    """
    return _sha256(_LEAF_PREFIX + entry).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """Hash two child hashes into their parent: ``SHA-256(0x01 || left || right)``.

    Args:
        left: Hash of the left subtree.
        right: Hash of the right subtree.

    Returns:
        The 32-byte interior node hash.
    """
    return _sha256(_NODE_PREFIX + left + right).digest()


def _split(n: int) -> int:
    """Return the largest power of two strictly smaller than ``n`` (``n >= 2``)."""
    return 1 << ((n - 1).bit_length() - 1)


def _pair_up(items: Iterator[bytes], odd: bytes | None) -> list[bytes]:
    """Hash an iterator of nodes pairwise, then carry ``odd`` (the unpaired last node) up.

    ``zip(items, items)`` pairs neighbours and drops an unpaired last item by itself.
    """
    level = [_sha256(_NODE_PREFIX + a + b).digest() for a, b in zip(items, items, strict=False)]
    if odd is not None:
        level.append(odd)
    return level


def _subtree_root(leaf_hashes: Sequence[bytes], lo: int, hi: int) -> bytes:
    """Return MTH(D[lo:hi]) over already hashed leaves, without copying the range.

    Hashing level by level, pairing neighbours from the left and carrying an unpaired last
    node up unchanged, builds exactly the RFC 6962 tree (whose left subtree is always the
    perfect one of the largest power of two below ``n`` leaves). It is iterative, so there
    is no recursion depth to worry about, and the inner loop is a comprehension.
    """
    count = hi - lo
    if count <= 0:
        return EMPTY_ROOT
    if count == 1:
        return leaf_hashes[lo]
    odd = leaf_hashes[hi - 1] if count & 1 else None
    level = _pair_up(map(leaf_hashes.__getitem__, range(lo, hi)), odd)
    while len(level) > 1:
        level = _pair_up(iter(level), level[-1] if len(level) & 1 else None)
    return level[0]


def root_from_leaves(leaf_hashes: Sequence[bytes]) -> bytes:
    """Return the Merkle tree hash (MTH) of a list of leaf hashes.

    It costs ``n - 1`` node hashes, iteratively. The leaf hashes are trusted to be the
    output of `leaf_hash` and are not checked here (unlike `CompactRange.append`).

    Args:
        leaf_hashes: The leaves, already hashed with `leaf_hash`, in log order.

    Returns:
        The 32-byte root; `EMPTY_ROOT` for no leaves.
    """
    return _subtree_root(leaf_hashes, 0, len(leaf_hashes))


def _is_hash(value: object) -> bool:
    return isinstance(value, bytes) and len(value) == HASH_SIZE


def _is_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


class CompactRange:
    """The running root of an append-only tree, kept in O(log n) hashes.

    The state is the list of roots of the perfect subtrees that the first ``size`` leaves
    split into, left to right, largest first: one per set bit of ``size`` (for 13 leaves,
    ``0b1101``: the subtrees of 8, 4 and 1 leaves). Appending a leaf merges equal-sized
    subtrees like a binary counter carries, so it costs amortised O(1) hashes; `root`
    folds the state from the right in O(log n).

    Save ``(size, hashes)`` to restore it later with ``CompactRange(size, hashes)``.
    """

    __slots__ = ("_hashes", "_size")

    def __init__(self, size: int = 0, hashes: Sequence[bytes] = ()) -> None:
        """Start an empty range, or restore one from a saved ``(size, hashes)``.

        Args:
            size: Number of leaves already appended.
            hashes: The saved `hashes` for that size: one per set bit of ``size``.

        Raises:
            ValueError: If ``size`` is negative, or ``hashes`` is not ``popcount(size)``
                32-byte hashes.
        """
        if not isinstance(size, int) or isinstance(size, bool):
            raise TypeError(f"size must be an int, not {type(size).__name__}")
        if size < 0:
            raise ValueError(f"size must be >= 0, got {size}")
        saved = list(hashes)
        expected = size.bit_count()
        if len(saved) != expected:
            raise ValueError(
                f"a compact range of size {size} has {expected} hashes, got {len(saved)}"
            )
        if not all(_is_hash(h) for h in saved):
            raise ValueError(f"compact range hashes must be {HASH_SIZE}-byte bytes")
        self._size = size
        self._hashes = saved

    @property
    def size(self) -> int:
        """Number of leaves appended so far."""
        return self._size

    @property
    def hashes(self) -> tuple[bytes, ...]:
        """Roots of the perfect subtrees, left to right, largest subtree first."""
        return tuple(self._hashes)

    def append(self, leaf_hash: bytes) -> None:
        """Append one leaf hash (from `leaf_hash`) to the right of the tree.

        Args:
            leaf_hash: The 32-byte leaf hash.

        Raises:
            ValueError: If ``leaf_hash`` is not 32 bytes.
        """
        if not _is_hash(leaf_hash):
            raise ValueError(f"leaf hash must be {HASH_SIZE}-byte bytes")
        hashes = self._hashes
        hashes.append(leaf_hash)
        # Each trailing 1 bit of the old size is a perfect subtree as large as the one
        # being carried: merge them, exactly as the binary increment carries.
        carry = self._size
        while carry & 1:
            right = hashes.pop()
            hashes[-1] = _sha256(_NODE_PREFIX + hashes[-1] + right).digest()
            carry >>= 1
        self._size += 1

    def root(self) -> bytes:
        """Return the Merkle tree hash of the leaves appended so far.

        Returns:
            The 32-byte root; `EMPTY_ROOT` if nothing was appended.
        """
        if not self._hashes:
            return EMPTY_ROOT
        root = self._hashes[-1]
        for left in reversed(self._hashes[:-1]):
            root = _sha256(_NODE_PREFIX + left + root).digest()
        return root

    def __repr__(self) -> str:
        return f"CompactRange(size={self._size}, root={self.root().hex()})"


def inclusion_proof(index: int, leaf_hashes: Sequence[bytes]) -> list[bytes]:
    """Return the audit path PATH(index, D[n]) of RFC 6962 section 2.1.1.

    The path lists the sibling subtree roots from the leaf up to the root; it costs
    O(n) hashes (every leaf outside the path's subtrees is hashed once) and no recursion.

    Args:
        index: Position of the leaf, ``0 <= index < n``.
        leaf_hashes: All ``n`` leaf hashes of the tree, in log order.

    Returns:
        The proof, ``[]`` for a tree of one leaf.

    Raises:
        ValueError: If ``index`` is outside the tree.
    """
    n = len(leaf_hashes)
    if not 0 <= index < n:
        raise ValueError(f"leaf index {index} is outside a tree of {n} leaves")
    path: list[bytes] = []  # collected from the root down, returned leaf up
    lo, hi = 0, n
    while hi - lo > 1:
        mid = lo + _split(hi - lo)
        if index < mid:
            path.append(_subtree_root(leaf_hashes, mid, hi))
            hi = mid
        else:
            path.append(_subtree_root(leaf_hashes, lo, mid))
            lo = mid
    path.reverse()
    return path


def consistency_proof(old_size: int, leaf_hashes: Sequence[bytes]) -> list[bytes]:
    """Return the consistency proof PROOF(old_size, D[n]) of RFC 6962 section 2.1.2.

    Args:
        old_size: Size of the earlier tree, ``0 < old_size <= n``.
        leaf_hashes: All ``n`` leaf hashes of the current tree, in log order.

    Returns:
        The proof; ``[]`` when ``old_size == n``.

    Raises:
        ValueError: If ``old_size`` is not in ``1..n``.
    """
    n = len(leaf_hashes)
    if not 0 < old_size <= n:
        raise ValueError(f"old size {old_size} is not in 1..{n}")
    proof: list[bytes] = []  # collected from the root down, returned bottom up
    lo, hi, m = 0, n, old_size
    old_is_left_edge = True  # SUBPROOF's flag b: the old tree is a complete subtree here
    while m < hi - lo:
        k = _split(hi - lo)
        if m <= k:
            proof.append(_subtree_root(leaf_hashes, lo + k, hi))
            hi = lo + k
        else:
            proof.append(_subtree_root(leaf_hashes, lo, lo + k))
            lo += k
            m -= k
            old_is_left_edge = False
    if not old_is_left_edge:
        # SUBPROOF(m, D[m], false): the subtree holding the old tree's right edge.
        proof.append(_subtree_root(leaf_hashes, lo, hi))
    proof.reverse()
    return proof


def verify_inclusion(
    index: int, size: int, leaf_hash: bytes, proof: Sequence[bytes], root: bytes
) -> bool:
    """Check that ``leaf_hash`` is leaf ``index`` of the tree of ``size`` with ``root``.

    This is the algorithm of RFC 9162 section 2.1.3.2.

    Args:
        index: The leaf's position.
        size: The tree size, from a trusted (signed) tree head.
        leaf_hash: The leaf's hash (see `leaf_hash`).
        proof: The audit path, as `inclusion_proof` returns it.
        root: The tree's root, from the same trusted tree head.

    Returns:
        ``True`` if the proof is valid. ``False`` otherwise, including for malformed input
        (``index >= size``, a proof of the wrong length, values that are not 32-byte
        hashes, wrong types); it never raises.
    """
    if not (_is_count(index) and _is_count(size) and index < size):
        return False
    if not (_is_hash(leaf_hash) and _is_hash(root)):
        return False
    try:
        path = list(proof)
    except TypeError:
        return False
    if not all(_is_hash(p) for p in path):
        return False
    fn, sn = index, size - 1
    r = leaf_hash
    for p in path:
        if sn == 0:
            return False  # the proof is too long
        if fn & 1 or fn == sn:
            r = _sha256(_NODE_PREFIX + p + r).digest()
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            r = _sha256(_NODE_PREFIX + r + p).digest()
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root


def verify_consistency(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> bool:
    """Check that the tree ``(old_size, old_root)`` is a prefix of ``(new_size, new_root)``.

    This is the algorithm of RFC 9162 section 2.1.4.2, plus the trivial case of equal
    sizes (valid with an empty proof when the roots are equal), which `consistency_proof`
    produces and which the RFC's algorithm does not cover. A consistency proof from the
    empty tree is not defined (`consistency_proof` refuses ``old_size == 0``), so
    ``old_size == 0`` gives ``False``.

    Args:
        old_size: The earlier tree size, ``0 < old_size <= new_size``.
        new_size: The later tree size.
        old_root: Root of the earlier tree.
        new_root: Root of the later tree.
        proof: The proof, as `consistency_proof` returns it.

    Returns:
        ``True`` if the proof is valid. ``False`` otherwise, including for malformed input
        (sizes out of order or zero, a proof of the wrong length, values that are not
        32-byte hashes, wrong types); it never raises.
    """
    if not (_is_count(old_size) and _is_count(new_size) and 0 < old_size <= new_size):
        return False
    if not (_is_hash(old_root) and _is_hash(new_root)):
        return False
    try:
        path = list(proof)
    except TypeError:
        return False
    if not all(_is_hash(p) for p in path):
        return False
    if old_size == new_size:
        return not path and old_root == new_root
    if not path:
        return False
    if old_size & (old_size - 1) == 0:
        # The old tree is a complete subtree of the new one: the proof leaves its root out.
        path.insert(0, old_root)
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False  # the proof is too long
        if fn & 1 or fn == sn:
            fr = _sha256(_NODE_PREFIX + c + fr).digest()
            sr = _sha256(_NODE_PREFIX + c + sr).digest()
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = _sha256(_NODE_PREFIX + sr + c).digest()
        fn >>= 1
        sn >>= 1
    return sn == 0 and fr == old_root and sr == new_root
