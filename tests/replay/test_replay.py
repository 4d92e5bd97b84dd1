"""`replay_policy` on a store filled by real gateway runs: the same policy reproduces every
recorded decision; a stricter, a looser or a history-reading policy lists what changes."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from opsgate.audit import AuditLog
from opsgate.errors import PolicyError, SuiteError
from opsgate.replay import ReplayReport, replay_policy
from opsgate.store import Store, open_store
from tests.replay._record import (
    BUDGET,
    GUARDED,
    LIVE,
    LOOSER,
    PLANNED,
    STRICTER,
    Recorded,
    policy,
    record_runs,
)


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    store = open_store(db_url)
    yield store
    store.close()


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Store, Recorded]]:
    """One SQLite store of the scenarios, shared by the tests that only read it."""
    import asyncio

    path = tmp_path_factory.mktemp("replay") / "opsgate.db"
    store = open_store(f"sqlite:///{path}")
    done = asyncio.run(record_runs(store))
    yield store, done
    store.close()


def _changes(report: ReplayReport) -> list[tuple[str, str, str, str, str]]:
    return [
        (c.tool, c.change, c.before["reason"], c.after["reason"], "ran" if c.ran else "-")
        for c in report.changes
    ]


async def test_replaying_the_live_policy_reproduces_every_recorded_decision(store: Store) -> None:
    done = await record_runs(store)
    report = replay_policy(store, policy(), since="1h")
    # every production run, every decision (the eval trial and a call after a run's end aside)
    assert report.runs == len(done.runs) - 1
    assert report.calls == done.decisions - 1
    # caps, duplicate writes, approvals, provenance and contract refusals all come out the
    # same; the one change is a call whose argument the trail keeps masked (an e-mail)
    ((tool, change, before, after, ran),) = _changes(report)
    assert (tool, change, before, after, ran) == (
        "send",
        "newly_denied",
        "allowed",
        "arg_constraint",
        "ran",
    )
    (masked,) = report.changes
    assert masked.masked and masked.run_id == done.runs["mail"]
    assert report.masked_calls == 1
    assert report.denied_that_ran == () and report.masked_denied_that_ran == (masked,)
    assert report.skipped_workflows == {} and report.relabelled_results == 0


async def test_history_ordering_and_plans_are_reproduced_too(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'opsgate.db'}")
    try:
        guarded = policy(GUARDED)
        done = await record_runs(store, guarded)
        report = replay_policy(store, guarded, since="1h")
        reasons = [
            r.data["reason"]
            for r in AuditLog(store).records()
            if r.type == "decision" and r.run_id != done.runs["trial"]
        ]
    finally:
        store.close()
    # the record holds what these rules decide, and replay decides it again
    assert {"rule_denied", "order_violation", "outside_plan"} <= set(reasons)
    assert report.calls == len(reasons)
    assert [(c.tool, c.masked) for c in report.changes] == [("send", True)]


def test_a_stricter_ceiling_lists_the_calls_it_would_now_deny(
    recorded: tuple[Store, Recorded],
) -> None:
    store, done = recorded
    report = replay_policy(store, policy(STRICTER), since="1h")
    assert report.policy_version == policy(STRICTER).version
    assert sorted(_changes(report))[:3] == [
        ("pay", "newly_denied", "approval_required", "arg_constraint", "-"),  # a person said no
        ("pay", "newly_denied", "approval_required", "arg_constraint", "ran"),  # approved, ran
        ("pay", "reason_changed", "untrusted_derivation", "arg_constraint", "-"),
    ]
    (ran,) = report.denied_that_ran
    assert ran.run_id == done.runs["approvals"] and ran.after["message"].endswith("not 80")
    assert ran.after["rule"] == "workflows.wf.tools.pay.constraints.amount.max"
    assert report.counts["newly_denied"] == 3  # the masked e-mail too
    assert {"change": "newly_denied", "tool": "pay", "reason": "arg_constraint", "calls": 2} in (
        report.groups()
    )


def test_a_looser_approval_rule_lists_the_calls_it_would_now_allow(
    recorded: tuple[Store, Recorded],
) -> None:
    store, _ = recorded
    report = replay_policy(store, policy(LOOSER), since="1h")
    allowed = [c for c in report.changes if c.change == "newly_allowed"]
    assert sorted((c.before["effect"], c.after["effect"], c.ran) for c in allowed) == [
        ("needs_approval", "allow", False),  # the one a person had denied
        ("needs_approval", "allow", True),
    ]
    assert report.denied_that_ran == ()


def test_history_conditions_read_the_calls_that_ran_before(
    recorded: tuple[Store, Recorded],
) -> None:
    store, done = recorded
    report = replay_policy(store, policy(BUDGET), since="1h")
    # 80 then 90 on ORD-2: the second crosses 100 only because the first ran
    budget = {c.run_id: c for c in report.changes if c.after["reason"] == "rule_denied"}
    approvals = budget.pop(done.runs["approvals"])
    assert (approvals.before["effect"], approvals.after["message"]) == (
        "needs_approval",
        "rule `refund-budget`: `run.sum('pay', 'amount') + args.amount > 100.0`",
    )
    assert "refund-budget" in approvals.after["rule"]
    # and 150 alone, asked for by an e-mail: denied by the rule before provenance is asked
    assert [(c.run_id, c.change) for c in budget.values()] == [
        (done.runs["injection"], "reason_changed")
    ]


def test_a_committed_plan_is_rebuilt_from_the_record(recorded: tuple[Store, Recorded]) -> None:
    store, done = recorded
    report = replay_policy(store, policy(PLANNED), since="1h")
    outside = [c for c in report.changes if c.after["reason"] == "outside_plan"]
    assert [(c.run_id, c.tool) for c in outside] == [(done.runs["planned"], "note")]


def test_results_are_labelled_as_the_replayed_policy_labels_them(
    recorded: tuple[Store, Recorded],
) -> None:
    store, _ = recorded
    distrusted = LIVE.replace("      lookup: {}\n", "      lookup: {output: untrusted}\n")
    report = replay_policy(store, policy(distrusted), since="1h")
    assert report.relabelled_results > 0


def test_eval_trials_and_other_workflows_are_left_out_unless_asked_for(
    recorded: tuple[Store, Recorded],
) -> None:
    store, done = recorded
    production = replay_policy(store, policy(), since="1h")
    everything = replay_policy(store, policy(), since="1h", include_eval=True)
    assert everything.runs == production.runs + 1
    renamed = policy(LIVE.replace("  wf:\n", "  other:\n"))
    skipped = replay_policy(store, renamed, since="1h")
    assert (skipped.runs, skipped.calls) == (0, 0)
    assert skipped.skipped_workflows == {"wf": len(done.runs) - 1}


def test_an_empty_window_replays_nothing(recorded: tuple[Store, Recorded]) -> None:
    store, _ = recorded
    report = replay_policy(store, policy(), since=time.time() + 1)
    assert (report.runs, report.calls, report.changes) == (0, 0, ())
    assert report.as_dict()["summary"]["changed"] == 0


def test_bad_input_is_one_clear_error(recorded: tuple[Store, Recorded]) -> None:
    store, _ = recorded
    with pytest.raises(PolicyError, match="no workflow `nope`"):
        replay_policy(store, policy(), since="7d", workflow="nope")
    with pytest.raises(SuiteError, match="--since"):
        replay_policy(store, policy(), since="last tuesday")


def test_the_json_document_has_a_stable_shape(recorded: tuple[Store, Recorded]) -> None:
    store, _ = recorded
    document = replay_policy(store, policy(STRICTER), since="1h").as_dict()
    assert document["kind"] == "opsgate.policy_replay" and document["version"] == 1
    change = document["changes"][0]
    assert set(change) >= {"run_id", "call_id", "tool", "before", "after", "ran", "masked"}
    assert set(change["before"]) >= {"effect", "reason"}
    assert set(change["after"]) == {"effect", "reason", "rule", "message"}
    summary = document["summary"]
    assert summary["by_tool"]["pay"]["newly_denied"] == 2
    assert summary["newly_denied_that_ran"] == 1


def test_a_change_on_an_argument_the_record_keeps_is_not_put_on_the_mask(
    recorded: tuple[Store, Recorded],
) -> None:
    store, done = recorded
    shorter = LIVE.replace(
        "        constraints: {to: {pattern:",
        "        constraints: {body: {max_length: 5}, to: {pattern:",
    )
    assert shorter != LIVE
    report = replay_policy(store, policy(shorter), since="1h")
    (send,) = [c for c in report.changes if c.tool == "send"]
    # the e-mail address is masked, but the body decides first, and the record keeps it
    assert (send.after["reason"], send.masked, send.ran) == ("arg_constraint", False, True)
    assert send in report.denied_that_ran and send.run_id == done.runs["mail"]
