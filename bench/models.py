"""Model-layer benchmark: router overhead, response-cache hits and the embedded model, one run.

Measured in one run, each figure beside a limit measured in the same run:

1. Router + accounting overhead: ``await router.complete("route", ..., meter=)`` with a meter of
   a run's gateway (budget check, pricing, ``record_model_call``) minus a direct ``await
   client.complete(...)`` on the same client to the same loopback server: a minimal stdlib
   ``ThreadingHTTPServer`` answering a fixed chat completion at once, with keep-alive, in a
   child process so that it does not share our GIL. The two calls alternate in one loop;
   the direct call is the limit (the HTTP round trip itself). The same difference with an
   in-process client (no HTTP) isolates the router's own cost from loopback jitter.
2. Response-cache hits: `CachingClient` over `ResponseCache` on SQLite in a temporary
   directory (role ``route``, temperature 0), beside the direct call and the disk's fsync
   floor (a hit bumps the entry's hit count in a synchronous commit).
3. The embedded model, when ``xllamacpp`` and its weights are installed (skipped, with the
   reason, otherwise): start and load time, prompt and generation tokens/s on one thread
   (llama.cpp's own ``timings``), and one JSON-schema-constrained tool call through the
   router (role ``act``), beside what its tokens take at the speeds just measured.

Every call is timed on its own with ``time.perf_counter_ns``, with the garbage collector
off during the timed loops. Prints a table and a final JSON line.

    .venv/bin/python bench/models.py [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import importlib.util
import json
import os
import platform
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import metadata
from pathlib import Path
from typing import Any

import httpx
import yaml
from rich.console import Console
from rich.table import Table

from opsgate.contracts import Toolbelt
from opsgate.errors import ConfigError, InvalidToolCall
from opsgate.examples.support_triage import POLICY_PATH, tools
from opsgate.gateway import Gateway, Run, RunStatus
from opsgate.models import (
    DEFAULT_MODEL,
    ROLES,
    CachingClient,
    EmbeddedEndpoint,
    EmbeddedServer,
    Message,
    ModelClient,
    ModelResponse,
    ModelRouter,
    ModelSettings,
    OpenAICompatibleClient,
    ResponseCache,
    Usage,
    load_router_config,
)
from opsgate.policy import CompiledPolicy, load_policy
from opsgate.recorder import EventType, InMemoryRecorder
from opsgate.store import open_store

REPO = Path(__file__).resolve().parents[1]
MODEL = "bench-model"
WARMUP, RUN_EVERY = 200, 200
GOAL_OVERHEAD_US = 500.0  # router + accounting, median, per call
ACT_TOOLS = ("get_ticket", "get_order_status", "refund")

# -- the loopback server (a child process) ------------------------------------------------------

_BODY = json.dumps(
    {
        "id": "chatcmpl-bench",
        "object": "chat.completion",
        "created": 1764000000,
        "model": MODEL,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "refund"},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 42, "completion_tokens": 1, "total_tokens": 43},
    }
).encode()
_RESPONSE = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
    + f"Content-Length: {len(_BODY)}\r\n\r\n".encode()
    + _BODY
)


class _Handler(BaseHTTPRequestHandler):
    """POST: the fixed completion, status, headers and body in one write. GET: POSTs so far."""

    protocol_version = "HTTP/1.1"  # keep-alive, as a real server
    disable_nagle_algorithm = True
    posts = 0
    lock = threading.Lock()

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        with _Handler.lock:
            _Handler.posts += 1
        self.wfile.write(_RESPONSE)

    def do_GET(self) -> None:
        with _Handler.lock:
            body = json.dumps({"posts": _Handler.posts}).encode()
        head = f"HTTP/1.1 200 OK\r\nContent-Length: {len(body)}\r\n\r\n".encode()
        self.wfile.write(head + body)


def serve_loopback() -> None:
    """In the child: serve on 127.0.0.1:0, print the port, exit when stdin closes."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    print(server.server_address[1], flush=True)

    def exit_on_eof() -> None:  # the parent closed our stdin, or died
        sys.stdin.buffer.read()
        os._exit(0)

    threading.Thread(target=exit_on_eof, daemon=True).start()
    server.serve_forever(poll_interval=0.5)


class Loopback:
    """The loopback server, run by this very file in a child process."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "--serve-loopback"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().strip()
        if not line.isdigit():
            self.stop()
            raise RuntimeError("the loopback server did not start")
        self.base_url = f"http://127.0.0.1:{int(line)}/v1"

    def posts_served(self) -> int:
        """Chat completions answered so far."""
        return int(httpx.get(self.base_url + "/count", timeout=5).json()["posts"])

    def stop(self) -> None:
        if self.proc.stdin is not None:
            with contextlib.suppress(OSError):
                self.proc.stdin.close()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


# -- helpers ------------------------------------------------------------------------------------


def _need(ok: bool, what: str) -> None:
    if not ok:  # an explicit check: holds under `python -O` too
        raise RuntimeError(f"benchmark precondition failed: {what}")


def stats(ns: Sequence[float], minus_ns: float = 0.0) -> dict[str, float]:
    """Median and p99 in µs, each minus ``minus_ns`` (a peer's median)."""
    us = sorted(x / 1000 for x in ns)
    p99 = us[min(len(us) - 1, int(0.99 * len(us)))]
    base = minus_ns / 1000
    return {"median_us": round(statistics.median(us) - base, 2), "p99_us": round(p99 - base, 2)}


async def time_pair(
    a: Callable[[], Awaitable[object]],
    b: Callable[[], Awaitable[object]],
    n: int,
    fresh: Callable[[], None] | None = None,
) -> tuple[list[int], list[int]]:
    """Warm both up, then time ``n`` calls of each (ns), alternating which goes first."""
    for _ in range(WARMUP):
        await a()
        await b()
    clock, ta, tb = time.perf_counter_ns, [], []
    gc.disable()
    try:
        for i in range(n):
            if fresh is not None and i % RUN_EVERY == 0:
                fresh()  # outside the timed spans
            for first in (a, b) if i % 2 == 0 else (b, a):
                t0 = clock()
                await first()
                (ta if first is a else tb).append(clock() - t0)
    finally:
        gc.enable()
    return ta, tb


def time_sync(fn: Callable[[], object], n: int) -> list[int]:
    """Warm up, then time ``n`` calls of ``fn`` one by one (ns), gc disabled."""
    for _ in range(min(WARMUP, n)):
        fn()
    clock, out = time.perf_counter_ns, []
    gc.disable()
    try:
        for _ in range(n):
            t0 = clock()
            fn()
            out.append(clock() - t0)
    finally:
        gc.enable()
    return out


def fsync_floor(directory: Path, n: int) -> float:
    """Median ns of one 4 KiB write + fsync, beside the cache's database."""
    path = directory / "fsync.probe"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    block, times = os.urandom(4096), []
    try:
        for _ in range(n):
            t0 = time.perf_counter_ns()
            os.write(fd, block)
            os.fsync(fd)
            times.append(time.perf_counter_ns() - t0)
    finally:
        os.close(fd)
        path.unlink()
    return statistics.median(times)


def bench_policy(belt: Toolbelt) -> CompiledPolicy:
    """A workflow whose caps nothing here comes near: no call escalates."""
    big = 10**9
    caps: dict[str, float] = dict.fromkeys(
        ("max_steps", "max_tool_calls", "max_identical_calls", "max_retries"), big
    )
    caps |= {"max_cost_usd": 1e9, "max_wall_seconds": 1e9}
    workflow = {"stage": "autonomous_in_scope", "caps": caps, "tools": {"get_ticket": {}}}
    text = yaml.safe_dump({"version": "bench-1", "workflows": {"bench": workflow}})
    return load_policy("bench-policy.yaml", belt, text=text)


def router_for(
    model_yaml: str,
    workflow: str,
    budget: float,
    *,
    clients: Mapping[str, ModelClient] | None = None,
    embedded: EmbeddedEndpoint | None = None,
) -> ModelRouter:
    """A router whose every role is model ``m``, with a budget for ``workflow``."""
    roles = ", ".join(f"{r}: {{model: m}}" for r in ROLES)
    text = (
        f"version: 1\nmodels:\n  m: {model_yaml}\nroles: {{{roles}}}\n"
        f"budgets: {{{workflow}: {{max_cost_per_task: {budget}}}}}\n"
    )
    config = load_router_config("bench-router.yaml", text=text)
    return ModelRouter(config, clients=clients, embedded=embedded)


class InstantClient:
    """A `ModelClient` that answers a fixed response at once, in process (no HTTP)."""

    name = MODEL
    provider = "in-process"
    response = ModelResponse(
        text="refund",
        tool_calls=(),
        usage=Usage(42, 1),
        finish_reason="stop",
        model=MODEL,
        latency_s=0.0,
        attempts=1,
        attempt_latencies=(0.0,),
    )

    async def complete(
        self,
        messages: Sequence[Message],
        tools: Sequence[Mapping[str, Any]] | None = None,
        settings: ModelSettings | None = None,
        *,
        retry_budget: int | None = None,
    ) -> ModelResponse:
        return self.response


ROUTE_MESSAGES = [
    Message.system("Classify the support ticket into one lane: refund, order_status, other."),
    Message.user("Ticket T-7: order ORD-1042 arrived broken, I want my money back."),
]
ROUTE_SETTINGS = ModelSettings(temperature=0.0, max_tokens=8)


# -- 1 and 2: router overhead and cache hits ------------------------------------------------


async def bench_router(server: Loopback, n: int, n_stub: int, tmp: Path) -> dict[str, Any]:
    """Timings (ns) of the router vs direct calls, over HTTP and in process, and of hits."""
    belt = Toolbelt.from_module(tools)
    recorder = InMemoryRecorder()
    gateway = Gateway(belt, bench_policy(belt), recorder=recorder)
    client = OpenAICompatibleClient(
        server.base_url, MODEL, api_key="bench-key", provider="openai_compatible"
    )
    model_yaml = (
        f"{{provider: openai_compatible, base_url: '{server.base_url}', model: {MODEL}, "
        "price: {input_per_1m: 0.15, output_per_1m: 0.6}}"
    )
    # The very client the direct calls use: one connection pool, one server.
    router = router_for(model_yaml, "bench", 1e6, clients={"m": client})
    stub = InstantClient()
    stub_router = router_for(model_yaml, "bench", 1e6, clients={"m": stub})
    runs: list[Run] = []
    out: dict[str, Any] = {}

    def fresh() -> None:
        if runs:
            run = runs[0]
            ok = run.status is RunStatus.RUNNING and run.escalation is None
            _need(ok, f"the run escalated or ended: {run.status} {run.reason}")
        runs[:] = [gateway.start_run("bench", invoker="u", agent_id="a", request="route T-7")]

    async def direct() -> None:
        await client.complete(ROUTE_MESSAGES, None, ROUTE_SETTINGS)

    async def routed() -> None:
        await router.complete(
            "route", ROUTE_MESSAGES, None, ROUTE_SETTINGS, meter=gateway.meter(runs[0])
        )

    async def bare_stub() -> None:
        await stub.complete(ROUTE_MESSAGES, None, ROUTE_SETTINGS)

    async def stub_routed() -> None:
        await stub_router.complete(
            "route", ROUTE_MESSAGES, None, ROUTE_SETTINGS, meter=gateway.meter(runs[0])
        )

    try:
        fresh()
        response, name = await router.complete(
            "route", ROUTE_MESSAGES, None, ROUTE_SETTINGS, meter=gateway.meter(runs[0])
        )
        _need(name == "m" and response.text == "refund", f"the router answered {response}")
        _need(runs[0].model_calls == 1 and runs[0].cost_usd > 0, "the call was not accounted")
        recorded = [e for e in recorder.events if e.type == EventType.MODEL_CALL]
        _need(len(recorded) == 1, f"{len(recorded)} model_call events recorded, expected 1")

        out["stub"] = await time_pair(stub_routed, bare_stub, n_stub, fresh)
        before = server.posts_served()
        out["http"] = await time_pair(routed, direct, n, fresh)
        posts = server.posts_served() - before
        _need(posts == 2 * (WARMUP + n), f"the server saw {posts} calls, not {2 * (WARMUP + n)}")
        events = sum(1 for e in recorder.events if e.type == EventType.MODEL_CALL)
        expected = 1 + (WARMUP + n_stub) + (WARMUP + n)  # the first call, then each path
        _need(events == expected, f"{events} model_call events recorded, expected {expected}")
        fresh()  # checks that the last run did not escalate

        # 2. cache hits: SQLite in a temporary directory, role route, temperature 0
        store = open_store(f"sqlite:///{tmp / 'cache.db'}")
        try:
            cache = ResponseCache(store)
            caching = CachingClient(client, cache, "route")
            _need(cache.cacheable(ROUTE_SETTINGS, "route"), "the route call is not cacheable")
            before = server.posts_served()
            first = await caching.complete(ROUTE_MESSAGES, None, ROUTE_SETTINGS)
            _need(not first.cache_hit and server.posts_served() == before + 1, "no first miss")

            async def hit() -> None:
                await caching.complete(ROUTE_MESSAGES, None, ROUTE_SETTINGS)

            n_cache = max(50, n // 2)
            before = server.posts_served()
            t_hit, t_direct = await time_pair(hit, direct, n_cache)
            posts = server.posts_served() - before
            _need(posts == WARMUP + n_cache, f"cache hits reached the server ({posts} calls)")
            _need(cache.hits == WARMUP + n_cache and cache.errors == 0, cache.last_error)
            again = await caching.complete(ROUTE_MESSAGES, None, ROUTE_SETTINGS)
            _need(again.cache_hit and again.text == "refund", "a hit was not marked as one")
            key = cache.key(MODEL, ROUTE_MESSAGES, None, ROUTE_SETTINGS)
            out["cache"] = (t_hit, t_direct, time_sync(lambda: cache.get(key), n_cache))
            out["fsync_floor_ns"] = fsync_floor(tmp, min(200, n_cache))
        finally:
            store.close()
    finally:
        await client.aclose()
        gateway.close()
    return out


# -- 3: the embedded model ------------------------------------------------------------------

_CUSTOMERS = ("Ada Moreau", "Ben Okafor", "Chloe Park", "Dmitri Volkov", "Esra Yilmaz")
_ISSUES = (
    "arrived with a cracked screen and a dented corner",
    "never arrived; the tracking page has been stuck in Lyon for nine days",
    "was the wrong colour, blue instead of the grey that was ordered",
    "was charged twice on the same credit card",
    "arrived late and the box was soaked through",
    "is missing the charger and the printed manual",
)
_ASKS = ("a full refund", "a replacement", "a partial refund", "an apology and a voucher")


def ticket_history(seed: int, lines: int = 15) -> str:
    """About 600 tokens of ticket history (different per ``seed``: no prompt-cache reuse)."""
    out = [f"Support queue export #{seed}, shop EU-{seed * 7 + 3}."]
    for k in range(lines):
        i = seed * 31 + k
        out.append(
            f"- Ticket T-{seed * 100 + k}: {_CUSTOMERS[i % 5]} says order "
            f"ORD-{1000 + (i * 37) % 9000:04d} {_ISSUES[i % 6]}; asks for {_ASKS[i % 4]}."
        )
    return "\n".join(out)


def throughput(http: httpx.Client, url: str, model: str, seed: int) -> dict[str, Any]:
    """Prompt and generation tokens/s of one ~600-token prompt with max_tokens=128."""
    instruction = "\n\nWrite a detailed report of these tickets, one paragraph per ticket."
    messages = [
        {"role": "system", "content": "You are a support lead. Be thorough."},
        {"role": "user", "content": ticket_history(seed) + instruction},
    ]
    body = {"model": model, "messages": messages, "temperature": 0, "max_tokens": 128}
    t0 = time.perf_counter()
    response = http.post(url, json=body)
    wall = time.perf_counter() - t0
    _need(response.status_code == 200, f"HTTP {response.status_code}: {response.text[:200]}")
    data = response.json()
    usage, timings = data.get("usage") or {}, data.get("timings")
    if isinstance(timings, dict) and timings.get("predicted_per_second"):
        return {
            "source": "llama.cpp timings",
            "prompt_tokens": int(timings["prompt_n"]),
            "prompt_tps": float(timings["prompt_per_second"]),
            "gen_tokens": int(timings["predicted_n"]),
            "gen_tps": float(timings["predicted_per_second"]),
            "wall_s": wall,
        }
    # No timings: time the prompt alone (another prompt of the same size, one token out).
    other = {"role": "user", "content": ticket_history(seed + 1000) + instruction}
    t0 = time.perf_counter()
    response = http.post(url, json={**body, "messages": [messages[0], other], "max_tokens": 1})
    _need(response.status_code == 200, f"prompt-only request: HTTP {response.status_code}")
    prompt_s = time.perf_counter() - t0
    n_in, n_out = int(usage.get("prompt_tokens", 0)), int(usage.get("completion_tokens", 0))
    return {
        "source": "usage and wall time",
        "prompt_tokens": n_in,
        "prompt_tps": n_in / prompt_s,
        "gen_tokens": n_out,
        "gen_tps": max(n_out - 1, 0) / max(wall - prompt_s, 1e-9),
        "wall_s": wall,
    }


async def act_call(server: EmbeddedServer, belt: Toolbelt) -> dict[str, Any]:
    """One constrained tool call through the router (role act), with a gateway run."""
    gateway = Gateway(belt, load_policy(POLICY_PATH, belt), recorder=InMemoryRecorder())
    ticket = "Ticket T-3: my order ORD-1042 arrived broken. Please refund the 19.99 USD I paid."
    run = gateway.start_run(
        "support_triage", invoker="bench", agent_id="triage-bot", request=ticket
    )
    model_yaml = (
        f"{{provider: embedded, model: {server.model}, timeout_s: 300, "
        "price: {input_per_1m: 0.02, output_per_1m: 0.06, estimate: true}}"
    )
    router = router_for(
        model_yaml,
        "support_triage",
        0.25,
        embedded=lambda _model: (server.base_url, server.api_key, server.model),
    )
    _need(router.config.models["m"].tool_mode == "json_schema", "not a constrained model")
    messages = [
        Message.system("You are the support agent of an online shop. Handle the ticket."),
        Message.user(ticket),
    ]
    settings = ModelSettings(temperature=0.0, max_tokens=128)
    try:
        t0 = time.perf_counter()
        response, _ = await router.complete(
            "act", messages, belt.openai_tools(ACT_TOOLS), settings, meter=gateway.meter(run)
        )
        wall = time.perf_counter() - t0
    finally:
        client = router.client("m")
        if isinstance(client, OpenAICompatibleClient):
            await client.aclose()
        gateway.close()
    _need(run.model_calls == 1, "the act call was not recorded")
    result: dict[str, Any] = {
        "wall_s": wall,
        "input_tokens": response.usage.input_tokens,
        "output_tokens": response.usage.output_tokens,
        "cost_usd_estimate": run.cost_usd,
    }
    if len(response.tool_calls) != 1:
        return {**result, "call": f"final answer: {(response.text or '')[:60]!r}", "valid": False}
    call = response.tool_calls[0]
    result["call"] = f"{call.name}({call.arguments})"
    try:
        belt[call.name].validate_args(call.arguments)
        result["valid"] = call.name in ACT_TOOLS
    except (KeyError, InvalidToolCall) as exc:
        result["valid"], result["invalid_because"] = False, str(exc)
    return result


def bench_embedded(runs: int) -> dict[str, Any]:
    """Start, load, throughput and one constrained call; ``{"skipped": why}`` if absent."""
    if importlib.util.find_spec("xllamacpp") is None:
        return {"skipped": "xllamacpp is not installed (pip install xllamacpp)"}
    home = Path(os.environ.get("OPSGATE_HOME") or REPO / ".opsgate")
    target = home / "models" / DEFAULT_MODEL.filename
    joined = target.is_file() and target.with_name(target.name + ".sha256-ok").is_file()
    server = EmbeddedServer(data_dir=home, n_threads=1)
    try:
        server.start()
    except ConfigError as exc:  # weights missing, or not the pinned ones
        return {"skipped": str(exc)}
    out: dict[str, Any] = {
        "model": server.model,
        "already_joined": joined,
        "start_s": server.start_seconds,
        "load_s": server.load_seconds,
        "n_threads": 1,
    }
    try:
        headers = {"Authorization": f"Bearer {server.api_key}"}
        url = f"{server.base_url}/chat/completions"
        with httpx.Client(headers=headers, timeout=600) as http:
            t0 = time.perf_counter()
            hello = [{"role": "user", "content": "Say hello."}]
            body = {"model": server.model, "messages": hello, "temperature": 0, "max_tokens": 8}
            _need(http.post(url, json=body).status_code == 200, "the first request failed")
            out["first_answer_s"] = time.perf_counter() - t0
            out["runs"] = [throughput(http, url, server.model, seed) for seed in range(runs)]
        out["act"] = asyncio.run(act_call(server, Toolbelt.from_module(tools)))
    finally:
        server.stop()
    return out


# -- report ---------------------------------------------------------------------------------


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def _us(value: float) -> str:
    return f"{value:,.1f} µs"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small n (smoke test)")
    parser.add_argument("-n", type=int, default=None, help="timed HTTP calls per path")
    parser.add_argument("--serve-loopback", action="store_true", help=argparse.SUPPRESS)
    opts = parser.parse_args(argv)
    if opts.serve_loopback:
        serve_loopback()
        return {}
    quick = opts.quick
    n = opts.n or (500 if quick else 5000)
    n_stub = 2000 if quick else 20000
    n_tp = 1 if quick else 3

    server = Loopback()
    try:
        with tempfile.TemporaryDirectory(dir=os.environ.get("OPSGATE_BENCH_DIR")) as tmp:
            timed = asyncio.run(bench_router(server, n, n_stub, Path(tmp)))
    finally:
        server.stop()
    embedded = bench_embedded(n_tp)

    machine = {
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "cpu": _cpu_model(),
        "platform": platform.platform(),
    }
    versions = {d: _version(d) for d in ("httpx", "sqlalchemy", "xllamacpp")}
    versions["sqlite"] = sqlite3.sqlite_version

    routed, direct = timed["http"]
    stub_routed, bare = timed["stub"]
    t_hit, t_direct2, t_get = timed["cache"]
    floor_ns = timed["fsync_floor_ns"]
    d = stats(direct)
    overhead = stats(routed, statistics.median(direct))
    stub_over = stats(stub_routed, statistics.median(bare))
    hit, d2, get = stats(t_hit), stats(t_direct2), stats(t_get)

    table = Table(title="opsgate models: router, cache, embedded model")
    for column in ("measure", "figure", "limit / peer (same run)", "goal", "met"):
        table.add_column(column)
    results: dict[str, Any] = {}

    def row(
        name: str, figure: str, limit: str, goal: str, met: bool | None, data: dict[str, Any]
    ) -> None:
        verdict = "—" if met is None else ("[green]yes[/]" if met else "[red]NO[/]")
        table.add_row(name, figure, limit, goal, verdict)
        results[name] = {**data, "met": met}

    row(
        "direct call, HTTP round trip",
        f"median {_us(d['median_us'])}, p99 {_us(d['p99_us'])}",
        "the limit: client.complete to a loopback server answering at once",
        "—",
        None,
        d,
    )
    row(
        "router + accounting overhead (HTTP)",
        f"median +{_us(overhead['median_us'])}, p99 +{_us(overhead['p99_us'])}",
        f"direct call median {_us(d['median_us'])}, alternated in one loop",
        f"≤ {GOAL_OVERHEAD_US:g} µs median",
        overhead["median_us"] <= GOAL_OVERHEAD_US,
        {**overhead, "goal_median_us": GOAL_OVERHEAD_US},
    )
    row(
        "router + accounting overhead (in process)",
        f"median +{_us(stub_over['median_us'])}, p99 +{_us(stub_over['p99_us'])}",
        f"bare in-process client {_us(stats(bare)['median_us'])} (n={n_stub})",
        f"≤ {GOAL_OVERHEAD_US:g} µs median",
        stub_over["median_us"] <= GOAL_OVERHEAD_US,
        {**stub_over, "goal_median_us": GOAL_OVERHEAD_US},
    )
    row(
        "cache hit, CachingClient.complete",
        f"median {_us(hit['median_us'])}, p99 {_us(hit['p99_us'])}",
        f"direct call median {_us(d2['median_us'])} (alternated); "
        f"fsync floor {_us(floor_ns / 1000)}",
        "—",
        None,
        {**hit, "direct_median_us": d2["median_us"], "fsync_floor_us": floor_ns / 1000},
    )
    row(
        "cache hit, ResponseCache.get alone",
        f"median {_us(get['median_us'])}, p99 {_us(get['p99_us'])}",
        f"fsync floor {_us(floor_ns / 1000)} (a hit commits its hit count)",
        "—",
        None,
        get,
    )
    if "skipped" in embedded:
        row("embedded model", "skipped", embedded["skipped"][:200], "—", None, embedded)
    else:
        tps = embedded["runs"]
        pp = statistics.median(r["prompt_tps"] for r in tps)
        tg = statistics.median(r["gen_tps"] for r in tps)
        joined = "" if embedded["already_joined"] else " (incl. joining the weights)"
        row(
            "embedded: start (1 thread)",
            f"{embedded['start_s']:.2f} s{joined}",
            f"llama.cpp model load {embedded['load_s']:.2f} s (in the child)",
            "—",
            None,
            {k: embedded[k] for k in ("start_s", "load_s", "already_joined")},
        )
        row(
            "embedded: first answer after start",
            f"{embedded['first_answer_s']:.2f} s (8 tokens max)",
            "—",
            "—",
            None,
            {"first_answer_s": embedded["first_answer_s"]},
        )
        counts = "/".join(str(r["prompt_tokens"]) for r in tps)
        row(
            "embedded: prompt processing",
            f"{pp:,.1f} tok/s",
            f"median of {len(tps)} prompt(s) of {counts} tokens; {tps[0]['source']}",
            "—",
            None,
            {"prompt_tps": pp, "runs": tps},
        )
        counts = "/".join(str(r["gen_tokens"]) for r in tps)
        row(
            "embedded: generation",
            f"{tg:,.1f} tok/s",
            f"median of {len(tps)} run(s), {counts} tokens (max_tokens=128), temperature 0",
            "—",
            None,
            {"gen_tps": tg},
        )
        act = embedded["act"]
        at_speed = act["input_tokens"] / pp + act["output_tokens"] / tg
        valid = "valid" if act["valid"] else "NOT valid"
        row(
            "embedded: constrained tool call (act)",
            f"{act['wall_s']:.2f} s: {act['call']} ({valid})",
            f"{act['input_tokens']} in + {act['output_tokens']} out at the speeds above: "
            f"{at_speed:.2f} s",
            "—",
            None,
            {**act, "at_measured_speed_s": at_speed},
        )

    console = Console(width=140)
    console.print(
        f"[bold]opsgate models benchmark[/]{' (quick)' if quick else ''}: n={n} timed calls "
        f"per HTTP path, n={n_stub} in process, {WARMUP} warm-up calls each; gc off in timed "
        f"loops; a fresh run every {RUN_EVERY} calls\n"
        f"machine: Python {machine['python']}, {machine['cpus']} CPUs ({machine['cpu']}), "
        f"{machine['platform']}\n"
        f"versions: httpx {versions['httpx']}, SQLAlchemy {versions['sqlalchemy']}, "
        f"sqlite {versions['sqlite']}, xllamacpp {versions['xllamacpp']}"
    )
    if "skipped" in embedded:
        console.print(f"[yellow]embedded model skipped:[/] {embedded['skipped']}")
    console.print(table)
    console.print(
        "overhead = `await router.complete('route', ..., meter=)` (median / p99) minus\n"
        "the median of `await client.complete(...)` on the same client; the loopback server\n"
        "(stdlib ThreadingHTTPServer, keep-alive) runs in a child process. A cache hit reads\n"
        "the entry, then commits its hit count (SQLite WAL, synchronous=FULL) in a thread."
    )
    summary = dict(quick=quick, n=n, n_in_process=n_stub, warmup=WARMUP, machine=machine)
    summary |= {"versions": versions, "results": results}
    print(json.dumps(summary, default=str))
    return summary


if __name__ == "__main__":
    main()
