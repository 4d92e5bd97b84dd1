"""Data retention: what expires, and how the audit trail is archived without being edited.

- Debug traces (spans) older than ``traces_days`` are deleted.
- The audit trail is never edited: whole segments (ending at a signed checkpoint) whose
  every event is older than ``audit_days`` are exported with their checkpoints to an
  archive file that verifies offline (`opsgate.audit.verify_archive`), then dropped. The
  checkpoints stay, so the chain of signed tree heads is intact and ``audit verify``
  resumes from the newest archived checkpoint.

Run it from cron: ``opsgate retention apply``; it reports what it removed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import delete, func, select

from opsgate.audit import ArchivedSegment, AuditLog
from opsgate.environment import home
from opsgate.store import Store, spans

__all__ = ["RetentionReport", "apply_retention", "default_archive_dir"]


def default_archive_dir() -> Path:
    """``$OPSGATE_HOME/archive`` (default ``.opsgate/archive``)."""
    return home() / "archive"


@dataclass
class RetentionReport:
    """What one pass removed."""

    spans_deleted: int = 0
    segments: list[ArchivedSegment] = field(default_factory=list)

    @property
    def events_archived(self) -> int:
        """Audit events exported and dropped."""
        return sum(s.to_seq - s.from_seq for s in self.segments)


def apply_retention(
    store: Store,
    *,
    traces_days: float = 30.0,
    audit_days: float | None = 365.0,
    archive_dir: Path | None = None,
    now: float | None = None,
    dry_run: bool = False,
) -> RetentionReport:
    """Apply the retention rules once.

    Args:
        store: The open store.
        traces_days: Spans older than this are deleted.
        audit_days: Audit segments older than this are archived and dropped (None: keep).
        archive_dir: Where archives go (default `default_archive_dir`).
        now: The current time (seconds since the epoch); for tests.
        dry_run: Count what would go, change nothing.
    """
    if traces_days <= 0 or (audit_days is not None and audit_days <= 0):
        raise ValueError("retention periods must be positive")
    now = time.time() if now is None else now
    report = RetentionReport()
    cutoff_ns = int((now - traces_days * 86400) * 1e9)
    with store.engine.begin() as conn:
        if dry_run:
            report.spans_deleted = int(
                conn.execute(
                    select(func.count()).select_from(spans).where(spans.c.start_ns < cutoff_ns)
                ).scalar()
                or 0
            )
        else:
            report.spans_deleted = (
                conn.execute(delete(spans).where(spans.c.start_ns < cutoff_ns)).rowcount or 0
            )
    if audit_days is not None and not dry_run:
        log = AuditLog(store)
        segment = log.archive_before(now - audit_days * 86400, archive_dir or default_archive_dir())
        if segment is not None:
            report.segments.append(segment)
        log.close()
    return report
