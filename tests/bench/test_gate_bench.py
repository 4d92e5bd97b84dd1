"""`bench/gate.py` still measures what it says: its gateway loop (the same write, again and
again) and its decisions run on a few calls. It once broke when the gate began to deny a
repeated write (`duplicate_write`) and nothing noticed."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

BENCH = Path(__file__).resolve().parents[2] / "bench"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_gate", BENCH / "gate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_gate"] = module
    spec.loader.exec_module(module)
    return module


async def test_the_gate_bench_loops_run_on_a_few_calls() -> None:
    gate = _load()
    for fn in (gate.noop_async, gate.noop_sync):
        gated, direct = await gate.bench_gateway(fn, 20)
        assert len(gated) == len(direct) == 20
    belt = gate.toolbelt(gate.noop_async)
    assert len(gate.bench_decide(belt, True, 20)) == 20
    assert len(gate.bench_history(belt, 20)) == 20
    reserve, floor = gate.bench_quota(5)
    assert len(reserve) == len(floor) == 5
