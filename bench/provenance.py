"""Cost of provenance on the call path: labelling tool results, origin look-ups, and the
whole `Gateway.call` overhead with a 30 KB result, beside a floor measured in the same run.

The floor is one `re.finditer` pass of a token regex over the result's JSON text: any
labelling must at least read the text once. Goals (issue #10): labelling ≤ 3× the floor,
`Gateway.call` overhead with a 30 KB result ≤ 2 ms median, look-ups O(1) per argument
(flat from 1 KB to 300 KB). Each figure is the median of many timed repetitions, with the
garbage collector off during each timed loop. Prints a table and a final JSON line.

    .venv/bin/python bench/provenance.py [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import platform
import random
import re
import statistics
import time
from collections.abc import Callable
from typing import Any

import orjson
from rich.console import Console
from rich.table import Table

from opsgate.contracts import Toolbelt, build_contract
from opsgate.gateway import Gateway
from opsgate.policy import load_policy
from opsgate.provenance import ProvenanceLedger, SourceSpec, TrustMap
from opsgate.recorder import InMemoryRecorder

_FLOOR_RE = re.compile(r"\w(?:[\w.@+\-/:]*\w)?")
_SENTENCE = (
    "the order arrived late and the box was damaged please refund me or send a new one "
    "thanks for the quick help our team will look into it today kind regards"
)
_WORDS = _SENTENCE.split()
FIELDS = {"$.records[*].id": "trusted", "$.records[*].owner": "trusted",
          "$.records[*].amount": "trusted", "$.records[*].created": "trusted"}  # fmt: skip


def make_result(kilobytes: int, seed: int = 7) -> dict[str, Any]:
    """A tool result of about ``kilobytes`` KB of JSON: records with ids, owners, amounts,
    dates, e-mail addresses and free-text bodies (what a CRM or ticket list returns)."""
    rng = random.Random(seed)
    records: list[dict[str, Any]] = []
    size = 0
    i = 0
    while size < kilobytes * 1024:
        body = " ".join(rng.choice(_WORDS) for _ in range(rng.randint(8, 30)))
        record = {
            "id": f"REC-{10000 + i}",
            "owner": f"user{rng.randint(1, 400)}@example.com",
            "amount": round(rng.uniform(1, 900), 2),
            "created": f"2026-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}T"
            f"{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:00Z",
            "subject": f"Ticket {i} about order ORD-{rng.randint(1000, 9999)}",
            "body": body,
        }
        records.append(record)
        size += len(orjson.dumps(record))
        i += 1
    return {"records": records, "count": len(records)}


def median_us(fn: Callable[[], Any], repeat: int) -> float:
    """Median of ``repeat`` timings of ``fn``, in µs."""
    for _ in range(max(3, repeat // 10)):
        fn()
    times: list[float] = []
    gc.disable()
    try:
        for _ in range(repeat):
            start = time.perf_counter_ns()
            fn()
            times.append((time.perf_counter_ns() - start) / 1000)
    finally:
        gc.enable()
    return statistics.median(times)


def _primed() -> ProvenanceLedger:
    """A run's ledger with its request read and indexed (not timed)."""
    ledger = ProvenanceLedger()
    ledger.add("Refund REC-10003, mail user7@example.com", trust="trusted", source="request")
    ledger.origin("REC-10003")
    return ledger


def _label(ledger: ProvenanceLedger, result: Any, fields: TrustMap | None = None) -> None:
    """Label one result and read its atoms (what the first look-up after it pays)."""
    ledger.add(result, trust="trusted", source="tool:list#1", fields=fields)
    ledger.origin("REC-10003")


def interleaved(
    cases: list[tuple[Callable[[], Any], Callable[[Any], Any]]], repeat: int
) -> list[float]:
    """Median µs of each ``fn(setup())`` (the setup not timed), the cases taking turns in
    every repetition so that a busy machine slows them alike and the ratios hold."""
    for setup, fn in cases:
        for _ in range(max(3, repeat // 10)):
            fn(setup())
    times: list[list[float]] = [[] for _ in cases]
    gc.disable()
    try:
        for _ in range(repeat):
            for i, (setup, fn) in enumerate(cases):
                prepared = setup()
                start = time.perf_counter_ns()
                fn(prepared)
                times[i].append((time.perf_counter_ns() - start) / 1000)
    finally:
        gc.enable()
    return [statistics.median(t) for t in times]


def bench_size(kb: int, quick: bool) -> dict[str, Any]:
    """Labelling and look-ups for one result size."""
    fields = TrustMap.parse("untrusted", FIELDS)
    result = make_result(kb)
    text = orjson.dumps(result).decode()
    repeat = (20 if kb == 300 else 100) if quick else (60 if kb == 300 else 400)
    floor, whole, split = interleaved(
        [
            (lambda: None, lambda _: sum(1 for _ in _FLOOR_RE.finditer(text))),
            (_primed, lambda ledger: _label(ledger, result)),
            (_primed, lambda ledger: _label(ledger, result, fields)),
        ],
        repeat,
    )

    def label(fields: TrustMap | None = None) -> ProvenanceLedger:
        ledger = _primed()
        _label(ledger, result, fields)
        return ledger

    ledger = label(fields)
    probe_id = result["records"][len(result["records"]) // 2]["id"]
    probe_amount = result["records"][-1]["amount"]
    within = SourceSpec(["request", "tool:list"])
    lookups = {
        "id": median_us(lambda: ledger.origin(probe_id), 2000),
        "amount": median_us(lambda: ledger.origin(probe_amount), 2000),
        "composite": median_us(lambda: ledger.origin(f"{probe_id}, REC-10003"), 2000),
        "bound target": median_us(lambda: ledger.origin(probe_id, within=within), 2000),
    }
    return {
        "kb": kb,
        "bytes": len(text),
        "floor_us": floor,
        "label_us": whole,
        "label_fields_us": split,
        "ratio": whole / floor,
        "ratio_fields": split / floor,
        "lookup_us": lookups,
    }


def bench_labelling(quick: bool) -> list[dict[str, Any]]:
    """Labelling and look-ups for results of 1, 30 and 300 KB."""
    return [bench_size(kb, quick) for kb in (1, 30, 300)]


def bench_gateway(quick: bool) -> dict[str, float]:
    """`Gateway.call` overhead with a 30 KB result (a no-op tool returning it) against the
    same tool called directly."""
    result = make_result(30)

    def list_records(query: str) -> dict[str, Any]:
        """List records."""
        return result

    contract = build_contract(list_records, scope="read", output="trusted")
    belt = Toolbelt([contract])
    policy = load_policy(
        "bench",
        belt,
        text="version: '1'\nworkflows:\n  w:\n    stage: read_only\n"
        "    tools: {list_records: {}}\n",
    )
    gateway = Gateway(belt, policy, recorder=InMemoryRecorder(max_events=1000))
    repeat = 200 if quick else 1000

    async def run() -> tuple[float, float]:
        times: list[float] = []
        bare: list[float] = []
        for i in range(repeat + 50):
            run = gateway.start_run("w", invoker="bench", agent_id="bench", request="list REC")
            start = time.perf_counter_ns()
            await gateway.call(run, "list_records", {"query": "x"})
            elapsed = (time.perf_counter_ns() - start) / 1000
            start = time.perf_counter_ns()
            await asyncio.get_running_loop().run_in_executor(None, list_records, "x")
            direct = (time.perf_counter_ns() - start) / 1000
            if i >= 50:
                times.append(elapsed)
                bare.append(direct)
        return statistics.median(times), statistics.median(bare)

    gc.disable()
    try:
        call, direct = asyncio.run(run())
    finally:
        gc.enable()
        gateway.close()
    return {"call_us": call, "direct_us": direct, "overhead_us": call - direct}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    args = parser.parse_args()
    console = Console()
    rows = bench_labelling(args.quick)
    table = Table(title="provenance labelling (median µs)")
    for col in ("result", "floor: one finditer", "label", "÷ floor", "label, field rules",
                "÷ floor", "look-up id", "amount", "composite", "bound"):  # fmt: skip
        table.add_column(col, justify="right")
    for row in rows:
        lookups = row["lookup_us"]
        table.add_row(
            f"{row['bytes'] / 1024:.0f} KB",
            f"{row['floor_us']:.0f}",
            f"{row['label_us']:.0f}",
            f"{row['ratio']:.2f}×",
            f"{row['label_fields_us']:.0f}",
            f"{row['ratio_fields']:.2f}×",
            *(f"{lookups[k]:.1f}" for k in ("id", "amount", "composite", "bound target")),
        )
    console.print(table)
    gateway = bench_gateway(args.quick)
    console.print(
        f"Gateway.call with a 30 KB result: {gateway['call_us']:.0f} µs, the tool called directly "
        f"{gateway['direct_us']:.0f} µs → overhead {gateway['overhead_us'] / 1000:.2f} ms "
        "(goal ≤ 2 ms)"
    )
    print(
        json.dumps(
            {
                "bench": "provenance",
                "python": platform.python_version(),
                "labelling": rows,
                "gateway_30kb": gateway,
                "goals": {"label_ratio": 3.0, "gateway_overhead_ms": 2.0},
            }
        )
    )


if __name__ == "__main__":
    main()
