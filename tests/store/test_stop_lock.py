"""A stop request reads the run then writes the stop: on SQLite another connection's commit
between the two must not fail it with "database is locked" (a deferred transaction whose
snapshot went stale cannot wait for the lock; it takes the write lock up front instead)."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any

from sqlalchemy import event, insert

from opsgate.store import open_store, request_stop, runs


def test_a_commit_between_the_read_and_the_write_does_not_fail_the_stop(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    with open_store(f"sqlite:///{path}") as store:
        with store.engine.begin() as conn:
            for run_id in ("r1", "r2"):
                conn.execute(
                    insert(runs).values(
                        run_id=run_id, workflow="wf", invoker="ana", agent_id="bot",
                        policy_version="v1", status="running", reason="", started_at=time.time(),
                    )
                )  # fmt: skip
        others: list[str] = []

        def another_writer_commits(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
            if statement.lstrip().upper().startswith("INSERT INTO RUN_STOPS") and not others:
                other = sqlite3.connect(path, timeout=0.2, isolation_level=None)
                try:  # e.g. the cost writer, committing while the stop is being made
                    other.execute("UPDATE runs SET cost_usd = 1.0 WHERE run_id = 'r2'")
                    others.append("committed")
                except sqlite3.OperationalError as exc:
                    others.append(str(exc))  # the stop holds the write lock: it waits
                finally:
                    other.close()

        event.listen(store.engine, "before_cursor_execute", another_writer_commits)
        assert request_stop(store, "r1", actor="ana") == "requested"
        assert others == ["database is locked"]
