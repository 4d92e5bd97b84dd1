"""Eval reports, accepted baselines and review verdicts in the database (SQLite and
PostgreSQL), and the default baseline `agent-eval assert` falls back on."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, inspect

from opsgate.errors import SuiteError
from opsgate.evals._report import build_report
from opsgate.evals._review import review_summary
from opsgate.evals._runner import TaskResult
from opsgate.evals._store import EvalStore, default_baseline, open_existing
from opsgate.store import open_store

#: (task id, trial, passed, tools called) of the report `make_report` builds by default.
TRIALS: list[tuple[str, int, bool, list[str]]] = [
    ("status", 0, True, ["get_order_status"]),
    ("refund", 0, False, ["get_order_status", "refund"]),
    ("refund", 1, True, ["get_order_status", "refund"]),
    ("note", 0, True, ["add_internal_note"]),
    ("kb", 0, False, ["search_kb"]),
]


def make_report(
    suite: str = "mini",
    trials: list[tuple[str, int, bool, list[str]]] | None = None,
    *,
    started_at: float = 1_700_000_000.0,
    thresholds: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A report built by the real `build_report` from scored trials."""
    results = [
        TaskResult(
            task_id=task_id,
            trial=trial,
            tags=[],
            passed=passed,
            failures=[] if passed else [f"required call {tools[-1]}() not made"],
            status="completed",
            reason="done",
            output=f"handled {task_id}",
            calls=[
                {"tool": tool, "args": {"order_id": "ORD-1"}, "reason": "allowed", "executed": True}
                for tool in tools
            ],
            cost_usd=0.001,
            latency_s=1.0,
        )
        for task_id, trial, passed, tools in (TRIALS if trials is None else trials)
    ]
    return build_report(
        suite,
        1,
        results,
        trials=2,
        model_router="config/router.yaml",
        started_at=started_at,
        ended_at=started_at + 60,
        thresholds=thresholds or {},
    )


def test_a_report_is_saved_once_and_read_back(db_url: str) -> None:
    report = make_report()
    with open_store(db_url) as store:
        evals = EvalStore(store)
        assert evals.save_report(report) == report["report_id"]
        assert evals.save_report(report) == report["report_id"]  # idempotent
        assert evals.get_report(report["report_id"]) == json.loads(json.dumps(report))
        (summary,) = evals.list_reports()
    assert summary["report_id"] == report["report_id"]
    assert summary["suite"] == "mini" and summary["trials"] == 2
    assert summary["success_rate"] == pytest.approx(0.6)
    assert summary["unsafe_attempts"] == 0 and summary["gate_passed"] is True
    assert summary["cost_per_successful_task"] == report["metrics"]["cost_per_successful_task"]


def test_list_reports_is_newest_first_by_suite_and_limited(db_url: str) -> None:
    old, new = make_report(started_at=1000.0), make_report(started_at=2000.0)
    other = make_report("other", started_at=3000.0)
    failing = make_report(started_at=500.0, thresholds={"min_success_rate": 0.9})
    with open_store(db_url) as store:
        evals = EvalStore(store)
        for report in (old, other, new, failing):
            evals.save_report(report)
        assert [r["report_id"] for r in evals.list_reports(suite="mini")] == [
            new["report_id"],
            old["report_id"],
            failing["report_id"],
        ]
        assert [r["report_id"] for r in evals.list_reports(limit=1)] == [other["report_id"]]
        assert evals.list_reports(suite="mini")[-1]["gate_passed"] is False
        with pytest.raises(SuiteError, match="limit must be at least 1"):
            evals.list_reports(limit=0)


def test_bad_reports_are_refused(db_url: str) -> None:
    report = make_report()
    with open_store(db_url) as store:
        evals = EvalStore(store)
        with pytest.raises(SuiteError, match="no report `feed` is stored"):
            evals.get_report("feed")
        with pytest.raises(SuiteError, match="newer than this agent-eval"):
            evals.save_report(dict(report, schema_version=2))
        with pytest.raises(SuiteError, match="no valid report_id"):
            evals.save_report({k: v for k, v in report.items() if k != "report_id"})
        with pytest.raises(SuiteError, match="is not an agent-eval report"):
            evals.save_report({"report_id": "x"})
        with pytest.raises(SuiteError, match="lacks `trials`"):
            evals.save_report({k: v for k, v in report.items() if k != "trials"})
        evals.save_report(report)
        edited = json.loads(json.dumps(report))
        edited["metrics"]["success_rate"] = 1.0
        with pytest.raises(SuiteError, match=r"a different report `\w+` is already stored"):
            evals.save_report(edited)
        # annotations that leave the results alone (the reviews section) are the same report
        evals.save_report(dict(report, reviews={"reviewed": 0}))


def test_accepted_baselines_keep_their_history(db_url: str) -> None:
    first, second = make_report(), make_report(started_at=2e9)
    with open_store(db_url) as store:
        evals = EvalStore(store)
        assert evals.baseline("mini") is None and evals.baseline_history("mini") == []
        record = evals.accept(first, "maria", "first green run")  # stores the report too
        assert (record.report_id, record.accepted_by, record.note) == (
            first["report_id"],
            "maria",
            "first green run",
        )
        assert record.summary["success_rate"] == pytest.approx(0.6)
        assert evals.has_report(first["report_id"])
        evals.accept(second, "li")
        assert evals.baseline("mini") == json.loads(json.dumps(second))
        evals.accept(first, "maria", "back to the first")  # re-accepting an older one
        history = evals.baseline_history("mini")
        assert [(h.report_id, h.accepted_by) for h in history] == [
            (first["report_id"], "maria"),
            (second["report_id"], "li"),
            (first["report_id"], "maria"),
        ]
        assert evals.baseline("mini") == json.loads(json.dumps(first))
        assert evals.baseline("other") is None
        with pytest.raises(SuiteError, match="say who accepts"):
            evals.accept(first, "  ")


def test_review_verdicts(db_url: str) -> None:
    report = make_report()
    with open_store(db_url) as store:
        evals = EvalStore(store)
        evals.record_review(report, "refund", 0, "fail", "ana", "refund was denied")
        assert evals.has_report(report["report_id"])  # stored on the first verdict
        evals.record_review(report, "refund", 0, "pass", "ana", "changed my mind")
        evals.record_review(report, "refund", 0, "fail", "bo")
        evals.record_review(report, "kb", 0, "pass", "ana")
        reviews = evals.reviews(report["report_id"])
        assert [(r.task_id, r.trial, r.reviewer, r.verdict, r.notes) for r in reviews] == [
            ("kb", 0, "ana", "pass", ""),
            ("refund", 0, "ana", "pass", "changed my mind"),
            ("refund", 0, "bo", "fail", ""),
        ]
        with pytest.raises(SuiteError, match="`pass` or `fail`, not `maybe`"):
            evals.record_review(report, "kb", 0, "maybe", "ana")
        with pytest.raises(SuiteError, match="task `nope` is not in report"):
            evals.record_review(report, "nope", 0, "pass", "ana")
        with pytest.raises(SuiteError, match=r"has no trial 2 in this report \(trials: 0, 1\)"):
            evals.record_review(report, "refund", 2, "pass", "ana")
        with pytest.raises(SuiteError, match="say who reviews"):
            evals.record_review(report, "kb", 0, "pass", "")
        summary = review_summary(store, report)
    # report order (refund before kb), then reviewer; automated verdicts from the report
    assert summary["items"] == [
        {
            "task_id": "refund",
            "trial": 0,
            "verdict": "pass",
            "automated": False,
            "reviewer": "ana",
            "notes": "changed my mind",
        },
        {
            "task_id": "refund",
            "trial": 0,
            "verdict": "fail",
            "automated": False,
            "reviewer": "bo",
            "notes": "",
        },
        {
            "task_id": "kb",
            "trial": 0,
            "verdict": "pass",
            "automated": False,
            "reviewer": "ana",
            "notes": "",
        },
    ]
    # pairs (human, automated): (P,F) (F,F) (P,F): observed 1/3, chance 2/3*0 + 1/3*1 = 1/3
    assert summary["reviewed"] == 3
    assert summary["agreement"] == pytest.approx(0.3333)
    assert summary["kappa"] == pytest.approx(0.0)


def test_default_baseline_prefers_the_database_then_the_committed_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    url = f"sqlite:///{tmp_path / 'db' / 'opsgate.db'}"
    assert default_baseline(url, "mini") is None
    assert not (tmp_path / "db").exists()  # asking never creates a database
    committed = make_report()
    folder = tmp_path / "evals" / "baselines"
    folder.mkdir(parents=True)
    (folder / "mini.json").write_text(json.dumps(committed))
    found = default_baseline(url, "mini")
    assert found is not None
    assert found[0]["report_id"] == committed["report_id"]
    assert found[1] == "`evals/baselines/mini.json`"
    accepted = make_report(started_at=2e9)
    (tmp_path / "db").mkdir()  # a database folder is never created implicitly
    with open_store(url) as store:
        EvalStore(store).accept(accepted, "maria")
    found = default_baseline(url, "mini")
    assert found is not None and found[0]["report_id"] == accepted["report_id"]
    assert "accepted in" in found[1] and "by maria" in found[1]
    assert accepted["report_id"] in found[1]
    (folder / "mini.json").write_text("{not json")  # the default database has no baseline
    with pytest.raises(SuiteError, match="not a JSON report"):
        default_baseline(None, "mini")


def test_open_existing_does_not_create_a_database(tmp_path: Path) -> None:
    missing = tmp_path / "none.db"
    assert open_existing(f"sqlite:///{missing}") is None and not missing.exists()
    open_store(f"sqlite:///{missing}").close()
    store = open_existing(f"sqlite:///{missing}")
    assert store is not None
    store.close()


def test_open_existing_leaves_an_empty_postgresql_database_empty(pg_cluster: Any) -> None:
    """Asking for a baseline must not create opsgate's tables in an empty database."""
    url = pg_cluster.new_database()
    assert open_existing(url) is None
    engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://"))
    try:
        assert inspect(engine).get_table_names() == []
    finally:
        engine.dispose()
    open_store(url).close()
    store = open_existing(url)
    assert store is not None
    store.close()
