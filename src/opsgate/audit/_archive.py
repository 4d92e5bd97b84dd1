"""Audit archives: whole segments exported to a file that verifies offline, then dropped.

An archive (JSON) holds a segment's events as their exact bytes, the signed checkpoints at
both ends and the public keys; `verify_archive` checks it with nothing else. It is written,
fsynced and verified before anything is dropped, and the checkpoints stay in the database,
so the chain of signed tree heads remains whole (`opsgate.retention` decides what is old).
"""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
from sqlalchemy import func, insert, select, text
from sqlalchemy.exc import DBAPIError, OperationalError

from opsgate.audit._merkle import CompactRange, leaf_hash
from opsgate.audit._records import (
    GENESIS,
    RECORD_VERSION,
    ArchivedSegment,
    Checkpoint,
    checkpoint_doc,
    checkpoint_statement,
    next_chain,
)
from opsgate.audit._rows import CHECKPOINTS_SQL, decode_checkpoint
from opsgate.audit._signing import load_public_key, verify_signature
from opsgate.errors import AuditIntegrityError, StoreError
from opsgate.store import audit_events, audit_retention, describe_db_error, meta

if TYPE_CHECKING:
    from opsgate.audit._log import AuditLog

__all__ = ["archive_segment", "verify_archive"]


def verify_archive(document: dict[str, Any], public_keys: dict[str, Any] | None = None) -> int:
    """Check an audit archive offline; returns how many events it proves.

    The events must re-hash, from the state of the signed checkpoint where the segment
    starts (or the empty log), to the chain hash and Merkle root of the signed checkpoint
    where it ends.

    Raises:
        AuditIntegrityError: what does not verify.
    """
    try:
        if document.get("format") != "opsgate-audit-archive":
            raise AuditIntegrityError("not an opsgate audit archive")
        keys = public_keys or {k: load_public_key(v) for k, v in document["public_keys"].items()}
        log_id = document["log_id"]
        end = document["end_checkpoint"]
        start = document["start_checkpoint"]
        first, last = int(document["from_seq"]), int(document["to_seq"])
        checked = [end] if start is None else [start, end]
        for cp in checked:
            key = keys.get(cp["key_id"])
            statement = checkpoint_statement(
                log_id,
                cp["tree_size"],
                bytes.fromhex(cp["root_hash"]),
                bytes.fromhex(cp["chain_hash"]),
                cp["at"],
                cp["key_id"],
            )
            if key is None or not verify_signature(key, bytes.fromhex(cp["signature"]), statement):
                raise AuditIntegrityError(
                    f"checkpoint at {cp['tree_size']} does not verify", seq=cp["tree_size"] - 1
                )
        if start is None:
            if first != 0:
                raise AuditIntegrityError("an archive not starting at 0 needs its start checkpoint")
            chain, compact = GENESIS, CompactRange()
        else:
            chain = bytes.fromhex(start["chain_hash"])
            compact = CompactRange(first, [bytes.fromhex(h) for h in start["frontier"]])
            if compact.root() != bytes.fromhex(start["root_hash"]):
                raise AuditIntegrityError("the start checkpoint's frontier does not match its root")
        events = document["events"]
        if len(events) != last - first or end["tree_size"] != last:
            raise AuditIntegrityError(f"the archive should hold events {first}..{last - 1}")
        for body in events:
            leaf = leaf_hash(body.encode())
            chain = next_chain(chain, leaf)
            compact.append(leaf)
        if chain != bytes.fromhex(end["chain_hash"]) or compact.root() != bytes.fromhex(
            end["root_hash"]
        ):
            raise AuditIntegrityError(
                f"events {first}..{last - 1} do not match the signed checkpoint at {last}",
                seq=first,
            )
        return len(events)
    except (KeyError, TypeError, ValueError) as exc:
        raise AuditIntegrityError(f"malformed audit archive: {exc}") from None


def archive_segment(log: AuditLog, cutoff_at: float, directory: Path) -> ArchivedSegment | None:
    """Export the oldest whole segment(s) older than ``cutoff_at``, then drop them.

    A segment ends at a signed checkpoint, and every event in it is older than the
    cutoff. The archive (JSON) holds the events' exact bytes, the signed checkpoints at
    both ends and the public keys: `verify_archive` checks it offline. It is written,
    fsynced and verified before anything is dropped; the checkpoints stay in the
    database, so the chain of signed tree heads remains whole.
    """
    directory.mkdir(parents=True, exist_ok=True)
    with log.store.engine.connect() as conn:
        mark = int(conn.execute(select(func.max(audit_retention.c.upto))).scalar() or 0)
        cps = [
            decode_checkpoint(r)
            for r in conn.execute(
                text(CHECKPOINTS_SQL + " WHERE tree_size >= :mark ORDER BY tree_size"),
                {"mark": mark},
            )
        ]
        end: Checkpoint | None = None
        for cp in cps:
            if cp.tree_size <= mark:
                continue
            last_at = conn.execute(
                select(audit_events.c.at).where(audit_events.c.seq == cp.tree_size - 1)
            ).scalar()
            if last_at is None or last_at >= cutoff_at:
                break
            end = cp
        if end is None:
            return None
        start = next((cp for cp in cps if cp.tree_size == mark), None)
        bodies = [
            bytes(b).decode()
            for (b,) in conn.execute(
                select(audit_events.c.body)
                .where(audit_events.c.seq >= mark, audit_events.c.seq < end.tree_size)
                .order_by(audit_events.c.seq)
            )
        ]
        keys = dict(
            conn.execute(
                select(meta.c.key, meta.c.value).where(meta.c.key.like("public_key:%"))
            ).all()
        )
    archived_at = time.time()
    document = {
        "format": "opsgate-audit-archive",
        "archived_at": archived_at,
        "v": RECORD_VERSION,
        "log_id": log.log_id,
        "from_seq": mark,
        "to_seq": end.tree_size,
        "start_checkpoint": None if start is None else checkpoint_doc(start),
        "end_checkpoint": checkpoint_doc(end),
        "public_keys": {k.split(":", 1)[1]: v for k, v in keys.items()},
        "events": bodies,
    }
    data = orjson.dumps(document, option=orjson.OPT_SORT_KEYS)
    name = f"audit-{log.log_id[:8]}-{mark:012d}-{end.tree_size:012d}.json"
    path = directory / name
    tmp = path.with_suffix(".tmp")
    with open(tmp, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    verify_archive(orjson.loads(path.read_bytes()))  # never drop what does not verify
    digest = hashlib.sha256(data).hexdigest()
    try:
        with log._locked() as conn, conn.begin():
            conn.execute(
                insert(audit_retention).values(
                    upto=end.tree_size,
                    archived_at=archived_at,
                    archive_sha256=digest,
                    archive_name=str(path),
                )
            )
            conn.execute(audit_events.delete().where(audit_events.c.seq < end.tree_size))
    except (DBAPIError, OperationalError) as exc:
        raise StoreError(describe_db_error(log.store.engine, exc)) from None
    return ArchivedSegment(mark, end.tree_size, path, digest)
