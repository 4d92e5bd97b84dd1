"""Audit rows read as an attacker may have left them.

Someone with write access to the database can drop the append-only triggers and then edit,
null or retype any column (SQLite keeps whatever type is written: `replace()` on a blob gives
text). Every value read from an audit table passes through here: a value of the wrong type
is a finding named by its sequence number, never a `TypeError`; the columns stored beside an
event's hashed body (`run_id`, `type`, `at`, `seq`) must say what the body says, since
queries select by them.
"""

from __future__ import annotations

from typing import Any

import orjson

from opsgate.audit._records import Checkpoint
from opsgate.errors import AuditIntegrityError

__all__ = [
    "CHECKPOINTS_SQL",
    "RETENTION_SQL",
    "as_blob",
    "as_float",
    "as_int",
    "as_text",
    "check_columns",
    "decode_body",
    "decode_checkpoint",
]

# Audit rows are read as plain SQL: no column type processing, so a value of another type
# (an attacker's edit) reaches the functions here, which name it, instead of a driver error
CHECKPOINTS_SQL = (
    "SELECT tree_size, root_hash, chain_hash, at, key_id, signature, frontier "
    "FROM audit_checkpoints"
)
RETENTION_SQL = "SELECT upto, archived_at, archive_sha256, archive_name FROM audit_retention"

_SHOWN = 80


def _describe(value: Any) -> str:
    """A stored value for a message: its type and a bounded repr (values are hostile)."""
    text = repr(value)
    if len(text) > _SHOWN:
        text = text[: _SHOWN - 1] + "…"
    return f"{type(value).__name__} {text}"


def _retyped(what: str, value: Any, seq: int | None) -> AuditIntegrityError:
    if value is None:
        return AuditIntegrityError(f"{what} is null: nulled", seq=seq)
    return AuditIntegrityError(f"{what} is stored as {_describe(value)}: retyped", seq=seq)


def as_blob(value: Any, what: str, seq: int | None, size: int | None = None) -> bytes:
    """The bytes of a binary column; text, null or another type is tampering."""
    if isinstance(value, bytes | bytearray | memoryview):
        data = bytes(value)
        if size is not None and len(data) != size:
            raise AuditIntegrityError(
                f"{what} holds {len(data)} bytes instead of {size}: edited", seq=seq
            )
        return data
    if isinstance(value, str):
        raise AuditIntegrityError(
            f"{what} is stored as text, not as the bytes that were hashed: retyped", seq=seq
        )
    raise _retyped(what, value, seq)


def as_int(value: Any, what: str, seq: int | None) -> int:
    """An integer column (a bool, float or text is tampering)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise _retyped(what, value, seq)


def as_float(value: Any, what: str, seq: int | None) -> float:
    """A timestamp column (int or float)."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    raise _retyped(what, value, seq)


def as_text(value: Any, what: str, seq: int | None) -> str:
    """A text column."""
    if isinstance(value, str):
        return value
    raise _retyped(what, value, seq)


def decode_body(body: bytes, seq: int) -> dict[str, Any]:
    """An event's body as the record it must be (after its hash was checked)."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        doc = None
    if not isinstance(doc, dict) or not {"seq", "run_id", "type", "at", "data"} <= doc.keys():
        raise AuditIntegrityError(f"event {seq}'s body is not an audit record: edited", seq=seq)
    return doc


def _columns_match(seq: int, run_id: Any, kind: Any, at: Any, body: bytes) -> bool:
    """The fast path of `check_columns`: a record's body is canonical JSON with sorted keys
    (``{"at":…,"data":{…},"run_id":…,"seq":…,"type":…,"v":1}``), so columns that agree with
    it rebuild its first and last bytes exactly; no parse of ``data``. Any doubt (another
    type, an int ``at``) goes to the full check."""
    if type(run_id) is not str or type(kind) is not str or type(at) is not float:
        return False
    try:
        head = b'{"at":' + orjson.dumps(at) + b',"data":'
        tail = (
            b',"run_id":'
            + orjson.dumps(run_id)
            + b',"seq":'
            + str(seq).encode()
            + b',"type":'
            + orjson.dumps(kind)
            + b',"v":1}'
        )
    except orjson.JSONEncodeError:
        return False
    return body.startswith(head) and body.endswith(tail)


def check_columns(seq: int, run_id: Any, kind: Any, at: Any, body: bytes) -> dict[str, Any] | None:
    """Check the columns stored beside a body against the body; returns the decoded body
    when it had to be decoded (None: the columns matched on the fast path).

    Raises:
        AuditIntegrityError: the first column that does not say what the body says.
    """
    if _columns_match(seq, run_id, kind, at, body):
        return None
    doc = decode_body(body, seq)
    if doc["seq"] != seq or isinstance(doc["seq"], bool):
        raise AuditIntegrityError(
            f"event {seq}'s body is event {doc['seq']!r}: moved or reordered", seq=seq
        )
    for column, stored, signed in (("run_id", run_id, doc["run_id"]), ("type", kind, doc["type"])):
        if as_text(stored, f"event {seq}'s `{column}` column", seq) != signed:
            raise AuditIntegrityError(
                f"event {seq}'s `{column}` column says {_describe(stored)} but its hashed body "
                f"says {_describe(signed)}: the column was edited",
                seq=seq,
            )
    if as_float(at, f"event {seq}'s `at` column", seq) != doc["at"]:
        raise AuditIntegrityError(
            f"event {seq}'s `at` column says {_describe(at)} but its hashed body says "
            f"{_describe(doc['at'])}: the column was edited",
            seq=seq,
        )
    return doc


def decode_checkpoint(row: Any) -> Checkpoint:
    """A checkpoint row as stored; any column nulled or retyped is named."""
    size = as_int(row.tree_size, "a checkpoint's `tree_size`", None)
    name = f"the checkpoint at {size}"
    seq = max(size - 1, 0)
    frontier_text = as_text(row.frontier, f"{name}'s `frontier`", seq)
    try:
        hexes = orjson.loads(frontier_text)
        frontier = tuple(bytes.fromhex(h) for h in hexes)
    except (orjson.JSONDecodeError, TypeError, ValueError):
        raise AuditIntegrityError(
            f"{name}'s `frontier` is not a list of hashes: edited", seq=seq
        ) from None
    if any(len(h) != 32 for h in frontier):
        raise AuditIntegrityError(f"{name}'s `frontier` holds a short hash: edited", seq=seq)
    return Checkpoint(
        size,
        as_blob(row.root_hash, f"{name}'s `root_hash`", seq, 32),
        as_blob(row.chain_hash, f"{name}'s `chain_hash`", seq, 32),
        as_float(row.at, f"{name}'s `at`", seq),
        as_text(row.key_id, f"{name}'s `key_id`", seq),
        as_blob(row.signature, f"{name}'s `signature`", seq),
        frontier,
    )
