"""`make demo`'s part 3: both seed commands on the real embedded model, as child processes.

Slow (the embedded model on seven tasks, ~4 minutes on 2 cores), still run in CI.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from opsgate.cli._demo_gate import gate_part  # tests this module

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_the_demo_runs_both_seed_commands_and_explains_the_verdicts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "evals" / "baselines").mkdir(parents=True)
    shutil.copy(
        ROOT / "evals" / "baselines" / "support_triage_v3.json",
        tmp_path / "evals" / "baselines" / "support_triage_v3.json",
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("COLUMNS", "200")
    gate_part(ROOT / "config" / "router.yaml", None)
    out = capfd.readouterr().out
    assert "$ agent-eval run --suite support_triage_v3 --model-router" in out
    assert "--max-cost-per-task 0.25 --min-success-rate 0.88 --report out/eval.json" in out
    assert "$ agent-eval assert --report out/eval.json --max-success-drop 0.02" in out
    report = json.loads((tmp_path / "out" / "eval.json").read_text())
    assert report["metrics"]["trials"] == 9  # the smoke subset, every task scored
    assert "the first task of each kind, 9 of 71" in out  # counted from the suite
    assert report["metrics"]["errors"] == 0
    # the seed's 88% is far above what a 0.5B model does: the gate says so, with figures
    # the verdict depends on the model's run; either one is explained with its figures
    assert ("exit 1" in out and "The gate held" in out) or (
        "exit 0" in out and "The gate passed" in out
    )
    assert "measured level" in out
