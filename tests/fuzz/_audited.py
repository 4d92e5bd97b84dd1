"""A real audit trail for the fuzz tests: a SQLite store in a temporary folder, an audit
recorder in front of an in-memory one (as the CLI puts the audit recorder first), and the
trail verified after each example. An event that cannot be stored fails the example."""

from __future__ import annotations

import itertools
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from opsgate.audit import AuditLog, AuditRecorder, Signer
from opsgate.recorder import FanOutRecorder, InMemoryRecorder
from opsgate.store import open_store


@dataclass
class AuditedStore:
    """Makes each example a fresh database: a copy of one migrated once (a copy takes a few
    milliseconds, a migration a hundred; and a trail shared by thousands of examples, some
    with 10 MB events, would make verifying it after each one ever slower)."""

    folder: Path
    template: Path
    _numbers: Iterator[int] = field(default_factory=itertools.count)

    @classmethod
    def create(cls, folder: Path) -> AuditedStore:
        template = folder / "template.db"
        open_store(f"sqlite:///{template}").close()
        return cls(folder, template)

    @contextmanager
    def recording(self) -> Iterator[tuple[FanOutRecorder, InMemoryRecorder]]:
        """A recorder for one example (audit first, then memory); on exit the audit
        recorder is closed (every event committed, a checkpoint signed) and the whole trail
        verified."""
        path = self.folder / f"example-{next(self._numbers)}.db"
        shutil.copyfile(self.template, path)
        store = open_store(f"sqlite:///{path}", migrate=False)
        log = AuditLog(store, Signer.generate())
        audit = AuditRecorder(log, durable="write_ahead", checkpoint_on_run_end=False)
        memory = InMemoryRecorder()
        try:
            try:
                yield FanOutRecorder(audit, memory), memory
            finally:
                audit.close()
            log.verify()
        finally:
            log.close()
            store.close()
            for leftover in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
                leftover.unlink(missing_ok=True)
