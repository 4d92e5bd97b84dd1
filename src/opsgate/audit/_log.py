"""`AuditLog`: the append-only, hash-chained, checkpointed audit trail in the store.

The record format (what is hashed, chained and signed) is `opsgate.audit._records`; this
module appends, checkpoints and reads. Verification is `opsgate.audit._verify`, archives
`opsgate.audit._archive`.

The database assigns the order: appends take the log's write lock (SQLite ``BEGIN
IMMEDIATE``; PostgreSQL ``pg_advisory_xact_lock``), read the head, and insert a batch in
one transaction, so any number of writer processes keep one chain with no fork or gap.
"""

from __future__ import annotations

import contextlib
import hashlib
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import Connection, func, insert, select, text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import DBAPIError, OperationalError

from opsgate._jsondata import dumps as writable_json
from opsgate.audit._archive import archive_segment
from opsgate.audit._merkle import (
    CompactRange,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
)
from opsgate.audit._records import (
    GENESIS,
    RECORD_VERSION,
    ArchivedSegment,
    AuditRecord,
    Checkpoint,
    VerifyReport,
    checkpoint_statement,
    next_chain,
)
from opsgate.audit._rows import CHECKPOINTS_SQL, as_blob, as_int, decode_body, decode_checkpoint
from opsgate.audit._signing import Signer
from opsgate.audit._verify import verify_log
from opsgate.audit._witness import CheckpointWitness, witness_path_for
from opsgate.errors import AuditIntegrityError, StoreError
from opsgate.recorder import Event, EventType
from opsgate.redaction import Redactor
from opsgate.store import (
    Store,
    apply_run_events,
    audit_checkpoints,
    audit_events,
    audit_retention,
    describe_db_error,
    meta,
)

__all__ = ["AuditLog"]

_HEAD_SQL = "SELECT seq, chain_hash FROM audit_events ORDER BY seq DESC LIMIT 1"
_PG_LOCK_KEY = 0x6F70_7367  # "opsg"


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
        self._writer: Any = None
        self._writer_lock = threading.Lock()
        # the driver's own executemany: the hot path skips SQLAlchemy's statement compiler
        self._insert_sql = store.driver_insert(audit_events)

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
                        apply_run_events(cursor, events, postgresql=self._pg)
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
        dumps = writable_json  # orjson, and on its failure only, what it cannot write made so
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
            chain = next_chain(chain, leaf_hash(body))
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

    def checkpoint(self) -> Checkpoint | None:
        """Sign a tree head over every event so far; None when nothing new was appended
        (or another writer signed that far first).

        The events since the last checkpoint are read and hashed outside the log's write
        lock (committed events never change), so appends go on meanwhile, in this process
        and in others; only the signed head's insert takes the lock (a commit's time, where
        reading and hashing a thousand events takes milliseconds).
        """
        if self.signer is None:
            raise StoreError("this audit log has no signing key; it cannot checkpoint")
        signer = self.signer
        try:
            with self.store.engine.connect() as conn:
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
            with self._writer_lock, self._locked() as conn, conn.begin():
                if self._pg:
                    conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_PG_LOCK_KEY})")
                latest = self._latest_checkpoint(conn)
                if latest is not None and latest.tree_size >= size:
                    return None  # another writer signed this far meanwhile
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

    def _latest_checkpoint(self, conn: Connection) -> Checkpoint | None:
        row = conn.execute(text(CHECKPOINTS_SQL + " ORDER BY tree_size DESC LIMIT 1")).first()
        return None if row is None else decode_checkpoint(row)

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
            for row in conn.execute(text(CHECKPOINTS_SQL)):
                try:
                    found.append(decode_checkpoint(row))
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
        """Export the oldest whole segment(s) older than ``cutoff_at``, then drop them
        (`opsgate.audit._archive`): the archive verifies offline (`verify_archive`)."""
        return archive_segment(self, cutoff_at, directory)

    # -- verification --------------------------------------------------------------------

    def verify(
        self,
        public_keys: dict[str, Any] | None = None,
        *,
        allow_missing_archives: bool = False,
        witness: CheckpointWitness | None = None,
    ) -> VerifyReport:
        """Re-hash the whole log and check every column of every audit table; the
        arguments and what is checked are `opsgate.audit._verify.verify_log`'s.

        Raises:
            AuditIntegrityError: naming the first bad (or missing) sequence number.
        """
        return verify_log(
            self, public_keys, allow_missing_archives=allow_missing_archives, witness=witness
        )
