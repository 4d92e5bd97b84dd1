"""`StoreSpanExporter` and `tracing_recorder` on both backends: a gateway run's spans land in
the ``spans`` table, redacted, with the run id and the parent links."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from sqlalchemy import select

from opsgate.gateway import Gateway, MappingSecretStore, OutcomeStatus
from opsgate.policy import load_policy
from opsgate.redaction import Redactor
from opsgate.store import Store, open_store, spans
from opsgate.tracing import StoreSpanExporter, TraceRecorder, span_row, tracing_recorder
from opsgate.tracing import attributes as A
from tests.conftest import BASE_POLICY, BELT

INVOKER = "alice.smith@corp.example.com"  # recorded always, kept as an identity


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    with open_store(db_url) as s:
        yield s


def _rows(store: Store) -> list[dict[str, Any]]:
    with store.engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(select(spans).order_by(spans.c.start_ns))]


def _run(recorder: Any) -> Any:
    gateway = Gateway(
        BELT,
        load_policy("p", BELT, text=BASE_POLICY % {"stage": "autonomous_in_scope"}),
        recorder=recorder,
        secrets=MappingSecretStore({"PAY_KEY": "sk-live-TOPSECRET"}),
    )
    run = gateway.start_run("wf", invoker=INVOKER, agent_id="bot", request="ORD-1 for ana")

    async def calls() -> None:
        assert (await gateway.call(run, "lookup", {"order_id": "ORD-1"}, call_id="c1")).ok
        denied = await gateway.call(run, "send", {"to": "evil@attacker.test", "body": "x"})
        assert denied.status is OutcomeStatus.DENIED

    asyncio.run(calls())
    gateway.finish(run)
    gateway.close()
    return run


def test_a_runs_spans_land_in_the_table_with_run_id_and_parents(store: Store) -> None:
    recorder = tracing_recorder(store, content=True, otlp_endpoint=None)
    run = _run(recorder)
    recorder.record_chat(run.run_id, "gpt-4o", "openai", 1, 2, 10, 3, 0.001)
    assert recorder.force_flush()
    rows = _rows(store)
    assert sorted(r["name"] for r in rows) == [
        "apply_guardrail opsgate tool_call",
        "apply_guardrail opsgate tool_call",
        "chat gpt-4o",
        "execute_tool lookup",
        "execute_tool send",
        "invoke_agent bot",
    ]
    assert {r["run_id"] for r in rows} == {run.run_id}
    (root,) = [r for r in rows if r["parent_span_id"] is None]
    assert root["name"] == "invoke_agent bot" and root["kind"] == "INTERNAL"
    assert len(root["span_id"]) == 16 and len(root["trace_id"]) == 32
    for r in rows:
        assert r["trace_id"] == root["trace_id"]
        if r["name"].startswith("apply_guardrail"):  # under the call it guards
            parent = next(p for p in rows if p["span_id"] == r["parent_span_id"])
            assert parent["name"].startswith("execute_tool ")
        elif r is not root:
            assert r["parent_span_id"] == root["span_id"]
        assert r["start_ns"] <= r["end_ns"]
    by_name = {r["name"]: r for r in rows}
    assert by_name["chat gpt-4o"]["kind"] == "CLIENT"
    assert by_name["execute_tool send"]["status"] == "ERROR"
    assert by_name["execute_tool lookup"]["status"] == "UNSET"

    send_attrs = orjson.loads(by_name["execute_tool send"]["attributes"])
    assert send_attrs[A.ERROR_TYPE] == "arg_constraint"
    assert "[redacted:email]" in send_attrs[A.OTEL_STATUS_DESCRIPTION]
    lookup_attrs = orjson.loads(by_name["execute_tool lookup"]["attributes"])
    assert lookup_attrs[A.GEN_AI_TOOL_CALL_ID] == "c1"
    assert "[redacted:email]" in lookup_attrs[A.GEN_AI_TOOL_CALL_RESULT]
    events = orjson.loads(by_name["execute_tool lookup"]["events"])
    assert events[0]["name"] == "opsgate.decision"
    assert events[0]["attributes"][A.DECISION] == "allow"
    assert isinstance(events[0]["time_ns"], int)
    root_attrs = orjson.loads(root["attributes"])
    assert root_attrs[A.RUN_STATUS] == "completed"
    assert root_attrs[A.INVOKER] == INVOKER

    everything = repr(rows)
    for needle in ("ana@example.com", "evil@attacker.test"):
        assert needle not in everything
    recorder.shutdown()


def test_the_exporter_batches_one_transaction_and_counts_failures(store: Store) -> None:
    exporter = StoreSpanExporter(store)
    provider = TracerProvider()
    tracer = provider.get_tracer("t")
    batch: list[ReadableSpan] = []
    for i in range(50):
        span = tracer.start_span(f"s{i}", attributes={A.GEN_AI_CONVERSATION_ID: "r" * 80})
        span.end()
        assert isinstance(span, ReadableSpan)
        batch.append(span)
    assert exporter.export(batch).name == "SUCCESS"
    rows = _rows(store)
    assert len(rows) == 50 and exporter.exported == 50
    assert {r["run_id"] for r in rows} == {"r" * 64}  # cut to the column's width

    # The same spans again: primary keys clash, the whole batch is refused, nothing raises.
    assert exporter.export([*batch[:3], batch[0]]).name == "FAILURE"
    assert exporter.failures == 1 and exporter.last_error
    assert len(_rows(store)) == 50
    exporter.shutdown()
    fresh = tracer.start_span("after")
    fresh.end()
    assert isinstance(fresh, ReadableSpan)
    assert exporter.export([fresh]).name == "FAILURE"


def test_each_stored_row_is_its_spans_span_row(store: Store) -> None:
    """The exporter hands the driver bare values in column order: every column must hold
    what `span_row` names it (a swapped pair, start and end, would still insert)."""
    exporter = StoreSpanExporter(store)
    tracer = TracerProvider().get_tracer("t")
    parent = tracer.start_span(
        "parent", attributes={A.GEN_AI_CONVERSATION_ID: "run-1"}, start_time=1_000
    )
    child = tracer.start_span(
        "child", context=trace.set_span_in_context(parent), attributes={"n": 1}, start_time=2_000
    )
    child.add_event("decided", {"reason": "allowed"}, timestamp=2_500)
    child.set_status(trace.Status(trace.StatusCode.ERROR, "refused"))
    child.end(end_time=3_000)
    parent.end(end_time=4_000)
    assert isinstance(child, ReadableSpan) and isinstance(parent, ReadableSpan)
    assert exporter.export([child, parent]).name == "SUCCESS"
    stored = {row["name"]: row for row in _rows(store)}
    for span in (child, parent):
        assert stored[span.name] == span_row(span)
    assert (stored["child"]["start_ns"], stored["child"]["end_ns"]) == (2_000, 3_000)
    assert stored["child"]["parent_span_id"] == stored["parent"]["span_id"]


def test_a_recorder_whose_store_fails_never_breaks_the_run(store: Store) -> None:
    exporter = StoreSpanExporter(store)
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    recorder = TraceRecorder(provider, redactor=Redactor())
    store.engine.dispose()
    with store.engine.begin() as conn:  # the table is gone: every insert fails
        conn.execute(spans.delete())
        conn.exec_driver_sql("DROP TABLE spans")
    run = _run(recorder)
    assert run.status.value == "completed"
    assert recorder.force_flush(5_000)
    assert exporter.failures >= 1 and exporter.exported == 0
    assert recorder.failures == 0
    recorder.shutdown()
