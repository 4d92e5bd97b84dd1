"""JUnit XML and the Markdown PR comment, read back the way CI reporters and GitHub read them."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from typing import Any

import orjson
import pytest

from opsgate.errors import SuiteError
from opsgate.evals._formats import MAX_ROWS, junit_xml, markdown_summary
from opsgate.evals._report import build_report
from opsgate.evals._runner import TaskResult

NASTY = "amount <950> & \"quotes\" 'too' | pipe\nsecond line \x1b[31m"


def result(task_id: str, trial: int = 0, *, failures: list[str] | None = None, **kw: Any) -> Any:
    """A scored trial as the runner makes it."""
    failures = failures or []
    return TaskResult(
        task_id=task_id,
        trial=trial,
        tags=[],
        passed=not failures,
        failures=failures,
        status=kw.pop("status", "completed"),
        reason=kw.pop("reason", "done"),
        output=None,
        **kw,
    )


def report(results: list[TaskResult], **thresholds: Any) -> dict[str, Any]:
    """A report document as it is read back from its JSON file."""
    document = build_report(
        "mini",
        3,
        results,
        trials=1,
        model_router="config/router.yaml",
        started_at=1_700_000_000.0,
        ended_at=1_700_000_012.5,
        thresholds={"max_cost_per_task": None, "min_success_rate": None, **thresholds},
    )
    loaded: dict[str, Any] = orjson.loads(orjson.dumps(document))
    return loaded


MIXED = [
    result("ok", latency_s=1.25, cost_usd=0.01),
    result("bad", failures=[NASTY, "state check failed: x"], latency_s=2.0, cost_usd=0.02),
    result(
        "slow",
        failures=["harness: timeout after 5s"],
        error="timeout after 5s",
        status="failed",
        reason="harness_error",
        latency_s=5.0,
    ),
    result(
        "crash",
        failures=["harness: RuntimeError: boom"],
        error="RuntimeError: boom",
        status="failed",
        reason="harness_error",
    ),
]

TESTSUITE_CHILDREN = {"properties", "testcase", "system-out", "system-err"}
TESTCASE_CHILDREN = {"failure", "error", "skipped", "system-out", "system-err"}


def check_junit_structure(root: ET.Element) -> ET.Element:
    """The rules of the JUnit schema test reporters read (Jenkins' junit-10.xsd); the suite."""
    assert root.tag == "testsuites"
    suites = list(root)
    assert [s.tag for s in suites] == ["testsuite"]
    suite = suites[0]
    for name in ("name", "tests", "failures", "errors", "time"):
        assert name in suite.attrib, name
    assert {c.tag for c in suite} <= TESTSUITE_CHILDREN
    assert [c.tag for c in suite].count("properties") <= 1
    for prop in suite.iter("property"):
        assert set(prop.attrib) == {"name", "value"}
    cases = suite.findall("testcase")
    failures = errors = 0
    for case in cases:
        assert {"classname", "name", "time"} <= set(case.attrib)
        float(case.attrib["time"])
        kinds = [c.tag for c in case]
        assert set(kinds) <= TESTCASE_CHILDREN
        assert kinds.count("failure") + kinds.count("error") <= 1
        failures += kinds.count("failure")
        errors += kinds.count("error")
        for bad in case.findall("failure") + case.findall("error"):
            assert "message" in bad.attrib and "type" in bad.attrib
    assert int(suite.attrib["tests"]) == len(cases)
    assert int(suite.attrib["failures"]) == failures
    assert int(suite.attrib["errors"]) == errors
    float(suite.attrib["time"])
    for name in ("tests", "failures", "errors", "time"):
        assert root.attrib[name] == suite.attrib[name]
    return suite


def test_junit_counts_failures_errors_and_the_gate() -> None:
    document = report(MIXED, min_success_rate=0.9, max_cost_per_task=0.001)
    data = junit_xml(document)
    assert data.startswith(b"<?xml version='1.0' encoding='utf-8'?>")
    suite = check_junit_structure(ET.fromstring(data))
    assert suite.attrib["name"] == "mini"
    assert (suite.attrib["tests"], suite.attrib["failures"], suite.attrib["errors"]) == (
        "5",
        "2",  # `bad` and the gate
        "2",  # `slow` and `crash`
    )
    assert suite.attrib["time"] == "12.500"
    assert suite.attrib["timestamp"] == "2023-11-14T22:13:20"
    cases = {c.attrib["name"]: c for c in suite.findall("testcase")}
    assert list(cases) == ["ok[trial 0]", "bad[trial 0]", "slow[trial 0]", "crash[trial 0]", "gate"]
    assert all(c.attrib["classname"] == "mini" for c in cases.values())
    assert cases["ok[trial 0]"].attrib["time"] == "1.250"
    assert cases["ok[trial 0]"].find("failure") is None
    assert cases["ok[trial 0]"].find("error") is None
    slow = cases["slow[trial 0]"].find("error")
    assert slow is not None and cases["slow[trial 0]"].find("failure") is None
    assert (slow.attrib["type"], slow.attrib["message"]) == ("timeout", "timeout after 5s")
    crash = cases["crash[trial 0]"].find("error")
    assert crash is not None and crash.attrib["type"] == "harness_error"
    assert crash.text == "harness: RuntimeError: boom"
    gate = cases["gate"].find("failure")
    assert gate is not None and gate.attrib["type"] == "threshold"
    assert gate.attrib["message"] == document["gate"]["failures"][0]
    assert gate.text == "\n".join(document["gate"]["failures"])
    assert len(document["gate"]["failures"]) == 2
    run_id_out = cases["ok[trial 0]"].find("system-out")
    assert run_id_out is not None and "status: completed (done)" in (run_id_out.text or "")


def test_junit_carries_xml_special_characters_intact() -> None:
    suite = check_junit_structure(ET.fromstring(junit_xml(report(MIXED))))
    bad = next(c for c in suite.iter("testcase") if c.attrib["name"] == "bad[trial 0]")
    failure = bad.find("failure")
    assert failure is not None and failure.attrib["type"] == "check_failed"
    # the one character XML 1.0 cannot carry at all is spelled out; the rest round-trips
    expected = NASTY.replace("\x1b", "\\x1b")
    assert failure.attrib["message"] == expected
    assert failure.text == expected + "\nstate check failed: x"


def test_junit_properties_and_a_passing_gate() -> None:
    document = report([result("ok"), result("ok", trial=1)], min_success_rate=0.5)
    suite = check_junit_structure(ET.fromstring(junit_xml(document)))
    assert (suite.attrib["failures"], suite.attrib["errors"]) == ("0", "0")
    gate = suite.findall("testcase")[-1]
    assert gate.attrib["name"] == "gate" and list(gate) == []
    props = {p.attrib["name"]: p.attrib["value"] for p in suite.iter("property")}
    assert props["success_rate"] == "1.0" and props["pass_hat_k"] == "1.0"
    assert props["suite_version"] == "3" and props["report_id"] == document["report_id"]
    assert props["cost_per_successful_task"] == "0.0" and props["cost_is_estimate"] == "false"
    assert props["shard"] == "n/a"
    assert (props["trials_per_task"], props["trials"]) == ("1", "2")


def test_junit_names_a_malformed_document() -> None:
    with pytest.raises(SuiteError, match="no `metrics`"):
        junit_xml({"suite": "mini"})
    with pytest.raises(SuiteError, match="not a list of task results"):
        junit_xml({"suite": "mini", "metrics": {}, "tasks": "nope"})


def table_rows(text: str, first_header: str) -> list[list[str]]:
    """The cells of the Markdown table whose header starts with ``first_header``."""
    lines = text.splitlines()
    start = lines.index(next(line for line in lines if line.startswith(f"| {first_header} |")))
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append([c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]])
    return rows


def test_markdown_gate_passed_and_metrics() -> None:
    results = [result("ok", cost_usd=0.002, estimate=True, latency_s=1.5), result("ok2")]
    text = markdown_summary(report(results, min_success_rate=0.5))
    assert text.startswith("## agent-eval: `mini` v3\n")
    assert "**✅ Gate passed**" in text and "❌" not in text
    metrics = dict(table_rows(text, "metric"))  # type: ignore[arg-type]
    assert metrics["success rate (95% Wilson CI)"] == "100.0% [34.2%, 100.0%] (2/2)"
    assert metrics["pass@k / pass^k"] == "100.0% / 100.0%"
    assert metrics["cost per successful task"] == "$0.001000 (estimate)"
    assert metrics["latency p50 / p95"] == "0.0s / 1.5s"
    assert "escalation correctness" in metrics and "unsafe tool attempts" in metrics
    assert "tool-call precision / recall" in metrics
    assert "None: every trial passed its checks." in text
    for absent in ("plan quality", "judge score", "schema validity", "baseline", "Human review"):
        assert absent not in text


def test_markdown_gate_failed_names_each_threshold() -> None:
    document = report(MIXED, min_success_rate=0.9, max_cost_per_task=0.001)
    text = markdown_summary(document)
    assert "**❌ Gate failed**" in text and "✅ Gate" not in text
    for failure in document["gate"]["failures"]:
        assert f"- {failure}" in text
    failing = table_rows(text, "task")
    assert [row[0] for row in failing] == ["bad", "slow", "crash"]
    assert failing[1][2] == "harness: timeout after 5s"


def test_markdown_escapes_pipes_newlines_and_html_in_cells() -> None:
    text = markdown_summary(report([result("a|b", failures=["x | y\nz <details>\x1b[0m"])]))
    rows = table_rows(text, "task")
    assert rows == [["a\\|b", "0", "x \\| y<br>z &lt;details&gt;\\x1b[0m"]]
    assert "<details>" not in text  # nothing to collapse, and the cell's tag is inert


def test_markdown_caps_failing_tasks_and_collapses_the_full_list() -> None:
    results = [
        result(f"t{n:02}", failures=[f"first {n}", f"second {n}"]) for n in range(MAX_ROWS + 5)
    ]
    text = markdown_summary(report(results))
    visible, collapsed = text.split("<details>", 1)
    assert len(table_rows(visible, "task")) == MAX_ROWS
    assert "_…and 5 more._" in visible
    assert "<summary>All 30 failing trials, every failure</summary>" in collapsed
    full = table_rows(collapsed.split("</summary>", 1)[1], "task")
    assert len(full) == MAX_ROWS + 5
    assert full[-1] == ["t29", "0", "first 29<br>second 29"]
    assert collapsed.rstrip().endswith("</details>")


def test_markdown_keeps_the_comment_within_what_github_accepts() -> None:
    long = "x" * 2000
    results = [result(f"t{n}", failures=[long, long]) for n in range(400)]
    text = markdown_summary(report(results))
    assert len(text) < 65_536
    assert re.search(r"_\d+ more rows are in the JSON report\._", text)
    assert "…" in table_rows(text, "task")[0][2]  # cells are cut, marked


def test_markdown_no_success_means_no_cost() -> None:
    text = markdown_summary(report([result("bad", failures=["nope"])]))
    metrics = dict(table_rows(text, "metric"))  # type: ignore[arg-type]
    assert metrics["cost per successful task"] == "n/a (no task succeeded)"


def test_markdown_optional_sections_when_present() -> None:
    document = report([result("ok"), result("bad", failures=["wrong"])])
    document["metrics"].update(plan_quality=0.8125, judge_score=None, schema_validity=1.0)
    document["comparison"] = {
        "baseline": "evals/baselines/mini.json",
        "regressions": ["success rate dropped by 50.00% (allowed 2.00%)"],
        "notes": ["success rate 100.00% -> 50.00% (-50.00%)"],
        "changes": ["newly failing: bad"],
    }
    document["reviews"] = {
        "reviewed": 2,
        "agreement": 0.5,
        "kappa": 0.0,
        "items": [
            {
                "task_id": "ok",
                "trial": 0,
                "verdict": "pass",
                "automated": True,
                "reviewer": "maria",
                "notes": "fine | really",
            },
            {
                "task_id": "bad",
                "trial": 0,
                "verdict": "pass",
                "automated": False,
                "reviewer": "li",
                "notes": None,
            },
        ],
    }
    document["missing_shards"] = ["2/3"]
    text = markdown_summary(document)
    metrics = dict(table_rows(text, "metric"))  # type: ignore[arg-type]
    assert metrics["plan quality"] == "0.812" and metrics["schema validity"] == "1.000"
    assert "judge score" not in metrics
    assert "### Against the baseline `evals/baselines/mini.json`" in text
    assert "- ❌ success rate dropped by 50.00% (allowed 2.00%)" in text
    assert "- newly failing: bad" in text
    assert "reviewed: 2 · agreement with the automated verdict: 50.0% · Cohen's κ: 0.00" in text
    assert table_rows(text, "task")[:2] == [
        ["ok", "0", "pass", "pass", "✅", "maria", "fine \\| really"],
        ["bad", "0", "pass", "fail", "❌", "li", ""],
    ]
    assert "shards 2/3 are missing" in text
    document["comparison"]["regressions"] = []
    document["reviews"].update(kappa=None, agreement=None, items=[])
    text = markdown_summary(document)
    assert "**No regression.**" in text and "Cohen's κ: n/a" in text


def test_markdown_names_a_malformed_document() -> None:
    with pytest.raises(SuiteError, match="no `suite`"):
        markdown_summary({"metrics": {}})


def test_trials_without_a_model_are_skipped_not_failed() -> None:
    """model_unavailable says nothing about the agent: JUnit `<skipped>`, a Markdown note."""
    down = result(
        "down", failures=["model unavailable: refused"], error="model unavailable: refused"
    )
    down.model_unavailable = True
    document = report([result("ok"), down])
    document["suite_tasks"] = 5
    root = ET.fromstring(junit_xml(document))
    suite = root.find("testsuite")
    assert suite is not None
    assert (suite.get("skipped"), suite.get("errors"), suite.get("failures")) == ("1", "0", "0")
    case = next(c for c in suite.iter("testcase") if c.get("name", "").startswith("down"))
    skipped = case.find("skipped")
    assert skipped is not None and skipped.get("message") == "model unavailable: refused"
    text = markdown_summary(document)
    assert "| model unavailable (not scored) | 1 |" in text
    assert "1 trial(s) could not reach a model" in text
    assert "Subset: 2 of the suite's 5 tasks were run" in text
    assert "### Failing tasks (0)" in text
