"""The ledger's roll-ups, against hand-computed figures, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime

import pytest

from opsgate.cost import CostLedger, CostRecorder, DayCost
from opsgate.recorder import Event
from opsgate.store import Store, open_store
from tests.cost.test_recorder import add_runs, model_call, started, tool_error, tool_result

NOW = datetime(2025, 3, 20, 12, 0, tzinfo=UTC).timestamp()  # a Thursday, noon UTC
H = 3600.0
D = 86_400.0


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    s = open_store(db_url)
    yield s
    s.close()


def write(store: Store, events: list[Event]) -> None:
    with CostRecorder(store) as cost:
        for event in events:
            cost.record(event)
    assert cost.failures == 0, cost.last_error


@pytest.fixture
def ledger(store: Store) -> CostLedger:
    """Three workflows over the last two weeks (figures in each test, worked by hand)."""
    add_runs(
        store,
        ("r0", "triage", "completed", NOW - 10 * D),  # before the 7-day window
        ("r1", "triage", "completed", NOW - 1 * D),
        ("r2", "triage", "escalated", NOW - 2 * D),
        ("r3", "triage", "completed", NOW - 3 * D),
        ("r4", "triage", "running", NOW - 1 * H),
        ("r5", "triage", "completed", NOW - 7 * D - H),  # started before, spent inside
        ("b1", "billing", "completed", NOW - 2 * D),
        ("b2", "billing", "failed", NOW - 2 * D),
    )
    m = model_call
    write(
        store,
        [
            started("r0", "triage", NOW - 10 * D),
            m("r0", NOW - 10 * D + 5, model="small", cost_usd=1.0, input_tokens=9999),
            started("r1", "triage", NOW - 1 * D),
            m(
                "r1",
                NOW - D + 10,
                model="small",
                cost_usd=0.10,
                input_tokens=1000,
                output_tokens=200,
                latency_s=0.5,
            ),
            m(
                "r1",
                NOW - D + 20,
                model="large",
                cost_usd=0.05,
                input_tokens=500,
                output_tokens=100,
                cached_input_tokens=200,
                latency_s=0.5,
            ),
            tool_result("r1", NOW - D + 30),
            started("r2", "triage", NOW - 2 * D),
            m(
                "r2",
                NOW - 2 * D + 10,
                model="large",
                cost_usd=0.20,
                input_tokens=2000,
                output_tokens=300,
                latency_s=1.5,
            ),
            tool_error("r2", NOW - 2 * D + 20),
            started("r3", "triage", NOW - 3 * D),
            m("r3", NOW - 3 * D + 10, model="small", cache_hit=True, attempts=0),
            m(
                "r3",
                NOW - 3 * D + 20,
                model="small",
                cost_usd=0.15,
                input_tokens=1500,
                output_tokens=250,
            ),
            started("r4", "triage", NOW - 1 * H),
            m("r4", NOW - H + 10, model="small", cost_usd=0.05, input_tokens=100, output_tokens=10),
            started("r5", "triage", NOW - 7 * D - H),
            m("r5", NOW - 6 * D, model="small", cost_usd=0.01, input_tokens=10, output_tokens=1),
            started("b1", "billing", NOW - 2 * D),
            m(
                "b1",
                NOW - 2 * D + 10,
                model="local",
                cost_usd=0.30,
                estimate=True,
                input_tokens=3000,
                output_tokens=500,
            ),
            started("b2", "billing", NOW - 2 * D),
            m(
                "b2",
                NOW - 2 * D + 20,
                model="large",
                ok=False,
                error_type="ModelTimeout",
                attempts=3,
                latency_s=4.0,
            ),
            started("o1", "orphan", NOW - D),  # no `runs` row: no audit trail for it
            m("o1", NOW - D + 10, model="small", cost_usd=0.02, input_tokens=20),
        ],
    )
    return CostLedger(store)


def test_run_cost(ledger: CostLedger) -> None:
    r1 = ledger.run_cost("r1")
    assert r1.workflow == "triage"
    assert r1.cost_usd == pytest.approx(0.15)
    assert (r1.model_calls, r1.failed_model_calls, r1.tool_calls, r1.tool_errors) == (2, 0, 1, 0)
    assert (r1.input_tokens, r1.output_tokens, r1.cached_input_tokens) == (1500, 300, 200)
    assert r1.total_tokens == 1800
    assert r1.model_latency_s == pytest.approx(1.0)
    assert (r1.cache_hits, r1.estimate) == (0, False)
    r2 = ledger.run_cost("r2")
    assert (r2.tool_calls, r2.tool_errors) == (1, 1)
    assert ledger.run_cost("r3").cache_hits == 1
    b = ledger.run_cost("b1")
    assert b.estimate is True and b.cost_usd == pytest.approx(0.30)
    failed = ledger.run_cost("b2")
    assert (failed.model_calls, failed.failed_model_calls, failed.cost_usd) == (1, 1, 0.0)
    nothing = ledger.run_cost("nope")
    assert (nothing.workflow, nothing.cost_usd, nothing.model_calls) == ("", 0.0, 0)


def test_by_workflow(ledger: CostLedger) -> None:
    found = ledger.by_workflow(NOW - 7 * D, NOW)
    assert [w.workflow for w in found] == ["triage", "billing", "orphan"]  # by spend
    triage, billing, orphan = found
    # spend at entry time: r1 .15 + r2 .20 + r3 .15 + r4 .05 + r5 .01 (r5 started before)
    assert triage.cost_usd == pytest.approx(0.56)
    # runs by start: r1..r4 (not r0, not r5); ended r1 r2 r3; completed r1 r3
    assert (triage.runs, triage.ended_runs, triage.successful_runs) == (4, 3, 2)
    assert triage.success_rate == pytest.approx(2 / 3)
    assert triage.cost_per_success == pytest.approx(0.28)
    assert (triage.model_calls, triage.tool_calls, triage.cache_hits) == (7, 2, 1)
    assert (triage.input_tokens, triage.output_tokens, triage.cached_input_tokens) == (
        1000 + 500 + 2000 + 1500 + 100 + 10,
        200 + 100 + 300 + 250 + 10 + 1,
        200,
    )
    assert triage.estimate is False

    assert (billing.runs, billing.ended_runs, billing.successful_runs) == (2, 2, 1)
    assert billing.success_rate == pytest.approx(0.5)
    assert billing.cost_usd == pytest.approx(0.30)
    assert billing.cost_per_success == pytest.approx(0.30)
    assert billing.estimate is True

    assert (orphan.runs, orphan.ended_runs, orphan.successful_runs) == (1, 0, 0)
    assert orphan.success_rate is None and orphan.cost_per_success is None
    assert orphan.cost_usd == pytest.approx(0.02)


def test_by_workflow_over_other_windows(ledger: CostLedger) -> None:
    (old,) = ledger.by_workflow(NOW - 14 * D, NOW - 7 * D)
    # r0 (started, spent 1.0) and r5 (started there, spent later)
    assert (old.workflow, old.runs, old.successful_runs) == ("triage", 2, 2)
    assert old.cost_usd == pytest.approx(1.0)
    assert old.cost_per_success == pytest.approx(0.5)
    assert ledger.by_workflow(NOW + D, NOW + 2 * D) == []
    # until defaults to now: everything so far
    everything = {w.workflow: w for w in ledger.by_workflow(0.0)}
    assert everything["triage"].cost_usd == pytest.approx(1.56)
    assert everything["triage"].runs == 6


def test_by_day(ledger: CostLedger) -> None:
    days = ledger.by_day(None, 3, now=NOW)
    assert [d.day for d in days] == [date(2025, 3, 18), date(2025, 3, 19), date(2025, 3, 20)]
    assert [d.cost_usd for d in days] == pytest.approx([0.50, 0.17, 0.05])
    assert [d.runs for d in days] == [3, 2, 1]  # r2 b1 b2 / r1 o1 / r4
    assert [d.model_calls for d in days] == [3, 3, 1]
    assert [d.tool_calls for d in days] == [1, 1, 0]
    assert [d.estimate for d in days] == [True, False, False]
    triage = ledger.by_day("triage", 3, now=NOW)
    assert [d.cost_usd for d in triage] == pytest.approx([0.20, 0.15, 0.05])
    # zero-filled, oldest first
    week = ledger.by_day("billing", 7, now=NOW)
    assert len(week) == 7 and week[0].day == date(2025, 3, 14)
    assert [d.cost_usd for d in week] == pytest.approx([0, 0, 0, 0, 0.30, 0, 0])
    assert week[0] == DayCost(date(2025, 3, 14), 0, 0.0, 0, 0, 0, 0, 0, 0, False)
    with pytest.raises(ValueError):
        ledger.by_day(None, 0, now=NOW)


def test_days_are_utc_days(store: Store) -> None:
    midnight = datetime(2025, 3, 20, tzinfo=UTC).timestamp()
    write(
        store,
        [
            started("e1", "edge", midnight - 10),
            model_call("e1", midnight - 0.5, cost_usd=2.0),
            model_call("e1", midnight, cost_usd=1.0),
            model_call("e1", midnight + D - 0.001, cost_usd=4.0),
        ],
    )
    ledger = CostLedger(store)
    days = ledger.by_day("edge", 2, now=NOW)
    assert [(d.day, d.cost_usd) for d in days] == [
        (date(2025, 3, 19), 2.0),
        (date(2025, 3, 20), 5.0),
    ]
    assert ledger.daily_spend("edge", date(2025, 3, 19)) == 2.0
    assert ledger.daily_spend("edge", date(2025, 3, 20)) == 5.0
    assert ledger.daily_spend("edge", date(2025, 3, 21)) == 0.0


def test_daily_spend(ledger: CostLedger) -> None:
    assert ledger.daily_spend(None, date(2025, 3, 18)) == pytest.approx(0.50)
    assert ledger.daily_spend("triage", date(2025, 3, 19)) == pytest.approx(0.15)
    assert ledger.daily_spend("billing", date(2025, 3, 19)) == 0.0
    assert ledger.daily_spend("nothing") == 0.0  # today


def test_by_model(ledger: CostLedger) -> None:
    found = ledger.by_model(NOW - 7 * D, NOW)
    assert [m.model for m in found] == ["small", "local", "large"]
    small, local, large = found
    # r1 .10, r3 hit 0 + .15, r4 .05, r5 .01, o1 .02
    assert (small.calls, small.cache_hits, small.failed_calls) == (6, 1, 0)
    assert small.cost_usd == pytest.approx(0.33)
    assert (local.calls, local.estimate, local.cost_usd) == (1, True, pytest.approx(0.30))
    # r1 .05, r2 .20, b2 failed after 3 attempts
    assert (large.calls, large.failed_calls, large.attempts) == (3, 1, 5)
    assert large.cost_usd == pytest.approx(0.25)
    assert large.mean_latency_s == pytest.approx(2.0)  # (0.5 + 1.5 + 4.0) / 3
    assert (large.input_tokens, large.output_tokens, large.cached_input_tokens) == (2500, 400, 200)
    assert ledger.by_model(NOW + D) == []


def _week(
    prefix: str, workflow: str, start: float, outcomes: list[str], cost: float
) -> tuple[list[tuple[str, str, str, float]], list[Event]]:
    rows, events = [], []
    for i, status in enumerate(outcomes):
        run_id = f"{prefix}{i}"
        at = start + i * H
        rows.append((run_id, workflow, status, at))
        events += [started(run_id, workflow, at), model_call(run_id, at + 1, cost_usd=cost)]
    return rows, events


@pytest.fixture
def drifting(store: Store) -> CostLedger:
    """Costs are exact binary fractions, so that the thresholds' edges are exact too."""
    weeks = [
        # steady: same success; cost per success +25 % exactly (not *more* than 25 %)
        _week("sp", "steady", NOW - 10 * D, ["completed"] * 4, 0.25),
        _week("sc", "steady", NOW - 3 * D, ["completed"] * 4, 0.3125),
        # pricier: same success; cost per success +50 %
        _week("pp", "pricier", NOW - 10 * D, ["completed"] * 4, 0.25),
        _week("pc", "pricier", NOW - 3 * D, ["completed"] * 4, 0.375),
        # failing: success 100 % -> 90 % (-10 points); cost per success +11 %
        _week("fp", "failing", NOW - 10 * D, ["completed"] * 10, 0.25),
        _week("fc", "failing", NOW - 3 * D, ["completed"] * 9 + ["escalated"], 0.25),
        # new: nothing the week before
        _week("nc", "new", NOW - 3 * D, ["completed", "failed"], 0.5),
    ]
    for rows, _ in weeks:
        add_runs(store, *rows)
    write(store, [e for _, events in weeks for e in events])
    return CostLedger(store)


def test_drift_quiet_at_the_thresholds(drifting: CostLedger) -> None:
    drift = drifting.drift("steady", now=NOW)
    assert drift.current.runs == drift.previous.runs == 4
    assert drift.success_rate_change == 0.0
    assert drift.cost_per_success_change == 0.25
    assert drift.alerts == []


def test_drift_alerts_on_cost(drifting: CostLedger) -> None:
    drift = drifting.drift("pricier", now=NOW)
    assert drift.previous.cost_per_success == 0.25
    assert drift.current.cost_per_success == 0.375
    assert drift.cost_per_success_change == 0.5
    (alert,) = drift.alerts
    assert (alert.metric, alert.previous, alert.current, alert.change, alert.threshold) == (
        "cost_per_success",
        0.25,
        0.375,
        0.5,
        0.25,
    )
    assert "pricier" in alert.message and "+50%" in alert.message
    # a looser threshold: quiet
    assert drifting.drift("pricier", now=NOW, cost_rise=0.5).alerts == []


def test_drift_alerts_on_success(drifting: CostLedger) -> None:
    drift = drifting.drift("failing", now=NOW)
    assert drift.previous.success_rate == 1.0
    assert drift.current.success_rate == pytest.approx(0.9)
    assert drift.success_rate_change == pytest.approx(-10.0)
    assert drift.cost_per_success_change == pytest.approx(2.5 / 9 / 0.25 - 1)  # +11 %
    assert [a.metric for a in drift.alerts] == ["success_rate"]
    assert drift.alerts[0].message.startswith("`failing`: success rate fell from 100.0% to 90.0%")
    assert drifting.drift("failing", now=NOW, success_drop_points=10.5).alerts == []
    # a week later the bad week is the previous one, and nothing comes after it
    later = drifting.drift("failing", now=NOW + 7 * D)
    assert later.previous.success_rate == pytest.approx(0.9)
    assert later.current.runs == 0
    assert later.success_rate_change is None and later.alerts == []


def test_drift_without_history(drifting: CostLedger) -> None:
    drift = drifting.drift("new", now=NOW)
    assert drift.current.success_rate == 0.5
    assert drift.current.cost_per_success == 1.0
    assert drift.previous.runs == 0 and drift.previous.success_rate is None
    assert drift.success_rate_change is None and drift.cost_per_success_change is None
    assert drift.alerts == []
    unknown = drifting.drift("no-such-workflow", now=NOW)
    assert unknown.current.runs == 0 and unknown.alerts == []
    with pytest.raises(ValueError):
        drifting.drift("new", now=NOW, window_days=0)
