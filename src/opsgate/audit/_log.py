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
from sqlalchemy import Connection, func, insert, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import DBAPIError, OperationalError

from opsgate.audit._merkle import (
    CompactRange,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
)
from opsgate.audit._signing import Signer, load_public_key, verify_signature
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
    """

    def __init__(
        self, store: Store, signer: Signer | None = None, redactor: Redactor | None = None
    ) -> None:
        self.store = store
        self.signer = signer
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
                        seq, chain = (
                            (-1, GENESIS) if head is None else (int(head[0]), bytes(head[1]))
                        )
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
        return (-1, GENESIS) if row is None else (int(row[0]), bytes(row[1]))

    def _update_runs(self, cursor: Any, events: Sequence[Event]) -> None:
        mark = "%s" if self._pg else "?"
        for event in events:
            kind = event.type
            d = event.data
            if kind == EventType.RUN_STARTED:
                cursor.execute(
                    "INSERT INTO runs (run_id, workflow, invoker, agent_id, policy_version, "
                    "model_route, status, reason, cost_usd, tool_calls, started_at) "
                    f"VALUES ({', '.join([mark] * 11)})",
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
                    compact.append(leaf_hash(bytes(body)))
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
                return cp
        except (DBAPIError, OperationalError) as exc:
            raise StoreError(describe_db_error(self.store.engine, exc)) from None

    # -- reading -------------------------------------------------------------------------

    @staticmethod
    def _row_to_checkpoint(row: Any) -> Checkpoint:
        return Checkpoint(
            int(row.tree_size),
            bytes(row.root_hash),
            bytes(row.chain_hash),
            float(row.at),
            row.key_id,
            bytes(row.signature),
            tuple(bytes.fromhex(h) for h in orjson.loads(row.frontier)),
        )

    def _latest_checkpoint(self, conn: Connection) -> Checkpoint | None:
        row = conn.execute(
            select(audit_checkpoints).order_by(audit_checkpoints.c.tree_size.desc()).limit(1)
        ).first()
        return None if row is None else self._row_to_checkpoint(row)

    def checkpoints(self) -> list[Checkpoint]:
        """Every checkpoint, oldest first."""
        with self.store.engine.connect() as conn:
            return [
                self._row_to_checkpoint(r)
                for r in conn.execute(
                    select(audit_checkpoints).order_by(audit_checkpoints.c.tree_size)
                )
            ]

    def size(self) -> int:
        """How many events the log holds."""
        with self.store.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(audit_events)).scalar() or 0)

    def records(self, run_id: str | None = None) -> list[AuditRecord]:
        """Decoded events, of one run or all, in order."""
        query = select(audit_events.c.body).order_by(audit_events.c.seq)
        if run_id is not None:
            query = query.where(audit_events.c.run_id == run_id)
        with self.store.engine.connect() as conn:
            out = []
            for (body,) in conn.execute(query):
                doc = orjson.loads(bytes(body))
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
            yield int(seq), bytes(body)

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
                    select(audit_checkpoints)
                    .where(audit_checkpoints.c.tree_size >= mark)
                    .order_by(audit_checkpoints.c.tree_size)
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
        document = {
            "format": "opsgate-audit-archive",
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
                        archived_at=time.time(),
                        archive_sha256=digest,
                        archive_name=str(path),
                    )
                )
                conn.execute(audit_events.delete().where(audit_events.c.seq < end.tree_size))
        except (DBAPIError, OperationalError) as exc:
            raise StoreError(describe_db_error(self.store.engine, exc)) from None
        return ArchivedSegment(mark, end.tree_size, path, digest)

    # -- verification --------------------------------------------------------------------

    def verify(self, public_keys: dict[str, Any] | None = None) -> VerifyReport:
        """Re-hash the whole log, re-derive every checkpoint root and check its signature.

        Args:
            public_keys: key id → Ed25519 public key. Default: the keys recorded in the
                store (pass keys obtained out of band for the strong check).

        Raises:
            AuditIntegrityError: naming the first bad (or missing) sequence number.
        """
        started = time.perf_counter()
        cps = self.checkpoints()
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
        mark = self.retention_mark()
        if mark:
            # events below the mark were archived (with their checkpoint) and dropped: the
            # signed checkpoint at the mark carries the chain and tree state to resume from
            start = next((cp for cp in cps if cp.tree_size == mark), None)
            if start is None:
                raise AuditIntegrityError(
                    f"events below {mark} were archived, but no checkpoint at {mark} remains",
                    seq=mark,
                )
            while index < len(cps) and cps[index].tree_size <= mark:
                self._check_signature(cps[index], public_keys)
                index += 1
            previous, compact, expected = start.chain_hash, CompactRange(mark, start.frontier), mark
        sha256 = hashlib.sha256
        raw = self.store.engine.raw_connection()
        try:
            cursor = raw.cursor()
            cursor.execute("SELECT seq, body, chain_hash FROM audit_events ORDER BY seq")
            while True:
                rows = cursor.fetchmany(20000)
                if not rows:
                    break
                for seq, body, stored in rows:
                    if seq != expected:
                        raise AuditIntegrityError(
                            f"event {expected} is missing (the log jumps to {seq}): deleted",
                            seq=expected,
                        )
                    leaf = sha256(b"\x00" + bytes(body)).digest()
                    previous = sha256(previous + leaf).digest()
                    if previous != bytes(stored):
                        raise AuditIntegrityError(
                            f"event {seq} does not match the hash chain: edited, inserted "
                            "or reordered",
                            seq=seq,
                        )
                    compact.append(leaf)
                    expected += 1
                    while index < len(cps) and cps[index].tree_size == expected:
                        self._check_checkpoint(
                            cps[index],
                            compact,
                            previous,
                            public_keys,
                            cps[index - 1].tree_size if index else 0,
                        )
                        index += 1
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
        return VerifyReport(expected, len(cps), time.perf_counter() - started)

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
