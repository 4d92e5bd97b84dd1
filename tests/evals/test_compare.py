"""`compare` on reports that cover different task sets: judged on the tasks they share."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from opsgate.errors import SuiteError
from opsgate.evals._report import build_report, compare
from opsgate.evals._runner import TaskResult

ROOT = Path(__file__).resolve().parents[2]


def _report(verdicts: dict[str, bool]) -> dict[str, object]:
    results = [
        TaskResult(t, 0, [], ok, [] if ok else ["x"], "completed", "done", None, cost_usd=0.01)
        for t, ok in verdicts.items()
    ]
    return build_report(
        "s", 1, results, trials=1, model_router="r", started_at=0, ended_at=1, thresholds={}
    )


def test_a_subset_run_is_compared_on_the_shared_tasks() -> None:
    baseline = _report({"a": True, "b": False, "c": False, "d": False})  # 25% over all four
    subset = _report({"a": True, "b": False})  # 50%: the same verdicts on what it covers
    regressions, notes, changes = compare(subset, baseline, max_success_drop=0.02)
    assert regressions == [] and changes == []
    # the wording asked for by issue #11 (fault 8): "compared on 7 of 63 tasks"
    assert notes[0] == "compared on 2 of 4 tasks: the report has a verdict on 2, the baseline on 4"
    assert "50.00% -> 50.00%" in notes[1]
    worse = _report({"a": False, "b": False})
    regressions, _, changes = compare(worse, baseline, max_success_drop=0.02)
    assert regressions == ["success rate dropped by 50.00% (allowed 2.00%)"]
    assert changes == ["newly failing: a"]


def test_reports_sharing_no_task_are_refused() -> None:
    with pytest.raises(SuiteError, match="share no task"):
        compare(_report({"x": True}), _report({"y": True}))


def test_reports_are_checked_against_the_published_schema(tmp_path: Path) -> None:
    from opsgate.evals._report import load_report, report_problem

    good = _report({"a": True, "b": False})
    assert report_problem(good) is None
    assert (
        report_problem(load_report(ROOT / "evals" / "baselines" / "support_triage_v3.json")) is None
    )
    bad = json.loads(json.dumps(good))
    bad["metrics"]["success_rate"] = 2.0
    del bad["tasks"][1]["calls"]
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(bad))
    with pytest.raises(SuiteError, match=r"not a valid report: .* at /"):
        load_report(path)


def test_a_baseline_with_sparse_trials_is_read_and_a_broken_one_named() -> None:
    from opsgate.evals._report import results_of

    sparse = _report({"a": True})
    for t in sparse["tasks"]:  # type: ignore[union-attr]
        del t["tags"], t["output"]
    assert results_of(sparse)[0].tags == []  # type: ignore[arg-type]
    broken = _report({"a": True})
    del broken["tasks"][0]["status"]  # type: ignore[index]
    with pytest.raises(SuiteError, match="lacks what a trial needs"):
        results_of(broken)  # type: ignore[arg-type]
