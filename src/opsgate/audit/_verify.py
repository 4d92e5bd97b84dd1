"""`AuditLog.verify`: re-hash the log and check every column of every audit table.

The events are re-hashed from the genesis (or from the signed checkpoint at the retention
mark), each checkpoint's signature, root, chain hash and frontier checked as the log reaches
it, the columns stored beside each hashed body (`run_id`, `type`, `at`) against the body,
each retention row against its archive file, and the heads the witness kept against the
checkpoints left in the database. The first bad sequence number is named.
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
from sqlalchemy import select, text

from opsgate.audit._archive import verify_archive
from opsgate.audit._merkle import CompactRange, leaf_hash
from opsgate.audit._records import (
    GENESIS,
    Checkpoint,
    VerifyReport,
    checkpoint_statement,
    next_chain,
)
from opsgate.audit._rows import RETENTION_SQL, as_blob, as_float, as_int, as_text, check_columns
from opsgate.audit._signing import load_public_key, verify_signature
from opsgate.audit._witness import CheckpointWitness
from opsgate.errors import AuditIntegrityError
from opsgate.store import meta

if TYPE_CHECKING:
    from opsgate.audit._log import AuditLog

__all__ = ["verify_log"]


def verify_log(
    log: AuditLog,
    public_keys: dict[str, Any] | None = None,
    *,
    allow_missing_archives: bool = False,
    witness: CheckpointWitness | None = None,
) -> VerifyReport:
    """Re-hash the whole log, re-derive every checkpoint root and check its signature.

    Every column of every audit table is checked, whatever type the database returns:
    an event's `run_id`, `type`, `at` and `seq` against its hashed body, each checkpoint's
    frontier against the events, each retention row against its archive file (re-hashed
    and checked against its signed checkpoints).

    Args:
        public_keys: key id → Ed25519 public key. Default: the keys recorded in the
            store (pass keys obtained out of band for the strong check).
        allow_missing_archives: Archive files that cannot be read (kept offline) are
            listed in the report instead of failing the check.
        witness: Signed heads kept outside the database (default: this log's own
            witness, if any); each must still be in the database, unchanged.

    Raises:
        AuditIntegrityError: naming the first bad (or missing) sequence number.
    """
    started = time.perf_counter()
    cps, unreadable = log._checkpoint_rows()
    # the witness names a checkpoint that is gone or garbled by its size; then the rest
    witnessed = _check_witness(log, cps, witness or log.witness)
    if unreadable is not None:
        raise unreadable
    if public_keys is None:
        with log.store.engine.connect() as conn:
            public_keys = {
                key.split(":", 1)[1]: load_public_key(value)
                for key, value in conn.execute(
                    select(meta.c.key, meta.c.value).where(meta.c.key.like("public_key:%"))
                )
            }
    compact = CompactRange()
    previous = GENESIS
    expected = 0
    index = 0
    mark, archived, missing = _verify_retention(log, cps, public_keys, allow_missing_archives)
    if mark:
        # events below the mark were archived (with their checkpoint) and dropped: the
        # signed checkpoint at the mark carries the chain and tree state to resume from
        start = next(cp for cp in cps if cp.tree_size == mark)
        while index < len(cps) and cps[index].tree_size <= mark:
            _check_signature(log, cps[index], public_keys)
            index += 1
        try:
            compact = CompactRange(mark, start.frontier)
        except ValueError:
            compact = CompactRange()  # a frontier of the wrong length: named below
        if compact.size != mark or compact.root() != start.root_hash:
            raise AuditIntegrityError(
                f"the checkpoint at {mark}'s frontier does not match its signed root: edited",
                seq=mark,
            )
        previous, expected = start.chain_hash, mark
    column_error: AuditIntegrityError | None = None
    retyped: tuple[Any, int] | None = None
    raw = log.store.engine.raw_connection()
    try:
        cursor = raw.cursor()
        cursor.execute(
            "SELECT seq, run_id, type, at, body, chain_hash FROM audit_events ORDER BY seq"
        )
        while True:
            rows = cursor.fetchmany(20000)
            if not rows:
                break
            for number, run_id, kind, at, body, stored in rows:
                if not isinstance(number, int) or isinstance(number, bool):
                    # sorted apart from the numbers: the gap it leaves is named first
                    retyped = retyped or (number, expected)
                    continue
                seq = number
                if seq != expected:
                    raise AuditIntegrityError(
                        f"event {expected} is missing (the log jumps to {seq}): deleted"
                        if seq > expected
                        else f"event {seq} lies below the retention mark {mark}, where "
                        "events were archived and dropped: inserted"
                        if seq < mark
                        else f"event {seq} appears again after event {expected - 1}: inserted",
                        seq=expected if seq > expected else seq,
                    )
                data = as_blob(body, f"event {seq}'s body", seq)
                leaf = leaf_hash(data)
                previous = next_chain(previous, leaf)
                if previous != as_blob(stored, f"event {seq}'s `chain_hash`", seq, 32):
                    raise AuditIntegrityError(
                        f"event {seq} does not match the hash chain: edited, inserted or reordered",
                        seq=seq,
                    )
                compact.append(leaf)
                expected += 1
                # the columns stored beside the body must say what it says; a finding
                # waits for the segment's checkpoint, which names a recomputed chain
                if column_error is None:
                    try:
                        check_columns(seq, run_id, kind, at, data)
                    except AuditIntegrityError as exc:
                        column_error = exc
                while index < len(cps) and cps[index].tree_size == expected:
                    _check_checkpoint(
                        log,
                        cps[index],
                        compact,
                        previous,
                        public_keys,
                        cps[index - 1].tree_size if index else 0,
                    )
                    index += 1
                    if column_error is not None:
                        raise column_error
        cursor.close()
    finally:
        raw.close()
    if index < len(cps):
        raise AuditIntegrityError(
            f"the log ends before event {expected}, but a signed checkpoint covers "
            f"{cps[index].tree_size} events: events from {expected} on were deleted "
            "(truncated)",
            seq=expected,
        )
    if column_error is not None:
        raise column_error
    if retyped is not None:
        as_int(retyped[0], f"a sequence number after event {retyped[1] - 1}", retyped[1])
    return VerifyReport(
        expected, len(cps), time.perf_counter() - started, archived, tuple(missing), witnessed
    )


def _check_witness(log: AuditLog, cps: list[Checkpoint], witness: CheckpointWitness | None) -> int:
    """Every head the witness saw must still be in the database, unchanged (a deleted
    newest checkpoint would leave the events it covered open to a recomputed chain)."""
    if witness is None:
        return 0
    by_size = {cp.tree_size: cp for cp in cps}
    heads = witness.heads(log.log_id)
    for head in heads:
        cp = by_size.get(head.tree_size)
        if cp is None:
            raise AuditIntegrityError(
                f"the signed checkpoint at {head.tree_size}, kept by the witness "
                f"`{witness.path}`, is missing from the database: deleted",
                seq=head.tree_size - 1,
            )
        if (cp.root_hash, cp.chain_hash, cp.signature) != (
            head.root_hash,
            head.chain_hash,
            head.signature,
        ):
            raise AuditIntegrityError(
                f"the checkpoint at {head.tree_size} differs from the one the witness "
                f"`{witness.path}` kept: replaced",
                seq=head.tree_size - 1,
            )
    return len(heads)


def _verify_retention(
    log: AuditLog, cps: list[Checkpoint], keys: dict[str, Any], allow_missing: bool
) -> tuple[int, int, list[str]]:
    """Check the retention rows against their archives; returns the mark (events below
    it were dropped), how many archives verified and those that could not be read."""
    with log.store.engine.connect() as conn:
        rows = list(conn.execute(text(RETENTION_SQL)))
    marks: list[tuple[int, float, str, str]] = []
    for row in rows:
        upto = as_int(row.upto, "a retention row's `upto`", 0)
        what = f"the retention row at {upto}"
        marks.append(
            (
                upto,
                as_float(row.archived_at, f"{what}'s `archived_at`", 0),
                as_text(row.archive_sha256, f"{what}'s `archive_sha256`", 0),
                as_text(row.archive_name, f"{what}'s `archive_name`", 0),
            )
        )
    marks.sort()
    by_size = {cp.tree_size: cp for cp in cps}
    first, verified, missing = 0, 0, []
    for upto, archived_at, digest, name in marks:
        segment = f"events {first}..{upto - 1}"
        checkpoint = by_size.get(upto)
        if upto <= first or checkpoint is None:
            raise AuditIntegrityError(
                f"{segment} are marked archived, but no signed checkpoint at {upto} "
                "remains: the retention table was edited",
                seq=first,
            )
        expected_name = f"audit-{log.log_id[:8]}-{first:012d}-{upto:012d}.json"
        if Path(name).name != expected_name:
            raise AuditIntegrityError(
                f"{segment} are archived in `{name}`, which is not their archive "
                f"(`{expected_name}`): the retention table was edited",
                seq=first,
            )
        try:
            data = Path(name).read_bytes()
        except OSError as exc:
            if not allow_missing:
                raise AuditIntegrityError(
                    f"{segment} are archived in `{name}`, which cannot be read "
                    f"({exc.strerror}); restore it, or verify without it "
                    "(--allow-missing-archives)",
                    seq=first,
                ) from None
            missing.append(name)
            first = upto
            continue
        if hashlib.sha256(data).hexdigest() != digest:
            raise AuditIntegrityError(
                f"archive `{name}` does not match the digest recorded for it: one of the two "
                "was edited",
                seq=first,
            )
        try:
            document = orjson.loads(data)
        except orjson.JSONDecodeError:
            raise AuditIntegrityError(f"archive `{name}` is not JSON", seq=first) from None
        verify_archive(document, keys)
        end = document["end_checkpoint"]
        if (
            document["log_id"] != log.log_id
            or document["from_seq"] != first
            or end["signature"] != checkpoint.signature.hex()
            or document.get("archived_at", archived_at) != archived_at
        ):
            raise AuditIntegrityError(
                f"archive `{name}` is not the archive recorded for {segment}: the "
                "retention table was edited",
                seq=first,
            )
        verified += 1
        first = upto
    return first, verified, missing


def _check_signature(log: AuditLog, cp: Checkpoint, keys: dict[str, Any]) -> None:
    key = keys.get(cp.key_id)
    if key is None:
        raise AuditIntegrityError(
            f"checkpoint at {cp.tree_size} is signed by unknown key `{cp.key_id}`",
            seq=cp.tree_size - 1,
        )
    statement = checkpoint_statement(
        log.log_id, cp.tree_size, cp.root_hash, cp.chain_hash, cp.at, cp.key_id
    )
    if not verify_signature(key, cp.signature, statement):
        raise AuditIntegrityError(
            f"checkpoint at {cp.tree_size} has an invalid signature", seq=cp.tree_size - 1
        )


def _check_checkpoint(
    log: AuditLog,
    cp: Checkpoint,
    compact: CompactRange,
    chain: bytes,
    keys: dict[str, Any],
    previous_size: int,
) -> None:
    _check_signature(log, cp, keys)
    if compact.root() != cp.root_hash or chain != cp.chain_hash:
        raise AuditIntegrityError(
            f"events {previous_size}..{cp.tree_size - 1} were rewritten: they no longer "
            f"match the signed checkpoint at {cp.tree_size} (the chain was recomputed to "
            "hide an edit)",
            seq=previous_size,
        )
    if compact.hashes != cp.frontier:  # not signed: later checkpoints start from it
        raise AuditIntegrityError(
            f"the checkpoint at {cp.tree_size}'s frontier does not match the events: edited",
            seq=cp.tree_size - 1,
        )
