"""The evidence a promotion needs beyond the preflight, each row about the policy being
promoted: the eval gate on the latest report (made under that policy, calling every tool of
the new stage), its shadow report when it ran in shadow (else its replay), and a stable
production window. Evidence made under another policy version is named and does not count;
a refusal changes nothing."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from opsgate import autonomy
from opsgate.audit import AuditLog, AuditRecorder, Signer
from opsgate.autonomy import (
    PreflightRow,
    PromotionRefused,
    promote,
    promotion_evidence,
    stage_history,
)
from opsgate.cli.main import app
from opsgate.evals import EvalStore, TaskResult, build_report
from opsgate.policy import CompiledPolicy, load_policy
from opsgate.store import Store, open_store
from tests.alerts.conftest import Recorder
from tests.conftest import BASE_POLICY, BELT
from tests.replay._record import STRICTER, record_runs
from tests.replay.test_shadow import _run, _shadow

DAY = 86_400.0
SUITE = "promotion-suite"  # no committed baseline of that name
ALL_TOOLS = ["lookup", "read_mail", "draft", "note", "pay", "send", "slow"]


def _policy(stage: str) -> CompiledPolicy:
    return load_policy("p.yaml", BELT, text=BASE_POLICY % {"stage": stage})


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with open_store(f"sqlite:///{tmp_path / 'o.db'}") as s:
        yield s


@pytest.fixture
def recorder(store: Store) -> Iterator[AuditRecorder]:
    rec = AuditRecorder(AuditLog(store, Signer.generate()))
    yield rec
    rec.close()


@pytest.fixture
def passing_preflight(monkeypatch: pytest.MonkeyPatch) -> None:
    """The preflight rows hold (their own tests are in test_preflight.py)."""

    def passing(*_a: Any, **_k: Any) -> Any:
        rows = [PreflightRow("every preflight row", True, "a test's evidence")]
        return autonomy.Preflight("wf", "autonomous_in_scope", "v", rows)

    monkeypatch.setattr("opsgate.autonomy._stages.preflight", passing)


def _report(store: Store, run_ids: list[str], tools: list[str] = ALL_TOOLS) -> str:
    """A passing report of SUITE whose trials ran as ``run_ids`` and called ``tools``."""
    results = [
        TaskResult(
            task_id=f"t{i}",
            trial=0,
            tags=[],
            passed=True,
            failures=[],
            status="completed",
            reason="done",
            output="ok",
            calls=[{"tool": t, "args": {}, "reason": "allowed", "executed": True} for t in tools],
            cost_usd=0.001,
            latency_s=1.0,
            run_id=run_id,
        )
        for i, run_id in enumerate(run_ids)
    ]
    now = time.time()
    document = build_report(
        SUITE, 1, results, trials=1, model_router="r.yaml", started_at=now, ended_at=now + 1,
        thresholds={"min_success_rate": 0.8},
    )  # fmt: skip
    return EvalStore(store).save_report(document)


def _stable_history(store: Store) -> None:
    """A previous window that was no better (success, unsafe attempts) than the current one,
    and current spend: the production window is stable."""
    rec = Recorder(store)
    try:
        earlier = time.time() - 9 * DAY
        for _ in range(4):
            rec.run("wf", earlier, "failed", cost=0.01, reasons=("arg_constraint",) * 5)
        for _ in range(6):
            rec.run("wf", time.time() - DAY, "completed", cost=0.01)
    finally:
        rec.log.close()


def _rows(rows: list[PreflightRow]) -> dict[str, PreflightRow]:
    keys = {"eval report": "eval", "shadow": "policy", "replayed": "policy", "stable": "stable"}
    out = {}
    for row in rows:
        for needle, key in keys.items():
            if needle in row.check:
                out[key] = row
    return out


async def test_a_promotion_on_the_evidence_of_the_promoted_policy(
    store: Store, recorder: AuditRecorder, passing_preflight: None
) -> None:
    recorded = await record_runs(store)  # under the policy at autonomous_in_scope
    _report(store, list(recorded.runs.values()))
    _stable_history(store)
    policy = _policy("write_with_approval")
    change = promote(policy, "wf", store, recorder, actor="lea", suites=[SUITE], budget_usd=1.0)
    assert (change.previous, change.stage) == ("write_with_approval", "autonomous_in_scope")
    rows = _rows([PreflightRow(**r) for r in change.evidence])
    assert rows["eval"].go and "gate passed, 7 tool(s) of autonomous_in_scope called" in (
        rows["eval"].evidence
    )
    # no shadow of it ran: the replay was the evidence, and the row says so
    assert "no shadow decision of it recorded; replay:" in rows["policy"].evidence
    assert rows["stable"].go, rows["stable"].evidence
    assert [c.stage for c in stage_history(store, "wf")] == ["autonomous_in_scope"]


async def test_a_report_made_under_another_policy_version_does_not_count(
    store: Store, recorder: AuditRecorder, passing_preflight: None
) -> None:
    other = load_policy("strict.yaml", BELT, text=STRICTER)
    recorded = await record_runs(store, other)
    report_id = _report(store, list(recorded.runs.values()))
    _stable_history(store)
    policy = _policy("write_with_approval")
    promoted = policy.with_stage("wf", "autonomous_in_scope").version
    with pytest.raises(PromotionRefused) as refused:
        promote(policy, "wf", store, recorder, actor="lea", suites=[SUITE], budget_usd=1.0)
    row = _rows(refused.value.rows)["eval"]
    assert not row.go
    assert f"report {report_id[:8]} was made under policy {other.version}, not {promoted}" in (
        row.evidence
    )
    assert stage_history(store, "wf") == []  # nothing changed


async def test_the_report_must_call_every_tool_of_the_new_stage(
    store: Store, passing_preflight: None
) -> None:
    recorded = await record_runs(store)
    _report(store, list(recorded.runs.values()), tools=["lookup", "pay"])
    policy = _policy("write_with_approval")
    rows = _rows(
        promotion_evidence(policy, "wf", store, "autonomous_in_scope", suites=[SUITE], budget_usd=1)
    )
    assert not rows["eval"].go
    assert "no task called read_mail, draft, note, send, slow" in rows["eval"].evidence
    none = _rows(promotion_evidence(_policy("draft"), "wf", store, "write_with_approval"))
    assert not none["eval"].go and "no suite named" in none["eval"].evidence


def test_the_shadow_report_of_the_promoted_policy_is_the_evidence_when_there_is_one(
    store: Store, passing_preflight: None
) -> None:
    policy = _policy("write_with_approval")
    promoted = policy.with_stage("wf", "autonomous_in_scope").version
    now = time.time()
    mine = _shadow("note", "needs_approval", "allow") | {"policy_version": promoted}
    _run(store, now - 60, [mine])
    rows = _rows(promotion_evidence(policy, "wf", store, "autonomous_in_scope"))
    assert rows["policy"].go and "in shadow" in rows["policy"].check
    assert f"shadow: 1 difference(s) of {promoted}" in rows["policy"].evidence
    # it would deny a call the live policy let run: not clean
    blocked = _shadow("pay", "allow", "deny") | {"policy_version": promoted}
    _run(store, now - 30, [blocked])
    rows = _rows(promotion_evidence(policy, "wf", store, "autonomous_in_scope"))
    assert not rows["policy"].go and "1 allowed live that it would deny (pay)" in (
        rows["policy"].evidence
    )


def test_shadow_decisions_of_another_candidate_are_named_and_replay_is_used(
    store: Store, passing_preflight: None
) -> None:
    policy = _policy("write_with_approval")
    promoted = policy.with_stage("wf", "autonomous_in_scope").version
    _run(store, time.time() - 60, [_shadow("pay", "allow", "deny")])  # candidate-2
    rows = _rows(promotion_evidence(policy, "wf", store, "autonomous_in_scope"))
    assert "replayed" in rows["policy"].check
    assert f"shadow decisions of policy candidate-2 (not {promoted}" in rows["policy"].evidence
    assert "do not count; replay:" in rows["policy"].evidence


def test_an_unstable_window_refuses(store: Store, passing_preflight: None) -> None:
    rec = Recorder(store)
    try:
        for _ in range(5):
            rec.run("wf", time.time() - 9 * DAY, "completed", cost=0.01)
            rec.run("wf", time.time() - DAY, "failed", cost=0.01, reasons=("rule_denied",))
        rec.run("wf", time.time() - DAY, "completed", cost=0.01)
    finally:
        rec.log.close()
    rows = _rows(
        promotion_evidence(_policy("draft"), "wf", store, "write_with_approval", budget_usd=0.001)
    )
    row = rows["stable"]
    assert not row.go
    assert "success" in row.evidence and "unsafe attempt" in row.evidence
    assert "over the budget $0.001" in row.evidence
    empty = _rows(promotion_evidence(_policy("draft"), "wf", store, "write_with_approval",
                                     now=time.time() + 60 * DAY))  # fmt: skip
    assert "not enough production" in empty["stable"].evidence


async def test_the_command_names_the_missing_evidence_and_changes_nothing(
    tmp_path: Path, store: Store
) -> None:
    other = load_policy("strict.yaml", BELT, text=STRICTER)
    recorded = await record_runs(store, other)
    report_id = _report(store, list(recorded.runs.values()))
    path = tmp_path / "p.yaml"
    path.write_text(BASE_POLICY % {"stage": "write_with_approval"})
    url = store.engine.url.render_as_string(hide_password=False)
    out = CliRunner(env={"COLUMNS": "400", "NO_COLOR": "1"}).invoke(
        app,
        ["autonomy", "promote", "wf", "--as", "lea", "--suite", SUITE, "--policy", str(path),
         "--tools", "tests.conftest", "--db", url],
    )  # fmt: skip
    assert out.exit_code == 1, out.output
    assert "promotion refused" in out.output and f"report {report_id[:8]} was made" in out.output
    assert stage_history(store, "wf") == []
