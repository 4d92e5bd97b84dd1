"""Each kind fires past its threshold and stays quiet below it, on rows in a real store
(SQLite and PostgreSQL); only production runs of the rule's workflow count."""

from __future__ import annotations

from opsgate.alerts import create_rule, delete_rule, evaluate, update_rule
from opsgate.store import Store
from tests.alerts.conftest import DAY, EARLIER, NOW, RECENT, Recorder


def _rule(store: Store, kind: str, threshold: float, workflow: str = "support") -> int:
    return create_rule(
        store, workflow=workflow, kind=kind, threshold=threshold, created_by="test"
    ).rule_id


def _fired(store: Store) -> dict[int, float]:
    return {f.rule_id: f.change for f in evaluate(store, now=NOW)}


def test_success_rate_drop(store: Store, rec: Recorder) -> None:
    for _ in range(4):
        rec.run("support", EARLIER, "completed")
    for status in ("completed", "completed", "escalated", "failed"):
        rec.run("support", RECENT, status)
    rec.run("other", RECENT, "failed")
    loud, quiet = _rule(store, "success_rate_drop", 10), _rule(store, "success_rate_drop", 60)
    fired = _fired(store)
    assert fired[loud] == -50.0 and quiet not in fired
    (firing,) = [f for f in evaluate(store, now=NOW) if f.rule_id == loud]
    assert firing.previous == 1.0 and firing.current == 0.5 and "support" in firing.message


def test_cost_per_success_drift(store: Store, rec: Recorder) -> None:
    for _ in range(2):
        rec.run("support", EARLIER, "completed", cost=0.5)
        rec.run("support", RECENT, "completed", cost=1.0)
    rec.run("support", RECENT, "completed", cost=50.0, purpose="eval")  # not production
    loud, quiet = (
        _rule(store, "cost_per_success_drift", 0.5),
        _rule(store, "cost_per_success_drift", 1.5),
    )
    fired = _fired(store)
    assert fired[loud] == 1.0 and quiet not in fired


def test_escalation_rate_rise(store: Store, rec: Recorder) -> None:
    for _ in range(4):
        rec.run("support", EARLIER, "completed")
    for status in ("completed", "completed", "escalated", "escalated"):
        rec.run("support", RECENT, status)
    rec.run("support", RECENT, "running")  # not ended: not counted
    loud, quiet = _rule(store, "escalation_rate_rise", 20), _rule(store, "escalation_rate_rise", 60)
    fired = _fired(store)
    assert fired[loud] == 50.0 and quiet not in fired


def test_unsafe_attempts_rise(store: Store, rec: Recorder) -> None:
    rec.run("support", EARLIER, reasons=("untrusted_derivation", "allowed"))
    run = rec.run(
        "support",
        RECENT,
        "running",
        reasons=("untrusted_derivation", "rule_denied", "arg_constraint", "approval_required"),
    )
    rec.decision(run, 5, RECENT + 10, "c0", "untrusted_derivation")  # decided again: one call
    rec.run("support", RECENT, reasons=("tool_not_allowed",))
    rec.run("support", RECENT, reasons=("rule_denied",) * 3, purpose="eval")  # not production
    rec.run("other", RECENT, reasons=("rule_denied",) * 3)
    rec.run("support", NOW - 20 * DAY, reasons=("rule_denied",) * 3)  # before both windows
    loud, quiet = _rule(store, "unsafe_attempts_rise", 2), _rule(store, "unsafe_attempts_rise", 3)
    fired = _fired(store)
    assert fired[loud] == 3.0 and quiet not in fired  # 4 now against 1 before
    (firing,) = [f for f in evaluate(store, now=NOW) if f.rule_id == loud]
    assert (firing.previous, firing.current) == (1.0, 4.0)


def test_approval_backlog(store: Store, rec: Recorder) -> None:
    rec.approval("support", NOW - 45 * 60)
    rec.approval("support", NOW - 5 * 60)  # young
    rec.approval("support", NOW - 3 * 3600, expires_at=NOW - 60)  # expired: no longer waiting
    rec.approval("support", NOW - 3 * 3600, status="approved")
    rec.approval("other", NOW - 3 * 3600)
    loud, quiet = _rule(store, "approval_backlog", 30), _rule(store, "approval_backlog", 60)
    fired = {f.rule_id: f for f in evaluate(store, now=NOW)}
    assert quiet not in fired
    assert fired[loud].current == 1 and round(fired[loud].change) == 45


def test_nothing_to_measure_is_quiet_and_disabled_or_deleted_rules_never_fire(
    store: Store, rec: Recorder
) -> None:
    for kind in ("success_rate_drop", "cost_per_success_drift", "escalation_rate_rise"):
        _rule(store, kind, 0, workflow="nothing-yet")
    _rule(store, "unsafe_attempts_rise", 0, workflow="nothing-yet")
    assert evaluate(store, now=NOW) == []
    rec.approval("support", NOW - 3 * 3600)
    off = _rule(store, "approval_backlog", 30)
    gone = _rule(store, "approval_backlog", 30)
    on = _rule(store, "approval_backlog", 30)
    update_rule(store, off, updated_by="test", enabled=False)
    delete_rule(store, gone, deleted_by="test")
    assert [f.rule_id for f in evaluate(store, now=NOW)] == [on]
