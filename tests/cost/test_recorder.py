"""The cost recorder: gateway events become `cost_entries` rows, and it never raises."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sqlalchemy import create_engine, func, select, text

from opsgate.cost import CostRecorder
from opsgate.gateway import Gateway, MappingSecretStore
from opsgate.policy import CompiledPolicy
from opsgate.recorder import Event, EventType, FanOutRecorder, InMemoryRecorder
from opsgate.store import Store, cost_entries, open_store, runs
from tests.conftest import BELT

# -- building events and `runs` rows (the ledger's tests use these too) ----------------------

_seq = itertools.count()


def started(run_id: str, workflow: str, at: float) -> Event:
    return Event(EventType.RUN_STARTED, run_id, next(_seq), at, {"workflow": workflow})


def ended(run_id: str, at: float, status: str = "completed") -> Event:
    return Event(EventType.RUN_ENDED, run_id, next(_seq), at, {"status": status})


def model_call(run_id: str, at: float, **data: Any) -> Event:
    body: dict[str, Any] = {
        "role": "act",
        "model": "small",
        "provider": "openai",
        "input_tokens": 0,
        "output_tokens": 0,
        "cached_input_tokens": 0,
        "cost_usd": 0.0,
        "estimate": False,
        "latency_s": 0.0,
        "attempts": 1,
        "cache_hit": False,
        "ok": True,
        "error_type": None,
    }
    body.update(data)
    return Event(EventType.MODEL_CALL, run_id, next(_seq), at, body)


def tool_result(run_id: str, at: float, tool: str = "lookup", **data: Any) -> Event:
    body = {"call_id": "c1", "tool": tool, "result": {"ok": 1}, "trust": "trusted", "attempts": 1}
    body.update(data)
    return Event(EventType.TOOL_RESULT, run_id, next(_seq), at, body)


def tool_error(run_id: str, at: float, tool: str = "lookup", **data: Any) -> Event:
    body = {"call_id": "c2", "tool": tool, "error_type": "ToolTimeout", "error": "slow"}
    body.update(data)
    return Event(EventType.TOOL_ERROR, run_id, next(_seq), at, body)


def add_runs(store: Store, *rows: tuple[str, str, str, float]) -> None:
    """Insert `runs` rows (run_id, workflow, status, started_at), as the audit trail does."""
    with store.engine.begin() as conn:
        conn.execute(
            runs.insert(),
            [
                {
                    "run_id": run_id,
                    "workflow": workflow,
                    "invoker": "alice",
                    "agent_id": "bot",
                    "policy_version": "t1",
                    "status": status,
                    "reason": "",
                    "cost_usd": 0.0,
                    "tool_calls": 0,
                    "started_at": started_at,
                }
                for run_id, workflow, status, started_at in rows
            ],
        )


# -- the tests -------------------------------------------------------------------------------


def entries(store: Store) -> list[dict[str, Any]]:
    with store.engine.connect() as conn:
        return [
            dict(r._mapping) for r in conn.execute(select(cost_entries).order_by(cost_entries.c.id))
        ]


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    s = open_store(db_url)
    yield s
    s.close()


async def test_a_gateway_run_lands_in_the_ledger(
    store: Store, make_policy: Callable[..., CompiledPolicy]
) -> None:
    cost = CostRecorder(store)
    memory = InMemoryRecorder()
    gateway = Gateway(
        BELT,
        make_policy(),
        recorder=FanOutRecorder(memory, cost),
        secrets=MappingSecretStore({"PAY_KEY": "sk-live-0123456789abcdef"}),
    )
    run = gateway.start_run("wf", invoker="alice", agent_id="bot", request="where is ORD-1?")
    gateway.record_model_call(
        run,
        role="route",
        model="gpt-4o-mini",
        provider="openai",
        input_tokens=1200,
        output_tokens=80,
        cached_input_tokens=1024,
        cost_usd=0.0004,
        latency_s=0.75,
    )
    await gateway.call(run, "lookup", {"order_id": "ORD-1"})
    gateway.record_model_call(
        run,
        role="act",
        model="qwen-local",
        provider="embedded",
        input_tokens=300,
        output_tokens=40,
        cost_usd=0.0001,
        latency_s=2.5,
        estimate=True,
        attempts=2,
        error_type="ModelTimeout",
    )
    gateway.finish(run)
    assert cost.flush(timeout=10)
    cost.close()
    assert (cost.written, cost.failures) == (3, 0)
    rows = entries(store)
    assert [r["kind"] for r in rows] == ["model", "tool", "model"]
    assert {r["run_id"] for r in rows} == {run.run_id}
    assert {r["workflow"] for r in rows} == {"wf"}
    route, lookup_row, act = rows
    assert (route["role"], route["model"], route["tool"]) == ("route", "gpt-4o-mini", None)
    assert (route["input_tokens"], route["output_tokens"], route["cached_input_tokens"]) == (
        1200,
        80,
        1024,
    )
    assert route["cost_usd"] == pytest.approx(0.0004)
    assert route["latency_s"] == pytest.approx(0.75)
    assert (route["ok"], route["estimate"], route["cache_hit"], route["attempts"]) == (
        True,
        False,
        False,
        1,
    )
    assert (lookup_row["tool"], lookup_row["role"], lookup_row["model"]) == ("lookup", None, None)
    assert lookup_row["cost_usd"] == 0.0 and lookup_row["input_tokens"] == 0
    assert (lookup_row["ok"], lookup_row["attempts"], lookup_row["latency_s"]) == (True, 1, 0.0)
    assert (act["ok"], act["estimate"], act["attempts"]) == (False, True, 2)
    model_events = memory.of_type(EventType.MODEL_CALL)
    assert [r["at"] for r in rows if r["kind"] == "model"] == [e.at for e in model_events]


def test_events_become_rows(store: Store) -> None:
    with CostRecorder(store) as cost:
        cost.record(started("r1", "triage", 100.0))
        cost.record(
            model_call(
                "r1",
                101.0,
                role="extract",
                model="m",
                input_tokens=10,
                output_tokens=5,
                cost_usd=0.5,
                cache_hit=True,
                attempts=0,
            )
        )
        cost.record(tool_result("r1", 102.0, tool="lookup", attempts=2))
        cost.record(tool_error("r1", 103.0, tool="send", latency_s=1.25, attempts=3))
        # not ledger events: ignored
        cost.record(Event(EventType.STEP, "r1", 9, 104.0, {"step": 1}))
        cost.record(Event(EventType.DECISION, "r1", 10, 104.0, {"verdict": "deny"}))
        cost.record(ended("r1", 105.0))
    rows = entries(store)
    assert [(r["kind"], r["at"], r["workflow"]) for r in rows] == [
        ("model", 101.0, "triage"),
        ("tool", 102.0, "triage"),
        ("tool", 103.0, "triage"),
    ]
    assert rows[0]["cache_hit"] is True and rows[0]["attempts"] == 0
    assert (rows[1]["tool"], rows[1]["ok"], rows[1]["attempts"], rows[1]["latency_s"]) == (
        "lookup",
        True,
        2,
        0.0,
    )
    assert (rows[2]["tool"], rows[2]["ok"], rows[2]["attempts"], rows[2]["latency_s"]) == (
        "send",
        False,
        3,
        1.25,
    )
    assert cost.written == 3 and cost.failures == 0 and cost.last_error == ""


def test_workflow_of_a_run_started_elsewhere_is_looked_up(store: Store) -> None:
    # a run resumed after an approval: its run_started event went to another process
    add_runs(store, ("resumed", "billing", "running", 50.0))
    with CostRecorder(store) as cost:
        cost.record(model_call("resumed", 60.0, cost_usd=0.25))
        cost.record(model_call("stranger", 61.0, cost_usd=0.5))
    rows = entries(store)
    assert [(r["run_id"], r["workflow"]) for r in rows] == [
        ("resumed", "billing"),
        ("stranger", ""),
    ]


def test_long_names_are_cut_to_the_column(store: Store) -> None:
    with CostRecorder(store) as cost:
        cost.record(started("r1", "w" * 300, 1.0))
        cost.record(model_call("r1", 2.0, model="m" * 400, role="r" * 50))
    (row,) = entries(store)
    assert (len(row["workflow"]), len(row["model"]), len(row["role"])) == (128, 256, 32)
    assert cost.failures == 0


def test_concurrent_recording_is_all_written(store: Store) -> None:
    cost = CostRecorder(store, max_batch=64)

    def worker(n: int) -> None:
        cost.record(started(f"run-{n}", f"wf{n % 3}", 1.0))
        for i in range(50):
            cost.record(model_call(f"run-{n}", 2.0 + i, cost_usd=0.001))
        cost.record(ended(f"run-{n}", 100.0))

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    cost.close()
    assert (cost.written, cost.failures) == (400, 0)
    with store.engine.connect() as conn:
        counts = dict(
            conn.execute(
                select(cost_entries.c.workflow, func.count()).group_by(cost_entries.c.workflow)
            ).all()
        )
    assert counts == {"wf0": 150, "wf1": 150, "wf2": 100}


def test_a_bad_event_is_counted_and_the_rest_of_its_batch_written(store: Store) -> None:
    cost = CostRecorder(store)
    cost.record(started("r1", "wf", 1.0))
    cost.record(model_call("r1", 2.0, input_tokens="many"))  # not a count
    cost.record(None)  # type: ignore[arg-type]
    cost.record(model_call("r1", 3.0, cost_usd=0.5))
    cost.close()
    assert cost.written == 1
    assert cost.failures == 2
    assert [r["at"] for r in entries(store)] == [3.0]


def test_record_never_raises_on_a_broken_store(store: Store) -> None:
    cost = CostRecorder(store)
    with store.engine.begin() as conn:
        conn.execute(text("DROP TABLE cost_entries"))
    cost.record(started("r1", "wf", 1.0))
    for i in range(5):
        cost.record(model_call("r1", 2.0 + i, cost_usd=0.1))
    cost.record(tool_result("r1", 9.0))
    assert cost.flush(timeout=10)
    assert cost.written == 0
    assert cost.failures == 6
    assert "cost_entries" in cost.last_error
    cost.close()
    cost.record(model_call("r1", 20.0))  # after close: counted, not raised
    assert cost.failures == 7
    cost.close()  # idempotent


def test_record_never_raises_when_the_database_is_unreachable() -> None:
    engine = create_engine("postgresql+psycopg://nobody@127.0.0.1:1/none?connect_timeout=2")
    cost = CostRecorder(Store(engine))
    cost.record(started("r1", "wf", 1.0))
    cost.record(model_call("r1", 2.0, cost_usd=0.1))
    cost.record(tool_error("r1", 3.0))
    assert cost.flush(timeout=30)
    assert (cost.written, cost.failures) == (0, 2)
    assert cost.last_error
    cost.close()
    engine.dispose()


def test_flush_after_close_returns_at_once(store: Store) -> None:
    cost = CostRecorder(store)
    cost.close()
    assert cost.flush(timeout=1)


def test_a_batch_is_written_like_its_events_and_counted_after_close(store: Store) -> None:
    """`record_batch` (the audit recorder's hand-off) keeps only the ledger's events, in
    order, with the workflow of a run started in an earlier batch; after `close` each of
    its ledger events is a failure, never an exception."""
    cost = CostRecorder(store, linger_s=0)
    cost.record_batch([started("rb", "triage", 100.0), Event(EventType.STEP, "rb", 1, 100.5, {})])
    cost.record_batch([tool_result("rb", 101.0), tool_error("rb", 102.0, tool="send")])
    cost.record_batch([])
    assert cost.flush(timeout=30)
    rows = entries(store)
    assert [(r["kind"], r["tool"], r["ok"], r["workflow"]) for r in rows] == [
        ("tool", "lookup", True, "triage"),
        ("tool", "send", False, "triage"),
    ]
    cost.close()
    cost.record_batch([tool_result("rb", 103.0), Event(EventType.STEP, "rb", 9, 104.0, {})])
    assert (cost.written, cost.failures) == (2, 1) and "closed" in cost.last_error
