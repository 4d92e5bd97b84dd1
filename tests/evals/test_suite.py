"""Suites: loading, and every malformed suite named precisely (exit 2 from the CLI)."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from opsgate.cli.eval_main import app
from opsgate.errors import SuiteError
from opsgate.evals import load_suite
from opsgate.evals._runner import Harness, select_tasks

HEADER = """suite: mini
version: 1
workflow: support_triage
agent: opsgate.examples.support_triage.agent:build_agent
tools: opsgate.examples.support_triage.tools
policy: opsgate.examples.support_triage/policy.yaml
world: opsgate.examples.support_triage.world:world_for_task
tasks:
"""
TASK = """  - id: status-1
    tags: [status]
    ticket: {id: T-100, customer: C-300, subject: Late, body: "Where is ORD-1003?"}
    checks:
      required_calls: [{tool: get_order_status, args: {order_id: ORD-1003}}]
      forbidden_calls: [{tool: refund}]
      state: ["size(world.refunds) == 0"]
"""


def _load(text: str) -> object:
    return load_suite("mini.yaml", text=text)


def test_a_valid_suite_loads_and_binds() -> None:
    suite = load_suite("mini.yaml", text=HEADER + TASK)
    harness = Harness.load(suite)  # type: ignore[arg-type]
    assert [t.id for t in select_tasks(harness.suite, tags=["status"])] == ["status-1"]
    assert select_tasks(harness.suite, tags=["nope"]) == []


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        (HEADER + "  - id: [oops\n", "mini.yaml: line"),
        (
            HEADER
            + TASK.replace(
                "    checks:\n      required_calls: [{tool: get_order_status, "
                "args: {order_id: ORD-1003}}]\n      forbidden_calls: "
                '[{tool: refund}]\n      state: ["size(world.refunds) == 0"]\n',
                "    checks: {}\n",
            ),
            "has no checks",
        ),
        (HEADER + TASK + TASK, "duplicate task id `status-1`"),
        (HEADER + TASK.replace("tags:", "tagz:"), "unknown key `tagz`"),
        (
            HEADER + TASK.replace("size(world.refunds) == 0", "size(world.refunds) =="),
            "invalid CEL",
        ),
        (
            HEADER + TASK.replace("size(world.refunds) == 0", "secret.x == 1"),
            "unknown variable(s) secret",
        ),
    ],
)
def test_malformed_suites(text: str, needle: str) -> None:
    with pytest.raises(SuiteError) as info:
        _load(text)
    assert needle in str(info.value)


def test_unknown_tool_in_a_check_is_refused() -> None:
    suite = load_suite("mini.yaml", text=HEADER + TASK.replace("{tool: refund}", "{tool: nuke}"))
    with pytest.raises(SuiteError, match="unknown tool `nuke`"):
        Harness.load(suite)


def test_cli_exit_2_on_bad_input(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(HEADER + TASK + TASK)
    runner = CliRunner()
    result = runner.invoke(app, ["run", "--suite", str(bad)])
    assert result.exit_code == 2 and "duplicate task id" in result.output
    result = runner.invoke(app, ["run", "--suite", "no_such_suite"])
    assert result.exit_code == 2 and "no suite `no_such_suite`" in result.output
    good = tmp_path / "good.yaml"
    good.write_text(HEADER + TASK)
    router = tmp_path / "router.yaml"
    router.write_text("version: 1\nmodels: {a: {provider: embedded, model: x}}\nroles: {}\n")
    result = runner.invoke(app, ["run", "--suite", str(good), "--model-router", str(router)])
    assert result.exit_code == 2 and "have no model" in result.output
    result = runner.invoke(app, ["run", "--suite", str(good), "--shard", "3/2"])
    assert result.exit_code == 2 and "--shard" in result.output


def test_cli_exit_2_on_a_router_naming_an_unknown_model(tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text(HEADER + TASK)
    router = tmp_path / "router.yaml"
    roles = ", ".join(
        f"{r}: {{model: {'large' if r == 'plan' else 'a'}}}"
        for r in ("route", "extract", "plan", "act", "summarize", "judge")
    )
    router.write_text(
        f"version: 1\nmodels: {{a: {{provider: embedded, model: x}}}}\nroles: {{{roles}}}\n"
    )
    result = CliRunner().invoke(app, ["run", "--suite", str(good), "--model-router", str(router)])
    assert result.exit_code == 2, result.output
    assert "large" in result.output and "Traceback" not in result.output


def test_tasks_may_live_in_a_jsonl_file_beside_the_suite(tmp_path: Path) -> None:
    import json

    task = {
        "id": "status-jsonl",
        "request": "Where is ORD-1003?",
        "checks": {"required_calls": [{"tool": "get_order_status"}]},
    }
    (tmp_path / "tasks.jsonl").write_text(json.dumps(task) + "\n\n")
    suite_file = tmp_path / "mixed.yaml"
    suite_file.write_text(HEADER + TASK + "tasks_file: tasks.jsonl\n")
    suite = load_suite(suite_file)
    assert [t.id for t in suite.tasks] == ["status-1", "status-jsonl"]
    Harness.load(suite)
    bad = dict(task, id="x", colour="red")
    (tmp_path / "tasks.jsonl").write_text(json.dumps(task) + "\n" + json.dumps(bad) + "\n")
    with pytest.raises(SuiteError, match=r"at `colour`: line 2: unknown key `colour`"):
        load_suite(suite_file)
    (tmp_path / "tasks.jsonl").write_text("{not json\n")
    with pytest.raises(SuiteError, match=r"tasks.jsonl: line 1: not JSON"):
        load_suite(suite_file)
    (tmp_path / "tasks.jsonl").write_text(json.dumps(task) + "\n")
    suite_file.write_text(
        HEADER + TASK.replace("status-1", "status-jsonl") + "tasks_file: tasks.jsonl\n"
    )
    with pytest.raises(SuiteError, match="duplicate task id `status-jsonl`"):
        load_suite(suite_file)
