"""Stopping a live run from outside: the request in the store (`request_stop`, `opsgate runs
stop`), the gateway honouring it before the run's next call or model turn, on SQLite and
PostgreSQL."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from typer.testing import CliRunner

from opsgate.audit import Signer
from opsgate.cli.main import app
from opsgate.gateway import (
    Gateway,
    OutcomeStatus,
    RunStatus,
    StopRequest,
    StopSource,
    StoreStopSource,
)
from opsgate.policy import load_policy
from opsgate.recorder import EventType, FanOutRecorder, InMemoryRecorder
from opsgate.store import Store, open_store, request_stop, run_stops, runs
from opsgate.wiring import store_recorders
from tests.conftest import BASE_POLICY, BELT


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    store = open_store(db_url)
    yield store
    store.close()


def _wait(check: object, seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


async def test_a_stop_requested_in_the_store_ends_the_run_before_its_next_call(
    store: Store,
) -> None:
    recorders = store_recorders(store, signer=Signer.generate())
    memory = InMemoryRecorder()
    stops = StoreStopSource(store, poll_s=0.05)
    policy = load_policy("p", BELT, text=BASE_POLICY % {"stage": "autonomous_in_scope"})
    gateway = Gateway(BELT, policy, recorder=FanOutRecorder(*recorders.all, memory), stops=stops)
    try:
        run = gateway.start_run("wf", invoker="ana", agent_id="bot", request="ORD-1?")
        assert (await gateway.call(run, "lookup", {"order_id": "ORD-1"})).ok
        assert request_stop(store, run.run_id, actor="lea", reason="wrong customer") == (
            "requested"
        )
        assert request_stop(store, run.run_id, actor="max") == "already_requested"
        _wait(lambda: stops.requested(run.run_id) is not None)
        outcome = await gateway.call(run, "lookup", {"order_id": "ORD-2"})
        assert outcome.status is OutcomeStatus.REFUSED and not outcome.ok
        assert run.status is RunStatus.ESCALATED and run.reason == "interrupted"
        assert run.escalation is not None and "lea" in run.escalation.message
        assert [c.tool for c in run.escalation.progress.completed] == ["lookup"]
        (escalated,) = memory.of_type(EventType.ESCALATED)
        assert escalated.data["actor"] == "lea" and escalated.data["reason"] == "interrupted"
        # the run's row says so, the request is settled, and there is nothing left to stop
        await recorders.audit.settle(run.run_id)
        with store.engine.connect() as conn:
            row = conn.execute(runs.select().where(runs.c.run_id == run.run_id)).one()
            honoured = conn.execute(run_stops.select()).one().honoured_at
        assert (row.status, row.reason) == ("escalated", "interrupted") and honoured
        assert request_stop(store, run.run_id, actor="lea") == "not_running"
        assert request_stop(store, "no-such-run", actor="lea") == "unknown_run"
        with pytest.raises(ValueError):
            request_stop(store, run.run_id, actor=" ")
    finally:
        stops.close()
        gateway.close()
        recorders.close()


class _Asked:
    """A stop source with one request, from the start."""

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        self.settled: list[str] = []

    def requested(self, run_id: str) -> StopRequest | None:
        if run_id == self.run_id and not self.settled:
            return StopRequest(run_id, "ops")
        return None

    def honoured(self, run_id: str) -> None:
        self.settled.append(run_id)


def test_a_run_stops_at_its_next_model_turn_too() -> None:
    policy = load_policy("p", BELT, text=BASE_POLICY % {"stage": "autonomous_in_scope"})
    gateway = Gateway(BELT, policy)
    run = gateway.start_run("wf", invoker="ana", agent_id="bot", request="hi")
    source = _Asked(run.run_id)
    assert isinstance(source, StopSource)
    gateway.stops = source
    assert gateway.step(run) is False
    assert run.reason == "interrupted" and source.settled == [run.run_id]
    other = gateway.start_run("wf", invoker="ana", agent_id="bot", request="hi")
    assert gateway.step(other) is True  # only the run asked for


def test_the_cli_stops_a_run_and_says_when_there_is_nothing_to_stop(store: Store) -> None:
    with store.engine.begin() as conn:
        conn.execute(
            runs.insert().values(
                run_id="r-live",
                workflow="wf",
                invoker="ana",
                agent_id="bot",
                policy_version="1",
                status="running",
                reason="",
                cost_usd=0.0,
                tool_calls=0,
                started_at=time.time(),
            )
        )
    cli = CliRunner()
    url = store.engine.url.render_as_string(hide_password=False)
    ok = cli.invoke(app, ["runs", "stop", "r-live", "--as", "lea", "--db", url])
    assert ok.exit_code == 0 and "stop requested" in ok.output
    ended = cli.invoke(app, ["runs", "stop", "r-gone", "--as", "lea", "--db", url])
    assert ended.exit_code == 1 and "no run r-gone" in ended.output
