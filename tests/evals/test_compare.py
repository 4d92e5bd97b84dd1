"""`compare` on reports that cover different task sets: judged on the tasks they share."""

from __future__ import annotations

import pytest

from opsgate.errors import SuiteError
from opsgate.evals._report import build_report, compare
from opsgate.evals._runner import TaskResult


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
    assert "compared on the 2 they share" in notes[0]
    assert "50.00% -> 50.00%" in notes[1]
    worse = _report({"a": False, "b": False})
    regressions, _, changes = compare(worse, baseline, max_success_drop=0.02)
    assert regressions == ["success rate dropped by 50.00% (allowed 2.00%)"]
    assert changes == ["newly failing: a"]


def test_reports_sharing_no_task_are_refused() -> None:
    with pytest.raises(SuiteError, match="share no task"):
        compare(_report({"x": True}), _report({"y": True}))
