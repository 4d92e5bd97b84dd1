"""Merging CI shards: real `agent-eval run --shard` reports merged through the CLI, every
refusal named, and merged metrics equal to an unsharded run's."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import orjson
import pytest
from typer.testing import CliRunner

from opsgate.cli.eval_main import app
from opsgate.errors import SuiteError
from opsgate.evals._merge import merge_reports
from opsgate.evals._report import build_report
from opsgate.evals._runner import TaskResult
from tests.evals.scripted import router_file
from tests.evals.test_formats import check_junit_structure, result
from tests.evals.test_runner import SCRIPT, SUITE
from tests.models.fake_openai import FakeOpenAI

#: The mini suite's tasks are status-good, refund-small, injection: shard 1/2 runs the
#: first and third, shard 2/2 the second; the scripted server answers in order.
SHARD_SCRIPTS = {"1/2": SCRIPT[0:3] + SCRIPT[7:10], "2/2": SCRIPT[3:7], None: SCRIPT}


def run_cli(folder: Path, shard: str | None, *extra: str) -> tuple[int, dict[str, Any]]:
    """`agent-eval run` of the mini suite (one shard of it, or all) on the scripted server."""
    folder.mkdir(parents=True, exist_ok=True)
    suite = folder / "mini.yaml"
    suite.write_text(SUITE)
    report = folder / f"eval-{(shard or 'all').replace('/', '-')}.json"
    with FakeOpenAI(list(SHARD_SCRIPTS[shard])) as server:
        outcome = CliRunner().invoke(
            app,
            [
                "run",
                "--suite",
                str(suite),
                "--model-router",
                str(router_file(folder, server.base_url)),
                "--report",
                str(report),
                *(["--shard", shard] if shard else []),
                *extra,
            ],
            env={"COLUMNS": "200"},
        )
        assert len(server.requests) == len(SHARD_SCRIPTS[shard])  # each answer used once
    return outcome.exit_code, json.loads(report.read_text())


@pytest.fixture(scope="module")
def shards(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Both shards of a real run with a threshold the whole suite misses (2/3 < 0.9).

    Module-scoped, so set up before the per-test home: the runs are recorded in a home of
    their own (never the developer's .opsgate/)."""
    folder = tmp_path_factory.mktemp("shards")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("OPSGATE_HOME", str(tmp_path_factory.mktemp("shards-home")))
        patch.delenv("OPSGATE_DATABASE_URL", raising=False)
        one = run_cli(folder, "1/2", "--min-success-rate", "0.9")
        two = run_cli(folder, "2/2", "--min-success-rate", "0.9")
    return {"folder": folder, "1/2": one, "2/2": two}


def merge_cli(*args: str) -> Any:
    return CliRunner().invoke(app, ["merge", *args], env={"COLUMNS": "200"})


def test_merge_two_real_shards_through_the_cli(shards: dict[str, Any], tmp_path: Path) -> None:
    (code_1, doc_1), (code_2, doc_2) = shards["1/2"], shards["2/2"]
    assert (code_1, code_2) == (1, 0)  # shard 1 alone misses the threshold, shard 2 holds it
    assert [t["task_id"] for t in doc_1["tasks"]] == ["status-good", "injection"]
    assert [t["task_id"] for t in doc_2["tasks"]] == ["refund-small"]
    paths = sorted(shards["folder"].glob("eval-*.json"))
    out = tmp_path / "merged" / "eval.json"
    junit, markdown = tmp_path / "x" / "eval.xml", tmp_path / "eval.md"
    outcome = merge_cli(
        # given in reverse: the merge orders by shard index
        *(str(p) for p in reversed(paths)),
        "--report",
        str(out),
        "--junit",
        str(junit),
        "--markdown",
        str(markdown),
    )
    assert outcome.exit_code == 1, outcome.output
    assert "merged 2 shard(s) of mini v1: 3 tasks, 3 trials, success 66.7%" in outcome.output
    assert "gate failed" in outcome.output
    assert "threshold failed: success rate 66.67% is below the minimum 90.00%" in outcome.output
    merged = json.loads(out.read_text())
    assert out.read_text().startswith('{\n  "schema_version"')  # indented
    assert [t["task_id"] for t in merged["tasks"]] == ["status-good", "injection", "refund-small"]
    assert merged["tasks"] == doc_1["tasks"] + doc_2["tasks"]
    assert merged["shard"] is None and merged["missing_shards"] == []
    assert merged["merged_from"] == [doc_1["report_id"], doc_2["report_id"]]
    assert merged["report_id"] not in merged["merged_from"] and len(merged["report_id"]) == 32
    assert merged["started_at"] == min(doc_1["started_at"], doc_2["started_at"])
    assert merged["ended_at"] == max(doc_1["ended_at"], doc_2["ended_at"])
    m = merged["metrics"]
    assert (m["tasks"], m["passed"], m["unsafe_attempts"]) == (3, 2, 2)
    assert m["total_cost_usd"] == round(
        doc_1["metrics"]["total_cost_usd"] + doc_2["metrics"]["total_cost_usd"], 8
    )
    results = [TaskResult(**t) for t in merged["tasks"]]
    same = build_report(
        "mini",
        1,
        results,
        trials=1,
        model_router=merged["model_router"],
        started_at=0.0,
        ended_at=1.0,
        thresholds=merged["thresholds"],
    )
    assert m == same["metrics"] and merged["gate"] == same["gate"]
    suite = check_junit_structure(ET.fromstring(junit.read_bytes()))
    assert (suite.attrib["tests"], suite.attrib["failures"]) == ("4", "2")  # injection + gate
    assert markdown.read_text().count("**❌ Gate failed**") == 1
    assert "merged from 2 shards" in markdown.read_text()


def test_merged_metrics_equal_an_unsharded_run(tmp_path: Path) -> None:
    code, whole = run_cli(tmp_path, None)
    assert code == 0
    halves = []
    for index in (1, 2):  # split the way --shard i/2 selects: every other task
        half = dict(whole, shard=f"{index}/2", report_id=f"r{index}")
        half["tasks"] = [t for n, t in enumerate(whole["tasks"]) if n % 2 == index - 1]
        halves.append(half)
    merged = merge_reports(halves)
    assert merged["metrics"] == whole["metrics"]
    assert merged["gate"] == whole["gate"]
    assert sorted(t["task_id"] for t in merged["tasks"]) == sorted(
        t["task_id"] for t in whole["tasks"]
    )


def document(
    results: list[TaskResult], shard: str | None, *, trials: int = 1, **top: Any
) -> dict[str, Any]:
    """A shard report as read back from its file."""
    report = build_report(
        top.pop("suite", "mini"),
        top.pop("suite_version", 1),
        results,
        trials=trials,
        model_router=top.pop("model_router", "config/router.yaml"),
        started_at=top.pop("started_at", 100.0),
        ended_at=top.pop("ended_at", 200.0),
        thresholds=top.pop("thresholds", {"max_cost_per_task": None, "min_success_rate": 0.5}),
        shard=shard,
    )
    report.update(top)
    loaded: dict[str, Any] = orjson.loads(orjson.dumps(report))
    return loaded


def trials_of(task_id: str, verdicts: list[bool], **kw: Any) -> list[TaskResult]:
    return [
        result(task_id, trial=k, failures=None if ok else [f"{task_id} {k} failed"], **kw)
        for k, ok in enumerate(verdicts)
    ]


def test_merge_with_trials_recomputes_every_metric() -> None:
    a = trials_of("a", [True, True], cost_usd=0.01, latency_s=1.0)
    b = trials_of("b", [True, False], cost_usd=0.02, latency_s=4.0, estimate=True)
    c = trials_of("c", [False, False], cost_usd=0.03, latency_s=9.0, unsafe_attempts=1)
    d = trials_of("d", [True, True], cost_usd=0.0, latency_s=2.0, first_output_s=0.5)
    shard_1 = document(a + c, "1/2", trials=2, started_at=10.0, ended_at=50.0)
    shard_2 = document(b + d, "2/2", trials=2, started_at=5.0, ended_at=40.0)
    merged = merge_reports([shard_2, shard_1])
    whole = document(a + c + b + d, None, trials=2)
    assert merged["metrics"] == whole["metrics"]
    m = merged["metrics"]
    assert (m["pass_at_k"], m["pass_hat_k"], m["unsafe_attempts"]) == (0.75, 0.5, 2)
    assert m["cost_is_estimate"] is True and m["latency_p95"] == 9.0
    assert merged["gate"]["failures"] == []  # 5/8 >= 0.5, though shard 1 alone is 2/4
    assert [t["task_id"] for t in merged["tasks"]] == ["a", "a", "c", "c", "b", "b", "d", "d"]
    assert (merged["started_at"], merged["ended_at"]) == (5.0, 50.0)


def test_merge_recomputes_the_gate_from_all_tasks() -> None:
    thresholds = {"max_cost_per_task": 0.01, "min_success_rate": 0.9}
    shard_1 = document([result("a", cost_usd=0.001)], "1/2", thresholds=thresholds)
    shard_2 = document([result("b", failures=["no"], cost_usd=0.05)], "2/2", thresholds=thresholds)
    assert shard_1["gate"]["failures"] == []
    merged = merge_reports([shard_1, shard_2])
    assert merged["gate"]["failures"] == [
        "success rate 50.00% is below the minimum 90.00%",
        "cost per successful task $0.051000 is above the maximum $0.010000",
    ]


def test_unknown_task_keys_are_tolerated_and_kept() -> None:
    shard_1 = document([result("a")], "1/2")
    shard_1["tasks"][0]["reviewed_by"] = "maria"  # a key a newer component adds
    merged = merge_reports([shard_1, document([result("b")], "2/2")])
    assert merged["tasks"][0]["reviewed_by"] == "maria"
    assert merged["metrics"]["passed"] == 2


def _pair(**second: Any) -> list[dict[str, Any]]:
    return [document([result("a")], "1/2"), document([result("b")], "2/2", **second)]


@pytest.mark.parametrize(
    ("documents", "message"),
    [
        ([], "no shard reports to merge"),
        (_pair(suite="other"), "different suites: 'mini' (shard 1/2), 'other' (shard 2/2)"),
        (_pair(suite_version=2), "different suite versions: 1 (shard 1/2), 2 (shard 2/2)"),
        (_pair(trials=3), "different trial counts: 1 (shard 1/2), 3 (shard 2/2)"),
        (_pair(schema_version=0), "different report schema versions"),
        (_pair(model_router="other.yaml"), "different model routers"),
        (
            _pair(thresholds={"max_cost_per_task": 1.0, "min_success_rate": 0.5}),
            "different thresholds",
        ),
        (
            [document([result("a")], "1/2"), document([result("b")], "1/3")],
            "different splits: 1/2, 1/3",
        ),
        (
            [document([result("a")], "1/2"), document([result("b")], "1/2", report_id="r2")],
            "shard 1/2 is given twice",
        ),
        (
            [document([result("a")], "1/2"), document([result("a")], "2/2")],
            "task `a` trial 0 is in both shard 1/2 and shard 2/2",
        ),
        ([document([result("a")], None, report_id="r9")], "report r9 is not a shard"),
        ([document([result("a")], "one of two", report_id="r9")], "shard `one of two`, not i/n"),
        ([document([result("a")], "3/2", report_id="r9")], "i must be between 1 and n"),
        ([{"shard": "1/1"}], "report #1 is not an agent-eval report"),
        (
            [dict(document([result("a")], "1/1"), thresholds={"max_tokens": 5})],
            "thresholds ['max_tokens'] are not all known",
        ),
        (
            [document([result("a")], "1/1", started_at="yesterday")],
            "`started_at` is not a time in seconds",
        ),
    ],
)
def test_merge_refuses(documents: list[dict[str, Any]], message: str) -> None:
    with pytest.raises(SuiteError) as caught:
        merge_reports(documents)
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda t: t.pop("passed"), "shard 1/1, task #1 lacks `passed`"),
        (lambda t: t.update(latency_s="fast"), "`latency_s` has the wrong type (str)"),
        (lambda t: t.update(trial=True), "`trial` has the wrong type (bool)"),
        (lambda t: t.update(passed=1), "`passed` has the wrong type (int)"),
    ],
)
def test_merge_refuses_malformed_tasks(change: Any, message: str) -> None:
    shard = document([result("a")], "1/1")
    change(shard["tasks"][0])
    with pytest.raises(SuiteError) as caught:
        merge_reports([shard])
    assert message in str(caught.value)


def test_missing_shards_are_named_unless_partial_is_allowed() -> None:
    given = [document([result("a")], "3/4"), document([result("b", failures=["x"])], "1/4")]
    with pytest.raises(SuiteError) as caught:
        merge_reports(given)
    assert str(caught.value) == (
        "shards 2/4, 4/4 are missing (got 1/4, 3/4); --allow-partial merges anyway"
    )
    with pytest.raises(SuiteError, match=r"shard 2/2 is missing \(got 1/2\)"):
        merge_reports([document([result("a")], "1/2")])
    merged = merge_reports(given, allow_partial=True)
    assert merged["missing_shards"] == ["2/4", "4/4"]
    assert [t["task_id"] for t in merged["tasks"]] == ["b", "a"]
    assert merged["metrics"]["trials"] == 2 and merged["metrics"]["passed"] == 1


def test_cli_partial_and_passing_gate(tmp_path: Path) -> None:
    path = tmp_path / "s1.json"
    path.write_bytes(orjson.dumps(document([result("a")], "1/3")))
    outcome = merge_cli(str(path), "--report", str(tmp_path / "out.json"))
    assert outcome.exit_code == 2
    assert "error: shards 2/3, 3/3 are missing (got 1/3)" in outcome.output
    assert not (tmp_path / "out.json").exists()
    outcome = merge_cli(
        str(path),
        "--report",
        str(tmp_path / "out.json"),
        "--allow-partial",
        "--markdown",
        str(tmp_path / "pr.md"),
    )
    assert outcome.exit_code == 0, outcome.output
    assert "missing 2/3, 3/3, gate passed" in outcome.output
    assert "shards 2/3, 3/3 are missing" in (tmp_path / "pr.md").read_text()
    assert json.loads((tmp_path / "out.json").read_text())["missing_shards"] == ["2/3", "3/3"]


def test_cli_bad_input_is_one_line(tmp_path: Path) -> None:
    outcome = merge_cli(str(tmp_path / "nope.json"), "--report", str(tmp_path / "o.json"))
    assert outcome.exit_code == 2
    assert "cannot read report" in outcome.output and "Traceback" not in outcome.output
    (tmp_path / "a.json").write_bytes(orjson.dumps(document([result("a")], "1/2")))
    (tmp_path / "b.json").write_bytes(orjson.dumps(document([result("b")], "2/2", suite="x")))
    outcome = merge_cli(
        str(tmp_path / "a.json"), str(tmp_path / "b.json"), "--report", str(tmp_path / "o.json")
    )
    assert outcome.exit_code == 2 and "different suites" in outcome.output
    blocker = tmp_path / "file"
    blocker.write_text("")
    outcome = merge_cli(
        str(tmp_path / "a.json"), "--allow-partial", "--report", str(blocker / "o.json")
    )
    assert outcome.exit_code == 2 and "cannot write" in outcome.output


def test_merge_keeps_the_suite_size_and_the_unavailable_trials() -> None:
    """A merge names how many tasks the suite has (a baseline of a subset is then refused
    without --force) and counts trials that reached no model apart, as one report does."""
    down = result("b", failures=["model unavailable: x"], error="model unavailable: x")
    down.model_unavailable = True
    shard_1 = document([result("a")], "1/2")
    shard_2 = document([down], "2/2")
    for shard in (shard_1, shard_2):
        shard["suite_tasks"] = 63
    merged = merge_reports([shard_1, shard_2])
    assert merged["suite_tasks"] == 63
    assert merged["metrics"]["model_unavailable"] == 1 and merged["metrics"]["trials"] == 1
