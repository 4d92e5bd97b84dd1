"""`bench/server.py` and its fill: the store it measures is shaped like a recorded one (a
chain that verifies, every outcome, the approval queue in step with the runs), and the
bench runs end to end against the real `opsgate serve`."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
from sqlalchemy import func, select

from opsgate.audit import AuditLog
from opsgate.store import approvals, cost_entries, open_store, runs, spans

BENCH = Path(__file__).resolve().parents[2] / "bench"


def _load_fill() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_server_fill", BENCH / "_server_fill.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_server_fill"] = module
    spec.loader.exec_module(module)
    return module


fill_module = _load_fill()


def test_the_fill_is_shaped_like_a_recorded_store(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'fill.db'}")
    try:
        sizes = fill_module.Sizes(400, 16, runs_per_day=200, pending=12)
        report = fill_module.fill(store, sizes, batch_runs=50)
        log = AuditLog(store)
        verified = log.verify()  # re-hashes the chain, checks the signed checkpoint
        assert verified.events == report.events == log.size()
        assert verified.checkpoints == 1
        assert report.runs == 400 and 12 <= report.events / 400 <= 20
        with store.engine.connect() as conn:
            statuses = dict(
                conn.execute(select(runs.c.status, func.count()).group_by(runs.c.status)).all()
            )
            pending = conn.execute(
                select(func.count()).select_from(approvals).where(approvals.c.status == "pending")
            ).scalar()
            models = conn.execute(
                select(func.count()).select_from(cost_entries).where(cost_entries.c.kind == "model")
            ).scalar()
            traced = conn.execute(select(func.count(func.distinct(spans.c.run_id)))).scalar()
        assert set(statuses) == {"completed", "escalated", "failed", "awaiting_approval", "running"}
        assert statuses["awaiting_approval"] == pending == report.pending == 12
        assert models == sum(1 for r in log.records() if r.type == "model_call")
        assert traced == 400
        denials = {r.run_id for r in log.records() if r.data.get("effect") == "deny"}
        assert 10 <= len(denials) <= 80
    finally:
        store.close()


def test_percentile_is_the_nearest_rank() -> None:
    spec = importlib.util.spec_from_file_location("bench_server", BENCH / "server.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_server"] = module
    spec.loader.exec_module(module)
    values = [float(v) for v in range(1, 101)]
    assert module.percentile(values, 0.5) == 50.0
    assert module.percentile(values, 0.95) == 95.0
    assert module.percentile([3.0], 0.95) == 3.0


@pytest.mark.slow
def test_the_bench_runs_end_to_end(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(BENCH / "server.py"), "--quick", "--cache", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    results = report["backends"]["SQLite"]["results"]
    assert set(results) == {"300", "1500"}
    pages = {f["page"]: f for f in results["1500"]}
    for page in ("runs", "run detail", "approvals inbox", "cost (7 days)", "floor: login page"):
        assert pages[page]["n"] > 0 and pages[page]["p50_ms"] > 0, page
    assert "runs ratio" in report["backends"]["SQLite"]["goals"]
    assert report["fills"]["sqlite 1500"]["pending_approvals"] == 20
    # a second run reuses the fills
    again = subprocess.run(
        [sys.executable, str(BENCH / "server.py"), "--quick", "--cache", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert again.returncode == 0, again.stderr[-3000:]
    assert json.loads(again.stdout.strip().splitlines()[-1])["fills"]["sqlite 1500"] is None
