"""Autonomy stages kept in the store: promoted one stage at a time on evidence (refused,
naming what is missing, otherwise), demoted at once, every change audited, and read by the
gate at its next call."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from opsgate.audit import AuditLog, AuditRecorder, Signer
from opsgate.autonomy import (
    PromotionRefused,
    current_stage,
    demote,
    promote,
    stage_history,
)
from opsgate.cli.main import app
from opsgate.errors import ConfigError
from opsgate.gateway import Gateway, MappingSecretStore, StoreStageSource
from opsgate.policy import Reason, load_policy
from opsgate.recorder import EventType
from opsgate.store import Store, open_store
from tests.conftest import BASE_POLICY, BELT


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with open_store(f"sqlite:///{tmp_path / 'o.db'}") as s:
        yield s


@pytest.fixture
def recorder(store: Store) -> Iterator[AuditRecorder]:
    rec = AuditRecorder(AuditLog(store, Signer.generate()))
    yield rec
    rec.close()


def _policy(stage: str) -> Any:
    return load_policy("p.yaml", BELT, text=BASE_POLICY % {"stage": stage})


async def test_a_demotion_is_immediate_audited_and_read_by_the_gate_at_its_next_call(
    store: Store, recorder: AuditRecorder
) -> None:
    policy = _policy("autonomous_in_scope")
    stages = StoreStageSource(store, poll_s=60)
    gateway = Gateway(BELT, policy, stages=stages, secrets=MappingSecretStore({"PAY_KEY": "k"}))
    run = gateway.start_run("wf", invoker="ana", agent_id="bot", request="refund 20 on ORD-1")
    assert (await gateway.call(run, "note", {"ticket": "T-1", "text": "x"})).ok
    change = demote(
        policy, "wf", store, recorder, to="draft", actor="lea", reason="refund complaints"
    )
    assert (change.previous, change.stage, change.actor) == ("autonomous_in_scope", "draft", "lea")
    assert current_stage(store, policy, "wf") == "draft"
    stages.refresh()  # the poll, now
    denied = await gateway.call(run, "note", {"ticket": "T-2", "text": "y"})
    assert denied.decision.reason is Reason.SCOPE_ABOVE_STAGE
    assert denied.decision.policy_version == change.policy_version != policy.version
    assert (await gateway.call(run, "draft", {"text": "ok"})).ok
    recorder.flush()
    (event,) = [r for r in recorder.log.records() if r.type == EventType.STAGE_CHANGED]
    assert event.data["actor"] == "lea" and event.data["stage"] == "draft"
    stages.close()
    gateway.close()


def test_promotion_refuses_without_evidence_and_one_stage_at_a_time(
    store: Store, recorder: AuditRecorder
) -> None:
    policy = _policy("draft")
    with pytest.raises(PromotionRefused) as refused:
        promote(policy, "wf", store, recorder, actor="lea")
    failing = [r.check for r in refused.value.rows if not r.go]
    assert any("budget" in c for c in failing) and any("replayed" in c for c in failing)
    assert stage_history(store, "wf") == []  # nothing changed
    with pytest.raises(ConfigError, match="one stage a time"):
        promote(policy, "wf", store, recorder, actor="lea", to="autonomous_in_scope")
    with pytest.raises(ConfigError, match="unknown stage"):
        promote(policy, "wf", store, recorder, actor="lea", to="autonomus")
    with pytest.raises(ConfigError, match="last stage"):
        promote(_policy("autonomous_in_scope"), "wf", store, recorder, actor="lea")
    with pytest.raises(ConfigError, match="not a lower stage"):
        demote(policy, "wf", store, recorder, to="autonomous_in_scope", actor="l", reason="r")


# a promotion on its evidence: tests/autonomy/test_promotion_evidence.py


def test_the_commands(tmp_path: Path, store: Store) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(BASE_POLICY % {"stage": "autonomous_in_scope"})
    url = store.engine.url.render_as_string(hide_password=False)
    base = ["--policy", str(path), "--tools", "tests.conftest", "--db", url]
    cli = CliRunner()
    out = cli.invoke(
        app,
        [
            "autonomy",
            "demote",
            "wf",
            "--to",
            "draft",
            "--as",
            "lea",
            "--reason",
            "complaints",
            *base,
        ],
    )
    assert out.exit_code == 0, out.output
    status = cli.invoke(app, ["autonomy", "status", *base])
    assert status.exit_code == 0 and "draft" in status.output and "lea" in status.output
    refused = cli.invoke(app, ["autonomy", "promote", "wf", "--as", "lea", *base])
    assert refused.exit_code == 1 and "no-go" in refused.output
    bad = cli.invoke(
        app, ["autonomy", "demote", "wf", "--to", "drafty", "--as", "l", "--reason", "r", *base]
    )
    assert bad.exit_code == 2 and "unknown stage" in bad.output
