"""A copy of every signed tree head, kept outside the database.

Someone who can write to the database can delete the newest checkpoint row, then edit the
events it covered and recompute their chain: nothing left in the database contradicts them.
Transparency logs defend against that with witnesses that keep the heads they have seen;
opsgate keeps one beside the signing key (a JSON line per checkpoint, fsynced), so a
checkpoint deleted or replaced in the database is found by `AuditLog.verify`. Keep a copy
elsewhere (a CI artefact, another host) for the strongest check: `opsgate audit verify
--witness FILE`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from opsgate.errors import AuditIntegrityError, StoreError

__all__ = ["CheckpointWitness", "WitnessedHead", "witness_path_for"]


def witness_path_for(key_path: Path) -> Path:
    """Where the witness of the checkpoints signed with the key at ``key_path`` lives."""
    return key_path.parent / "audit-witness.jsonl"


@dataclass(frozen=True, slots=True)
class WitnessedHead:
    """One signed tree head as the witness saw it."""

    tree_size: int
    root_hash: bytes
    chain_hash: bytes
    signature: bytes


class CheckpointWitness:
    """An append-only file of signed tree heads (any number of logs: lines carry the log id)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def record(self, log_id: str, tree_size: int, root: bytes, chain: bytes, sig: bytes) -> None:
        """Append one head and fsync it.

        Raises:
            StoreError: the file cannot be written (the checkpoint itself is stored).
        """
        line = orjson.dumps(
            {
                "log_id": log_id,
                "tree_size": tree_size,
                "root_hash": root.hex(),
                "chain_hash": chain.hex(),
                "signature": sig.hex(),
            }
        )
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            try:
                os.write(fd, line + b"\n")  # one write: concurrent appenders never interleave
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            raise StoreError(
                f"the checkpoint was signed, but its witness `{self.path}` cannot be written "
                f"({exc.strerror})"
            ) from None

    def heads(self, log_id: str) -> list[WitnessedHead]:
        """The heads witnessed for ``log_id``, in the order they were signed.

        Raises:
            AuditIntegrityError: the witness file was edited into something unreadable.
        """
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise AuditIntegrityError(
                f"the checkpoint witness `{self.path}` cannot be read ({exc.strerror})"
            ) from None
        lines = data.split(b"\n")
        if lines and not data.endswith(b"\n"):
            lines.pop()  # a line cut short by a crash while it was written
        found: list[WitnessedHead] = []
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                doc: Any = orjson.loads(line)
                if doc["log_id"] != log_id:
                    continue
                size = doc["tree_size"]
                if not isinstance(size, int) or isinstance(size, bool):
                    raise TypeError("tree_size")
                found.append(
                    WitnessedHead(
                        size,
                        bytes.fromhex(doc["root_hash"]),
                        bytes.fromhex(doc["chain_hash"]),
                        bytes.fromhex(doc["signature"]),
                    )
                )
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
                raise AuditIntegrityError(
                    f"line {number} of the checkpoint witness `{self.path}` is not a signed "
                    "tree head"
                ) from None
        return found
