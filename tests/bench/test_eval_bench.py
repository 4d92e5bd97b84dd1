"""`bench/evals.py` and `bench/_eval_bench`: the loopback model server, the bench suite run
by the real `agent-eval`, the peers' offline set-up and the figures' arithmetic."""

from __future__ import annotations

import asyncio
import hashlib
import importlib.util
import json
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

BENCH = Path(__file__).resolve().parents[2] / "bench"


def _load_evals() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_evals", BENCH / "evals.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_evals"] = module
    spec.loader.exec_module(module)  # puts bench/ on sys.path for `_eval_bench`
    return module


evals = _load_evals()
from _eval_bench import peers, suites  # noqa: E402
from _eval_bench.server import LoopbackModel, completion, order_of  # noqa: E402

TOOLS = [{"type": "function", "function": {"name": "lookup_order", "parameters": {}}}]


@pytest.fixture(scope="module")
def server() -> Iterator[LoopbackModel]:
    with LoopbackModel() as model:
        yield model


def _ask(url: str, messages: list[dict[str, Any]], **extra: Any) -> httpx.Response:
    body = {"model": "bench-model", "messages": messages, **extra}
    return httpx.post(url + "/chat/completions", json=body, timeout=10)


# -- the server --------------------------------------------------------------------------------


def test_server_calls_the_offered_tool_once_then_answers(server: LoopbackModel) -> None:
    asked = [{"role": "user", "content": "What is the status of order ORD-0042?"}]
    first = _ask(server.base_url(), asked, tools=TOOLS).json()["choices"][0]
    assert first["finish_reason"] == "tool_calls"
    call = first["message"]["tool_calls"][0]["function"]
    assert call["name"] == "lookup_order"
    assert json.loads(call["arguments"]) == {"order_id": "ORD-0042"}
    answered = [*asked, first["message"], {"role": "tool", "content": "{}", "tool_call_id": "c"}]
    final = _ask(server.base_url(), answered, tools=TOOLS).json()["choices"][0]
    assert final["finish_reason"] == "stop"
    assert final["message"]["content"] == "Order ORD-0042: looked up, it has shipped."
    plain = _ask(server.base_url(), asked).json()["choices"][0]  # no tools: just the answer
    assert "ORD-0042" in plain["message"]["content"]


def test_order_comes_from_the_last_user_message_in_any_content_form() -> None:
    parts = [{"role": "user", "content": [{"type": "text", "text": "about ORD-0007 please"}]}]
    assert order_of(parts) == "ORD-0007"
    later = [{"role": "user", "content": "ORD-0001"}, {"role": "user", "content": "ORD-0002"}]
    assert order_of(later) == "ORD-0002"
    assert order_of([{"role": "system", "content": "ORD-0003"}]) == "ORD-0000"
    usage = completion({"messages": later}, 1)["usage"]
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


def test_server_answers_after_the_delay_and_many_at_once(server: LoopbackModel) -> None:
    url = server.base_url(150)
    assert url.endswith("/delay/150/v1")
    server.reset()

    async def many() -> float:
        async with httpx.AsyncClient(timeout=10) as client:
            started = time.perf_counter()
            body = {"messages": [{"role": "user", "content": "ORD-0001"}]}
            answers = await asyncio.gather(
                *(client.post(url + "/chat/completions", json=body) for _ in range(16))
            )
            assert all(a.status_code == 200 for a in answers)
            return time.perf_counter() - started

    took = asyncio.run(many())
    assert 0.15 <= took < 1.2  # 16 answers of 150 ms each, at once: not 2.4 s
    stats = server.stats()
    assert stats["completions"] == 16 and stats["max_in_flight"] == 16
    assert stats["last_done_at"] - stats["first_at"] >= 0.15
    server.reset()
    assert server.stats()["completions"] == 0 and server.stats()["first_at"] is None


def test_server_keeps_connections_alive_and_refuses_what_it_does_not_serve(
    server: LoopbackModel,
) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        body = b'{"messages": []}'
        request = (
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        for _ in range(2):  # two answers on one connection
            sock.sendall(request)
            head = sock.recv(65536)
            assert head.startswith(b"HTTP/1.1 200 OK")
    assert httpx.get(server.base_url() + "/models").json()["data"][0]["id"] == "bench-model"
    assert httpx.get(f"http://127.0.0.1:{server.port}/nowhere").status_code == 404
    streamed = _ask(server.base_url(), [], stream=True)
    assert streamed.status_code == 400 and "stream" in streamed.json()["error"]["message"]
    assert httpx.post(server.base_url() + "/chat/completions", content=b"{nope").status_code == 400


def test_server_child_exits_when_stopped() -> None:
    model = LoopbackModel().start()
    proc = model.proc
    assert proc is not None and proc.poll() is None
    model.stop()
    assert proc.poll() is not None and model.proc is None
    model.stop()  # twice is fine


# -- the bench suite, run by the real agent-eval ---------------------------------------------------


def test_suite_and_router_files_are_valid() -> None:
    from opsgate.evals import Harness, load_suite

    suite = load_suite("bench.yaml", text=suites.suite_text(3))
    assert [t.id for t in suite.tasks] == ["lookup-0001", "lookup-0002", "lookup-0003"]
    harness = Harness.load(suite)
    assert harness.toolbelt.names() == ["lookup_order"]
    assert suite.tasks[1].request == "What is the status of order ORD-0002?"
    with pytest.raises(ValueError, match=r"1\.\.9999"):
        suites.order_ids(0)


def test_agent_eval_runs_the_bench_suite_with_two_calls_a_task(
    server: LoopbackModel, tmp_path: Path
) -> None:
    from opsgate.cli.eval_main import app

    suite = suites.write_suite(tmp_path, 3)
    router = suites.write_router(tmp_path, server.base_url())
    report = tmp_path / "report.json"
    server.reset()
    result = CliRunner().invoke(
        app,
        ["run", "--suite", str(suite), "--model-router", str(router), "--report", str(report)],
    )
    assert result.exit_code == 0, result.output
    tasks = json.loads(report.read_text())["tasks"]
    assert [t["passed"] for t in tasks] == [True, True, True]
    assert {t["model_calls"] for t in tasks} == {suites.CALLS_PER_TASK}
    assert tasks[0]["calls"][0]["args"] == {"order_id": "ORD-0001"}
    assert server.stats()["completions"] == 3 * suites.CALLS_PER_TASK


@pytest.mark.slow
def test_bench_runs_agent_eval_as_a_subprocess_and_checks_it(
    server: LoopbackModel, tmp_path: Path
) -> None:
    bench = evals.Bench(tmp_path, server)
    config = bench.opsgate(0)
    child = bench.run(config, 2, 1)
    assert child.returncode == 0 and child.server["completions"] == 4
    assert child.wall_s > 0 and child.cpu_s > 0 and child.rss_mb > 10
    assert (tmp_path / "opsgate-home").is_dir()  # recorders on, in the temporary home

    def broken(n: int, conc: int, folder: Path) -> tuple[list[str], dict[str, str]]:
        argv, env = config.command(n, conc, folder)
        return [*argv, "--min-success-rate", "1.1"], env  # rejected: not a passing run

    with pytest.raises(RuntimeError, match="agent-eval exit"):
        bench.run(evals.Config("opsgate", "x", 2, 0, broken, config.verify), 1, 1)


def test_bare_client_reaches_the_limit_it_is_measured_against(server: LoopbackModel) -> None:
    out = evals.bare_client_throughput(server, 64)  # 2 rounds of 32 tasks, 0.4 s each
    assert out["limit_tasks_per_s"] == 80.0 and out["max_in_flight"] == evals.CONCURRENCY
    assert 0.8 <= out["window_s"] < 5.0
    assert out["tasks_per_s"] == pytest.approx(64 / out["window_s"], rel=0.02)


# -- child processes ---------------------------------------------------------------------------


def test_run_child_measures_and_kills_on_timeout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    done = evals.run_child([sys.executable, "-c", "print('hi')"], {}, tmp_path)
    assert done.returncode == 0 and done.output.strip() == "hi"
    assert done.rss_mb > 1 and done.cpu_s > 0 and done.wall_s > 0
    monkeypatch.setattr(evals, "CHILD_TIMEOUT_S", 0.3)
    started = time.perf_counter()
    hung = evals.run_child([sys.executable, "-c", "import time; time.sleep(60)"], {}, tmp_path)
    assert hung.returncode == -9 and time.perf_counter() - started < 10
    assert not evals._live


# -- the figures -------------------------------------------------------------------------------


class _FakeBench:
    """Runs that take ``start + n * per`` (start worse on some runs, as under load)."""

    def __init__(self, start: float, per: float, cpu_per: float, window: bool = False) -> None:
        self.start, self.per, self.cpu_per, self.window = start, per, cpu_per, window
        self.sizes: list[int] = []

    def run(self, config: Any, n: int, conc: int) -> Any:
        jitter = 0.5 * (len(self.sizes) % 2)
        self.sizes.append(n)
        server = {}
        if self.window:
            server = {"first_at": 100.0, "last_done_at": 100.0 + n * self.per - 0.001}
        return evals.Child(
            [],
            0,
            self.start + jitter + n * self.per,
            0.3 + n * self.cpu_per,
            50.0 + n / 100,
            0.0,
            "",
            server,
        )


def _config(delay_ms: int | None, calls: int = 2) -> Any:
    return evals.Config("h", "m", calls, delay_ms, lambda *a: ([], {}), lambda *a: None)


def test_per_task_is_the_best_slope_and_start_up_the_rest() -> None:
    fake = _FakeBench(start=1.0, per=0.01, cpu_per=0.01)  # every other run starts 0.5 s late
    out = evals.per_task(fake, _config(None), 2.0, 3, (10, 1000))  # type: ignore[arg-type]
    assert fake.sizes[:2] == [1, 10] and fake.sizes.count(1) == 3 and len(fake.sizes) == 7
    assert out["per_task_ms"] == pytest.approx(10.0)  # the late runs do not count
    assert out["cpu_per_task_ms"] == pytest.approx(10.0)
    assert out["startup_s"] == pytest.approx(1.0)
    assert 10 < out["n"] <= 200  # sized up from the late probe towards 2 s of tasks
    assert out["timed_by"] == "process wall" and "first_call_s" not in out
    bounded = evals.per_task(fake, _config(None), 100.0, 1, (10, 50))  # type: ignore[arg-type]
    assert bounded["n"] == 50


def test_per_task_with_a_server_times_its_window() -> None:
    fake = _FakeBench(start=5.0, per=0.004, cpu_per=0.002, window=True)
    out = evals.per_task(fake, _config(0), 1.0, 2, (20, 4000))  # type: ignore[arg-type]
    assert out["timed_by"] == "server window"
    assert out["per_task_ms"] == pytest.approx(4.0)
    assert out["first_call_s"] == pytest.approx(100.0)  # server clock - spawn time (0 here)


def test_throughput_is_tasks_over_the_best_window_against_the_limit() -> None:
    runs = iter([{"first_at": 0.0, "last_done_at": 8.0}, {"first_at": 3.0, "last_done_at": 8.0}])

    class Bench:
        def run(self, config: Any, n: int, conc: int) -> Any:
            assert conc == evals.CONCURRENCY
            return evals.Child([], 0, 9.0, 1.0, 80.0, 0.0, "", {**next(runs), "max_in_flight": 32})

    out = evals.throughput(Bench(), _config(200), 320, 2)  # type: ignore[arg-type]
    assert out["window_s"] == 5.0 and out["tasks_per_s"] == 64.0
    assert out["limit_tasks_per_s"] == 80.0 and out["share_of_limit"] == 0.8
    assert out["max_in_flight"] == 32


def _results(ops_over: float, pf_over: float, ops_share: float) -> dict[str, Any]:
    row = {"startup_s": 1.0, "rss_mb": 100.0}
    return {
        "opsgate agent-eval / instant server": {**row, "own_overhead_ms": ops_over},
        "opsgate agent-eval / server 200 ms": {"share_of_limit": ops_share, "rss_mb": 120.0},
        "promptfoo / echo": {"own_overhead_ms": pf_over, "startup_s": 2.2},
        "inspect_ai / mockllm": {"own_overhead_ms": 13.4, "startup_s": 5.1},
        "promptfoo / server 200 ms": {"share_of_limit": 0.46},
        "inspect_ai / server 200 ms + tool": {"share_of_limit": 0.36},
        "bare httpx client, no harness / server 200 ms": {"share_of_limit": 0.9},
    }


def test_goals_need_the_bound_and_to_be_ahead_of_both_peers() -> None:
    goals = {g["goal"].split()[0]: g for g in evals._goals(_results(1.5, 4.9, 0.85))}
    assert [g["met"] for g in goals.values()] == [True, True, True, True]
    assert goals["own"]["promptfoo"] == "4.90 ms" and goals["peak"]["opsgate"] == "120 MB"
    assert goals[">="]["reference"] == "90%"  # the bare client, beside the goal
    behind = {g["goal"].split()[0]: g["met"] for g in evals._goals(_results(1.5, 1.0, 0.85))}
    assert behind["own"] is False  # under 2 ms, but promptfoo is faster
    slow = {g["goal"].split()[0]: g["met"] for g in evals._goals(_results(1.5, 4.9, 0.79))}
    assert slow[">="] is False


def test_profile_lines_rank_own_time_then_opsgate_cumulative() -> None:
    entries = {
        ("/x/site-packages/httpx/_client.py", 10, "send"): (1, 100, 0.5, 0.6, {}),
        ("/w/src/opsgate/audit/_recorder.py", 73, "record"): (1, 1100, 0.1, 4.0, {}),
        ("~", 0, "<method 'acquire'>"): (1, 1100, 3.9, 3.9, {}),
    }
    lines = evals.profile_lines(entries, 100, top=2)
    assert "acquire" in lines[2] and "39.000 ms own" in lines[2]
    assert "httpx/_client.py:10 send" in lines[3]
    assert lines[4].startswith("opsgate's") and "opsgate/audit/_recorder.py:73" in lines[5]


# -- peers, offline ----------------------------------------------------------------------------


def _fake_ranks(folder: Path) -> Path:
    ranks = folder / "js-tiktoken" / "dist" / "ranks" / "o200k_base.cjs"
    ranks.parent.mkdir(parents=True)
    data = {"pat_str": "x", "special_tokens": {}, "bpe_ranks": "! 0 IQ== Ig==\nB 5 Iw==\n"}
    ranks.write_text("module.exports = " + json.dumps(data) + ";")
    return ranks


def test_o200k_is_rebuilt_from_js_tiktoken_and_checked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ranks = _fake_ranks(tmp_path / "node_modules")
    assert peers.o200k_from_js_tiktoken(ranks) == b"IQ== 0\nIg== 1\nIw== 5\n"
    monkeypatch.setattr(peers, "NODE_MODULES", tmp_path / "node_modules")
    cache = tmp_path / "tiktoken"
    said: list[str] = []
    wrong = peers.ensure_o200k(said.append, cache)
    assert wrong is not None and "sha256" in wrong and not cache.exists()
    monkeypatch.setattr(
        peers, "O200K_SHA256", hashlib.sha256(b"IQ== 0\nIg== 1\nIw== 5\n").hexdigest()
    )
    assert peers.ensure_o200k(said.append, cache) is None
    target = peers.tiktoken_cache_file(cache)
    assert target.name == hashlib.sha1(peers.O200K_URL.encode()).hexdigest()
    assert target.read_bytes() == b"IQ== 0\nIg== 1\nIw== 5\n"
    ranks.unlink()
    assert peers.ensure_o200k(said.append, cache) is None  # already there and right
    assert any("rebuilding" in s for s in said)


def test_o200k_without_js_tiktoken_says_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(peers, "NODE_MODULES", tmp_path / "none")
    why = peers.ensure_o200k(lambda _s: None, tmp_path / "cache")
    assert why is not None and "npm install js-tiktoken" in why


def test_promptfoo_config_and_summary() -> None:
    config = peers.promptfoo_config(2, peers.promptfoo_server_provider("http://h/v1"))
    assert config["providers"] == [
        {
            "id": "openai:chat:bench-model",
            "config": {"apiBaseUrl": "http://h/v1", "apiKey": "bench-key"},
        }
    ]
    tests = config["tests"]
    assert isinstance(tests, list) and tests[1]["assert"][0]["value"] == "ORD-0002"
    summary = "Results:\n  ✓ 2,434 passed (100%)\n  0 failed (0%)\n  1 errors (0%)\n"
    assert peers.promptfoo_counts(summary) == (2434, 0, 1)
    assert peers.promptfoo_counts("crashed") is None


def test_missing_node_skips_promptfoo_with_a_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(peers.shutil, "which", lambda _name: None)
    why = peers.ensure_promptfoo(lambda _s: None)
    assert isinstance(why, str) and "apt-get install nodejs npm" in why
