"""The two local tiers on the shipped suites: small only, large only, and routed.

Runs `agent-eval run` once per (configuration, suite), one at a time (two model runs at once
halve both on a small machine), each in its own process exactly as a user would, then prints
one table from the JSON reports: success with its 95% interval, cost per successful task (a
compute estimate for local models), latency p50/p95, unsafe attempts, over-blocking.

    .venv/bin/python bench/tiers.py                       # all configurations, both suites
    .venv/bin/python bench/tiers.py --config small --suite support_triage_v3
    .venv/bin/python bench/tiers.py --table-only          # reprint from the reports kept

Configurations: ``small`` (bench/tiers/small.yaml: every role on the 0.5B model), ``large``
(bench/tiers/large.yaml: every role on the 1.5B model; needs `make models-large`),
``routed`` (config/router.yaml: route/extract small, plan/act large, escalation to large).
Reports are kept in ``out/tiers/<config>-<suite>.json``; a run whose report exists is skipped
unless ``--again``. The held-out splits (`support_triage_holdout`, `it_helpdesk_holdout`,
never used to tune the agents) are reported beside the tuned ones: the gap is the overfit.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = {
    "small": ROOT / "bench" / "tiers" / "small.yaml",
    "large": ROOT / "bench" / "tiers" / "large.yaml",
    "routed": ROOT / "config" / "router.yaml",
}
SUITES = ("support_triage_v3", "support_triage_holdout", "it_helpdesk", "it_helpdesk_holdout")
OUT = ROOT / "out" / "tiers"


def _report_path(config: str, suite: str) -> Path:
    return OUT / f"{config}-{suite}.json"


def run_one(config: str, suite: str, *, timeout: float, home: Path, tags: list[str]) -> float:
    """One `agent-eval run`; returns its wall time in seconds (the report is on disk)."""
    OUT.mkdir(parents=True, exist_ok=True)
    command = [
        str(ROOT / ".venv" / "bin" / "agent-eval"),
        "run",
        "--suite",
        suite,
        "--model-router",
        str(CONFIGS[config]),
        "--report",
        str(_report_path(config, suite)),
        "--timeout",
        str(timeout),
        *[arg for tag in tags for arg in ("--tag", tag)],
    ]
    env = {**os.environ, "OPSGATE_HOME": str(home)}
    started = time.perf_counter()
    log = OUT / f"{config}-{suite}.log"
    with log.open("w", encoding="utf-8") as out:
        subprocess.run(command, env=env, stdout=out, stderr=subprocess.STDOUT, check=False)
    return time.perf_counter() - started


def _metrics(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    metrics = data.get("metrics")
    return metrics if isinstance(metrics, dict) else None


def _cell(m: dict[str, Any], key: str, fmt: str) -> str:
    value = m.get(key)
    return "–" if value is None else format(value, fmt)


def table(configs: list[str], suites: list[str]) -> str:
    """The Markdown table of the reports on disk."""
    lines = [
        "| suite | configuration | passed | success (95% CI) | cost / successful task | "
        "latency p50 / p95 | unsafe attempts | over-blocked |",
        "|---|---|---:|---|---:|---|---:|---:|",
    ]
    for suite in suites:
        for config in configs:
            m = _metrics(_report_path(config, suite))
            if m is None:
                continue
            rate = f"{m['success_rate']:.1%} ({m['success_low']:.1%}–{m['success_high']:.1%})"
            cost = m.get("cost_per_successful_task")
            lines.append(
                f"| {suite} | {config} | {m['passed']}/{m['tasks']} | {rate} | "
                f"{'–' if cost is None else f'${cost:.6f}'} | "
                f"{_cell(m, 'latency_p50', '.1f')} s / {_cell(m, 'latency_p95', '.1f')} s | "
                f"{m.get('unsafe_attempts', '–')} | {m.get('over_blocked', '–')} |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", action="append", choices=sorted(CONFIGS))
    parser.add_argument("--suite", action="append")
    parser.add_argument("--tag", action="append", default=[])
    parser.add_argument("--timeout", type=float, default=600.0)
    parser.add_argument("--again", action="store_true", help="re-run even if a report exists")
    parser.add_argument("--table-only", action="store_true")
    parser.add_argument("--home", type=Path, default=OUT / "home")
    args = parser.parse_args(argv)
    configs = args.config or list(CONFIGS)
    suites = args.suite or list(SUITES)
    if not args.table_only:
        for suite in suites:
            for config in configs:
                if _report_path(config, suite).exists() and not args.again:
                    continue
                seconds = run_one(
                    config, suite, timeout=args.timeout, home=args.home, tags=args.tag
                )
                print(f"{config} on {suite}: {seconds / 60:.1f} min", file=sys.stderr)
    print(table(configs, suites))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
