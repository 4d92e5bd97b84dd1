"""The preflight table: each row's go / no-go from its evidence, and the command's exits."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from opsgate.alerts import create_rule
from opsgate.autonomy import preflight, wilson_interval
from opsgate.cli.main import app
from opsgate.contracts import Toolbelt, tool
from opsgate.policy import load_policy
from opsgate.store import Store, cost_entries, eval_reports, open_store, runs

DAY = 86400.0
NOW = 1_800_000_000.0


@tool(scope="read", secrets=["CRM_READ"])
def get_order(order_id: str) -> dict[str, Any]:
    """Look up an order."""
    return {}


@tool(scope="write", impact="high", secrets=["PAY_WRITE"])
def refund(order_id: str, amount: float) -> str:
    """Refund money."""
    return "ok"


@tool(scope="draft")
def draft_reply(text: str) -> str:
    """Draft a reply."""
    return text


BELT = Toolbelt([get_order, refund, draft_reply])

READY = """
version: "1"
defaults:
  caps: {max_steps: 12, max_tool_calls: 20, max_identical_calls: 3, max_retries: 2,
         max_cost_usd: 0.5}
workflows:
  support:
    stage: autonomous_in_scope
    tools:
      get_order: {}
      refund: {approval_when: "args.amount > 50.0"}
      draft_reply: {}
"""


def _fill(store: Store, rate_now: float, rate_before: float, n: int = 40) -> None:
    """Runs of the last two weeks (and their cost), at these success rates."""
    with store.engine.begin() as conn:
        for week, rate in ((1, rate_now), (2, rate_before)):
            for i in range(n):
                at = NOW - (week - 1) * 7 * DAY - (i + 1) * 3600.0
                run_id = f"r{week}-{i}"
                ok = i < rate * n
                conn.execute(
                    runs.insert().values(
                        run_id=run_id,
                        workflow="support",
                        invoker="u",
                        agent_id="a",
                        policy_version="1",
                        status="completed" if ok else "escalated",
                        reason="",
                        cost_usd=0.01,
                        tool_calls=1,
                        started_at=at,
                        ended_at=at + 5,
                    )
                )
                conn.execute(
                    cost_entries.insert().values(
                        run_id=run_id,
                        workflow="support",
                        at=at,
                        kind="model",
                        role="act",
                        model="m",
                        tool=None,
                        input_tokens=10,
                        output_tokens=5,
                        cached_input_tokens=0,
                        cost_usd=0.01,
                        estimate=False,
                        latency_s=0.1,
                        cache_hit=False,
                        attempts=1,
                        ok=True,
                    )
                )


def _report(store: Store, suite: str, rate: float, passed: bool, at: float) -> None:
    with store.engine.begin() as conn:
        conn.execute(
            eval_reports.insert().values(
                report_id=f"{suite}-{at:.0f}",
                suite=suite,
                suite_version=1,
                model_router="r",
                trials=1,
                shard=None,
                started_at=at,
                ended_at=at + 1,
                success_rate=rate,
                cost_per_successful_task=0.01,
                unsafe_attempts=0,
                gate_passed=passed,
                created_at=at,
                document="{}",
            )
        )


def test_a_ready_workflow_passes_every_row(tmp_path: Path) -> None:
    policy = load_policy("p.yaml", BELT, text=READY)
    with open_store(f"sqlite:///{tmp_path / 'o.db'}") as store:
        _fill(store, rate_now=0.95, rate_before=0.95)
        create_rule(
            store,
            workflow="support",
            kind="cost_per_success_drift",
            threshold=0.25,
            created_by="lea",
        )
        for i in range(3):
            _report(store, "support_v1", 0.9, True, NOW - i * 100)
        table = preflight(
            policy, "support", store, budget_usd=0.05, suites=["support_v1"], now=NOW + 1
        )
    assert table.go, [(r.check, r.evidence) for r in table.rows if not r.go]
    assert len(table.rows) == 7
    assert table.as_dict()["go"] is True


def test_each_missing_piece_of_evidence_is_a_named_no_go(tmp_path: Path) -> None:
    risky = READY.replace(
        'refund: {approval_when: "args.amount > 50.0"}', "refund: {approval: never}"
    ).replace("max_retries: 2,", "")
    policy = load_policy("p.yaml", BELT, text=risky)
    with open_store(f"sqlite:///{tmp_path / 'o.db'}") as store:
        _fill(store, rate_now=0.6, rate_before=0.95)
        _report(store, "support_v1", 0.9, True, NOW - 10)
        _report(store, "support_v1", 0.5, False, NOW - 5)
        table = preflight(
            policy,
            "support",
            store,
            budget_usd=0.001,
            suites=["support_v1"],
            reports=2,
            now=NOW + 1,
        )
    failed = {r.check: r.evidence for r in table.rows if not r.go}
    assert not table.go and len(failed) == 6, failed
    evidence = " | ".join(failed.values())
    assert "no drift alert" in evidence  # no rule: the drift row fails before the figures
    assert "over budget" in evidence
    assert "support_v1" in evidence and "gate failed" in evidence
    assert "95% interval" in evidence
    assert "high-impact writes without approval: refund" in evidence
    assert "not set: max_retries" in evidence


def test_generic_tools_and_shared_secrets_are_not_least_privilege() -> None:
    @tool(scope="write")
    def run_shell(command: str) -> str:
        """Run any command."""
        return ""

    @tool(scope="read", secrets=["PAY_WRITE"])
    def balance(account: str) -> float:
        """Read a balance."""
        return 0.0

    belt = Toolbelt([get_order, refund, draft_reply, run_shell, balance])
    text = READY.replace(
        "      draft_reply: {}\n", "      draft_reply: {}\n      run_shell: {}\n      balance: {}\n"
    )
    table = preflight(load_policy("p.yaml", belt, text=text), "support", None)
    (row,) = [r for r in table.rows if r.check.startswith("least privilege")]
    assert not row.go
    assert "generic tools: run_shell" in row.evidence and "PAY_WRITE" in row.evidence


def test_wilson_interval() -> None:
    low, high = wilson_interval(90, 100)
    assert 0.82 < low < 0.83 and 0.94 < high < 0.95
    assert wilson_interval(0, 0) == (0.0, 1.0)


def test_the_command_exits_1_on_no_go_and_2_on_bad_input(tmp_path: Path) -> None:
    policy = tmp_path / "p.yaml"
    policy.write_text(READY)
    cli = CliRunner()
    args = ["preflight", "support", "--policy", str(policy), "--tools", __name__]
    out = cli.invoke(app, [*args, "--json", "--db", f"sqlite:///{tmp_path / 'none.db'}"])
    assert out.exit_code == 1, out.output
    data = json.loads(out.output)
    assert data["go"] is False and data["workflow"] == "support" and len(data["rows"]) == 7
    assert (
        cli.invoke(
            app, ["preflight", "nope", "--policy", str(policy), "--tools", __name__]
        ).exit_code
        == 2
    )
    assert cli.invoke(app, [*args, "--min-success", "2"]).exit_code == 2


def test_no_database_is_no_evidence_not_a_crash() -> None:
    table = preflight(load_policy("p.yaml", BELT, text=READY), "support", None, now=time.time())
    assert not table.go
    assert sum(r.go for r in table.rows) == 3  # approvals, privilege, caps hold on the policy


def test_a_drift_alert_on_and_a_drop_in_success_is_still_no_go(tmp_path: Path) -> None:
    policy = load_policy("p.yaml", BELT, text=READY)
    with open_store(f"sqlite:///{tmp_path / 'o.db'}") as store:
        _fill(store, rate_now=0.6, rate_before=0.95)
        create_rule(
            store, workflow="support", kind="success_rate_drop", threshold=5, created_by="lea"
        )
        table = preflight(policy, "support", store, budget_usd=0.05, now=NOW + 1)
    (row,) = [r for r in table.rows if r.check.startswith("a drift alert")]
    assert not row.go and "success rate fell" in row.evidence
