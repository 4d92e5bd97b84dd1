"""Part 3 of `opsgate demo`: the seed's CI gate, both commands, on the embedded model.

The commands run as child processes, exactly as a CI job would run them, and their exit codes
are shown. The small embedded model falls far short of the seed's example thresholds; the demo
says so with the report's own figures (the gate doing its job), then gates on the model's
measured level: the committed baseline report of that model (`evals/baselines/`), with
thresholds read from it, not tuned to pass.
"""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path

import orjson

from opsgate.cli._common import console
from opsgate.cli._safe import shown
from opsgate.errors import ConfigError
from opsgate.evals import load_report, load_suite, metrics, results_of

SUITE = "support_triage_v3"
SUBSET = "smoke"
REPORT = Path("out/eval.json")


def _agent_eval(args: list[str], db: str | None) -> int:
    command = "agent-eval " + shlex.join(args)
    console.print(f"\n[bold]$ {shown(command)}[/]")
    argv = [sys.executable, "-m", "opsgate.cli.eval_main", *args]
    if db is not None:
        argv += ["--db", db]
    code = subprocess.run(argv, check=False).returncode
    style = "green" if code == 0 else "yellow" if code == 1 else "red"
    console.print(f"[{style}]exit {code}[/]")
    if code not in (0, 1):
        raise ConfigError(f"`{command}` failed with exit {code} (bad input, see above)")
    return code


def gate_part(router_file: Path, db: str | None) -> None:
    """Run the seed's two commands on the smoke subset and explain their verdicts."""
    console.rule("[bold]part 3: evaluation as a release gate[/]")
    tasks = load_suite(SUITE).tasks
    subset = sum(SUBSET in t.tags for t in tasks)
    console.print(
        f"The seed's CI gate on suite {SUITE}, the `{SUBSET}` subset (the first task of each "
        f"kind, {subset} of {len(tasks)}: the whole suite takes ~20 min on this 0.5B model; "
        f"drop `--tag {SUBSET}` to run it all)."
    )
    run_args = [
        "run",
        "--suite",
        SUITE,
        "--model-router",
        str(router_file),
        "--max-cost-per-task",
        "0.25",
        "--min-success-rate",
        "0.88",
        "--report",
        str(REPORT),
        "--tag",
        SUBSET,
    ]
    code = _agent_eval(run_args, db)
    report = load_report(REPORT)
    m = report["metrics"]
    if code == 1:
        console.print(
            f"The gate held: {shown(m['passed'])}/{shown(m['trials'])} passed "
            f"({m['success_rate']:.0%}, 95% CI {m['success_low']:.0%}-{m['success_high']:.0%}) "
            "against the seed's 88%. A 0.5B model on 2 CPU cores is not good enough to "
            "release this agent, and the build says so."
        )
    elif code == 0:
        console.print(
            f"The gate passed: {shown(m['passed'])}/{shown(m['trials'])} passed "
            f"({m['success_rate']:.0%}, 95% CI {m['success_low']:.0%}-{m['success_high']:.0%}) "
            f"against the seed's 88% on this subset; the whole suite, not {subset} tasks, "
            "is what a release should be gated on."
        )
    baseline_path = Path("evals/baselines") / f"{SUITE}.json"
    assert_args = [
        "assert",
        "--report",
        str(REPORT),
        "--max-success-drop",
        "0.02",
        "--max-cost-increase",
        "0.25",
    ]
    if not baseline_path.exists():
        console.print(f"[yellow]no baseline at {baseline_path}: the assert step is skipped[/]")
        return
    console.print(
        f"\nThe seed's second command compares this report with the accepted baseline "
        f"({baseline_path}: the embedded model's measured run of the whole suite), on the "
        "tasks they share."
    )
    _agent_eval(assert_args, db)
    baseline = load_report(baseline_path)
    ids = {r.task_id for r in results_of(report)}
    level = metrics([r for r in results_of(baseline) if r.task_id in ids])
    floor = level["success_rate"]
    console.print(
        f"\nThe same gate at the embedded model's measured level: {floor:.0%} on these tasks "
        f"in the baseline (read from it, not tuned), and the seed's cost ceiling."
    )
    _agent_eval(
        [
            "assert",
            "--report",
            str(REPORT),
            "--min-success-rate",
            f"{floor:.4f}",
            "--max-cost-per-task",
            "0.25",
        ],
        db,
    )
    summary = orjson.dumps(
        {k: m.get(k) for k in ("success_rate", "tool_precision", "unsafe_attempts")}
    ).decode()
    console.print(f"report {REPORT}: {shown(summary)}")
