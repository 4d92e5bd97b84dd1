"""Inclusion proofs of many events of one run against one signed checkpoint, built from a
single read of the log.

`AuditLog.inclusion` builds one proof per call and reads the whole log each time: checking
a run of k events in a log of N costs k full reads (2.2 s for 10 events of 100,000 on the
project's machine). Here the leaves are hashed once and every subtree root is kept, so each
further proof costs O(log N). The audit package exports no batch of proofs; this builds
them over the exported table and checks each with the exported `verify_inclusion` and the
checkpoint's signature with its exported statement, so a wrong proof here can only fail a
check, never pass one. Logs with archived segments fall back to `AuditLog.inclusion`.
"""

from __future__ import annotations

from collections.abc import Sequence

from cryptography.exceptions import InvalidSignature
from sqlalchemy import func, select

from opsgate.audit import Checkpoint, checkpoint_statement, leaf_hash, load_public_key, node_hash
from opsgate.store import Store, audit_events, audit_retention, meta

__all__ = ["ProofSet", "batch_proofs", "signature_ok"]


class _Tree:
    """RFC 6962 Merkle tree hashes over ``leaves``, subtree roots memoised by range."""

    def __init__(self, leaves: Sequence[bytes]) -> None:
        self.leaves = leaves
        self._roots: dict[tuple[int, int], bytes] = {}

    def root(self, lo: int, hi: int) -> bytes:
        """MTH(D[lo:hi]) (RFC 6962 2.1)."""
        if hi - lo == 1:
            return self.leaves[lo]
        key = (lo, hi)
        found = self._roots.get(key)
        if found is None:
            k = _split(hi - lo)
            found = node_hash(self.root(lo, lo + k), self.root(lo + k, hi))
            self._roots[key] = found
        return found

    def path(self, index: int, lo: int, hi: int) -> list[bytes]:
        """PATH(index, D[lo:hi]) (RFC 6962 2.1.1), leaf to root."""
        if hi - lo <= 1:
            return []
        k = _split(hi - lo)
        if index < lo + k:
            return [*self.path(index, lo, lo + k), self.root(lo + k, hi)]
        return [*self.path(index, lo + k, hi), self.root(lo, lo + k)]


def _split(n: int) -> int:
    """The largest power of two smaller than ``n`` (n > 1)."""
    return 1 << ((n - 1).bit_length() - 1)


class ProofSet:
    """The leaves and proofs of a log's first ``tree_size`` events.

    Attributes:
        bodies: Each event's stored body, by sequence number.
    """

    def __init__(self, bodies: list[bytes], tree_size: int) -> None:
        self.bodies = bodies
        self.tree_size = tree_size
        self._tree = _Tree([leaf_hash(b) for b in bodies])

    def leaf(self, seq: int) -> bytes:
        """Event ``seq``'s leaf hash."""
        return self._tree.leaves[seq]

    def proof(self, seq: int) -> list[bytes]:
        """Event ``seq``'s audit path to the checkpoint's root."""
        return self._tree.path(seq, 0, self.tree_size)


def batch_proofs(store: Store, tree_size: int) -> ProofSet | None:
    """A `ProofSet` over the log's first ``tree_size`` events, or None when they are not all
    in the database (archived segments: the caller falls back to `AuditLog.inclusion`)."""
    with store.engine.connect() as conn:
        if conn.execute(select(func.count()).select_from(audit_retention)).scalar():
            return None
        bodies: list[bytes] = []
        rows = conn.execute(
            select(audit_events.c.seq, audit_events.c.body)
            .where(audit_events.c.seq < tree_size)
            .order_by(audit_events.c.seq)
        )
        for seq, body in rows:
            if seq != len(bodies) or not isinstance(body, bytes | memoryview):
                return None  # a gap or a retyped row: the per-event path names it
            bodies.append(bytes(body))
    if len(bodies) != tree_size:
        return None
    return ProofSet(bodies, tree_size)


def signature_ok(store: Store, log_id: str, checkpoint: Checkpoint) -> bool:
    """Whether ``checkpoint`` is signed by the key the store records under its key id."""
    with store.engine.connect() as conn:
        pem = conn.execute(
            select(meta.c.value).where(meta.c.key == f"public_key:{checkpoint.key_id}")
        ).scalar()
    if not pem:
        return False
    statement = checkpoint_statement(
        log_id,
        checkpoint.tree_size,
        checkpoint.root_hash,
        checkpoint.chain_hash,
        checkpoint.at,
        checkpoint.key_id,
    )
    try:
        load_public_key(pem).verify(checkpoint.signature, statement)
    except (InvalidSignature, ValueError):
        return False
    return True
