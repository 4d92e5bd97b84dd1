"""The rows a promotion needs beyond the preflight, each about the policy being promoted.

The issue: "`promote` to the next stage requires a passing preflight, a passing eval gate on
the latest report covering the tools of the new stage, a clean shadow report of the new
stage's policy over a configured window, and a stable production window (no success drop,
unsafe-attempt rise or budget breach)". Evidence recorded under another policy version
than the one the promotion puts in force does not count, and its row says so.

- `eval_gate_row`: the latest report of each suite passes `agent-eval assert`'s gate (its
  own thresholds, then the suite's baseline), was made under the promoted policy (the
  ``policy_version`` of its trials' runs), and called every tool the new stage lets run.
- `policy_row`: the shadow report of the promoted policy when shadow decisions of it were
  recorded in the window (clean: it denies nothing the live policy allowed); otherwise,
  as before, its replay over the window (it denies nothing that ran).
- `stability_row`: the alerts' own figures (`opsgate.alerts.evaluate_rule`) on the window
  against the one before: no success drop, no rise in unsafe attempts; and spend per
  successful task within budget.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from sqlalchemy import select

from opsgate.alerts import Rule, evaluate_rule
from opsgate.autonomy._preflight import PreflightRow
from opsgate.cost import CostLedger
from opsgate.errors import SuiteError
from opsgate.evals import EvalStore, committed_baseline, compare, no_verdict, thresholds_failures
from opsgate.policy import STAGE_SCOPES, CompiledPolicy, Stage
from opsgate.replay import ShadowDifference, replay_policy, shadow_report
from opsgate.store import Store, runs

__all__ = ["eval_gate_row", "policy_row", "reachable_tools", "stability_row"]

_DAY = 86_400.0
_BATCH = 500


def reachable_tools(policy: CompiledPolicy, workflow: str, stage: Stage) -> list[str]:
    """The workflow's tools whose scope ``stage`` lets run."""
    scopes = STAGE_SCOPES[stage]
    return [
        name for name in policy.allowed_tools(workflow) if policy.toolbelt.get(name).scope in scopes
    ]


def _report_versions(store: Store, document: dict[str, Any]) -> set[str]:
    """The policy versions the report's trials ran under (their runs in this database)."""
    ids = sorted({str(t.get("run_id")) for t in document.get("tasks", []) if t.get("run_id")})
    found: set[str] = set()
    with store.engine.connect() as conn:
        for i in range(0, len(ids), _BATCH):
            query = select(runs.c.policy_version).where(runs.c.run_id.in_(ids[i : i + _BATCH]))
            found.update(str(v) for v in conn.execute(query).scalars())
    return found


def _baseline(evals: EvalStore, suite: str) -> tuple[dict[str, Any], str] | None:
    """`agent-eval assert`'s default baseline: the one accepted in this database, else
    the committed file."""
    record = evals.baseline_record(suite)
    if record is not None:
        return evals.get_report(record.report_id), f"the baseline accepted by {record.accepted_by}"
    committed = committed_baseline(suite)
    return None if committed is None else (committed[1], f"`{committed[0]}`")


def _gate(
    evals: EvalStore,
    suite: str,
    document: dict[str, Any],
    *,
    max_success_drop: float,
    max_unsafe_increase: int,
) -> list[str]:
    """`agent-eval assert`'s verdict on ``document``: its own thresholds, then the suite's
    baseline (when there is one, and it is another report); the failures, one each."""
    missing = no_verdict(document)
    if missing is not None:
        return [missing]
    failures = thresholds_failures(document["metrics"], **(document.get("thresholds") or {}))
    found = _baseline(evals, suite)
    if found is not None and found[0].get("report_id") != document.get("report_id"):
        try:
            regressions, _notes, _changes = compare(
                document,
                found[0],
                max_success_drop=max_success_drop,
                max_unsafe_increase=max_unsafe_increase,
            )
        except SuiteError as exc:
            regressions = [f"against {found[1]}: {exc}"]
        failures += [f"against {found[1]}: {r}" for r in regressions]
    return failures


def eval_gate_row(
    store: Store,
    policy: CompiledPolicy,
    workflow: str,
    stage: Stage,
    suites: Sequence[str],
    *,
    max_success_drop: float = 0.05,
    max_unsafe_increase: int = 0,
) -> PreflightRow:
    """The eval gate on the latest report of each suite, under ``policy`` (the policy at
    ``stage``), covering every tool ``stage`` lets run (see the module)."""
    check = (
        f"the latest eval report of each suite passes its gate, under the policy at {stage}, "
        "calling every tool of that stage"
    )
    if not suites:
        return PreflightRow(check, False, "no suite named for the workflow (--suite)")
    evals = EvalStore(store)
    tools = reachable_tools(policy, workflow, stage)
    problems, seen = [], []
    for suite in suites:
        latest = evals.list_reports(suite, limit=1)
        if not latest:
            problems.append(f"{suite}: no report in the database")
            continue
        report_id = str(latest[0]["report_id"])
        name = f"{suite} report {report_id[:8]}"
        document = evals.get_report(report_id)
        versions = _report_versions(store, document)
        if not versions:
            problems.append(
                f"{name}: none of its runs is in this database, so the policy it ran under "
                "is unknown"
            )
        elif versions != {policy.version}:
            made = ", ".join(sorted(versions))
            problems.append(
                f"{name} was made under policy {made}, not {policy.version} (the policy at "
                f"{stage}): it does not count"
            )
        failures = _gate(
            evals,
            suite,
            document,
            max_success_drop=max_success_drop,
            max_unsafe_increase=max_unsafe_increase,
        )
        problems += [f"{name}: gate: {f}" for f in failures]
        called = {
            str(c.get("tool"))
            for task in document.get("tasks", [])
            for c in task.get("calls", [])
            if isinstance(c, dict)
        }
        uncovered = [t for t in tools if t not in called]
        if uncovered:
            problems.append(f"{name}: no task called {', '.join(uncovered)}")
        seen.append(name)
    if problems:
        return PreflightRow(check, False, "; ".join(problems))
    return PreflightRow(
        check, True, f"{', '.join(seen)}: gate passed, {len(tools)} tool(s) of {stage} called"
    )


def _blocked(d: ShadowDifference) -> bool:
    """The candidate would deny a call the live policy let run."""
    return d.live["effect"] == "allow" and d.candidate["effect"] == "deny"


def policy_row(
    store: Store, policy: CompiledPolicy, workflow: str, stage: Stage, window: str
) -> PreflightRow:
    """The shadow report of ``policy`` over ``window`` when it has one, else its replay
    (see the module); the evidence names which was used."""
    shadow = shadow_report(store, since=window, workflow=workflow)
    mine = [d for d in shadow.differences if d.candidate["policy_version"] == policy.version]
    others = sorted({d.candidate["policy_version"] for d in shadow.differences} - {policy.version})
    foreign = (
        f"shadow decisions of policy {', '.join(others)} (not {policy.version}, the policy at "
        f"{stage}) do not count"
        if others
        else ""
    )
    if mine:
        blocked = [d for d in mine if _blocked(d)]
        evidence = (
            f"shadow: {len(mine)} difference(s) of {policy.version} in {shadow.runs_read} "
            f"run(s), {len(blocked)} allowed live that it would deny"
            + (f" ({', '.join(sorted({d.tool for d in blocked}))})" if blocked else "")
        )
        check = (
            f"the policy at {stage}, in shadow on {window} of production, denies nothing allowed"
        )
        return PreflightRow(check, not blocked, evidence + (f"; {foreign}" if foreign else ""))
    check = f"the policy at {stage}, replayed on {window} of production, denies nothing that ran"
    report = replay_policy(store, policy, since=window, workflow=workflow)
    lead = f"{foreign}; " if foreign else "no shadow decision of it recorded; "
    if report.calls == 0:
        return PreflightRow(
            check, False, f"{lead}replay: no recorded call in {window}: no evidence"
        )
    denied = report.denied_that_ran
    return PreflightRow(
        check,
        not denied,
        f"{lead}replay: {report.calls} recorded calls, {len(denied)} that ran would now be denied",
    )


def _rule(workflow: str, kind: str, threshold: float, days: int) -> Rule:
    """An alert rule held to for the promotion only (never stored)."""
    return Rule(
        rule_id=0,
        workflow=workflow,
        kind=kind,
        threshold=threshold,
        window_days=days,
        sinks=(),
        webhook_url=None,
        webhook_secret_env=None,
        renotify_minutes=0,
        enabled=True,
        created_at=0.0,
        created_by="promotion",
        updated_at=None,
        updated_by=None,
    )


def stability_row(
    store: Store,
    workflow: str,
    *,
    window_days: int = 7,
    budget_usd: float | None = None,
    max_success_drop_points: float = 5.0,
    max_unsafe_rise: int = 0,
    now: float | None = None,
) -> PreflightRow:
    """Production over the last ``window_days`` against the same before it (see the module)."""
    end = time.time() if now is None else now
    check = (
        f"production is stable over {window_days}d against the {window_days}d before: no "
        "success drop, no rise in unsafe attempts, within budget"
    )
    drift = CostLedger(store).drift(workflow, end, window_days=window_days)
    if drift.current.ended_runs == 0 or drift.previous.ended_runs == 0:
        return PreflightRow(
            check, False, f"not enough production: two {window_days}d windows with ended runs"
        )
    problems, held = [], []
    for kind, threshold in (
        ("success_rate_drop", max_success_drop_points),
        ("unsafe_attempts_rise", float(max_unsafe_rise)),
    ):
        firing = evaluate_rule(store, _rule(workflow, kind, threshold, window_days), end)
        if firing is not None:
            problems.append(firing.message)
        else:
            held.append(kind.replace("_", " ") + f" within {threshold:g}")
    spend = drift.current
    if budget_usd is None:
        problems.append("no budget to hold the spend to (--router with max_cost_per_task)")
    elif spend.cost_per_success is None:
        problems.append(f"no successful run in the last {window_days}d: the budget is not shown")
    elif spend.cost_per_success > budget_usd:
        problems.append(
            f"${spend.cost_per_success:.4f} per successful task, over the budget ${budget_usd:g}"
        )
    else:
        held.append(f"${spend.cost_per_success:.4f} per success within ${budget_usd:g}")
    if problems:
        return PreflightRow(check, False, "; ".join(problems))
    return PreflightRow(check, True, "; ".join(held))
