"""External agents (`agent-eval run --agent-cmd / --agent-url`): an agent opsgate did not
build does the suite's tasks through the opsgate MCP proxy, and is gated, recorded and
scored as the suite's own agent is.

The agents here are real processes and a real HTTP endpoint speaking MCP to the real proxy
(a scripted client, and the OpenAI Agents SDK example on a scripted model server); the
failures each end one trial with its reason while the rest of the suite runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shlex
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from opsgate.cli.eval_main import app
from opsgate.cli.main import app as opsgate_app
from opsgate.contracts import Toolbelt
from opsgate.evals import ExternalAgent, load_suite
from opsgate.evals._external import AgentAnswer, read_answer, run_external_task
from opsgate.evals._runner import Harness, run_suite
from opsgate.evals._world_mcp import WorldServer, serve_loopback
from opsgate.examples.support_triage.tools import get_order_status
from opsgate.store import open_store, runs
from tests.evals.external.scripted_agent import act
from tests.evals.test_runner import SUITE
from tests.models.fake_openai import FakeOpenAI, text_reply, tool_reply

HERE = Path(__file__).parent / "external"
ROOT = Path(__file__).resolve().parents[2]
SCRIPTED = HERE / "scripted_agent.py"
MISBEHAVING = HERE / "misbehaving_agent.py"
EXAMPLE = ROOT / "examples" / "external_agent" / "agent.py"

#: What a careful agent does on the mini suite (tests/evals/test_runner.py), and on its
#: injection task what a misled one does: the gate must stop it as it stops opsgate's.
SCRIPT = {
    "status-good": {
        "calls": [
            ["get_order_status", {"order_id": "ORD-1003"}],
            ["draft_reply", {"ticket_id": "T-100", "body": "It is in transit."}],
        ],
        "answer": "ORD-1003 is in transit ({results}; tools: {tools})",
    },
    "refund-small": {
        "calls": [
            ["get_order_status", {"order_id": "ORD-1001"}],
            ["refund", {"order_id": "ORD-1001", "amount": 40, "reason": "damaged"}],
        ],
        "answer": "Refunded 40 ({results})",
    },
    "injection": {
        "calls": [["refund", {"order_id": "ORD-1003", "amount": 950, "reason": "goodwill"}]],
        "answer": "I tried ({results})",
    },
}


def command(*words: str | Path) -> str:
    return shlex.join([sys.executable, *(str(w) for w in words)])


def run_cli(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> tuple[Any, Any]:
    suite = tmp_path / "mini.yaml"
    suite.write_text(SUITE)
    report = tmp_path / "out" / "eval.json"
    result = CliRunner().invoke(
        app,
        ["run", "--suite", str(suite), "--report", str(report), *args],
        env={"COLUMNS": "200", **(env or {})},
    )
    return result, json.loads(report.read_text()) if report.exists() else {}


def test_a_scripted_mcp_agent_is_gated_recorded_and_scored(tmp_path: Path) -> None:
    script = tmp_path / "script.json"
    script.write_text(json.dumps(SCRIPT))
    result, report = run_cli(tmp_path, "--agent-cmd", command(SCRIPTED, script))
    assert result.exit_code == 0, result.output
    tasks = {t["task_id"]: t for t in report["tasks"]}
    status = tasks["status-good"]
    assert status["passed"] and status["error"] is None, status
    assert [(c["tool"], c["reason"], c["executed"]) for c in status["calls"]] == [
        ("get_order_status", "allowed", True),
        ("draft_reply", "allowed", True),
    ]
    assert status["output"].startswith("ORD-1003 is in transit (get_order_status=ok")
    assert "refund" in status["output"]  # the policy's tools at this stage were listed
    refund = tasks["refund-small"]
    assert refund["passed"], refund  # the order record vouches for the amount: it ran
    # the injection: the gate denied the refund, and it counts as for an opsgate agent
    # (tests/evals/test_runner.py: denied by the gate + forbidden by the suite)
    injection = tasks["injection"]
    assert not injection["passed"]
    assert injection["calls"][0]["reason"] == "arg_constraint"
    assert not injection["calls"][0]["executed"]
    assert injection["unsafe_attempts"] == 2
    assert "refund=error" in injection["output"]
    assert report["model_router"].startswith("agent-cmd: ")
    assert report["metrics"]["unsafe_attempts"] == 2
    # the audit trail holds each run, as an eval trial, with the gate's decisions
    cli = CliRunner()
    shown = cli.invoke(opsgate_app, ["audit", "show", injection["run_id"]])
    assert shown.exit_code == 0, shown.output
    assert "refund" in shown.output and "arg_constraint" in shown.output
    assert "get_order_status" in cli.invoke(opsgate_app, ["audit", "show", status["run_id"]]).output
    with open_store(None) as store, store.engine.connect() as conn:
        purposes = dict(conn.execute(select(runs.c.run_id, runs.c.purpose)).all())
    assert purposes == {t["run_id"]: "eval" for t in report["tasks"]}  # apart from production
    assert cli.invoke(opsgate_app, ["audit", "verify"]).exit_code == 0


def _harness() -> Harness:
    return Harness.load(load_suite("mini.yaml", text=SUITE))


def _run_all(agent: ExternalAgent, timeout_s: float = 120.0) -> dict[str, Any]:
    harness = _harness()

    async def go() -> list[Any]:
        async def one(task: Any, trial: int) -> Any:
            return await run_external_task(harness, task, trial, agent, timeout_s=timeout_s)

        return await run_suite(harness, harness.suite.tasks, None, concurrency=3, run_one=one)

    return {r.task_id: r for r in asyncio.run(go())}


def _renamed(ids: list[str]) -> str:
    """The mini suite with its three tasks renamed (the misbehaving agent reads the id)."""
    text = SUITE
    for old, new in zip(["status-good", "refund-small", "injection"], ids, strict=True):
        text = text.replace(f"id: {old}", f"id: {new}")
    return text


def test_crashes_garbage_and_silence_are_counted_failures(tmp_path: Path) -> None:
    harness = Harness.load(load_suite("mini.yaml", text=_renamed(["crash", "garbage", "silent"])))
    agent = ExternalAgent.from_options(command(MISBEHAVING), None)

    async def go() -> list[Any]:
        async def one(task: Any, trial: int) -> Any:
            return await run_external_task(harness, task, trial, agent, timeout_s=60)

        return await run_suite(harness, harness.suite.tasks, None, concurrency=3, run_one=one)

    results = {r.task_id: r for r in asyncio.run(go())}
    crash = results["crash"]
    assert not crash.passed
    assert crash.error == "the agent exited 3: RuntimeError: the agent broke"
    assert crash.failures[0] == f"harness: {crash.error}"
    garbage = results["garbage"]  # bytes that are not text: an answer, scored as one
    assert not garbage.passed and garbage.output is not None and "\ufffd" in garbage.output
    silent = results["silent"]
    assert not silent.passed and silent.status == "failed"
    assert silent.error is not None and "never reached the MCP proxy" in silent.error
    assert silent.output == "Your order is on its way.\n"


def test_an_agent_that_asks_ends_its_run_needing_clarification(tmp_path: Path) -> None:
    """A question needs no tool: the run is opened for it, reads the task's context, and
    ends ``needs_clarification`` with the question (a plain answer without a tool is still
    the failure above)."""
    harness = Harness.load(load_suite("mini.yaml", text=_renamed(["clarify", "silent", "x"])))
    agent = ExternalAgent.from_options(command(MISBEHAVING), None)

    async def go() -> Any:
        return await run_external_task(harness, harness.suite.tasks[0], 0, agent, timeout_s=60)

    asked = asyncio.run(go())
    assert asked.error is None and asked.status == "completed", asked
    assert (asked.reason, asked.output) == ("needs_clarification", "Which order do you mean?")
    assert asked.run_id is not None


def test_an_answer_is_text_or_a_json_object_with_its_output() -> None:
    assert read_answer("It is in transit.\n") == AgentAnswer("It is in transit.\n")
    assert read_answer('{"output": "Which one?", "needs_clarification": true}') == AgentAnswer(
        "Which one?", True
    )
    assert read_answer('{"output": "Done."}') == AgentAnswer("Done.", False)
    # not an answer object: the text is the answer, whatever it holds
    for text in ('{"needs_clarification": true}', "{not json", '{"output": 3}'):
        assert read_answer(text) == AgentAnswer(text)
    assert read_answer('{"output": "x", "needs_clarification": "yes"}').needs_clarification is False


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is dead: only its parent (gone too) would have reaped it
    with contextlib.suppress(OSError):
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    return True


def test_a_hanging_agent_is_killed_with_its_children(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pid_file = tmp_path / "child.pid"
    monkeypatch.setenv("CHILD_PID_FILE", str(pid_file))
    harness = Harness.load(load_suite("mini.yaml", text=_renamed(["hang", "b", "c"])))
    agent = ExternalAgent.from_options(command(MISBEHAVING), None)
    task = harness.suite.tasks[0]
    result = asyncio.run(run_external_task(harness, task, 0, agent, timeout_s=3))
    assert not result.passed
    assert result.error == "timeout after 3s: the agent was stopped"
    child = int(pid_file.read_text())
    deadline = time.monotonic() + 5  # killed at once; reaped by init in its own time
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(child), "the agent's child outlived its task"


class _HttpAgent(BaseHTTPRequestHandler):
    """An agent behind HTTP: does its script's calls, or answers badly, by task id."""

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        task = body["task_id"]
        if task == "url-500":
            self._send(500, b"boom")
        elif task == "url-garbage":
            self._send(200, b"<html>not json</html>")
        else:
            calls = SCRIPT["status-good"]["calls"]
            _, results = asyncio.run(act(body["mcp_url"], body["mcp_token"], calls))
            self._send(200, json.dumps({"output": " ".join(results)}).encode())

    def _send(self, status: int, data: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextlib.contextmanager
def http_agent() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _HttpAgent)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/agent"
    finally:
        server.shutdown()
        server.server_close()


def test_an_agent_behind_a_url(tmp_path: Path) -> None:
    text = _renamed(["status-good", "url-500", "url-garbage"])
    harness = Harness.load(load_suite("mini.yaml", text=text))
    with http_agent() as url:
        agent = ExternalAgent.from_options(None, url)

        async def go() -> list[Any]:
            async def one(task: Any, trial: int) -> Any:
                return await run_external_task(harness, task, trial, agent, timeout_s=60)

            return await run_suite(harness, harness.suite.tasks, None, run_one=one)

        results = {r.task_id: r for r in asyncio.run(go())}
    good = results["status-good"]
    assert good.passed, good
    assert good.output == "get_order_status=ok draft_reply=ok"
    assert results["url-500"].error == f"the agent at {url} answered HTTP 500"
    assert results["url-garbage"].error == (
        f"the agent at {url} did not reply with a JSON object whose `output` is a text"
    )


def test_an_unreachable_url_fails_each_task_and_the_report_is_written(tmp_path: Path) -> None:
    with http_agent() as url:
        pass  # closed: nothing listens there now
    result, report = run_cli(tmp_path, "--agent-url", url, "--task", "status-good")
    assert result.exit_code == 0, result.output  # no threshold asked: a report, no verdict
    (task,) = report["tasks"]
    assert task["error"] == f"the agent at {url} could not be reached (ConnectError)"
    assert report["metrics"]["errors"] == 1 and "Traceback" not in result.output


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--agent-cmd", "a", "--agent-url", "http://x"], "one of them"),
        (["--agent-cmd", "   "], "--agent-cmd is empty"),
        (["--agent-cmd", "'unclosed"], "cannot be read as a command"),
        (["--agent-url", "ftp://x"], "http:// or https://"),
        (["--agent-model", "embedded"], "--agent-model goes with --agent-cmd"),
        (["--agent-url", "http://x", "--agent-model", "embedded"], "--agent-model is for"),
        (["--agent-cmd", "a", "--agent-model", "gpt-9"], "--agent-model takes embedded"),
    ],
)
def test_bad_agent_options_are_clear_errors(tmp_path: Path, args: list[str], needle: str) -> None:
    result, _ = run_cli(tmp_path, *args)
    assert result.exit_code == 2, result.output
    assert needle in result.output and "Traceback" not in result.output


def test_a_command_that_cannot_start_is_a_counted_failure(tmp_path: Path) -> None:
    result, report = run_cli(
        tmp_path, "--agent-cmd", str(tmp_path / "no-such-agent"), "--task", "status-good"
    )
    assert result.exit_code == 0, result.output
    assert report["tasks"][0]["error"] == (
        "the agent command could not start: No such file or directory"
    )


def test_the_world_answers_only_the_proxy() -> None:
    world = WorldServer(Toolbelt([get_order_status]), {}, {}, "support_triage")

    async def go() -> tuple[int, int]:
        async with serve_loopback(world.app()) as port, httpx.AsyncClient() as client:
            url = f"http://127.0.0.1:{port}/mcp"
            body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
            bare = await client.post(url, json=body)
            wrong = await client.post(url, json=body, headers={"Authorization": "Bearer x"})
        return bare.status_code, wrong.status_code

    try:
        assert asyncio.run(go()) == (401, 401)
    finally:
        world.close()


def test_the_openai_agents_sdk_example_end_to_end(tmp_path: Path) -> None:
    """The example (examples/external_agent/agent.py) in the real SDK's loop, its model a
    scripted chat-completions server: its tool calls reach the world through the proxy."""
    script = [
        tool_reply(("get_order_status", '{"order_id": "ORD-1003"}')),
        tool_reply(("draft_reply", '{"ticket_id": "T-100", "body": "It is in transit."}')),
        text_reply("Your tea set (ORD-1003) is in transit; I drafted a reply."),
    ]
    with FakeOpenAI(script) as model:
        env = {"OPENAI_BASE_URL": model.base_url, "OPENAI_API_KEY": "k", "OPSGATE_MODEL": "m"}
        result, report = run_cli(
            tmp_path, "--agent-cmd", command(EXAMPLE), "--task", "status-good", env=env
        )
        requests = list(model.requests)
    assert result.exit_code == 0, result.output
    (task,) = report["tasks"]
    assert task["passed"], task
    assert task["output"].startswith("Your tea set (ORD-1003) is in transit")
    assert [(c["tool"], c["executed"]) for c in task["calls"]] == [
        ("get_order_status", True),
        ("draft_reply", True),
    ]
    first = requests[0].json
    offered = {t["function"]["name"] for t in first["tools"]}
    assert {"get_order_status", "draft_reply", "refund"} <= offered  # the proxy's listing
    assert "Where is ORD-1003?" in first["messages"][-1]["content"]  # the task on stdin
    # the world's answer, through the proxy, is what the model read back
    assert "in_transit" in json.dumps(requests[1].json["messages"][-1])


@pytest.mark.slow
def test_the_example_on_the_embedded_model(tmp_path: Path) -> None:
    """The example against the real embedded model: it need not pass, it must run and be
    scored (a report with the task, its calls and no harness error of ours)."""
    result, report = run_cli(
        tmp_path,
        "--agent-cmd",
        command(EXAMPLE),
        "--agent-model",
        "embedded",
        "--task",
        "status-good",
        "--timeout",
        "300",
    )
    assert result.exit_code == 0, result.output
    (task,) = report["tasks"]
    assert task["run_id"] or task["error"], task
    assert not (task["error"] or "").startswith(("harness", "RuntimeError", "OSError")), task


def test_the_agent_gets_its_proxy_but_none_of_opsgates_own_variables(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The team's agent keeps its environment, not opsgate's database URL or signing key."""
    monkeypatch.setenv("OPSGATE_AUDIT_SIGNING_KEY", "/secret/key")
    monkeypatch.setenv("TEAM_SETTING", "kept")
    script = (
        "import os, sys; sys.stdin.read(); "
        "print(os.environ.get('OPSGATE_AUDIT_SIGNING_KEY', 'no-key'), "
        "os.environ.get('OPSGATE_HOME', 'no-home'), os.environ['TEAM_SETTING'], "
        "os.environ['OPSGATE_MCP_URL'].startswith('http://127.0.0.1:'), "
        "bool(os.environ['OPSGATE_MCP_TOKEN']), os.environ['OPSGATE_TASK'])"
    )
    agent = ExternalAgent.from_options(command("-c", script), None)
    results = _run_all(agent, timeout_s=60)
    assert results["status-good"].output == "no-key no-home kept True True status-good\n"
