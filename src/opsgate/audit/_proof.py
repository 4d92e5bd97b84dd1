"""Checking an inclusion proof document (what `opsgate audit prove` prints) offline.

Everything here can be re-implemented in a few lines with hashlib and any Ed25519
library; the README shows that stand-alone version. This one is the reference.
"""

from __future__ import annotations

import hashlib
from typing import Any

from opsgate.audit._merkle import verify_inclusion
from opsgate.audit._records import checkpoint_statement
from opsgate.audit._signing import load_public_key, verify_signature

__all__ = ["verify_inclusion_document"]


def verify_inclusion_document(document: dict[str, Any], public_key_pem: str) -> bool:
    """Whether the proof shows ``document["body"]`` is event ``seq`` of a log whose signed
    checkpoint verifies under ``public_key_pem``."""
    try:
        cp = document["checkpoint"]
        leaf = hashlib.sha256(b"\x00" + document["body"].encode()).digest()
        root = bytes.fromhex(cp["root_hash"])
        statement = checkpoint_statement(
            document["log_id"],
            document["tree_size"],
            root,
            bytes.fromhex(cp["chain_hash"]),
            cp["at"],
            cp["key_id"],
        )
        if not verify_signature(
            load_public_key(public_key_pem), bytes.fromhex(cp["signature"]), statement
        ):
            return False
        proof = [bytes.fromhex(h) for h in document["proof"]]
        return verify_inclusion(document["seq"], document["tree_size"], leaf, proof, root)
    except (KeyError, TypeError, ValueError):
        return False
