"""A run's span waterfall (from the ``spans`` table) and "verify this run": each of its
events' inclusion proof checked against the latest signed checkpoint.

`opsgate.tracing` stores spans but exports no reader; this is the console's own query
over the exported table.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from opsgate.audit import (
    AuditLog,
    AuditRecord,
    Checkpoint,
    verify_inclusion,
    verify_inclusion_document,
)
from opsgate.errors import AuditIntegrityError
from opsgate.server._proofs import batch_proofs, signature_ok
from opsgate.store import Store, spans

__all__ = ["SpanBar", "Verification", "run_records", "verify_run", "waterfall"]


def run_records(
    store: Store, run_id: str, log: AuditLog | None = None
) -> tuple[list[AuditRecord], str]:
    """The run's audit events, and "" or why they cannot be read as recorded (an edited
    or retyped row: the page says so instead of failing). ``log``: the store's log, when
    the caller keeps one (`Console.reader`: making one costs two queries)."""
    try:
        return (log or AuditLog(store)).records(run_id), ""
    except AuditIntegrityError as exc:
        return [], str(exc)


@dataclass(frozen=True, slots=True)
class SpanBar:
    """One span of the waterfall; ``offset`` and ``width`` are percents of the run."""

    span_id: str
    name: str
    depth: int
    status: str
    start_ms: float
    duration_ms: float
    offset: float
    width: float


def waterfall(store: Store, run_id: str) -> list[SpanBar]:
    """The run's spans as a tree, in start order, children under their parent."""
    with store.engine.connect() as conn:
        rows = conn.execute(
            select(
                spans.c.span_id,
                spans.c.parent_span_id,
                spans.c.name,
                spans.c.start_ns,
                spans.c.end_ns,
                spans.c.status,
            )
            .where(spans.c.run_id == run_id)
            .order_by(spans.c.start_ns, spans.c.span_id)
            .limit(2000)
        ).all()
    if not rows:
        return []
    begin = min(r.start_ns for r in rows)
    end = max(max(r.end_ns for r in rows), begin + 1)
    total = end - begin
    ids = {r.span_id for r in rows}
    children: dict[str | None, list[Any]] = {}
    for r in rows:
        parent = r.parent_span_id if r.parent_span_id in ids else None
        children.setdefault(parent, []).append(r)
    out: list[SpanBar] = []

    def walk(parent: str | None, depth: int) -> None:
        for r in children.get(parent, []):
            length = max(r.end_ns - r.start_ns, 0)
            out.append(
                SpanBar(
                    r.span_id,
                    r.name,
                    depth,
                    r.status,
                    (r.start_ns - begin) / 1e6,
                    length / 1e6,
                    100.0 * (r.start_ns - begin) / total,
                    max(100.0 * length / total, 0.3),
                )
            )
            if depth < 20:
                walk(r.span_id, depth + 1)

    walk(None, 0)
    return out


@dataclass(frozen=True, slots=True)
class Verification:
    """What checking a run's events against the latest signed checkpoint found.

    Attributes:
        passed: Every event covered by a checkpoint proved included, and none failed.
        proved: Events whose inclusion proof verified.
        failed: (seq, why) of the events that did not.
        uncovered: Events after the latest checkpoint (not signed yet: not a failure).
        tree_size: The checkpoint's size (0: there is none).
        key_id: The key that signed it.
    """

    passed: bool
    proved: int
    failed: list[tuple[int, str]]
    uncovered: int
    tree_size: int
    key_id: str
    checkpoint_at: float | None

    def as_dict(self) -> dict[str, Any]:
        """JSON data for the API."""
        return {
            "passed": self.passed,
            "proved": self.proved,
            "failed": [{"seq": s, "why": w} for s, w in self.failed],
            "uncovered": self.uncovered,
            "tree_size": self.tree_size,
            "key_id": self.key_id,
            "checkpoint_at": self.checkpoint_at,
        }


def verify_run(store: Store, run_id: str) -> Verification:
    """Check each event of ``run_id`` against the latest signed checkpoint, with
    the public key the store records for it (what `opsgate audit prove` and the README's
    verifier do, event by event).

    The proofs come from one read of the log (`opsgate.server._proofs`), or, when part of
    the log is archived, from `AuditLog.inclusion`, one read per event.
    """
    log = AuditLog(store)
    records, broken = run_records(store, run_id)
    if broken:
        return Verification(False, 0, [(-1, broken)], 0, 0, "", None)
    seqs = [r.seq for r in records]
    try:
        checkpoints = log.checkpoints()
    except AuditIntegrityError as exc:
        return Verification(False, 0, [(exc.seq or -1, str(exc))], 0, 0, "", None)
    if not checkpoints:
        return Verification(False, 0, [], len(seqs), 0, "", None)
    latest = checkpoints[-1]
    covered = [seq for seq in seqs if seq < latest.tree_size]
    failed = _check_batch(store, log.log_id, latest, run_id, covered)
    if failed is None:  # not every event is in the database: one proof at a time
        failed = [f for f in (_check_one(log, run_id, seq) for seq in covered) if f]
    proved = len(covered) - len(failed)
    uncovered = len(seqs) - len(covered)
    return Verification(
        not failed and proved > 0,
        proved,
        failed,
        uncovered,
        latest.tree_size,
        latest.key_id,
        latest.at,
    )


def _check_batch(
    store: Store, log_id: str, checkpoint: Checkpoint, run_id: str, seqs: list[int]
) -> list[tuple[int, str]] | None:
    """The events of ``seqs`` that fail, from one read of the log (None: cannot batch)."""
    proofs = batch_proofs(store, checkpoint.tree_size)
    if proofs is None:
        return None
    if not signature_ok(store, log_id, checkpoint):
        return [(seq, "the checkpoint's signature does not verify") for seq in seqs]
    failed: list[tuple[int, str]] = []
    for seq in seqs:
        ok = verify_inclusion(
            seq, checkpoint.tree_size, proofs.leaf(seq), proofs.proof(seq), checkpoint.root_hash
        )
        if not ok:
            failed.append((seq, "the proof does not verify under the checkpoint's signed root"))
        elif json.loads(proofs.bodies[seq]).get("run_id") != run_id:
            failed.append((seq, "the proved event belongs to another run"))
    return failed


def _check_one(log: AuditLog, run_id: str, seq: int) -> tuple[int, str] | None:
    """Why event ``seq`` fails, proved the way `opsgate audit prove` does (None: it passes)."""
    try:
        document = log.inclusion(seq)
    except AuditIntegrityError as exc:
        return seq, str(exc)
    if not verify_inclusion_document(document, document.get("public_key") or ""):
        return seq, "the proof does not verify under the checkpoint's signed root"
    if json.loads(document["body"]).get("run_id") != run_id:
        return seq, "the proved event belongs to another run"
    return None
