"""The soak of issue #11 on a short budget (`make soak` runs it for 120 s a phase): gateway
worker processes on one SQLite file and on one PostgreSQL database, a fault-free phase and
a chaos phase (workers and the approver SIGKILLed, the disk filled, PostgreSQL restarted,
the model server answering 429 / 500 / slowly / garbage). `bench/soak.py` exits 1 when an
invariant fails; its figures are checked here too."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


def test_the_soak_holds_its_invariants_on_both_backends(tmp_path: Path) -> None:
    figures = tmp_path / "soak.json"
    soak = subprocess.Popen(
        [
            sys.executable,
            str(ROOT / "bench" / "soak.py"),
            "--seconds",
            "8",
            "--workers",
            "3",
            "--json",
            str(figures),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        stdout, stderr = soak.communicate(timeout=240)
    except subprocess.TimeoutExpired:
        soak.terminate()  # it unmounts its file systems and stops its cluster on SIGTERM
        stdout, stderr = soak.communicate(timeout=60)
        pytest.fail(f"the soak did not end in 240 s:\n{stdout[-4000:]}{stderr[-4000:]}")
    done = subprocess.CompletedProcess(soak.args, soak.returncode, stdout, stderr)
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-6000:]
    results = {r["backend"]: r for r in json.loads(figures.read_text())["results"]}
    assert set(results) == {"sqlite", "postgres"}
    for backend, result in results.items():
        assert result["violations"] == [], backend
        assert result["audit verify"]["exit"] == 0, result["audit verify"]
        calm, chaos = result["phases"]["calm"], result["phases"]["chaos"]
        for phase in (calm, chaos):
            assert phase["events lost"] == 0
            assert phase["double executions (same call)"] == 0
            assert phase["approvals executed twice"] == 0
            assert phase["unresumable runs"] == 0
            assert phase["effects unrecorded"] == 0
            assert phase["effects without their decision in the trail"] == 0
            assert phase["effects whose decision was not committed before the tool ran"] == 0
            assert phase["runs ended twice or continued after their end"] == 0
            assert phase["unexpected errors (tracebacks) in workers"] == 0
        assert calm["faults total"] == 0 and calm["runs completed"] > 0
        assert calm["approved calls executed"] > 0 and calm["events acknowledged (journalled)"] > 0
        faults = chaos["faults injected"]
        assert any(k.startswith("worker SIGKILL") for k in faults)
        assert any(k.startswith("model ") for k in faults)
        if backend == "postgres":
            assert any(k.startswith("db restart") for k in faults)
        assert chaos["runs completed"] > 0
        assert result["throughput ratio chaos/calm"] > 0
    assert "throughput held under faults" in done.stdout
