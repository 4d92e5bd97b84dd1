"""`shadow_report` and `opsgate policy shadow-report` over ``shadow_decision`` events written
straight to the audit trail (as the gateway in shadow mode records them)."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from typer.testing import CliRunner

from opsgate.audit import AuditLog, Signer
from opsgate.cli.main import app
from opsgate.errors import SuiteError
from opsgate.recorder import Event, EventType
from opsgate.replay import SHADOW_EVENT, shadow_report
from opsgate.store import Store, open_store

runner = CliRunner(
    env={"COLUMNS": "200", "NO_COLOR": "1", "TTY_COMPATIBLE": "0", "FORCE_COLOR": None}
)
HOSTILE = "[/] [bold red]pwned \x1b[2J\u202e"


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    store = open_store(db_url)
    yield store
    store.close()


def _shadow(tool: str, live: str, effect: str, reason: str = "arg_constraint") -> dict[str, Any]:
    return {
        "call_id": uuid.uuid4().hex[:16],
        "tool": tool,
        "effect": effect,
        "reason": reason,
        "rule": f"workflows.wf.tools.{tool}",
        "message": f"`{tool}` {reason}",
        "policy_version": "candidate-2",
        "live_effect": live,
        "live_reason": "allowed" if live == "allow" else "approval_required",
        "live_policy_version": "live-1",
    }


def _run(store: Store, at: float, shadows: list[dict[str, Any]], **started: Any) -> str:
    """A run with a decision and, after it, each shadow event given."""
    run_id = uuid.uuid4().hex
    events: list[tuple[str, dict[str, Any]]] = [
        (EventType.RUN_STARTED, {"workflow": "wf", "invoker": "ana", "agent_id": "bot",
                                 "policy_version": "live-1", "request": "hi", **started}),
    ]  # fmt: skip
    for data in shadows:
        events.append((EventType.DECISION, {"call_id": data["call_id"], "tool": data["tool"]}))
        events.append((SHADOW_EVENT, data))
    events.append((EventType.RUN_ENDED, {"status": "completed"}))
    log = AuditLog(store, Signer.generate())
    try:
        log.append(
            [Event(t, run_id, n, at + n / 1000, d) for n, (t, d) in enumerate(events)]  # type: ignore[arg-type]
        )
    finally:
        log.close()
    return run_id


def test_the_report_counts_differences_per_tool_and_change(store: Store) -> None:
    now = time.time()
    old = _run(store, now - 60, [_shadow("pay", "allow", "deny")])
    new = _run(
        store,
        now - 10,
        [_shadow("pay", "needs_approval", "deny"), _shadow("send", "allow", "needs_approval")],
    )
    _run(store, now - 5, [])  # agreed throughout
    _run(store, now - 3, [_shadow("pay", "allow", "deny")], purpose="eval")
    _run(store, now - 2, [_shadow("pay", "allow", "deny")], workflow="other")
    _run(store, now - 86400 * 9, [_shadow("pay", "allow", "deny")])  # before the window
    report = shadow_report(store, since="7d", workflow="wf")
    assert report.runs_read == 3
    assert [r.run_id for r in report.runs] == [new, old]  # newest first
    assert [r.differences for r in report.runs] == [2, 1]
    assert report.by_tool == {"pay": 2, "send": 1}
    assert report.by_change == {
        "allow -> deny": 1,
        "allow -> needs_approval": 1,
        "needs_approval -> deny": 1,
    }
    assert [d.run_id for d in report.differences] == [new, new, old]
    assert report.candidates == ["candidate-2"]
    assert shadow_report(store, since="7d").by_tool == {"pay": 3, "send": 1}
    assert shadow_report(store, since="7d", include_eval=True).by_tool == {"pay": 4, "send": 1}
    document = report.as_dict()
    assert document["kind"] == "opsgate.shadow_report" and document["summary"]["differences"] == 3
    difference = document["differences"][-1]
    assert difference["live"] == {
        "effect": "allow",
        "reason": "allowed",
        "policy_version": "live-1",
    }
    assert set(difference["candidate"]) == {"effect", "reason", "rule", "message", "policy_version"}
    with pytest.raises(SuiteError):
        shadow_report(store, since="soon")


def test_the_command_prints_the_report_and_json(tmp_path: Any) -> None:
    url = f"sqlite:///{tmp_path / 'opsgate.db'}"
    store = open_store(url)
    try:
        _run(
            store,
            time.time(),
            [_shadow("pay", "allow", "deny"), _shadow(HOSTILE, "allow", HOSTILE)],
        )
    finally:
        store.close()
    result = runner.invoke(app, ["policy", "shadow-report", "--db", url, "--since", "1d"])
    output = result.output
    assert result.exit_code == 0, output
    assert "2 shadow difference(s) in 1 of 1 run(s)" in output and "allow -> deny" in output
    assert "[/] [bold red]pwned" in output and "\u241b[2J" in output
    assert "\x1b" not in output and "\u202e" not in output and "Traceback" not in output
    result = runner.invoke(app, ["policy", "shadow-report", "--db", url, "--json"])
    document = json.loads(result.output)
    assert result.exit_code == 0 and document["summary"]["by_tool"] == {"pay": 1, HOSTILE: 1}
    for args in (["--workflow", "other"], ["--db", f"sqlite:///{tmp_path / 'none.db'}"]):
        result = runner.invoke(app, ["policy", "shadow-report", "--db", url, *args])
        assert result.exit_code == 0 and "no shadow differences" in result.output
    result = runner.invoke(app, ["policy", "shadow-report", "--db", url, "--since", "x"])
    assert result.exit_code == 2 and "--since" in result.output
