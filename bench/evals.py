"""Eval-harness benchmark: opsgate's `agent-eval run` beside promptfoo and inspect_ai, one run.

Every harness runs as its own command line, a child process of this script, on the same
machine in the same run, on the same tasks ("What is the status of order ORD-nnnn?",
scored on the order id) and the same loopback OpenAI-compatible model server
(``bench/_eval_bench/server.py``: asyncio, keep-alive, in its own process), scripted alike
for every client: a call of the offered tool while none was made, then the answer.

Figures, per harness and configuration:

- **per task**: (best-of-k wall time of an N-task run - best-of-k of a 1-task run) / (N-1),
  one task at a time (opsgate ``--concurrency 1``, promptfoo ``-j 1``, inspect
  ``--max-samples 1``): start-up and teardown cancel out. **CPU per task** likewise from
  the child's rusage (user + system, its own children included).
- **own overhead per task**: per task minus the model's round trips: calls per task x the
  median round trip of a bare ``httpx.AsyncClient`` to the same instant server, measured
  in this run (the wire is the model's time, not the harness's). With promptfoo's
  ``echo`` and inspect's ``mockllm/model`` there is no round trip to take off.
- **start-up**: the 1-task run's wall time minus one task: process start to exit, less the
  task itself. **To 1st call**: process start to the first request the server receives.
- **throughput**: N tasks at concurrency 32 on the server answering after 200 ms; tasks/s
  over the server's window (first request received to last answer sent), beside the limit
  32 / (model calls per task x 0.2 s). The server's most answers in flight is checked.
- **peak RSS**: ``ru_maxrss`` of the child (``os.wait4``, its own children included), the
  largest over that configuration's runs.

opsgate: ``agent-eval run`` (the console script, a subprocess) on ``bench/_eval_bench``'s
suite: one gated read tool in the shared executor loop, so exactly 2 model calls a task;
every task checked (required call, CEL state check, output check), the audit trail,
traces and cost ledger on, into a temporary ``OPSGATE_HOME`` whose database a first,
untimed run creates (its time is printed apart). promptfoo (npm) and inspect_ai (pip) are
installed under ``bench/.peers`` on first use (see ``_eval_bench/peers.py``); a peer that
cannot be installed is skipped with one line. Each peer runs with its quietest display
(promptfoo ``--no-table --no-progress-bar`` and no debug file log, whose writer
crashes at exit after a busy run with 0.121.20; inspect ``--display none``) and writes its
usual record (promptfoo's database, inspect's ``.eval`` log) into the temporary folder.
promptfoo evaluates a prompt with one model call a sample and runs no tool loop, so its
server figures are at 1 call a sample (its limit is 160 tasks/s, not 80).

Prints the machine, the load average before and after (other work on the machine slows
every harness alike, but not equally), a table and a final JSON line.

    .venv/bin/python bench/evals.py [--quick] [--no-peers] [--repeats K] [--profile]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import platform
import pstats
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.table import Table

if str(Path(__file__).resolve().parent) not in sys.path:  # imported, not run: shadow nothing
    sys.path.append(str(Path(__file__).resolve().parent))

from _eval_bench import peers, suites
from _eval_bench.server import LoopbackModel

DELAY_MS = 200
CONCURRENCY = 32
GOAL_OVERHEAD_MS = 2.0
GOAL_STARTUP_S = 1.5
GOAL_LIMIT_SHARE = 0.80
GOAL_RSS_MB = 500.0
CHILD_TIMEOUT_S = 600.0
_serial = itertools.count(1)


# -- child processes -------------------------------------------------------------------------------


@dataclass
class Child:
    """One finished child process."""

    argv: list[str]
    returncode: int
    wall_s: float
    cpu_s: float
    rss_mb: float
    spawned_at: float  # time.monotonic(), the server's clock too
    output: str
    server: dict[str, Any] = field(default_factory=dict)

    def tail(self, lines: int = 12) -> str:
        """The end of what it printed."""
        return "\n".join(self.output.strip().splitlines()[-lines:])


_live: set[int] = set()  # process groups still running, killed on the way out


def run_child(argv: list[str], env: dict[str, str], cwd: Path) -> Child:
    """Run ``argv`` to its end (killed after `CHILD_TIMEOUT_S`); time, CPU and peak RSS."""
    out_path = cwd / f"child-{next(_serial)}.out"
    with out_path.open("wb") as out:
        spawned = time.monotonic()
        started = time.perf_counter()
        proc = subprocess.Popen(
            argv,
            env=env,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: killable whole, no terminal ^C
        )
        _live.add(proc.pid)
        timer = threading.Timer(CHILD_TIMEOUT_S, _kill_group, (proc.pid,))
        timer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        finally:
            timer.cancel()
        wall = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        _live.discard(proc.pid)
        _kill_group(proc.pid)  # anything it left behind
    return Child(
        argv=argv,
        returncode=proc.returncode,
        wall_s=wall,
        cpu_s=usage.ru_utime + usage.ru_stime,
        rss_mb=usage.ru_maxrss / 1024,
        spawned_at=spawned,
        output=out_path.read_text(encoding="utf-8", errors="replace"),
    )


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


def _clean_env(**extra: str) -> dict[str, str]:
    """This environment without what would steer a child elsewhere, plus ``extra``."""
    drop = ("PYTHONPATH", "OPSGATE_DATABASE_URL", "OPSGATE_AUDIT_SIGNING_KEY", "VIRTUAL_ENV")
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env.update(COLUMNS="120", **extra)
    return env


# -- the configurations ----------------------------------------------------------------------------


@dataclass
class Config:
    """One harness on one model: how to run N tasks, and how to know they all ran."""

    harness: str
    model: str
    calls: int  # model calls per task
    delay_ms: int | None  # the server's delay; None: no server (echo, mockllm)
    command: Callable[[int, int, Path], tuple[list[str], dict[str, str]]]  # n, conc, dir
    verify: Callable[[Child, int, Path], str | None]  # what went wrong, or None

    @property
    def name(self) -> str:
        return f"{self.harness} / {self.model}"


class Bench:
    """The shared state of one run: the folder, the server and the installed peers."""

    def __init__(self, root: Path, server: LoopbackModel) -> None:
        self.root = root
        self.server = server
        self.say = Console(stderr=True, highlight=False).print

    # -- opsgate ---------------------------------------------------------------------------

    def opsgate(self, delay_ms: int) -> Config:
        agent_eval = Path(sys.executable).with_name("agent-eval")
        if not agent_eval.exists():
            agent_eval = Path(shutil.which("agent-eval") or "agent-eval")
        router = suites.write_router(self.root, self.server.base_url(delay_ms), f"r{delay_ms}")
        home = self.root / "opsgate-home"

        def command(n: int, conc: int, folder: Path) -> tuple[list[str], dict[str, str]]:
            suite = self.root / f"bench_lookup_{n}.yaml"
            if not suite.exists():
                suites.write_suite(self.root, n)
            argv = [
                str(agent_eval),
                "run",
                "--suite",
                str(suite),
                "--model-router",
                str(router),
                "--report",
                str(folder / "report.json"),
                "--concurrency",
                str(conc),
                "--timeout",
                "120",
            ]
            env = _clean_env(PYTHONPATH=str(suites.BENCH_DIR), OPSGATE_HOME=str(home))
            return argv, env

        def verify(child: Child, n: int, folder: Path) -> str | None:
            if child.returncode != 0:
                return f"agent-eval exit {child.returncode}:\n{child.tail()}"
            report = json.loads((folder / "report.json").read_text())
            tasks = report["tasks"]
            bad = [t["task_id"] for t in tasks if not t["passed"] or t["model_calls"] != 2]
            if len(tasks) != n or bad:
                return f"{len(tasks)} tasks reported of {n}; failing or not 2 calls: {bad[:3]}"
            return None

        model = f"server {delay_ms} ms" if delay_ms else "instant server"
        return Config("opsgate agent-eval", model, 2, delay_ms, command, verify)

    # -- promptfoo -------------------------------------------------------------------------

    def promptfoo(self, pf: peers.Promptfoo, delay_ms: int | None) -> Config:
        provider: str | dict[str, object] = (
            "echo"
            if delay_ms is None
            else peers.promptfoo_server_provider(self.server.base_url(delay_ms))
        )
        env = _clean_env(
            PROMPTFOO_DISABLE_TELEMETRY="1",
            PROMPTFOO_DISABLE_UPDATE="1",
            PROMPTFOO_DISABLE_DEBUG_LOG="1",  # its debug file log crashes at exit under load
            PROMPTFOO_CONFIG_DIR=str(self.root / "promptfoo-home"),
            NODE_NO_WARNINGS="1",
        )

        def command(n: int, conc: int, folder: Path) -> tuple[list[str], dict[str, str]]:
            config = folder / "promptfooconfig.json"
            config.write_text(json.dumps(peers.promptfoo_config(n, provider)))
            argv = [pf.node, str(pf.entrypoint), "eval", "-c", str(config), "--no-cache"]
            argv += ["-j", str(conc), "--no-table", "--no-progress-bar"]
            return argv, env

        def verify(child: Child, n: int, folder: Path) -> str | None:
            counts = peers.promptfoo_counts(child.output)
            if child.returncode != 0 or counts != (n, 0, 0):
                return f"promptfoo exit {child.returncode}, counts {counts}:\n{child.tail()}"
            return None

        if delay_ms is None:
            return Config("promptfoo", "echo", 0, None, command, verify)
        model = f"server {delay_ms} ms" if delay_ms else "instant server"
        return Config("promptfoo", model, 1, delay_ms, command, verify)

    # -- inspect_ai ------------------------------------------------------------------------

    def inspect(self, ins: peers.Inspect, model: str, delay_ms: int | None = None) -> Config:
        env = _clean_env(
            TIKTOKEN_CACHE_DIR=str(ins.tiktoken_dir),
            OPENAI_API_KEY="bench-key",
            XDG_DATA_HOME=str(self.root / "inspect-data"),
            XDG_CACHE_HOME=str(self.root / "inspect-cache"),
        )
        extra: list[str]
        if model == "mockllm":
            extra, calls = ["--model", "mockllm/model"], 1
        elif model == "mockllm + tool":
            extra, calls = ["-T", "tool=true", "-T", "mock=tool"], 2
        else:
            assert delay_ms is not None
            url = self.server.base_url(delay_ms)
            extra = ["-T", "tool=true", "--model", "openai/bench-model"]
            extra += ["--model-base-url", url, "-M", "responses_api=false"]
            calls = 2

        def command(n: int, conc: int, folder: Path) -> tuple[list[str], dict[str, str]]:
            argv = [str(ins.inspect), "eval", f"{peers.INSPECT_TASKS}@lookup", "-T", f"n={n}"]
            argv += [*extra, "--max-samples", str(conc), "--max-connections", str(conc)]
            argv += ["--log-dir", str(folder / "logs"), "--display", "none"]
            return argv, env

        def verify(child: Child, n: int, folder: Path) -> str | None:
            if child.returncode != 0:
                return f"inspect exit {child.returncode}:\n{child.tail()}"
            if n == 1:
                return None  # the N-task runs are read back; a 1-task run only has to end
            summary = subprocess.run(
                [str(ins.python), "-c", peers.INSPECT_LOG_SUMMARY, str(folder / "logs")],
                capture_output=True,
                text=True,
                timeout=120,
            )
            try:
                data = json.loads(summary.stdout)
            except ValueError:
                return f"cannot read inspect's log: {summary.stderr[-500:]}"
            accurate = model == "mockllm" or data["accuracy"] == 1.0  # mockllm says no order
            if data["status"] != "success" or data["completed"] != n or not accurate:
                return f"inspect log: {data}"
            return None

        label = (
            model
            if delay_ms is None
            else (f"server {delay_ms} ms + tool" if delay_ms else "instant server + tool")
        )
        return Config("inspect_ai", label, calls, delay_ms, command, verify)

    # -- running ---------------------------------------------------------------------------

    def run(self, config: Config, n: int, conc: int) -> Child:
        """One run of ``n`` tasks, checked; the server's stats attached."""
        folder = self.root / f"run-{next(_serial)}"
        folder.mkdir()
        argv, env = config.command(n, conc, folder)
        if config.delay_ms is not None:
            self.server.reset()
        child = run_child(argv, env, folder)
        if config.delay_ms is not None:
            child.server = self.server.stats()
        problem = config.verify(child, n, folder)
        if problem is None and config.delay_ms is not None:
            served = child.server["completions"]
            if served != n * config.calls:
                problem = f"the server answered {served} calls, not {n} x {config.calls}"
        if problem:
            kept = self.root.parent / f"opsgate-bench-evals-failed-{os.getpid()}.out"
            kept.write_text(child.output)
            raise RuntimeError(f"{config.name}, {n} tasks: {problem}\n(all it printed: {kept})")
        shutil.rmtree(folder, ignore_errors=True)
        return child


def _window(child: Child) -> float | None:
    """First request received to last answer sent, at the server, for this run."""
    first, last = child.server.get("first_at"), child.server.get("last_done_at")
    return None if first is None or last is None else float(last - first)


def per_task(
    bench: Bench, config: Config, target_s: float, repeats: int, n_bounds: tuple[int, int]
) -> dict[str, Any]:
    """Per task, CPU per task, start-up and first call, from 1-task and N-task runs.

    Each N-task run gives a slope against the best 1-task run; the figure is the best slope.
    N is sized so that the N tasks take about ``target_s``, which keeps start-up noise small
    beside them: first from a probe of ``n_bounds[0]`` tasks, then from each run. With a
    server, a run's time is the server's window (first request to last answer), which
    start-up and teardown do not touch; without one, the process's wall time.
    """
    n_low, n_high = n_bounds

    def timed(child: Child) -> float:
        window = _window(child) if config.delay_ms is not None else None
        return child.wall_s if window is None else window

    ones = [bench.run(config, 1, 1)]

    def slope(child: Child, n: int) -> float:
        return (timed(child) - min(timed(c) for c in ones)) / (n - 1)

    def cpu_slope(child: Child, n: int) -> float:
        return (child.cpu_s - min(c.cpu_s for c in ones)) / (n - 1)

    probe = bench.run(config, n_low, 1)
    guess = max(slope(probe, n_low), cpu_slope(probe, n_low))  # a noisy probe errs short
    many: list[tuple[Child, int]] = []
    for _ in range(repeats):
        if len(ones) < repeats:
            ones.append(bench.run(config, 1, 1))
        n = max(n_low, min(n_high, round(target_s / max(guess, 1e-4))))
        child = bench.run(config, n, 1)
        many.append((child, n))
        guess = slope(child, n)
    per = min(slope(c, n) for c, n in many)
    wall_1 = min(c.wall_s for c in ones)
    out: dict[str, Any] = {
        "n": max(n for _, n in many),
        "repeats": repeats,
        "timed_by": "process wall" if config.delay_ms is None else "server window",
        "wall_1_s": round(wall_1, 4),
        "per_task_ms": round(per * 1000, 3),
        "cpu_per_task_ms": round(min(cpu_slope(c, n) for c, n in many) * 1000, 3),
        "startup_s": round(wall_1 - per, 3),
        "rss_mb": round(max(c.rss_mb for c in [*ones, probe, *(c for c, _ in many)]), 1),
    }
    firsts = [c.server["first_at"] - c.spawned_at for c in ones if c.server.get("first_at")]
    if firsts:
        out["first_call_s"] = round(min(firsts), 3)
    return out


def throughput(bench: Bench, config: Config, n: int, repeats: int) -> dict[str, Any]:
    """Tasks/s at `CONCURRENCY` on the delayed server, best of ``repeats``, vs the limit."""
    runs = [bench.run(config, n, CONCURRENCY) for _ in range(repeats)]
    window = min(w for c in runs if (w := _window(c)) is not None)
    best = next(c for c in runs if _window(c) == window)
    limit = CONCURRENCY / (config.calls * DELAY_MS / 1000)
    rate = n / window
    return {
        "n": n,
        "repeats": repeats,
        "tasks_per_s": round(rate, 2),
        "limit_tasks_per_s": round(limit, 2),
        "share_of_limit": round(rate / limit, 4),
        "window_s": round(window, 3),
        "wall_s": round(best.wall_s, 3),
        "max_in_flight": best.server["max_in_flight"],
        "rss_mb": round(max(c.rss_mb for c in runs), 1),
    }


# -- the model's round trip ------------------------------------------------------------------------


def _typical_request() -> dict[str, Any]:
    """About what opsgate sends on a task's first call."""
    tool = {
        "type": "function",
        "function": {
            "name": "lookup_order",
            "description": "Look up an order: its status.",
            "parameters": {
                "type": "object",
                "properties": {"order_id": {"type": "string", "pattern": "^ORD-\\d{4}$"}},
                "required": ["order_id"],
                "additionalProperties": False,
            },
        },
    }
    return {
        "model": "bench-model",
        "messages": [
            {"role": "system", "content": "You answer questions about orders."},
            {"role": "user", "content": "What is the status of order ORD-0001?"},
        ],
        "tools": [tool],
        "temperature": 0.0,
        "max_tokens": 256,
    }


async def _rtt(url: str, n: int) -> list[float]:
    body = _typical_request()
    async with httpx.AsyncClient(timeout=10) as client:
        for _ in range(50):
            (await client.post(url, json=body)).raise_for_status()
        out = []
        for _ in range(n):
            started = time.perf_counter()
            (await client.post(url, json=body)).raise_for_status()
            out.append(time.perf_counter() - started)
    return out


def round_trip_ms(server: LoopbackModel, n: int) -> float:
    """Median round trip of a bare httpx.AsyncClient (keep-alive) to the instant server."""
    times = asyncio.run(_rtt(server.base_url(0) + "/chat/completions", n))
    return statistics.median(times) * 1000


async def _bare_tasks(url: str, n: int, conc: int) -> None:
    body = _typical_request()
    limits = httpx.Limits(max_connections=conc, max_keepalive_connections=conc)
    async with httpx.AsyncClient(timeout=30, limits=limits) as client:
        gate = asyncio.Semaphore(conc)

        async def task() -> None:  # the tool call, then the answer: 2 calls, as opsgate's
            async with gate:
                first = await client.post(url, json=body)
                first.raise_for_status()
                call = first.json()["choices"][0]["message"]
                result = {"role": "tool", "content": "{}", "tool_call_id": "call"}
                messages = [*body["messages"], call, result]
                (await client.post(url, json={**body, "messages": messages})).raise_for_status()

        await asyncio.gather(*(task() for _ in range(n)))


def bare_client_throughput(server: LoopbackModel, n: int) -> dict[str, Any]:
    """The same 2-call tasks from a bare httpx.AsyncClient (keep-alive for every slot), at
    `CONCURRENCY`, on the delayed server: what this machine allows without any harness."""
    server.reset()
    asyncio.run(_bare_tasks(server.base_url(DELAY_MS) + "/chat/completions", n, CONCURRENCY))
    stats = server.stats()
    if stats["completions"] != 2 * n:
        raise RuntimeError(f"bare client: {stats['completions']} answers, not {2 * n}")
    window = stats["last_done_at"] - stats["first_at"]
    limit = CONCURRENCY / (2 * DELAY_MS / 1000)
    return {
        "n": n,
        "tasks_per_s": round(n / window, 2),
        "limit_tasks_per_s": round(limit, 2),
        "share_of_limit": round(n / window / limit, 4),
        "window_s": round(window, 3),
        "max_in_flight": stats["max_in_flight"],
        "calls_per_task": 2,
        "harness": "reference",
    }


# -- profile ---------------------------------------------------------------------------------------


def profile_opsgate(bench: Bench, n: int) -> list[str]:
    """cProfile of `agent-eval run` (``n`` tasks, one at a time, instant server): the main
    thread's top functions by own time, as lines."""
    config = bench.opsgate(0)
    folder = bench.root / "profile"
    folder.mkdir()
    argv, env = config.command(n, 1, folder)
    out = folder / "prof.out"
    argv = [
        sys.executable,
        "-m",
        "cProfile",
        "-o",
        str(out),
        "-m",
        "opsgate.cli.eval_main",
        *argv[1:],
    ]
    child = run_child(argv, env, folder)
    if child.returncode != 0:
        return [f"profile run failed: {child.tail()}"]
    entries = pstats.Stats(str(out)).stats  # type: ignore[attr-defined]
    return profile_lines(entries, n)


def profile_lines(entries: dict[Any, Any], n: int, top: int = 12) -> list[str]:
    """The top functions by own time, then opsgate's by cumulative time, per task."""
    lines = [
        f"cProfile of agent-eval run, {n} tasks one at a time, instant server, main thread "
        "(start-up included; per task = total / tasks):"
    ]

    def line(key: tuple[str, int, str], value: tuple[Any, ...]) -> str:
        filename, number, name = key
        _cc, calls, own, cum, _callers = value
        where = filename.split("site-packages/")[-1].split("/src/")[-1]
        return (
            f"  {own * 1000 / n:8.3f} ms own {cum * 1000 / n:8.3f} ms cum "
            f"{calls / n:6.1f} calls  {where}:{number} {name}"
        )

    by_own = sorted(entries.items(), key=lambda kv: kv[1][2], reverse=True)[:top]
    lines += ["by own time:", *(line(k, v) for k, v in by_own)]
    ours = [kv for kv in entries.items() if "/opsgate/" in kv[0][0]]
    by_cum = sorted(ours, key=lambda kv: kv[1][3], reverse=True)[:top]
    lines += ["opsgate's functions by cumulative time:", *(line(k, v) for k, v in by_cum)]
    return lines


# -- main ------------------------------------------------------------------------------------------


def _machine() -> dict[str, Any]:
    cpu = "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "cpu": cpu,
        "platform": platform.platform(),
    }


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


@contextlib.contextmanager
def _workspace() -> Iterator[tuple[Path, LoopbackModel]]:
    """A temporary folder and the loopback server; both gone afterwards, whatever happens."""
    server = LoopbackModel()
    with tempfile.TemporaryDirectory(prefix="opsgate-bench-evals-") as tmp:
        try:
            server.start()
            yield Path(tmp), server
        finally:
            for pid in list(_live):
                _kill_group(pid)
            server.stop()


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small runs, once each (smoke test)")
    parser.add_argument("--no-peers", action="store_true", help="opsgate only")
    parser.add_argument("--repeats", type=int, default=None, help="runs per figure (best of)")
    parser.add_argument("--profile", action="store_true", help="also cProfile agent-eval")
    opts = parser.parse_args(argv)
    quick = opts.quick
    repeats = opts.repeats or (1 if quick else 3)
    target_s = 2.0 if quick else 6.0  # the N tasks of a per-task figure take about this
    n_bounds = (30, 1000) if quick else (50, 4000)
    n_tp = 96 if quick else 320
    console = Console(width=170)
    load_before = os.getloadavg()
    results: dict[str, Any] = {}
    skipped: dict[str, str] = {}
    versions = {"opsgate": _version("opsgate"), "httpx": _version("httpx")}
    profile: list[str] = []

    with _workspace() as (root, server):
        bench = Bench(root, server)
        say = bench.say
        rtt_ms = round_trip_ms(server, 200 if quick else 1000)
        bare_name = f"bare httpx client, no harness / server {DELAY_MS} ms"
        results[bare_name] = bare_client_throughput(server, n_tp)
        configs: list[tuple[Config, bool]] = []  # (config, measures throughput)
        configs.append((bench.opsgate(0), False))
        configs.append((bench.opsgate(DELAY_MS), True))
        if not opts.no_peers:
            pf = peers.ensure_promptfoo(say)
            if isinstance(pf, str):
                skipped["promptfoo"] = pf
            else:
                versions["promptfoo"] = pf.version
                versions["node"] = pf.node_version
                configs += [(bench.promptfoo(pf, None), False), (bench.promptfoo(pf, 0), False)]
                configs.append((bench.promptfoo(pf, DELAY_MS), True))
            ins = peers.ensure_inspect(say)
            if isinstance(ins, str):
                skipped["inspect_ai"] = ins
            else:
                versions["inspect_ai"] = ins.version
                configs += [
                    (bench.inspect(ins, "mockllm"), False),
                    (bench.inspect(ins, "mockllm + tool"), False),
                    (bench.inspect(ins, "server", 0), False),
                    (bench.inspect(ins, "server", DELAY_MS), True),
                ]
        for name, why in skipped.items():
            say(f"[yellow]{name} skipped:[/] {why}")
        say("first opsgate run (creates the database under OPSGATE_HOME) ...")
        first = bench.run(configs[0][0], 1, 1)
        results["opsgate first run"] = {"wall_s": round(first.wall_s, 3)}
        for harness in {c.harness for c, _ in configs} - {"opsgate agent-eval"}:
            warm = next(c for c, tp in configs if c.harness == harness and not tp)
            say(f"warm-up run of {harness} ...")
            bench.run(warm, 1, 1)
        for config, measures_throughput in configs:
            say(f"{config.name}: " + ("throughput" if measures_throughput else "per task"))
            if measures_throughput:
                results[config.name] = throughput(bench, config, n_tp, max(1, repeats - 1))
            else:
                results[config.name] = per_task(bench, config, target_s, repeats, n_bounds)
            results[config.name] |= {"calls_per_task": config.calls, "harness": config.harness}
            if not measures_throughput:
                wire_ms = config.calls * rtt_ms if config.delay_ms is not None else 0.0
                own = results[config.name]["per_task_ms"] - wire_ms
                results[config.name]["own_overhead_ms"] = round(own, 3)
        if opts.profile:
            profile = profile_opsgate(bench, 100 if quick else 300)
    load_after = os.getloadavg()

    summary = _report(console, results, skipped, rtt_ms, versions, quick, repeats, target_s, n_tp)
    summary["load_average"] = {"before": load_before, "after": load_after}
    for line in profile:
        console.print(line, highlight=False)
    summary["profile"] = profile
    print(json.dumps(summary, default=str))
    return summary


def _report(
    console: Console,
    results: dict[str, Any],
    skipped: dict[str, str],
    rtt_ms: float,
    versions: dict[str, str],
    quick: bool,
    repeats: int,
    target_s: float,
    n_tp: int,
) -> dict[str, Any]:
    """Print the tables; the JSON summary with the goals judged."""
    machine = _machine()
    load = os.getloadavg()
    console.print(
        f"[bold]opsgate eval harness benchmark[/]{' (quick)' if quick else ''}: per task from "
        f"1- and N-task runs, N tasks ~{target_s:g} s (best of {repeats}); throughput "
        f"{n_tp} tasks at concurrency {CONCURRENCY}, server {DELAY_MS} ms\n"
        f"machine: Python {machine['python']}, {machine['cpus']} CPUs ({machine['cpu']}), "
        f"{machine['platform']}; load average now {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}\n"
        "versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()) + "\n"
        f"model round trip (bare httpx.AsyncClient, keep-alive, instant server): "
        f"{rtt_ms:.3f} ms median; opsgate's first run (creates its database): "
        f"{results['opsgate first run']['wall_s']:.2f} s"
    )
    for name, why in skipped.items():
        console.print(f"[yellow]{name} skipped:[/] {why}")
    table = Table(title="eval harnesses, one run on this machine")
    columns = (
        "harness / model",
        "calls",
        "N",
        "per task",
        "own overhead",
        "CPU / task",
        "start-up",
        "to 1st call",
        "tasks/s @32",
        "of limit",
        "peak RSS",
    )
    for column in columns:
        table.add_column(column, justify="left" if column == "harness / model" else "right")
    for name, r in results.items():
        if name == "opsgate first run":
            continue
        per = "tasks_per_s" not in r
        table.add_row(
            name,
            str(r["calls_per_task"]),
            str(r["n"]),
            f"{r['per_task_ms']:.2f} ms" if per else "",
            f"{r['own_overhead_ms']:.2f} ms" if per else "",
            f"{r['cpu_per_task_ms']:.2f} ms" if per else "",
            f"{r['startup_s']:.2f} s" if per else "",
            f"{r['first_call_s']:.2f} s" if per and "first_call_s" in r else "",
            "" if per else f"{r['tasks_per_s']:.1f} / {r['limit_tasks_per_s']:.0f}",
            "" if per else f"{r['share_of_limit']:.0%}",
            f"{r['rss_mb']:.0f} MB" if "rss_mb" in r else "",
        )
    console.print(table)

    goals = _goals(results)
    verdicts = Table(title="opsgate's goals (peers measured in the same run)")
    for column in ("goal", "opsgate", "promptfoo", "inspect_ai", "no harness", "met"):
        verdicts.add_column(column)
    for goal in goals:
        met = goal["met"]
        verdicts.add_row(
            goal["goal"],
            goal["opsgate"],
            goal.get("promptfoo", "—"),
            goal.get("inspect_ai", "—"),
            goal.get("reference", "—"),
            "—" if met is None else ("[green]yes[/]" if met else "[red]NO[/]"),
        )
    console.print(verdicts)
    console.print(
        "per task = (best time of the N-task run - best of the 1-task run) / (N-1), one task at\n"
        "a time; a run's time is the server's window (first request -> last answer) where there\n"
        "is a server, else the process's wall time; CPU / task likewise from rusage;\n"
        "own overhead = per task - calls x the round trip above (none for echo and mockllm,\n"
        "which make no call); start-up = 1-task wall - per task; to 1st call =\n"
        "process start -> first request at the server; tasks/s = N / (server's first request\n"
        f"-> last answer), limit = {CONCURRENCY} / (calls x {DELAY_MS / 1000:g} s); peak RSS = "
        "ru_maxrss (os.wait4)."
    )
    return {
        "quick": quick,
        "repeats": repeats,
        "per_task_target_s": target_s,
        "n_throughput": n_tp,
        "machine": machine,
        "versions": versions,
        "round_trip_ms": round(rtt_ms, 4),
        "skipped": skipped,
        "results": results,
        "goals": goals,
    }


def _goals(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Each goal of opsgate, its figure, the peers' and whether it is met (ahead of both)."""
    ops = results["opsgate agent-eval / instant server"]
    ops_tp = results[f"opsgate agent-eval / server {DELAY_MS} ms"]
    peer_over = {  # own overhead with the peers' own instant models
        "promptfoo": results.get("promptfoo / echo"),
        "inspect_ai": results.get("inspect_ai / mockllm"),
    }
    peer_tp = {
        "promptfoo": results.get(f"promptfoo / server {DELAY_MS} ms"),
        "inspect_ai": results.get(f"inspect_ai / server {DELAY_MS} ms + tool"),
    }
    goals: list[dict[str, Any]] = []

    def goal(
        text: str,
        mine: float,
        fmt: str,
        key: str,
        peer_src: dict[str, Any],
        low: bool,
        bound: float,
    ) -> None:
        row: dict[str, Any] = {"goal": text, "opsgate": fmt.format(mine), "value": mine}
        ahead = True
        for peer, data in peer_src.items():
            if data is not None:
                row[peer] = fmt.format(data[key])
                ahead = ahead and (mine < data[key] if low else mine > data[key])
        row["met"] = (mine < bound if low else mine >= bound) and ahead
        goals.append(row)

    goal(
        f"own overhead < {GOAL_OVERHEAD_MS:g} ms a task, below both",
        ops["own_overhead_ms"],
        "{:.2f} ms",
        "own_overhead_ms",
        peer_over,
        True,
        GOAL_OVERHEAD_MS,
    )
    goal(
        f"start-up < {GOAL_STARTUP_S:g} s, below both",
        ops["startup_s"],
        "{:.2f} s",
        "startup_s",
        peer_over,
        True,
        GOAL_STARTUP_S,
    )
    goal(
        f">= {GOAL_LIMIT_SHARE:.0%} of the limit at concurrency {CONCURRENCY}, above both",
        ops_tp["share_of_limit"],
        "{:.0%}",
        "share_of_limit",
        peer_tp,
        False,
        GOAL_LIMIT_SHARE,
    )
    bare = results.get(f"bare httpx client, no harness / server {DELAY_MS} ms")
    if bare is not None:
        goals[-1]["reference"] = f"{bare['share_of_limit']:.0%}"
    rss = max(ops["rss_mb"], ops_tp["rss_mb"])
    goals.append(
        {
            "goal": f"peak RSS < {GOAL_RSS_MB:g} MB",
            "opsgate": f"{rss:.0f} MB",
            "value": rss,
            "met": rss < GOAL_RSS_MB,
        }
    )
    return goals


if __name__ == "__main__":
    main()
