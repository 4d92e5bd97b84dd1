"""Eval reports, accepted baselines and human review verdicts in the opsgate database.

The dashboard lists reports without parsing them (headline metrics are columns), `agent-eval
assert` compares with the latest accepted baseline of a suite (history is kept), and the
review queue stores one verdict per reviewer and trial. Every document is checked the way
`load_report` checks a file: a report of a newer schema is refused, never half-read.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import Connection, RowMapping, Table, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from opsgate.errors import SuiteError
from opsgate.evals._report import check_version, load_report
from opsgate.store import (
    NoDatabaseError,
    Store,
    default_url,
    eval_baselines,
    eval_reports,
    eval_reviews,
    open_store,
)

__all__ = [
    "BASELINES_DIR",
    "VERDICTS",
    "BaselineRecord",
    "EvalStore",
    "Review",
    "check_report",
    "committed_baseline",
    "default_baseline",
    "format_time",
    "open_existing",
    "task_trials",
]

#: Where `agent-eval baseline accept --write` puts the committed baseline of a suite.
BASELINES_DIR = Path("evals/baselines")
#: A human reviewer's verdicts.
VERDICTS = ("pass", "fail")

_REPORT_ID = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")
_SUITE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$")

_SUMMARY_COLUMNS = (
    eval_reports.c.report_id,
    eval_reports.c.suite,
    eval_reports.c.suite_version,
    eval_reports.c.model_router,
    eval_reports.c.trials,
    eval_reports.c.shard,
    eval_reports.c.started_at,
    eval_reports.c.ended_at,
    eval_reports.c.success_rate,
    eval_reports.c.cost_per_successful_task,
    eval_reports.c.unsafe_attempts,
    eval_reports.c.gate_passed,
    eval_reports.c.created_at,
)


def format_time(ts: float) -> str:
    """A timestamp as people read it in a terminal: ``2026-11-25 10:04:05 UTC``."""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


@dataclass(frozen=True)
class BaselineRecord:
    """One acceptance of a report as its suite's baseline."""

    suite: str
    report_id: str
    accepted_at: float
    accepted_by: str
    note: str
    summary: dict[str, Any]
    """The accepted report's headline metrics (as `EvalStore.list_reports` gives them)."""


@dataclass(frozen=True)
class Review:
    """A person's verdict on one trial of one task of a report."""

    report_id: str
    task_id: str
    trial: int
    verdict: str
    reviewer: str
    notes: str
    created_at: float


def check_report(document: Any, where: str) -> dict[str, Any]:
    """A validated, JSON-normalised copy of a report, or a `SuiteError` naming ``where``.

    Refuses what the store could not file: no ``report_id``, a suite name that is not a
    name, a schema newer than this agent-eval reads, missing headline metrics.
    """
    if not isinstance(document, dict) or not isinstance(document.get("metrics"), dict):
        raise SuiteError(f"{where} is not an agent-eval report")
    check_version(document, where)
    report_id = document.get("report_id")
    if not isinstance(report_id, str) or not _REPORT_ID.match(report_id):
        raise SuiteError(
            f"{where} has no valid report_id (made by an older agent-eval?): run the suite again"
        )
    suite = document.get("suite")
    if not isinstance(suite, str) or not _SUITE_NAME.match(suite):
        raise SuiteError(f"{where} names no valid suite (`{suite}`)")
    try:
        normal: dict[str, Any] = orjson.loads(orjson.dumps(document))
    except TypeError as exc:
        raise SuiteError(f"{where} is not JSON data: {exc}") from None
    tasks = normal.get("tasks", [])
    if not isinstance(tasks, list) or not all(
        isinstance(t, dict)
        and isinstance(t.get("task_id"), str)
        and isinstance(t.get("trial"), int)
        for t in tasks
    ):
        raise SuiteError(f"{where}: `tasks` must be a list of scored trials")
    return normal


def _row(document: dict[str, Any], where: str) -> dict[str, Any]:
    m = document["metrics"]
    try:
        cost = m["cost_per_successful_task"]
        gate = document.get("gate") or {}
        return {
            "report_id": document["report_id"],
            "suite": document["suite"],
            "suite_version": int(document["suite_version"]),
            "model_router": str(document["model_router"]),
            "trials": int(document["trials"]),
            "shard": None if document.get("shard") is None else str(document["shard"]),
            "started_at": float(document["started_at"]),
            "ended_at": float(document["ended_at"]),
            "success_rate": float(m["success_rate"]),
            "cost_per_successful_task": None if cost is None else float(cost),
            "unsafe_attempts": int(m["unsafe_attempts"]),
            "gate_passed": not gate.get("failures"),
            "document": document,
            "created_at": time.time(),
        }
    except KeyError as exc:
        raise SuiteError(f"{where} lacks `{exc.args[0]}`") from None
    except (TypeError, ValueError) as exc:
        raise SuiteError(f"{where} has a malformed field: {exc}") from None


def task_trials(document: dict[str, Any]) -> dict[str, list[int]]:
    """The trials of each task in a report, in report order."""
    trials: dict[str, list[int]] = {}
    for task in document.get("tasks", []):
        trials.setdefault(task["task_id"], []).append(task["trial"])
    return trials


def _insert(conn: Connection, table: Table) -> Any:
    """The dialect's INSERT (for ON CONFLICT clauses, which both backends have)."""
    return (postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert)(table)


def _summary(row: RowMapping) -> dict[str, Any]:
    summary = {c.name: row[c.name] for c in _SUMMARY_COLUMNS}
    summary["gate_passed"] = bool(summary["gate_passed"])
    return summary


class EvalStore:
    """Eval reports, baselines and reviews, over an open `Store` (which the caller closes)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    # -- reports ---------------------------------------------------------------------------

    def save_report(self, document: dict[str, Any]) -> str:
        """Store a report (once: saving it again is a no-op) and return its ``report_id``.

        Raises:
            SuiteError: not a report, newer schema, or a different report already stored
                under the same id.
        """
        checked = check_report(document, "the report")
        with self.store.engine.begin() as conn:
            self._save(conn, checked)
        return str(checked["report_id"])

    def _save(self, conn: Connection, document: dict[str, Any]) -> None:
        report_id = document["report_id"]
        row = _row(document, f"report `{report_id}`")
        inserted = conn.execute(
            _insert(conn, eval_reports)
            .values(row)
            .on_conflict_do_nothing()
            .returning(eval_reports.c.report_id)
        ).first()
        if inserted is not None:
            return
        stored = conn.execute(
            select(eval_reports.c.document).where(eval_reports.c.report_id == report_id)
        ).scalar_one()
        if stored.get("metrics") != document["metrics"] or stored.get("tasks") != document.get(
            "tasks"
        ):
            raise SuiteError(
                f"a different report `{report_id}` is already stored: a report id names one "
                "run, was the file edited?"
            )

    def get_report(self, report_id: str) -> dict[str, Any]:
        """A stored report; `SuiteError` when there is none of that id."""
        with self.store.engine.connect() as conn:
            document = conn.execute(
                select(eval_reports.c.document).where(eval_reports.c.report_id == report_id)
            ).scalar()
        if document is None:
            raise SuiteError(f"no report `{report_id}` is stored in `{self.store.url}`")
        return check_report(document, f"stored report `{report_id}`")

    def has_report(self, report_id: str) -> bool:
        """Whether a report of that id is stored."""
        with self.store.engine.connect() as conn:
            found = conn.execute(
                select(func.count())
                .select_from(eval_reports)
                .where(eval_reports.c.report_id == report_id)
            ).scalar()
        return bool(found)

    def list_reports(self, suite: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
        """Headline metrics of stored reports, the most recently run first."""
        if limit < 1:
            raise SuiteError(f"limit must be at least 1, not {limit}")
        query = select(*_SUMMARY_COLUMNS)
        if suite is not None:
            query = query.where(eval_reports.c.suite == suite)
        query = query.order_by(
            eval_reports.c.started_at.desc(), eval_reports.c.created_at.desc()
        ).limit(limit)
        with self.store.engine.connect() as conn:
            return [_summary(r._mapping) for r in conn.execute(query)]

    # -- baselines -------------------------------------------------------------------------

    def accept(self, document: dict[str, Any], by: str, note: str = "") -> BaselineRecord:
        """Make a report its suite's baseline (storing the report if it is not yet)."""
        if not by.strip():
            raise SuiteError("say who accepts the baseline (--by NAME)")
        checked = check_report(document, "the report")
        accepted_at = time.time()
        with self.store.engine.begin() as conn:
            self._save(conn, checked)
            conn.execute(
                eval_baselines.insert().values(
                    suite=checked["suite"],
                    report_id=checked["report_id"],
                    accepted_at=accepted_at,
                    accepted_by=by.strip(),
                    note=note,
                )
            )
        with self.store.engine.connect() as conn:
            summary = conn.execute(
                select(*_SUMMARY_COLUMNS).where(eval_reports.c.report_id == checked["report_id"])
            ).one()
        return BaselineRecord(
            suite=checked["suite"],
            report_id=checked["report_id"],
            accepted_at=accepted_at,
            accepted_by=by.strip(),
            note=note,
            summary=_summary(summary._mapping),
        )

    def baseline_history(self, suite: str) -> list[BaselineRecord]:
        """Every acceptance for a suite, the current baseline first."""
        query = (
            select(
                eval_baselines.c.suite,
                eval_baselines.c.accepted_at,
                eval_baselines.c.accepted_by,
                eval_baselines.c.note,
                *_SUMMARY_COLUMNS,
            )
            .join(eval_reports, eval_reports.c.report_id == eval_baselines.c.report_id)
            .where(eval_baselines.c.suite == suite)
            .order_by(eval_baselines.c.accepted_at.desc(), eval_baselines.c.id.desc())
        )
        with self.store.engine.connect() as conn:
            rows = list(conn.execute(query))
        return [
            BaselineRecord(
                suite=r.suite,
                report_id=r.report_id,
                accepted_at=r.accepted_at,
                accepted_by=r.accepted_by,
                note=r.note,
                summary=_summary(r._mapping),
            )
            for r in rows
        ]

    def baseline_record(self, suite: str) -> BaselineRecord | None:
        """The latest acceptance for a suite, or None."""
        history = self.baseline_history(suite)
        return history[0] if history else None

    def baseline(self, suite: str) -> dict[str, Any] | None:
        """The accepted baseline report of a suite, or None when none was accepted."""
        record = self.baseline_record(suite)
        return None if record is None else self.get_report(record.report_id)

    # -- reviews ---------------------------------------------------------------------------

    def record_review(
        self,
        document: dict[str, Any],
        task_id: str,
        trial: int,
        verdict: str,
        reviewer: str,
        notes: str = "",
    ) -> Review:
        """Store a reviewer's verdict on a trial (replacing their earlier one on it).

        The report is stored too if it is not yet.

        Raises:
            SuiteError: a verdict other than pass/fail, no reviewer, a task not in the
                report, a trial the task does not have.
        """
        if verdict not in VERDICTS:
            raise SuiteError(f"a verdict is `pass` or `fail`, not `{verdict}`")
        if not reviewer.strip():
            raise SuiteError("say who reviews (--reviewer NAME)")
        checked = check_report(document, "the report")
        trials = task_trials(checked)
        if task_id not in trials:
            known = ", ".join(list(trials)[:10]) + (", …" if len(trials) > 10 else "")
            raise SuiteError(
                f"task `{task_id}` is not in report `{checked['report_id']}` "
                f"(tasks: {known or 'none'})"
            )
        if trial not in trials[task_id]:
            shown = ", ".join(str(k) for k in trials[task_id])
            raise SuiteError(
                f"task `{task_id}` has no trial {trial} in this report (trials: {shown})"
            )
        review = Review(
            report_id=checked["report_id"],
            task_id=task_id,
            trial=trial,
            verdict=verdict,
            reviewer=reviewer.strip(),
            notes=notes,
            created_at=time.time(),
        )
        values = {
            "report_id": review.report_id,
            "task_id": task_id,
            "trial": trial,
            "verdict": verdict,
            "reviewer": review.reviewer,
            "notes": notes,
            "created_at": review.created_at,
        }
        with self.store.engine.begin() as conn:
            self._save(conn, checked)
            statement = _insert(conn, eval_reviews).values(values)
            conn.execute(
                statement.on_conflict_do_update(
                    index_elements=["report_id", "task_id", "trial", "reviewer"],
                    set_={
                        "verdict": statement.excluded.verdict,
                        "notes": statement.excluded.notes,
                        "created_at": statement.excluded.created_at,
                    },
                )
            )
        return review

    def reviews(self, report_id: str) -> list[Review]:
        """Every verdict recorded on a report, by task, trial and reviewer."""
        query = (
            select(eval_reviews)
            .where(eval_reviews.c.report_id == report_id)
            .order_by(eval_reviews.c.task_id, eval_reviews.c.trial, eval_reviews.c.reviewer)
        )
        with self.store.engine.connect() as conn:
            return [
                Review(
                    report_id=r.report_id,
                    task_id=r.task_id,
                    trial=r.trial,
                    verdict=r.verdict,
                    reviewer=r.reviewer,
                    notes=r.notes,
                    created_at=r.created_at,
                )
                for r in conn.execute(query)
            ]


def open_existing(url: str | None) -> Store | None:
    """The opsgate database if it exists (upgraded as any open does), else None.

    Read-only commands use this so that asking "is there a baseline?" never leaves a new
    SQLite file behind, nor creates opsgate's tables in an empty PostgreSQL database (in CI,
    for instance, where no database was ever made).
    """
    url = url or default_url()
    try:
        parsed = make_url(url)
    except ArgumentError:
        parsed = None  # open_store names the problem
    if parsed is not None and parsed.get_backend_name() == "sqlite":
        database = parsed.database
        if database and database != ":memory:" and not _exists(Path(database)):
            return None  # not even its folder: no baseline was ever accepted there
    try:
        return open_store(url, create=False)
    except NoDatabaseError:
        return None


def committed_baseline(suite: str) -> tuple[Path, dict[str, Any]] | None:
    """The committed ``evals/baselines/<suite>.json`` and its report, or None when there is
    no such file. `default_baseline`, `baseline show` and `baseline history` all read it
    through here, so they agree on whether there is one.

    Raises:
        SuiteError: the file is there but is not a valid report.
    """
    path = BASELINES_DIR / f"{suite}.json"
    if not (_exists(path) and path.is_file()):
        return None
    return path, load_report(path)


def _exists(path: Path) -> bool:
    """Whether ``path`` exists; False for a name no file can have (too long, a NUL), where
    `Path.exists` raises."""
    try:
        return path.exists()
    except (OSError, ValueError):
        return False


def default_baseline(db: str | None, suite: str) -> tuple[dict[str, Any], str] | None:
    """The baseline `agent-eval assert` compares with by default, and where it came from.

    Order: the report last accepted for ``suite`` in the database, then the committed
    ``evals/baselines/<suite>.json``; None when there is neither.
    """
    store = open_existing(db)
    if store is not None:
        try:
            evals = EvalStore(store)
            record = evals.baseline_record(suite)
            if record is not None:
                where = (
                    f"the baseline accepted in `{store.url}` by {record.accepted_by} at "
                    f"{format_time(record.accepted_at)} (report {record.report_id})"
                )
                return evals.get_report(record.report_id), where
        finally:
            store.close()
    committed = committed_baseline(suite)
    if committed is not None:
        path, document = committed
        return document, f"`{path}`"
    return None
