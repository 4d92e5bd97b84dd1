"""The audit record format (version 1), in one place: what is hashed, chained and signed.

Each event is stored as ``body``, the canonical bytes of::

    {"v": 1, "seq": n, "run_id": ..., "type": ..., "at": ..., "data": {...}}

(sorted keys, no spaces, UTF-8; the exact bytes that were hashed are the bytes stored).
``data`` is the event's data as `Redactor.redact_event` leaves it: the actor fields of its
type (`opsgate.redaction.ACTOR_FIELDS`: ``invoker`` and ``agent_id`` of ``run_started``,
``approver`` of ``approval_granted``/``approval_denied``) keep the identity, with secrets
and credentials masked; every other field has secrets, credentials and personal data
masked. Events written before actors were kept carry a ``[redacted:email:…]`` marker where
an identity was an e-mail address. That is the same format, version 1: the layout is
unchanged, and a verifier re-hashes the stored bytes whatever their values, so every chain,
old, new or mixed, verifies as it did (the version is not bumped: it is also part of the
signed checkpoint statement, which external verifiers rebuild).

- leaf hash ``L(n) = SHA-256(0x00 || body(n))`` (RFC 6962 leaf);
- chain hash ``C(n) = SHA-256(C(n-1) || L(n))``, ``C(-1)`` = 32 zero bytes (`next_chain`);
- a checkpoint at size ``N`` stores the RFC 6962 Merkle root over ``L(0..N-1)``, ``C(N-1)``
  and an Ed25519 signature over the canonical statement (`checkpoint_statement`).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

__all__ = [
    "GENESIS",
    "RECORD_VERSION",
    "ArchivedSegment",
    "AuditRecord",
    "Checkpoint",
    "VerifyReport",
    "checkpoint_doc",
    "checkpoint_statement",
    "next_chain",
]

RECORD_VERSION = 1
#: The chain hash before the first event.
GENESIS = bytes(32)


def next_chain(previous: bytes, leaf: bytes) -> bytes:
    """The chain hash after an event whose leaf hash is ``leaf``: SHA-256(previous || leaf)."""
    return hashlib.sha256(previous + leaf).digest()


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """One stored event, decoded."""

    seq: int
    run_id: str
    type: str
    at: float
    data: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A signed tree head."""

    tree_size: int
    root_hash: bytes
    chain_hash: bytes
    at: float
    key_id: str
    signature: bytes
    frontier: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class ArchivedSegment:
    """Events ``[from_seq, to_seq)`` exported to ``path`` and dropped from the database."""

    from_seq: int
    to_seq: int
    path: Path
    sha256: str


@dataclass(frozen=True, slots=True)
class VerifyReport:
    """What `AuditLog.verify` checked."""

    events: int
    checkpoints: int
    seconds: float
    archives: int = 0
    archives_missing: tuple[str, ...] = ()
    witnessed: int = 0


def checkpoint_statement(
    log_id: str, tree_size: int, root_hash: bytes, chain_hash: bytes, at: float, key_id: str
) -> bytes:
    """The exact bytes a checkpoint signature covers (canonical JSON, sorted keys)."""
    return orjson.dumps(
        {
            "at": at,
            "chain_hash": chain_hash.hex(),
            "key_id": key_id,
            "log_id": log_id,
            "root_hash": root_hash.hex(),
            "tree_size": tree_size,
            "v": RECORD_VERSION,
        },
        option=orjson.OPT_SORT_KEYS,
    )


def checkpoint_doc(cp: Checkpoint) -> dict[str, Any]:
    """A checkpoint as JSON data (archives, proofs)."""
    return {
        "tree_size": cp.tree_size,
        "root_hash": cp.root_hash.hex(),
        "chain_hash": cp.chain_hash.hex(),
        "at": cp.at,
        "key_id": cp.key_id,
        "signature": cp.signature.hex(),
        "frontier": [h.hex() for h in cp.frontier],
    }
