"""`AuditLog`: the append-only, hash-chained, checkpointed audit trail in the store.

Record format (version 1). Each event is stored as ``body``, the canonical bytes of::

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
- chain hash ``C(n) = SHA-256(C(n-1) || L(n))``, ``C(-1)`` = 32 zero bytes;
- a checkpoint at size ``N`` stores the RFC 6962 Merkle root over ``L(0..N-1)``, ``C(N-1)``
  and an Ed25519 signature over the canonical statement (see `checkpoint_statement`).

The database assigns the order: appends take the log's write lock (SQLite ``BEGIN
IMMEDIATE``; PostgreSQL ``pg_advisory_xact_lock``), read the head, and insert a batch in
one transaction, so any number of writer processes keep one chain with no fork or gap.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import Connection, func, insert, select, text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import DBAPIError, OperationalError

from opsgate.audit._merkle import (
    CompactRange,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
)
from opsgate.audit._rows import as_blob, as_float, as_int, as_text, check_columns, decode_body
from opsgate.audit._signing import Signer, load_public_key, verify_signature
from opsgate.audit._witness import CheckpointWitness, witness_path_for
from opsgate.errors import AuditIntegrityError, StoreError
from opsgate.recorder import Event, EventType
from opsgate.redaction import Redactor
from opsgate.store import Store
from opsgate.store._engine import describe_db_error
from opsgate.store._schema import audit_checkpoints, audit_events, audit_retention, meta

__all__ = [
    "RECORD_VERSION",
    "ArchivedSegment",
    "AuditLog",
    "AuditRecord",
    "Checkpoint",
    "VerifyReport",
    "checkpoint_statement",
    "verify_archive",
]

RECORD_VERSION = 1
GENESIS = bytes(32)
_HEAD_SQL = "SELECT seq, chain_hash FROM audit_events ORDER BY seq DESC LIMIT 1"
# Audit rows are read as plain SQL: no column type processing, so a value of another type
# (an attacker's edit) reaches `opsgate.audit._rows`, which names it, instead of a driver error
_CHECKPOINTS_SQL = (
    "SELECT tree_size, root_hash, chain_hash, at, key_id, signature, frontier "
    "FROM audit_checkpoints"
)
_RETENTION_SQL = "SELECT upto, archived_at, archive_sha256, archive_name FROM audit_retention"
_PG_LOCK_KEY = 0x6F70_7367  # "opsg"


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


def _checkpoint_doc(cp: Checkpoint) -> dict[str, Any]:
    return {
        "tree_size": cp.tree_size,
        "root_hash": cp.root_hash.hex(),
        "chain_hash": cp.chain_hash.hex(),
        "at": cp.at,
        "key_id": cp.key_id,
        "signature": cp.signature.hex(),
        "frontier": [h.hex() for h in cp.frontier],
    }


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
            chain = _chain(chain, leaf)
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


def _stale(exc: BaseException) -> bool:
    """Whether ``exc`` says the connection itself is unusable (worth one reconnect)."""
    text = str(exc).lower()
    return any(
        needle in text
        for needle in (
            "closed database",
            "connection is closed",
            "server closed",
            "terminating connection",
            "connection already closed",
        )
    )


def _chain(previous: bytes, leaf: bytes) -> bytes:
    return hashlib.sha256(previous + leaf).digest()


class AuditLog:
    """The audit trail of one store. Thread-safe; share one per process.

    Args:
        store: The open store.
        signer: Signs checkpoints; None makes a read-only log (verify, prove, show).
        redactor: Masks secrets and PII before anything is stored (default: a redactor
            salted with the store's audit salt, so masked values stay provable); actor
            fields keep the identity (`Redactor.redact_event`).
        witness: Where each signed checkpoint is also written, outside the database
            (default: beside the signer's key file, when it was loaded from one).
    """

    def __init__(
        self,
        store: Store,
        signer: Signer | None = None,
        redactor: Redactor | None = None,
        witness: CheckpointWitness | None = None,
    ) -> None:
        self.store = store
        self.signer = signer
        if witness is None and signer is not None and signer.path is not None:
            witness = CheckpointWitness(witness_path_for(signer.path))
        self.witness = witness
        salt = store.meta_value("audit_salt")
        log_id = store.meta_value("log_id")
        if salt is None or log_id is None:
            raise StoreError(f"`{store.url}` has no audit salt or log id; was it migrated?")
        self.log_id = log_id
        self.redactor = redactor or Redactor(bytes.fromhex(salt))
        self._pg = store.dialect == "postgresql"
        mark = "%s" if self._pg else "?"
        self._insert_sql = (
            "INSERT INTO audit_events (seq, run_id, type, at, body, chain_hash) "
            f"VALUES ({', '.join([mark] * 6)})"
        )
        self._writer: Any = None
        self._writer_lock = threading.Lock()
        mark = "%s" if self._pg else "?"
        # the driver's own executemany: the hot path skips SQLAlchemy's statement compiler
        self._insert_sql = (
            "INSERT INTO audit_events (seq, run_id, type, at, body, chain_hash) "
            f"VALUES ({', '.join([mark] * 6)})"
        )

    # -- writing -------------------------------------------------------------------------

    def _locked(self) -> Any:
        conn = self.store.engine.connect()
        if not self._pg:
            conn = conn.execution_options(sqlite_immediate=True)
        return conn

    def append(self, events: Sequence[Event]) -> list[int]:
        """Append events in one transaction; returns their sequence numbers.

        The hot path: a persistent driver connection, one lock, one SELECT of the head, one
        executemany, one commit (one fsync on SQLite with synchronous=FULL).

        Raises:
            StoreError: the database refused the write (nothing of the batch is stored).
        """
        if not events:
            return []
        with self._writer_lock:
            for attempt in (1, 2):
                committing = False
                conn = self._writer
                try:
                    if conn is None:
                        conn = self._writer = self.store.engine.raw_connection()
                    cursor = conn.cursor()
                    try:
                        if self._pg:
                            cursor.execute(f"SELECT pg_advisory_xact_lock({_PG_LOCK_KEY})")
                        else:
                            cursor.execute("BEGIN IMMEDIATE")
                        cursor.execute(_HEAD_SQL)
                        head = cursor.fetchone()
                        if head is None:
                            seq, chain = -1, GENESIS
                        else:
                            seq = as_int(head[0], "the newest event's `seq`", None)
                            chain = as_blob(head[1], f"event {seq}'s `chain_hash`", seq, 32)
                        rows, seqs = self._encode(events, seq, chain)
                        cursor.executemany(self._insert_sql, rows)
                        self._update_runs(cursor, events)
                        committing = True
                        conn.commit()
                    finally:
                        cursor.close()
                    break
                except Exception as exc:
                    if conn is not None:
                        self._discard_writer(conn)
                    # a stale connection (closed, dropped by the server) fails before the
                    # commit: try once more on a fresh one; never retry a failed commit
                    if attempt == 2 or committing or not _stale(exc):
                        raise StoreError(describe_db_error(self.store.engine, exc)) from None
        return seqs

    def _encode(
        self, events: Sequence[Event], seq: int, chain: bytes
    ) -> tuple[list[tuple[Any, ...]], list[int]]:
        sha256 = hashlib.sha256
        dumps = orjson.dumps
        sort = orjson.OPT_SORT_KEYS
        redact = self.redactor.redact_event
        rows: list[tuple[Any, ...]] = []
        seqs: list[int] = []
        for event in events:
            seq += 1
            kind = event.type.value if isinstance(event.type, EventType) else str(event.type)
            body = dumps(
                {
                    "v": RECORD_VERSION,
                    "seq": seq,
                    "run_id": event.run_id,
                    "type": kind,
                    "at": event.at,
                    "data": redact(kind, event.data),
                },
                option=sort,
            )
            chain = sha256(chain + sha256(b"\x00" + body).digest()).digest()
            rows.append((seq, event.run_id, kind, event.at, body, chain))
            seqs.append(seq)
        return rows, seqs

    def _discard_writer(self, conn: Any) -> None:
        """Roll back and drop the writer connection after a failure (a new one is opened
        on the next append)."""
        with contextlib.suppress(Exception):
            conn.rollback()
        with contextlib.suppress(Exception):
            conn.invalidate()
        self._writer = None

    def close(self) -> None:
        """Release the writer connection."""
        with self._writer_lock:
            if self._writer is not None:
                self._writer.close()
                self._writer = None

    @staticmethod
    def _head(conn: Connection) -> tuple[int, bytes]:
        row = conn.exec_driver_sql(_HEAD_SQL).first()
        if row is None:
            return -1, GENESIS
        seq = as_int(row[0], "the newest event's `seq`", None)
        return seq, as_blob(row[1], f"event {seq}'s `chain_hash`", seq, 32)

    def _update_runs(self, cursor: Any, events: Sequence[Event]) -> None:
        mark = "%s" if self._pg else "?"
        for event in events:
            kind = event.type
            d = event.data
            if kind == EventType.RUN_STARTED:
                cursor.execute(
                    "INSERT INTO runs (run_id, workflow, invoker, agent_id, policy_version, "
                    "model_route, status, reason, cost_usd, tool_calls, started_at, purpose) "
                    f"VALUES ({', '.join([mark] * 12)})",
                    (
                        event.run_id,
                        d.get("workflow", ""),
                        d.get("invoker", ""),
                        d.get("agent_id", ""),
                        d.get("policy_version", ""),
                        d.get("model_route"),
                        "running",
                        "",
                        0.0,
                        0,
                        event.at,
                        "eval" if d.get("purpose") == "eval" else "production",
                    ),
                )
            elif kind == EventType.RUN_ENDED:
                cursor.execute(
                    f"UPDATE runs SET status = {mark}, reason = {mark}, cost_usd = {mark}, "
                    f"tool_calls = {mark}, ended_at = {mark}, elapsed_s = {mark} "
                    f"WHERE run_id = {mark}",
                    (
                        d.get("status", "completed"),
                        d.get("reason", ""),
                        float(d.get("cost_usd", 0.0)),
                        int(d.get("tool_calls", 0)),
                        event.at,
                        d.get("elapsed_s"),
                        event.run_id,
                    ),
                )
            elif kind in (
                EventType.APPROVAL_REQUESTED,
                EventType.APPROVAL_GRANTED,
                EventType.APPROVAL_DENIED,
            ):
                status = "awaiting_approval" if kind == EventType.APPROVAL_REQUESTED else "running"
                cursor.execute(
                    f"UPDATE runs SET status = {mark} WHERE run_id = {mark}", (status, event.run_id)
                )

    def checkpoint(self) -> Checkpoint | None:
        """Sign a tree head over every event so far; None when nothing new was appended."""
        if self.signer is None:
            raise StoreError("this audit log has no signing key; it cannot checkpoint")
        signer = self.signer
        try:
            with self._locked() as conn, conn.begin():
                if self._pg:
                    conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_PG_LOCK_KEY})")
                size, chain = self._head(conn)
                size += 1
                last = self._latest_checkpoint(conn)
                if last is not None and last.tree_size >= size:
                    return None
                compact = (
                    CompactRange() if last is None else CompactRange(last.tree_size, last.frontier)
                )
                start = 0 if last is None else last.tree_size
                for (body,) in conn.execute(
                    select(audit_events.c.body)
                    .where(audit_events.c.seq >= start, audit_events.c.seq < size)
                    .order_by(audit_events.c.seq)
                ):
                    compact.append(leaf_hash(as_blob(body, "an event's body", compact.size)))
                if compact.size != size:
                    raise AuditIntegrityError(
                        f"cannot checkpoint: expected {size} events, found {compact.size}",
                        seq=compact.size,
                    )
                at = time.time()
                root = compact.root()
                statement = checkpoint_statement(self.log_id, size, root, chain, at, signer.key_id)
                cp = Checkpoint(
                    size, root, chain, at, signer.key_id, signer.sign(statement), compact.hashes
                )
                conn.execute(
                    insert(audit_checkpoints).values(
                        tree_size=cp.tree_size,
                        root_hash=cp.root_hash,
                        chain_hash=cp.chain_hash,
                        at=cp.at,
                        key_id=cp.key_id,
                        signature=cp.signature,
                        frontier=orjson.dumps([h.hex() for h in cp.frontier]).decode(),
                    )
                )
                values = {"key": f"public_key:{signer.key_id}", "value": signer.public_pem()}
                upsert = (pg_insert(meta) if self._pg else sqlite_insert(meta)).values(**values)
                conn.execute(upsert.on_conflict_do_nothing(index_elements=["key"]))
        except (DBAPIError, OperationalError) as exc:
            raise StoreError(describe_db_error(self.store.engine, exc)) from None
        if self.witness is not None:
            self.witness.record(self.log_id, cp.tree_size, root, chain, cp.signature)
        return cp

    # -- reading -------------------------------------------------------------------------

    @staticmethod
    def _row_to_checkpoint(row: Any) -> Checkpoint:
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

    def _latest_checkpoint(self, conn: Connection) -> Checkpoint | None:
        row = conn.execute(text(_CHECKPOINTS_SQL + " ORDER BY tree_size DESC LIMIT 1")).first()
        return None if row is None else self._row_to_checkpoint(row)

    def checkpoints(self) -> list[Checkpoint]:
        """Every checkpoint, oldest first.

        Raises:
            AuditIntegrityError: a checkpoint row was nulled or retyped.
        """
        found, error = self._checkpoint_rows()
        if error is not None:
            raise error
        return found

    def _checkpoint_rows(self) -> tuple[list[Checkpoint], AuditIntegrityError | None]:
        """The checkpoints that decode, sorted by size, and the first row that does not."""
        found: list[Checkpoint] = []
        error: AuditIntegrityError | None = None
        with self.store.engine.connect() as conn:
            for row in conn.execute(text(_CHECKPOINTS_SQL)):
                try:
                    found.append(self._row_to_checkpoint(row))
                except AuditIntegrityError as exc:
                    if error is None or (exc.seq or 0) < (error.seq or 0):
                        error = exc
        return sorted(found, key=lambda cp: cp.tree_size), error

    def size(self) -> int:
        """How many events the log holds."""
        with self.store.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(audit_events)).scalar() or 0)

    def records(self, run_id: str | None = None) -> list[AuditRecord]:
        """Decoded events, of one run or all, in order."""
        query = "SELECT body, seq FROM audit_events"
        if run_id is not None:
            query += " WHERE run_id = :run_id"
        with self.store.engine.connect() as conn:
            out = []
            for body, seq in conn.execute(text(query + " ORDER BY seq"), {"run_id": run_id}):
                where = seq if isinstance(seq, int) else None
                what = f"event {seq!r}'s body"
                doc = decode_body(as_blob(body, what, where), where or 0)
                if run_id is not None and doc["run_id"] != run_id:
                    raise AuditIntegrityError(
                        f"event {doc['seq']!r} is stored under run `{run_id}` but its hashed "
                        f"body belongs to run {doc['run_id']!r}: the column was edited (run "
                        "`opsgate audit verify`)",
                        seq=where,
                    )
                out.append(
                    AuditRecord(doc["seq"], doc["run_id"], doc["type"], doc["at"], doc["data"])
                )
            return out

    def _bodies(self, conn: Connection, upto: int) -> Iterator[tuple[int, bytes]]:
        """Every event body below ``upto``: archived segments first (read back from their
        archive files, checked against the recorded digest), then the database."""
        for upto_seq, digest, name in conn.execute(
            select(
                audit_retention.c.upto,
                audit_retention.c.archive_sha256,
                audit_retention.c.archive_name,
            ).order_by(audit_retention.c.upto)
        ):
            try:
                data = Path(name).read_bytes()
            except OSError as exc:
                raise AuditIntegrityError(
                    f"events below {upto_seq} are archived in `{name}`, which cannot be read "
                    f"({exc.strerror}); restore it to build proofs over them"
                ) from None
            if hashlib.sha256(data).hexdigest() != digest:
                raise AuditIntegrityError(f"archive `{name}` does not match its recorded digest")
            document = orjson.loads(data)
            for offset, body in enumerate(document["events"]):
                seq = int(document["from_seq"]) + offset
                if seq >= upto:
                    return
                yield seq, body.encode()
        for seq, body in conn.execute(
            select(audit_events.c.seq, audit_events.c.body)
            .where(audit_events.c.seq < upto)
            .order_by(audit_events.c.seq)
        ):
            number = as_int(seq, "an event's `seq`", None)
            yield number, as_blob(body, f"event {number}'s body", number)

    def inclusion(self, seq: int) -> dict[str, Any]:
        """An inclusion proof of event ``seq`` in the latest checkpoint, as JSON data an
        independent verifier checks with the public key alone (see the README)."""
        with self.store.engine.connect() as conn:
            if seq < 0:
                raise AuditIntegrityError(f"no event {seq}: sequence numbers start at 0", seq=seq)
            cp = self._latest_checkpoint(conn)
            if cp is None or seq >= cp.tree_size:
                count = conn.execute(select(func.count()).select_from(audit_events)).scalar() or 0
                if seq >= count:  # not "not covered yet": it does not exist
                    raise AuditIntegrityError(
                        f"no event {seq}: the log holds {count} event(s), 0 to {count - 1}"
                        if count
                        else f"no event {seq}: the log is empty",
                        seq=seq,
                    )
                raise AuditIntegrityError(
                    f"event {seq} is not covered by a checkpoint yet; run "
                    "`opsgate audit checkpoint` first",
                    seq=seq,
                )
            leaves: list[bytes] = []
            body_of_seq = b""
            for n, body in self._bodies(conn, cp.tree_size):
                leaves.append(leaf_hash(body))
                if n == seq:
                    body_of_seq = body
            public = conn.execute(
                select(meta.c.value).where(meta.c.key == f"public_key:{cp.key_id}")
            ).scalar()
        return {
            "log_id": self.log_id,
            "seq": seq,
            "body": body_of_seq.decode(),
            "tree_size": cp.tree_size,
            "proof": [h.hex() for h in inclusion_proof(seq, leaves)],
            "checkpoint": {
                "root_hash": cp.root_hash.hex(),
                "chain_hash": cp.chain_hash.hex(),
                "at": cp.at,
                "key_id": cp.key_id,
                "signature": cp.signature.hex(),
            },
            "public_key": public,
        }

    def consistency(self, old_size: int, new_size: int) -> list[bytes]:
        """An RFC 6962 consistency proof between two tree sizes."""
        with self.store.engine.connect() as conn:
            leaves = [leaf_hash(body) for _, body in self._bodies(conn, new_size)]
        if len(leaves) != new_size or not 0 < old_size <= new_size:
            raise AuditIntegrityError(f"no consistency proof from {old_size} to {new_size}")
        return consistency_proof(old_size, leaves)

    # -- retention -----------------------------------------------------------------------

    def retention_mark(self) -> int:
        """Events below this sequence number were archived and dropped (0: none)."""
        with self.store.engine.connect() as conn:
            return int(conn.execute(select(func.max(audit_retention.c.upto))).scalar() or 0)

    def archive_before(self, cutoff_at: float, directory: Path) -> ArchivedSegment | None:
        """Export the oldest whole segment(s) older than ``cutoff_at``, then drop them.

        A segment ends at a signed checkpoint, and every event in it is older than the
        cutoff. The archive (JSON) holds the events' exact bytes, the signed checkpoints at
        both ends and the public keys: `verify_archive` checks it offline. It is written,
        fsynced and verified before anything is dropped; the checkpoints stay in the
        database, so the chain of signed tree heads remains whole.
        """
        directory.mkdir(parents=True, exist_ok=True)
        with self.store.engine.connect() as conn:
            mark = int(conn.execute(select(func.max(audit_retention.c.upto))).scalar() or 0)
            cps = [
                self._row_to_checkpoint(r)
                for r in conn.execute(
                    text(_CHECKPOINTS_SQL + " WHERE tree_size >= :mark ORDER BY tree_size"),
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
            "log_id": self.log_id,
            "from_seq": mark,
            "to_seq": end.tree_size,
            "start_checkpoint": None if start is None else _checkpoint_doc(start),
            "end_checkpoint": _checkpoint_doc(end),
            "public_keys": {k.split(":", 1)[1]: v for k, v in keys.items()},
            "events": bodies,
        }
        data = orjson.dumps(document, option=orjson.OPT_SORT_KEYS)
        name = f"audit-{self.log_id[:8]}-{mark:012d}-{end.tree_size:012d}.json"
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
            with self._locked() as conn, conn.begin():
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
            raise StoreError(describe_db_error(self.store.engine, exc)) from None
        return ArchivedSegment(mark, end.tree_size, path, digest)

    # -- verification --------------------------------------------------------------------

    def verify(
        self,
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
        cps, unreadable = self._checkpoint_rows()
        # the witness names a checkpoint that is gone or garbled by its size; then the rest
        witnessed = self._check_witness(cps, witness or self.witness)
        if unreadable is not None:
            raise unreadable
        if public_keys is None:
            with self.store.engine.connect() as conn:
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
        mark, archived, missing = self._verify_retention(cps, public_keys, allow_missing_archives)
        if mark:
            # events below the mark were archived (with their checkpoint) and dropped: the
            # signed checkpoint at the mark carries the chain and tree state to resume from
            start = next(cp for cp in cps if cp.tree_size == mark)
            while index < len(cps) and cps[index].tree_size <= mark:
                self._check_signature(cps[index], public_keys)
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
        sha256 = hashlib.sha256
        column_error: AuditIntegrityError | None = None
        retyped: tuple[Any, int] | None = None
        raw = self.store.engine.raw_connection()
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
                    leaf = sha256(b"\x00" + data).digest()
                    previous = sha256(previous + leaf).digest()
                    if previous != as_blob(stored, f"event {seq}'s `chain_hash`", seq, 32):
                        raise AuditIntegrityError(
                            f"event {seq} does not match the hash chain: edited, inserted "
                            "or reordered",
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
                        self._check_checkpoint(
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

    def _check_witness(self, cps: list[Checkpoint], witness: CheckpointWitness | None) -> int:
        """Every head the witness saw must still be in the database, unchanged (a deleted
        newest checkpoint would leave the events it covered open to a recomputed chain)."""
        if witness is None:
            return 0
        by_size = {cp.tree_size: cp for cp in cps}
        heads = witness.heads(self.log_id)
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
        self, cps: list[Checkpoint], keys: dict[str, Any], allow_missing: bool
    ) -> tuple[int, int, list[str]]:
        """Check the retention rows against their archives; returns the mark (events below
        it were dropped), how many archives verified and those that could not be read."""
        with self.store.engine.connect() as conn:
            rows = list(conn.execute(text(_RETENTION_SQL)))
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
            expected_name = f"audit-{self.log_id[:8]}-{first:012d}-{upto:012d}.json"
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
                document["log_id"] != self.log_id
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

    def _check_signature(self, cp: Checkpoint, keys: dict[str, Any]) -> None:
        key = keys.get(cp.key_id)
        if key is None:
            raise AuditIntegrityError(
                f"checkpoint at {cp.tree_size} is signed by unknown key `{cp.key_id}`",
                seq=cp.tree_size - 1,
            )
        statement = checkpoint_statement(
            self.log_id, cp.tree_size, cp.root_hash, cp.chain_hash, cp.at, cp.key_id
        )
        if not verify_signature(key, cp.signature, statement):
            raise AuditIntegrityError(
                f"checkpoint at {cp.tree_size} has an invalid signature", seq=cp.tree_size - 1
            )

    def _check_checkpoint(
        self,
        cp: Checkpoint,
        compact: CompactRange,
        chain: bytes,
        keys: dict[str, Any],
        previous_size: int,
    ) -> None:
        self._check_signature(cp, keys)
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
