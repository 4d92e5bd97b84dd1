"""Latency of the opsgate gate on the peers' scenario (see bench/peers.py), in one run.

Measures `CompiledPolicy.decide` (without and with a CEL condition, and with a condition over
the run's history of 20 calls), a quota reservation in the store (one SQLite commit that
waits for no fsync of its own: the call's write-ahead audit commit makes it durable) beside
the disk's fsync floor measured in the same loop, the floor (a dict
look-up plus a pydantic validation of the same arguments), the whole `Gateway.call`
overhead around a no-op async and a no-op sync tool, and the peer engines Cedar and Rego
on the same 50-tool, 100-rule policy. Every decision is timed on its own with
``time.perf_counter_ns`` after a warm-up, with the garbage collector disabled during every
timed loop (ours and the peers' alike). Prints a table and a final JSON line.

    .venv/bin/python bench/gate.py [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import importlib
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import yaml
from rich.console import Console
from rich.table import Table

from opsgate.contracts import SCOPES, Impact, Toolbelt, build_contract
from opsgate.gateway import Gateway, Run
from opsgate.policy import Effect, ProposedCall, SimpleRunState, load_policy
from opsgate.recorder import InMemoryRecorder


def _peers() -> ModuleType:
    """bench/peers.py, whether this file runs as a script or is imported."""
    here = str(Path(__file__).resolve().parent)
    if here not in sys.path:
        sys.path.insert(0, here)
    return importlib.import_module("peers")


N_TOOLS, TOOL, WARMUP, RUN_EVERY = 50, "tool_17", 1000, 1000
ARGS: dict[str, Any] = {"n": 5, "target": "OPS"}
ARGS_JSON = '{"n": 5, "target": "OPS"}'
CONDITION = 'args.n > 50.0 || tool.impact == "high"'
GOALS = {  # median, µs (the quota check's goal is the fsync floor measured in the run)
    "opsgate decide": 5.0,
    "opsgate decide + CEL": 10.0,
    "opsgate decide + history condition": 15.0,
    "gateway overhead (async tool)": 40.0,
}


async def noop_async(n: int, target: str) -> None:
    """Do nothing (async)."""


def noop_sync(n: int, target: str) -> None:
    """Do nothing (sync)."""


def toolbelt(fn: Callable[..., Any]) -> Toolbelt:
    """tool_00..tool_49, all bound to ``fn``; scope and impact as in bench/peers.py."""
    belt = Toolbelt()
    for i in range(N_TOOLS):
        impact: Impact = "high" if i % 5 == 0 else "low"
        belt.add(build_contract(fn, name=f"tool_{i:02d}", scope=SCOPES[i % 3], impact=impact))
    return belt


def policy_yaml(with_condition: bool) -> str:
    tools: dict[str, Any] = {}
    for i in range(N_TOOLS):  # listing the tool = permit; the `max` constraint = forbid
        # repeatable: the timed loop makes the same write again and again, which the gate
        # otherwise denies as a duplicate_write after the first
        tools[f"tool_{i:02d}"] = {"constraints": {"n": {"max": 10 + i}}, "repeatable": True}
    if with_condition:
        tools[TOOL]["approval_when"] = CONDITION
    workflow = {
        "stage": "autonomous_in_scope",
        "caps": {"max_tool_calls": 10**9, "max_identical_calls": 10**9},
        "tools": tools,
    }
    return yaml.safe_dump({"version": "bench-1", "workflows": {"bench": workflow}})


def _need(ok: bool, what: str) -> None:
    if not ok:  # an explicit check: holds under `python -O` too
        raise RuntimeError(f"benchmark precondition failed: {what}")


def time_sync(fn: Callable[[], object], n: int) -> list[int]:
    """Warm up, then time ``n`` calls of ``fn`` one by one (ns), gc disabled."""
    for _ in range(WARMUP):
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


def bench_decide(belt: Toolbelt, with_condition: bool, n: int) -> list[int]:
    policy = load_policy("bench", belt, text=policy_yaml(with_condition))
    state = SimpleRunState(workflow="bench", agent_id="agent-1")

    def call(args: dict[str, Any]) -> ProposedCall:
        return ProposedCall(TOOL, args, TOOL + ":" + json.dumps(args, sort_keys=True))

    ok, bad = call(ARGS), call({"n": 999, "target": "OPS"})
    for probe, want in ((ok, Effect.ALLOW), (bad, Effect.DENY)):
        got = policy.decide(probe, state)
        _need(got.effect is want, f"{TOOL} {probe.args} -> {got.effect} ({got.message})")
    if with_condition:
        row = policy.stage_table("bench")["autonomous_in_scope"][TOOL]
        _need(row.startswith("approval if"), f"{TOOL} has no CEL condition: {row}")
    return time_sync(lambda: policy.decide(ok, state), n)


HISTORY = "run.sum('tool_17', 'n') + double(args.n) > 1000.0"
HISTORY_CALLS = 20  # calls that ran before: what the condition reads


@dataclass(frozen=True)
class _Ran:
    tool: str
    args: dict[str, Any]


def bench_history(belt: Toolbelt, n: int) -> list[int]:
    """`decide` with a deny rule over the run's history (20 calls ran before)."""
    doc = yaml.safe_load(policy_yaml(False))
    doc["workflows"]["bench"]["rules"] = [
        {"id": "sum", "effect": "deny", "tools": [TOOL], "when": HISTORY}
    ]
    policy = load_policy("bench", belt, text=yaml.safe_dump(doc))
    ran = [_Ran(TOOL, {"n": 5, "target": "OPS"}) for _ in range(HISTORY_CALLS)]
    state = SimpleRunState(workflow="bench", agent_id="agent-1", completed=list(ran))
    ok = ProposedCall(TOOL, ARGS, TOOL + ":" + json.dumps(ARGS, sort_keys=True))
    _need(policy.decide(ok, state).effect is Effect.ALLOW, "the history rule should allow")
    return time_sync(lambda: policy.decide(ok, state), n)


def bench_quota(n: int) -> tuple[list[int], list[int]]:
    """(a quota reservation on SQLite: `StoreQuotaLedger.reserve`, its one commit, which
    the call's audit commit makes durable; the disk's fsync floor: 4 KiB written and
    fsynced beside the database), interleaved."""
    from opsgate.gateway import QuotaUse, StoreQuotaLedger
    from opsgate.policy import Quota
    from opsgate.store import open_store

    with tempfile.TemporaryDirectory() as folder:
        store = open_store(f"sqlite:///{Path(folder) / 'quota.db'}")
        ledger = StoreQuotaLedger(store)
        quota = Quota("bench:tool_17", TOOL, None, 1e12, 86400.0, "workflow", "quotas.tool_17")
        probe = Path(folder) / "fsync.probe"
        block = os.urandom(4096)
        reserve, floor = [], []
        clock = time.perf_counter_ns
        for i in range(n):
            use = QuotaUse(quota, "bench", 1.0, "run", f"c{i}")
            t0 = clock()
            _need(ledger.reserve([use]) is None, "the quota should hold")
            reserve.append(clock() - t0)
            t0 = clock()
            fd = os.open(probe, os.O_WRONLY | os.O_CREAT, 0o600)
            try:
                os.write(fd, block)
                os.fsync(fd)
            finally:
                os.close(fd)
            floor.append(clock() - t0)
        store.close()
    return reserve, floor


def bench_floor(belt: Toolbelt, n: int) -> list[int]:
    contracts = {c.name: c for c in belt}
    return time_sync(lambda: contracts[TOOL].args_model.model_validate(ARGS), n)


async def time_async(
    make: Callable[[], Awaitable[object]], n: int, fresh: Callable[[], None]
) -> list[int]:
    for _ in range(WARMUP):
        await make()
    clock, out = time.perf_counter_ns, []
    gc.disable()
    try:
        for i in range(n):
            if i % RUN_EVERY == 0:
                fresh()  # outside the timed span
            t0 = clock()
            await make()
            out.append(clock() - t0)
    finally:
        gc.enable()
    return out


async def bench_gateway(fn: Callable[..., Any], n: int) -> tuple[list[int], list[int]]:
    """(times of `gateway.call`, times of calling the tool directly), same loop."""
    belt = toolbelt(fn)
    gateway = Gateway(
        belt, load_policy("bench", belt, text=policy_yaml(False)), recorder=InMemoryRecorder()
    )
    # The request names the values, so they are trusted after the (untrusted) results.
    request = "set n to 5 on target OPS"
    runs: list[Run] = []

    def fresh() -> None:
        runs[:] = [gateway.start_run("bench", invoker="u", agent_id="agent-1", request=request)]

    async def via_gate() -> None:
        outcome = await gateway.call(runs[0], TOOL, ARGS_JSON)
        if not outcome.ok:
            raise RuntimeError(f"gateway call not ok: {outcome.status}: {outcome.message}")

    is_async = belt[TOOL].is_async

    async def direct() -> None:
        out = fn(n=5, target="OPS")
        if is_async:
            await out

    fresh()
    try:
        gated = await time_async(via_gate, n, fresh)
        return gated, await time_async(direct, n, fresh)
    finally:
        gateway.close()


def peer(fn: Callable[..., list[float]], n: int, cond: bool) -> list[int]:
    gc.disable()  # peers.py times its own loop; gc off around it, as for ours
    try:
        return [round(s * 1e9) for s in fn(n, cond)]
    finally:
        gc.enable()


def stats(ns: list[int], minus_ns: float = 0.0) -> dict[str, float]:
    us = sorted(x / 1000 for x in ns)
    p99 = us[min(len(us) - 1, int(0.99 * len(us)))]
    base = minus_ns / 1000
    return {"median_us": round(statistics.median(us) - base, 3), "p99_us": round(p99 - base, 3)}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="n=2000 (smoke test)")
    parser.add_argument("-n", type=int, default=None, help="timed decisions per line")
    opts = parser.parse_args(argv)
    n = opts.n or (2000 if opts.quick else 20000)
    peers, belt = _peers(), toolbelt(noop_async)
    rows: dict[str, dict[str, float]] = {
        "opsgate decide": stats(bench_decide(belt, False, n)),
        "opsgate decide + CEL": stats(bench_decide(belt, True, n)),
        "floor: dict + pydantic": stats(bench_floor(belt, n)),
        "opsgate decide + history condition": stats(bench_history(belt, n)),
    }
    reserve, fsync = bench_quota(max(50, n // 40))
    rows["quota check (store, SQLite)"] = stats(reserve)
    rows["floor: 4 KiB write + fsync"] = stats(fsync)
    GOALS["quota check (store, SQLite)"] = statistics.median(fsync) / 1000.0
    for label, noop in (("async", noop_async), ("sync", noop_sync)):
        gated, direct = asyncio.run(bench_gateway(noop, n))
        rows[f"gateway overhead ({label} tool)"] = stats(gated, statistics.median(direct))
    for name in ("cedar", "rego"):
        timings = getattr(peers, f"{name}_decision_timings")
        rows[f"{name} (peers.py)"] = stats(peer(timings, n, False))
        rows[f"{name} + condition"] = stats(peer(timings, n, True))
    versions = peers.peer_versions()
    machine = dict(python=platform.python_version(), cpus=os.cpu_count())
    machine["platform"] = platform.platform()

    console = Console(width=120)
    console.print(
        f"[bold]opsgate gate benchmark[/]: n={n} timed calls per line, {WARMUP} warm-up calls\n"
        "gc disabled during every timed loop (all engines alike); perf_counter_ns per call\n"
        f"machine: Python {machine['python']}, {machine['cpus']} CPUs, {machine['platform']}\n"
        f"peers: cedarpy {versions['cedarpy']}, regorus {versions['regorus']}"
    )
    table = Table(title=f"{TOOL} {ARGS_JSON} (allowed); 50 tools, 100 rules")
    for col in ("engine / path", "median µs", "p99 µs", "goal (median)", "met"):
        table.add_column(col, justify="left" if col == "engine / path" else "right")
    results: dict[str, Any] = {}
    for label, row in rows.items():
        goal = GOALS.get(label)
        met = None if goal is None else row["median_us"] <= goal
        results[label] = {**row, "goal_median_us": goal, "met": met}
        verdict = "—" if met is None else ("[green]yes[/]" if met else "[red]NO[/]")
        shown = "—" if goal is None else f"≤ {goal:g}"
        table.add_row(label, f"{row['median_us']:.2f}", f"{row['p99_us']:.2f}", shown, verdict)
    console.print(table)
    console.print(
        "gateway overhead = `await gateway.call(...)` (median / p99) minus the median of\n"
        "awaiting (async) / calling (sync) the no-op tool directly, in the same event loop;\n"
        "the sync tool runs in the gateway's thread pool. Peers: bench/peers.py, same scenario."
    )
    summary = dict(n=n, warmup=WARMUP, gc_disabled=True, machine=machine, versions=versions)
    summary["results"] = results
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()
