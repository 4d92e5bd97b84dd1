"""`bench/tiers.py`: its configurations are the shipped router with the tiers it names, and
its table reads the reports `agent-eval run` writes (a report from the evals' own writer)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest

from opsgate.models import load_router_config, resolve_local

ROOT = Path(__file__).resolve().parents[2]


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_tiers", ROOT / "bench" / "tiers.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_tiers"] = module
    spec.loader.exec_module(module)
    return module


def test_the_three_configurations_route_as_named() -> None:
    tiers = _load()
    small = load_router_config(tiers.CONFIGS["small"])
    large = load_router_config(tiers.CONFIGS["large"])
    routed = resolve_local(load_router_config(tiers.CONFIGS["routed"]), available=lambda m: True)
    roles = ("route", "extract", "plan", "act", "judge")
    assert {small.chain(r)[0] for r in roles} == {"embedded"} and small.escalation.to is None
    assert {large.chain(r)[0] for r in roles} == {"large-local"}
    assert not large.models["large-local"].optional  # large only: no silent fallback
    assert [routed.chain(r)[0] for r in roles] == [
        "embedded",
        "embedded",
        "large-local",
        "large-local",
        "embedded",
    ]


def test_the_table_reads_agent_eval_reports(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tiers = _load()
    monkeypatch.setattr(tiers, "OUT", tmp_path)
    old = ROOT / "tests" / "evals" / "fixtures" / "report_before_suite_tasks.json"
    baseline = json.loads(old.read_text())  # a fixed report: its figures never move
    (tmp_path / "small-support_triage_v3.json").write_text(json.dumps(baseline))
    text = tiers.table(["small", "large"], ["support_triage_v3"])
    assert "| support_triage_v3 | small | 12/63 | 19.1% (11.2%–30.4%) | $0.000180 |" in text
    assert "| large |" not in text  # no report, no row
    assert tiers.main(["--table-only", "--config", "small", "--suite", "support_triage_v3"]) == 0
