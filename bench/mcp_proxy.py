"""The MCP proxy's cost: the same upstream MCP server called directly and through
`opsgate mcp-proxy` (audit trail on, write-ahead; traces and costs recorded), in one run,
over both transports.

- stdio: one client session a path, all open at once, calls one after another in rounds
  that take turns (direct, bare relay, proxied, direct, ...): calls/s and p50/p95 latency.
  Goal: the proxy adds < 1 ms p50 per call (the median of the rounds' differences). The
  peer: a bare relay (``--relay CMD``: a process that forwards lines both ways on uvloop,
  parsing, checking and recording nothing), what any proxy in its own process pays for the
  second hop.
- streamable HTTP: 16 client sessions a path calling concurrently, in windows that take
  turns: calls/s and p50/p95. Goal: through the proxy, >= 80% of the direct calls/s.

    .venv/bin/python bench/mcp_proxy.py [--calls 1600] [--seconds 8] [--concurrency 16]
        [--http-only] [--profile-proxy OUT.prof]

``--http-only`` measures the HTTP paths alone (a quick iteration on the proxy's CPU per
call); ``--profile-proxy`` runs the HTTP proxy under cProfile in every thread
(`bench/_profiled.py`: its event loop and its recorders' threads) and writes the merged
stats to OUT.prof (``python bench/_profiled.py --show OUT.prof``); its figures are then
the profiled proxy's, not comparable with a plain run's. With ``--gc-only`` it profiles
nothing and writes the garbage collector's runs and time to OUT.prof.threads.

The upstream is this file (``--upstream stdio`` / ``--upstream http PORT``): one read tool
that echoes its argument. Prints a table and a final JSON line, with what explains it: the
stdio proxy's time split in process (the upstream hop, the gate with records in memory and
with the store's), the CPU each process spends per call (Linux; over stdio the proxy's event
loop apart from its other threads: the loop's is on every call's path, the threads' competes
for the cores and the interpreter), and one SQLite commit's latency on this disk (a
write-ahead call waits for one; on a shared machine it swings from 0.15 ms to several ms,
and the stdio figures with it: so it is sampled again in every stdio round, and the added
latency is also given beyond it, as the proxy's own). ``PYTHONPATH`` reaches every child, so
another source tree can be measured the same way.
"""

from __future__ import annotations

import os
import sys

# Run as a script, this folder comes first on the path: nothing in it may shadow a package
# (`tests/bench/test_bench_names.py`); drop it all the same, the children import `mcp`.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _HERE]

import argparse  # noqa: E402
import asyncio  # noqa: E402
import contextlib  # noqa: E402
import json  # noqa: E402
import signal  # noqa: E402
import socket  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import AsyncIterator, Iterator  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import httpx2  # noqa: E402
from mcp.client.streamable_http import streamable_http_client  # noqa: E402

from mcp import ClientSession, StdioServerParameters, stdio_client  # noqa: E402

PYTHON = sys.executable
SELF = os.path.abspath(__file__)
PROFILED = os.path.join(_HERE, "_profiled.py")
POLICY = """
version: "bench-mcp"
defaults:
  caps: {max_steps: 1000000, max_tool_calls: 1000000, max_identical_calls: 1000000,
         max_retries: 3, max_cost_usd: 100, max_wall_seconds: 3600}
workflows:
  bench:
    stage: read_only
    tools: {echo: {}}
"""


# -- the upstream -----------------------------------------------------------------------


def serve_upstream(transport: str, port: int) -> None:
    """A minimal MCP server: one read tool, as cheap as an MCP tool gets."""
    from mcp.server.mcpserver import MCPServer
    from mcp.types import ToolAnnotations

    app = MCPServer("bench-upstream", log_level="WARNING")

    @app.tool(annotations=ToolAnnotations(readOnlyHint=True), structured_output=False)
    def echo(text: str) -> str:
        """Echo the text."""
        return text

    if transport == "http":
        app.run("streamable-http", host="127.0.0.1", port=port)
    else:
        app.run()


def serve_relay(command: list[str]) -> None:
    """A bare relay: this process's stdin lines to ``command``'s stdin, its stdout lines to
    this process's stdout, on uvloop; nothing parsed, checked or recorded."""
    import uvloop

    async def pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while line := await reader.readline():
            writer.write(line)
            await writer.drain()
        writer.close()

    async def relay() -> None:
        loop = asyncio.get_running_loop()
        child = await asyncio.create_subprocess_exec(
            *command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, limit=1 << 24
        )
        assert child.stdin is not None and child.stdout is not None
        stdin = asyncio.StreamReader(limit=1 << 24)
        await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(stdin), os.fdopen(0, "rb", 0)
        )
        transport, protocol = await loop.connect_write_pipe(
            asyncio.streams.FlowControlMixin, os.fdopen(1, "wb", 0)
        )
        stdout = asyncio.StreamWriter(transport, protocol, None, loop)
        await asyncio.gather(pump(stdin, child.stdin), pump(child.stdout, stdout))
        await child.wait()

    uvloop.run(relay())


# -- clients ----------------------------------------------------------------------------


async def timed_calls(client: ClientSession, n: int, tag: str) -> list[float]:
    """``n`` calls one after another; each one's latency in seconds."""
    latencies = []
    for i in range(n):
        start = time.perf_counter()
        result = await client.call_tool("echo", {"text": f"{tag}-{i}"})
        latencies.append(time.perf_counter() - start)
        if result.is_error:
            raise RuntimeError(f"call failed: {result.content}")
    return latencies


@contextlib.asynccontextmanager
async def stdio_session(command: list[str], env: dict[str, str]) -> AsyncIterator[ClientSession]:
    params = StdioServerParameters(command=command[0], args=command[1:], env=env)
    async with stdio_client(params) as (read, write), ClientSession(read, write) as client:
        await client.initialize()
        yield client


@contextlib.asynccontextmanager
async def http_session(url: str, token: str | None) -> AsyncIterator[ClientSession]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with (
        httpx2.AsyncClient(headers=headers, timeout=60) as http,
        streamable_http_client(url, http_client=http) as (read, write),
        ClientSession(read, write) as client,
    ):
        await client.initialize()
        yield client


async def stdio_figures(
    commands: dict[str, list[str]],
    env: dict[str, str],
    calls: int,
    rounds: int = 8,
    floor: CommitFloor | None = None,
) -> dict[str, dict[str, Any]]:
    """Each command's session opened at once, then rounds of calls taking turns (a load
    that comes and goes on a shared machine falls on both paths alike); per path, calls/s
    and latency over all rounds, and ``round_p50_ms``: each round's p50 (the added latency
    is the median of the rounds' differences)."""
    async with contextlib.AsyncExitStack() as stack:
        clients, pids = {}, {}
        for name, command in commands.items():
            before = _children(os.getpid())
            clients[name] = await stack.enter_async_context(stdio_session(command, env))
            pids[name] = _session_pids(_children(os.getpid()) - before)
        for client in clients.values():
            await timed_calls(client, 50, "warm")
        latencies: dict[str, list[float]] = {name: [] for name in clients}
        spent = dict.fromkeys(clients, 0.0)
        by_round: dict[str, list[float]] = {name: [] for name in clients}
        cpu = {name: dict.fromkeys(pids[name], 0.0) for name in clients}
        per_round = max(1, calls // rounds)
        for k in range(rounds):
            for name, client in clients.items():
                used = {who: _cpu_of(pid, who) for who, pid in pids[name].items()}
                start = time.perf_counter()
                got = await timed_calls(client, per_round, f"r{k}")
                spent[name] += time.perf_counter() - start
                for who, pid in pids[name].items():
                    cpu[name][who] += _cpu_of(pid, who) - used[who]
                latencies[name] += got
                by_round[name].append(statistics.median(got) * 1000)
            if floor is not None:  # the disk's commit in the same round, between the calls
                floor.sample()
    out = {}
    for name in clients:
        figures = _figures(latencies[name], len(latencies[name]) / spent[name])
        for who, seconds in cpu[name].items():
            figures[f"{who}_cpu_ms_per_call"] = seconds * 1000 / max(1, len(latencies[name]))
        out[name] = {**figures, "round_p50_ms": by_round[name]}
    return out


def _children(pid: int) -> set[int]:
    """The processes whose parent is ``pid`` (Linux; empty where /proc is not)."""
    found = set()
    with contextlib.suppress(OSError):
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                with contextlib.suppress(OSError), open(f"/proc/{entry}/stat") as stat:
                    if int(stat.read().rsplit(")", 1)[1].split()[1]) == pid:
                        found.add(int(entry))
    return found


def _session_pids(started: set[int]) -> dict[str, int]:
    """The processes a stdio session started: the server it runs, and when that server is a
    proxy or a relay, the upstream it runs in turn. Keys: ``server`` / ``upstream``; for a
    proxy also ``loop`` and ``threads``, its event loop's CPU apart from its other threads'
    (the audit writer, traces, costs), read from the same process."""
    if len(started) != 1:
        return {}
    (server,) = started
    below = _children(server)
    if not below:
        return {"upstream": server}
    (upstream,) = sorted(below)[:1]
    return {"loop": server, "threads": server, "upstream": upstream}


def _cpu_of(pid: int, who: str) -> float:
    """``who``'s CPU seconds: a proxy's event loop (its main thread), its other threads, or
    a whole process."""
    if who == "loop":
        return _cpu_s(pid, f"/proc/{pid}/task/{pid}/stat")
    if who == "threads":
        return _cpu_s(pid) - _cpu_s(pid, f"/proc/{pid}/task/{pid}/stat")
    return _cpu_s(pid)


async def http_figures(
    paths: dict[str, tuple[str, str | None, dict[str, int]]],
    concurrency: int,
    seconds: float,
    rounds: int = 4,
) -> dict[str, dict[str, float]]:
    """Per path (its URL, bearer token and the processes to account): ``concurrency``
    sessions, all paths' sessions open at once, loaded in windows that take turns (a load
    that comes and goes falls on every path alike), ``seconds`` in all per path. Calls/s
    and latency over its windows, and the CPU each of its processes spent per call in them
    (ms; Linux only)."""

    async def worker(k: int, client: ClientSession, stop: float, got: list[float]) -> int:
        done = 0
        while time.perf_counter() < stop:
            start = time.perf_counter()
            result = await client.call_tool("echo", {"text": f"w{k}-{done}"})
            got.append(time.perf_counter() - start)
            if result.is_error:
                raise RuntimeError(f"call failed: {result.content}")
            done += 1
        return done

    async with contextlib.AsyncExitStack() as stack:
        sessions = {}
        for name, (url, token, _) in paths.items():
            sessions[name] = [
                await stack.enter_async_context(http_session(url, token))
                for _ in range(concurrency)
            ]
            for client in sessions[name]:
                await timed_calls(client, 5, "warm")
        latencies: dict[str, list[float]] = {name: [] for name in paths}
        calls = dict.fromkeys(paths, 0)
        spent = dict.fromkeys(paths, 0.0)
        cpu = {name: dict.fromkeys(pids, 0.0) for name, (_, _, pids) in paths.items()}
        for _ in range(rounds):
            for name, (_, _, pids) in paths.items():
                before = {who: _cpu_s(pid) for who, pid in pids.items()}
                start = time.perf_counter()
                stop = start + seconds / rounds
                counts = await asyncio.gather(
                    *(worker(k, c, stop, latencies[name]) for k, c in enumerate(sessions[name]))
                )
                spent[name] += time.perf_counter() - start
                calls[name] += sum(counts)
                for who, pid in pids.items():
                    cpu[name][who] += _cpu_s(pid) - before[who]
    out = {}
    for name in paths:
        figures = _figures(latencies[name], calls[name] / spent[name])
        for who, used in cpu[name].items():
            figures[f"{who}_cpu_ms_per_call"] = used * 1000 / max(1, calls[name])
        out[name] = figures
    return out


def _cpu_s(pid: int, path: str = "") -> float:
    """CPU seconds (user + system) a process (or the thread at ``path``) has used so far;
    NaN where /proc is not."""
    try:
        with open(path or f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class CommitFloor:
    """One small SQLite commit (WAL, synchronous=FULL: the store's settings) in the bench's
    home: the disk's part of a write-ahead call, which no code change removes. Sampled in
    every stdio round, beside the calls: on a shared machine it swings several times over
    within minutes, and the stdio figures with it."""

    def __init__(self, home: Path) -> None:
        import sqlite3

        self.db = sqlite3.connect(home / "floor.db", isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.execute("CREATE TABLE IF NOT EXISTS t (x TEXT)")
        self.rounds: list[float] = []

    def sample(self, n: int = 50) -> float:
        """p50 ms of ``n`` commits one after another (kept in ``rounds``)."""
        times = []
        for i in range(n):
            start = time.perf_counter()
            self.db.execute("BEGIN IMMEDIATE")
            self.db.execute("INSERT INTO t VALUES (?)", (f"event {i} " * 20,))
            self.db.execute("COMMIT")
            times.append(time.perf_counter() - start)
        self.rounds.append(statistics.median(times) * 1000)
        return self.rounds[-1]

    def close(self) -> None:
        self.db.close()


async def split_figures(policy: Path, calls: int) -> dict[str, float]:
    """Where the stdio proxy's time goes, measured in process: the upstream hop alone,
    then `McpProxy.call` (gate + hop) with records in memory and with the store's recorders
    (audit write-ahead, traces, costs)."""
    from opsgate.mcp import ProxyOptions, build_proxy
    from opsgate.recorder import FanOutRecorder, InMemoryRecorder, Recorder
    from opsgate.store import open_store
    from opsgate.wiring import store_recorders

    options = ProxyOptions(
        policy=policy, workflow="bench", command=(PYTHON, SELF, "--upstream", "stdio"), no_lock=True
    )

    async def one(recorder: Recorder) -> tuple[float, float]:
        proxy = build_proxy(options, recorder=recorder)
        await proxy.start()
        upstream = proxy.upstreams["upstream"]
        hop, gated = [], []
        for i in range(calls):
            start = time.perf_counter()
            await upstream.call_tool("echo", {"text": f"h{i}"})
            hop.append(time.perf_counter() - start)
            start = time.perf_counter()
            result = await proxy.call(None, "echo", {"text": f"g{i}"})
            gated.append(time.perf_counter() - start)
            if result.is_error:
                raise RuntimeError(f"call failed: {result.content}")
        await proxy.close()
        return statistics.median(hop[20:]) * 1000, statistics.median(gated[20:]) * 1000

    hop, in_memory = await one(InMemoryRecorder(max_events=10_000))
    store = open_store(None)
    recorders = store_recorders(store, durable="write_ahead")
    try:
        _, stored = await one(FanOutRecorder(*recorders.all))
        audit = recorders.audit
        # commits a lone call made on its own thread (no hop to the audit writer)
        lone = getattr(audit, "inline_batches", 0) / max(1, audit.batches)  # 0: an older tree
    finally:
        recorders.close()
        store.close()
    return {
        "hop_p50_ms": hop,
        "gated_in_memory_p50_ms": in_memory,
        "gated_store_p50_ms": stored,
        "lone_commit_share": lone,
    }


def _figures(latencies: list[float], per_s: float) -> dict[str, float]:
    ordered = sorted(latencies)
    return {
        "calls_per_s": per_s,
        "p50_ms": statistics.median(ordered) * 1000,
        "p95_ms": ordered[int(len(ordered) * 0.95) - 1] * 1000,
        "calls": len(ordered),
    }


# -- processes --------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def process(args: list[str], env: dict[str, str], port: int) -> Iterator[int]:
    """A child serving HTTP on ``port`` (its pid), until the block ends."""
    child = subprocess.Popen(args, env=env, stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while True:
            if child.poll() is not None:
                raise RuntimeError(f"{args[:4]} exited with {child.returncode}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"{args[:4]} did not listen on {port}")
            time.sleep(0.1)
        yield child.pid
    finally:
        child.terminate()
        try:
            child.wait(15)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def opsgate(*args: str) -> list[str]:
    return [PYTHON, "-m", "opsgate.cli.main", *args]


async def run(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    env = {**os.environ, "OPSGATE_HOME": str(work / "home")}
    env.pop("OPSGATE_DATABASE_URL", None)
    policy = work / "policy.yaml"
    policy.write_text(POLICY)
    upstream = [PYTHON, SELF, "--upstream", "stdio"]
    proxy = opsgate("mcp-proxy", "--policy", str(policy), "--workflow", "bench", "--no-lock")
    out: dict[str, Any] = {}
    (work / "home").mkdir(exist_ok=True)
    floor = CommitFloor(work / "home")
    floor.sample(200)  # the first, on a quiet machine: before any path runs
    split: dict[str, float] = {}
    if not args.http_only:
        stdio_env = {"OPSGATE_HOME": env["OPSGATE_HOME"], "PATH": env.get("PATH", "")}
        if "PYTHONPATH" in env:  # another source tree to measure (a before/after comparison)
            stdio_env["PYTHONPATH"] = env["PYTHONPATH"]
        stdio = {
            "stdio_direct": upstream,
            "stdio_relay": [PYTHON, SELF, "--relay", *upstream],
            "stdio_proxy": [*proxy, "--", *upstream],
        }
        out.update(await stdio_figures(stdio, stdio_env, args.calls, floor=floor))
        os.environ["OPSGATE_HOME"] = env["OPSGATE_HOME"]  # the split's store: the temporary home
        split = await split_figures(policy, args.calls)

    upstream_port, proxy_port = _free_port(), _free_port()
    url = f"http://127.0.0.1:{upstream_port}/mcp"
    (work / "mcp.yaml").write_text(f"upstreams:\n  up:\n    url: {url}\nnamespace: false\n")
    created = await asyncio.to_thread(
        subprocess.run,
        opsgate("mcp", "token", "create", "--invoker", "bench", "--agent", "bench"),
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    token = created.stdout.strip()
    upstream_http = [PYTHON, SELF, "--upstream", "http", str(upstream_port)]
    http_proxy = opsgate(
        "mcp-proxy", "--policy", str(policy), "--workflow", "bench", "--no-lock",
        "--config", str(work / "mcp.yaml"), "--http", f"127.0.0.1:{proxy_port}",
    )  # fmt: skip
    if args.profile_proxy:
        profiled = [PYTHON, PROFILED, *(["--gc-only"] if args.gc_only else [])]
        profiled += ["--freeze"] if args.freeze else []
        profiled.append(args.profile_proxy)  # an absolute path (`main`)
        http_proxy = [*profiled, *http_proxy[2:]]  # `-m MODULE ...` becomes `MODULE ...`
    with (
        process(upstream_http, env, upstream_port) as upstream_pid,
        process(http_proxy, env, proxy_port) as proxy_pid,
    ):
        proxied = f"http://127.0.0.1:{proxy_port}/mcp"
        if args.profile_proxy:
            os.kill(proxy_pid, signal.SIGUSR1)  # time from here on (not the proxy's start)
        paths = {
            "http_direct": (url, None, {"upstream": upstream_pid}),
            "http_proxy": (proxied, token, {"upstream": upstream_pid, "proxy": proxy_pid}),
        }
        out.update(await http_figures(paths, args.concurrency, args.seconds))
    floor.close()
    split["commit_floor_p50_ms"] = floor.rounds[0]
    return {"paths": out, "split": split, "commit_rounds_ms": floor.rounds[1:]}


def report(result: dict[str, Any], args: argparse.Namespace) -> None:
    out, split = result["paths"], result["split"]
    print(f"{'path':<14} {'calls/s':>9} {'p50 ms':>8} {'p95 ms':>8} {'calls':>7}")
    for name, f in out.items():
        f = {k: v for k, v in f.items() if k != "round_p50_ms"}
        print(
            f"{name:<14} {f['calls_per_s']:>9.1f} {f['p50_ms']:>8.3f} {f['p95_ms']:>8.3f} "
            f"{f['calls']:>7}"
        )
    if args.http_only:
        report_http(result, args)
        return
    proxy_rounds, direct_rounds = (
        out["stdio_proxy"]["round_p50_ms"],
        out["stdio_direct"]["round_p50_ms"],
    )
    added = statistics.median(p - d for p, d in zip(proxy_rounds, direct_rounds, strict=True))
    commits = result["commit_rounds_ms"]  # one commit's p50 in each stdio round
    own = statistics.median(
        p - d - c for p, d, c in zip(proxy_rounds, direct_rounds, commits, strict=True)
    )
    relay_rounds = out["stdio_relay"]["round_p50_ms"]
    relayed = statistics.median(r - d for r, d in zip(relay_rounds, direct_rounds, strict=True))
    ratio = out["http_proxy"]["calls_per_s"] / out["http_direct"]["calls_per_s"]
    print(
        f"stdio: the proxy adds {added:.3f} ms p50 per call (goal < 1 ms; the median of "
        f"{len(out['stdio_proxy']['round_p50_ms'])} rounds taking turns); a bare relay "
        f"process adds {relayed:.3f} ms (the second hop alone)"
    )
    print(
        f"stdio: of which one durable commit on this disk (sampled in the same rounds) "
        f"{statistics.median(commits):.3f} ms, the rest the proxy's own {own:.3f} ms"
    )
    print(
        f"http, concurrency {args.concurrency}: through the proxy {ratio:.0%} of the direct "
        "calls/s (goal >= 80%)"
    )
    print(
        f"stdio, in process: upstream hop {split['hop_p50_ms']:.3f} ms p50; through the gate "
        f"{split['gated_in_memory_p50_ms']:.3f} ms (records in memory), "
        f"{split['gated_store_p50_ms']:.3f} ms (audit write-ahead, traces, costs; "
        f"{split['lone_commit_share']:.0%} of its commits made by the calling thread)"
    )
    cpu = {name: out[name] for name in ("stdio_direct", "stdio_relay", "stdio_proxy")}
    if (
        "upstream_cpu_ms_per_call" in cpu["stdio_direct"]
        and "loop_cpu_ms_per_call" in (cpu["stdio_proxy"])
    ):
        print(
            "stdio CPU per call: upstream "
            f"{cpu['stdio_direct']['upstream_cpu_ms_per_call']:.2f} ms direct; the proxy's event "
            f"loop {cpu['stdio_proxy']['loop_cpu_ms_per_call']:.2f} ms + its other threads "
            f"(audit writer, traces, costs) {cpu['stdio_proxy']['threads_cpu_ms_per_call']:.2f}"
            f" ms; a bare relay {cpu['stdio_relay']['loop_cpu_ms_per_call']:.2f} ms"
        )
    direct, proxied = out["http_direct"], out["http_proxy"]
    print(
        f"http CPU per call: upstream {direct['upstream_cpu_ms_per_call']:.2f} ms direct; "
        f"through the proxy, proxy {proxied['proxy_cpu_ms_per_call']:.2f} ms + upstream "
        f"{proxied['upstream_cpu_ms_per_call']:.2f} ms"
    )
    print(
        "store: one SQLite commit (WAL, synchronous=FULL) here: "
        f"{split['commit_floor_p50_ms']:.3f} ms p50 (each write-ahead call waits for one)"
    )
    print(
        json.dumps(
            {
                "figures": out,
                "split": split,
                "stdio_added_p50_ms": added,
                "stdio_relay_added_p50_ms": relayed,
                "stdio_commit_rounds_ms": commits,
                "stdio_added_beyond_commit_p50_ms": own,
                "http_ratio": ratio,
            }
        )
    )


def report_http(result: dict[str, Any], args: argparse.Namespace) -> None:
    """The HTTP figures alone (``--http-only``)."""
    out = result["paths"]
    direct, proxied = out["http_direct"], out["http_proxy"]
    ratio = proxied["calls_per_s"] / direct["calls_per_s"]
    print(
        f"http, concurrency {args.concurrency}: through the proxy {ratio:.0%} of the direct "
        "calls/s (goal >= 80%)"
    )
    print(
        f"http CPU per call: upstream {direct['upstream_cpu_ms_per_call']:.2f} ms direct; "
        f"through the proxy, proxy {proxied['proxy_cpu_ms_per_call']:.2f} ms + upstream "
        f"{proxied['upstream_cpu_ms_per_call']:.2f} ms"
    )
    print(json.dumps({"figures": out, "http_ratio": ratio}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--upstream", nargs="+", help=argparse.SUPPRESS)
    parser.add_argument("--relay", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    parser.add_argument("--calls", type=int, default=1600, help="stdio calls per path")
    parser.add_argument("--seconds", type=float, default=8.0, help="HTTP seconds per path")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--http-only", action="store_true", help="the HTTP paths alone")
    parser.add_argument(
        "--profile-proxy", metavar="OUT", help="profile the HTTP proxy (all threads) into OUT"
    )
    parser.add_argument(
        "--gc-only", action="store_true", help="with --profile-proxy: the collector's time alone"
    )
    parser.add_argument(
        "--freeze", action="store_true", help="with --profile-proxy: gc.freeze() as the load starts"
    )
    args = parser.parse_args()
    if args.profile_proxy:
        args.profile_proxy = os.path.abspath(args.profile_proxy)
    if args.relay:
        serve_relay(args.relay)
        return
    if args.upstream:
        port = int(args.upstream[1]) if len(args.upstream) > 1 else 0
        serve_upstream(args.upstream[0], port)
        return
    with tempfile.TemporaryDirectory(prefix="opsgate-bench-mcp-") as work:
        out = asyncio.run(run(args, Path(work)))
    report(out, args)


if __name__ == "__main__":
    main()
