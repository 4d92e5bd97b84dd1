"""A firing alert whose rule has ``demote_to`` demotes its workflow: as any demotion (a stage
row, an audited event), by ``alert:<rule id>`` with the firing as evidence, once however often
the check runs; `opsgate alerts add --demote-to`, `alerts list` and `alerts check --policy`."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from opsgate.alerts import create_rule, evaluate, get_rule, update_rule
from opsgate.audit import AuditLog, AuditRecorder, Signer
from opsgate.autonomy import current_stage, demote_on_firings, stage_history
from opsgate.cli.main import app
from opsgate.errors import ConfigError
from opsgate.policy import load_policy
from opsgate.recorder import EventType
from opsgate.store import Store, open_store
from tests.alerts.conftest import Recorder
from tests.conftest import BASE_POLICY, BELT

runner = CliRunner(env={"COLUMNS": "200", "NO_COLOR": "1"})
POLICY = BASE_POLICY % {"stage": "autonomous_in_scope"}


def _backlog(store: Store, workflow: str = "wf") -> None:
    """A request of ``workflow`` pending for an hour: an `approval_backlog` rule past 30 fires."""
    Recorder(store).approval(workflow, time.time() - 3600, expires_at=time.time() + 3600)


def test_a_firing_rule_demotes_once_audited_with_the_firing_as_evidence(store: Store) -> None:
    policy = load_policy("p.yaml", BELT, text=POLICY)
    rule = create_rule(
        store,
        workflow="wf",
        kind="approval_backlog",
        threshold=30,
        created_by="ana",
        demote_to="draft",
    )
    quiet = create_rule(  # fires too, but only notifies
        store, workflow="wf", kind="approval_backlog", threshold=30, created_by="ana"
    )
    assert get_rule(store, rule.rule_id).demote_to == "draft" and quiet.demote_to is None
    _backlog(store)
    recorder = AuditRecorder(AuditLog(store, Signer.generate()))
    try:
        firings = evaluate(store)
        assert len(firings) == 2
        (done,) = demote_on_firings(policy, store, recorder, firings)
        assert (done.outcome, done.previous, done.demote_to) == (
            "demoted",
            "autonomous_in_scope",
            "draft",
        )
        assert current_stage(store, policy, "wf") == "draft"
        (change,) = stage_history(store, "wf")
        assert change.actor == f"alert:{rule.rule_id}" and "fired" in change.reason
        assert change.evidence[0]["alert"]["rule_id"] == rule.rule_id
        assert change.policy_version == policy.with_stage("wf", "draft").version
        # the rule keeps firing: each later check finds the workflow demoted already
        (again,) = demote_on_firings(policy, store, recorder, evaluate(store))
        assert again.outcome == "already" and len(stage_history(store, "wf")) == 1
        recorder.flush()
        (event,) = [r for r in recorder.log.records() if r.type == EventType.STAGE_CHANGED]
        assert event.data["actor"] == f"alert:{rule.rule_id}" and event.data["stage"] == "draft"
    finally:
        recorder.close()


def test_demote_to_is_checked_and_can_be_changed(sqlite_store: Store) -> None:
    for bad, said in (("drafty", "no autonomy stage `drafty`"), ("autonomous_in_scope", "highest")):
        with pytest.raises(ConfigError, match=said):
            create_rule(
                sqlite_store,
                workflow="wf",
                kind="approval_backlog",
                threshold=30,
                created_by="ana",
                demote_to=bad,
            )
    rule = create_rule(
        sqlite_store, workflow="wf", kind="approval_backlog", threshold=30, created_by="ana"
    )
    changed = update_rule(sqlite_store, rule.rule_id, updated_by="lea", demote_to="read_only")
    assert changed.demote_to == "read_only" and changed.as_dict()["demote_to"] == "read_only"
    cleared = update_rule(sqlite_store, rule.rule_id, updated_by="lea", demote_to=None)
    assert cleared.demote_to is None


def test_the_commands(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'o.db'}"
    path = tmp_path / "p.yaml"
    path.write_text(POLICY)
    policy = ["--policy", str(path), "--tools", "tests.conftest"]
    base = ["--as", "ana", "--db", db]
    bad = runner.invoke(
        app,
        ["alerts", "add", "wf", "--kind", "approval_backlog", "--threshold", "30",
         "--demote-to", "readonly", *base],
    )  # fmt: skip
    assert bad.exit_code == 2 and "no autonomy stage `readonly`" in bad.output
    added = runner.invoke(
        app,
        ["alerts", "add", "wf", "--kind", "approval_backlog", "--threshold", "30",
         "--demote-to", "read_only", *base],
    )  # fmt: skip
    assert added.exit_code == 0 and "demotes to read_only when it fires" in added.output
    listed = runner.invoke(app, ["alerts", "list", "--db", db])
    assert "read_only" in listed.output
    as_json = runner.invoke(app, ["alerts", "list", "--db", db, "--json"])
    assert json.loads(as_json.stdout)["rules"][0]["demote_to"] == "read_only"
    with open_store(db) as store:
        _backlog(store)
    # without the policy, nothing is demoted, and it says so
    unsure = runner.invoke(app, ["alerts", "check", "--db", db, "--no-notify"])
    assert unsure.exit_code == 1 and "no --policy was given: not demoted" in unsure.output
    bad_policy = runner.invoke(app, ["alerts", "check", "--db", db, "--policy", "nope.yaml"])
    assert bad_policy.exit_code == 2 and "Traceback" not in bad_policy.output
    checked = runner.invoke(app, ["alerts", "check", "--db", db, *policy])
    assert checked.exit_code == 1, checked.output
    assert "demoted autonomous_in_scope → read_only (actor alert:1); audited" in checked.output
    again = runner.invoke(app, ["alerts", "check", "--db", db, "--json", *policy])
    (demoted,) = json.loads(again.stdout)["demoted"]
    assert demoted["outcome"] == "already" and demoted["from"] == "read_only"
    status = runner.invoke(app, ["autonomy", "status", *policy, "--db", db])
    assert "read_only" in status.output and "alert:1" in status.output
    with open_store(db) as store:
        assert len(stage_history(store, "wf")) == 1
