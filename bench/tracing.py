"""Tracing costs, measured in one run:

1. TraceRecorder.record per gateway event (the hot path), on a realistic event stream
   (unique run and call ids, so the redactor's caches are not artificially warm):
   - provider without processors (recorder + SDK span bookkeeping only),
   - the factory's pipeline (BatchSpanProcessor -> RedactingExporter -> StoreSpanExporter,
     SQLite): what the gateway pays; the export happens on the processor's thread,
   - content capture on (arguments/results JSON, redacted in record()).
   Reference: InMemoryRecorder.record (a locked list append).
2. One execute_tool span (7 attributes + 1 event) through the SDK:
   bare (SimpleSpanProcessor -> no-op exporter) vs through RedactingExporter -> no-op exporter,
   with typical attribute values (nothing to mask) and with an e-mail in one attribute.
3. `await Gateway.call(...)` latency with an async no-op tool (a tight loop: the worker
   competes for the GIL with the caller, the worst case for the background mode), with
   each recorder; a new run every 100 calls, outside the timed calls.
"""

from __future__ import annotations

import gc
import os
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Sequence

from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

from opsgate.contracts import Toolbelt, tool
from opsgate.gateway import Gateway
from opsgate.policy import load_policy
from opsgate.recorder import Event, EventType, InMemoryRecorder
from opsgate.redaction import Redactor
from opsgate.store import open_store
from opsgate.tracing import RedactingExporter, TraceRecorder, tracing_recorder

CALLS_PER_RUN = 5
RUNS = 400
REPEATS = 9


def run_events(n_runs: int) -> list[Event]:
    out: list[Event] = []
    t = time.time()
    for _ in range(n_runs):
        rid = uuid.uuid4().hex
        seq = 0

        def ev(kind: EventType, data: dict[str, object], rid: str = rid) -> None:
            nonlocal seq, t
            out.append(Event(kind, rid, seq, t, data))
            seq += 1
            t += 0.0001

        ev(
            EventType.RUN_STARTED,
            {
                "workflow": "support",
                "invoker": "alice",
                "agent_id": "triage-bot",
                "policy_version": "v3+49b6f7c32963",
                "stage": "autonomous_in_scope",
                "request": "Refund order ORD-1234 for the customer, damaged on arrival",
            },
        )
        ev(EventType.CONTEXT_READ, {"source": "request", "trust": "trusted"})
        for i in range(CALLS_PER_RUN):
            cid = os.urandom(8).hex()
            ev(EventType.STEP, {"step": i + 1})
            ev(
                EventType.TOOL_CALL_PROPOSED,
                {"call_id": cid, "tool": "lookup_order", "args": {"order_id": f"ORD-{1234 + i}"}},
            )
            ev(
                EventType.DECISION,
                {
                    "effect": "allow",
                    "reason": "allowed",
                    "rule": "workflows.support.tools.lookup_order",
                    "message": "`lookup_order` allowed",
                    "policy_version": "v3+49b6f7c32963",
                    "call_id": cid,
                    "tool": "lookup_order",
                },
            )
            ev(
                EventType.TOOL_RESULT,
                {
                    "call_id": cid,
                    "tool": "lookup_order",
                    "result": {
                        "order_id": f"ORD-{1234 + i}",
                        "total": 120.0,
                        "status": "delivered",
                        "email": "ana@example.com",
                    },
                    "trust": "trusted",
                    "attempts": 1,
                },
            )
        ev(
            EventType.RUN_ENDED,
            {
                "status": "completed",
                "reason": "done",
                "steps": CALLS_PER_RUN,
                "tool_calls": CALLS_PER_RUN,
                "refusals": 0,
                "denials": 0,
                "errors": 0,
                "retries": 0,
                "cost_usd": 0.01,
                "elapsed_s": 1.0,
                "output": None,
            },
        )
    return out


DRAIN: list[float] = []


def per_event_us(make: Callable[[], object], n_runs: int = RUNS) -> tuple[float, float]:
    """(median, min) over REPEATS of the mean µs per record() call, fresh events each time.
    Also keeps, in DRAIN, the median µs per event until the worker has built every span."""
    samples, drained = [], []
    for _ in range(REPEATS):
        recorder = make()
        events = run_events(n_runs)
        record = recorder.record  # type: ignore[attr-defined]
        gc.disable()
        t0 = time.perf_counter()
        for e in events:
            record(e)
        dt = time.perf_counter() - t0
        if hasattr(recorder, "_queue") and recorder._queue is not None:
            done = threading.Event()
            recorder._queue.put(done.set)
            done.wait()
        drained.append((time.perf_counter() - t0) / len(events) * 1e6)
        gc.enable()
        samples.append(dt / len(events) * 1e6)
        if hasattr(recorder, "shutdown"):
            recorder.shutdown()
        if hasattr(recorder, "failures"):
            assert recorder.failures == 0, recorder.last_failure  # type: ignore[attr-defined]
            assert recorder.dropped == 0  # type: ignore[attr-defined]
    DRAIN.append(statistics.median(drained))
    return statistics.median(samples), min(samples)


class NoOp(SpanExporter):
    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


def per_span_us(provider: TracerProvider, email: bool, n: int = 20_000) -> tuple[float, float]:
    tracer = provider.get_tracer("bench")
    samples = []
    for _ in range(REPEATS):
        ids = [os.urandom(8).hex() for _ in range(n)]
        run_id = uuid.uuid4().hex
        gc.disable()
        t0 = time.perf_counter()
        for cid in ids:
            span = tracer.start_span(
                "execute_tool lookup_order",
                attributes={
                    "gen_ai.operation.name": "execute_tool",
                    "gen_ai.tool.name": "lookup_order",
                    "gen_ai.tool.call.id": cid,
                    "gen_ai.tool.type": "function",
                    "gen_ai.conversation.id": run_id,
                    "opsgate.decision": "allow",
                    "opsgate.invoker": "ana@example.com" if email else "alice",
                },
            )
            span.add_event(
                "opsgate.decision",
                {
                    "opsgate.decision": "allow",
                    "opsgate.decision.reason": "allowed",
                    "opsgate.decision.rule": "workflows.support.tools.lookup_order",
                },
            )
            span.end()
        samples.append((time.perf_counter() - t0) / n * 1e6)
        gc.enable()
    return statistics.median(samples), min(samples)


@tool(scope="read")
async def noop(n: int) -> None:
    """Do nothing."""


GATE_BELT = Toolbelt([noop])
GATE_POLICY = """
version: b1
workflows:
  wf:
    stage: autonomous_in_scope
    caps: {max_tool_calls: 1000000, max_identical_calls: 1000000}
    tools: {noop: {}}
"""


def gateway_us(recorder: object, n: int = 4000) -> tuple[float, float, float, float]:
    """(median, p99, p99.9, mean) µs of `await gateway.call` with ``recorder``; the mean
    includes the worker's time until it has built every span."""
    import asyncio

    gw = Gateway(
        GATE_BELT,
        load_policy("b", GATE_BELT, text=GATE_POLICY),
        recorder=recorder,  # type: ignore[arg-type]
    )

    async def go() -> list[float]:
        out: list[float] = []
        run = None
        for i in range(n + 200):
            if i % 100 == 0:
                if run is not None:
                    gw.finish(run)
                run = gw.start_run("wf", invoker="u", agent_id="a", request="n 5")
            t0 = time.perf_counter()
            await gw.call(run, "noop", '{"n": 5}')
            if i >= 200:
                out.append((time.perf_counter() - t0) * 1e6)
        gw.finish(run)
        return out

    gc.disable()
    try:
        t0 = time.perf_counter()
        times = sorted(asyncio.run(go()))
        if hasattr(recorder, "force_flush"):
            recorder.force_flush()
        total = time.perf_counter() - t0
    finally:
        gc.enable()
    gw.close()
    if hasattr(recorder, "shutdown"):
        recorder.shutdown()
        assert recorder.failures == 0 and recorder.dropped == 0  # type: ignore[attr-defined]
    return (
        statistics.median(times),
        times[int(0.99 * len(times))],
        times[int(0.999 * len(times))],
        total / (n + 200) * 1e6,
    )


def main() -> None:
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cpus; gc off in timed loops")
    print(f"median (min) of {REPEATS} repeats; load average {os.getloadavg()[0]:.2f}")
    print(f"event stream: {RUNS} runs x {4 * CALLS_PER_RUN + 3} events")
    with tempfile.TemporaryDirectory() as tmp:
        store = open_store(f"sqlite:///{tmp}/bench.db")
        memory = per_event_us(InMemoryRecorder)
        inline = per_event_us(lambda: TraceRecorder(TracerProvider(), background=False))
        bare = per_event_us(lambda: TraceRecorder(TracerProvider()))
        piped = per_event_us(lambda: tracing_recorder(store, otlp_endpoint=None, content=False))
        content = per_event_us(lambda: tracing_recorder(store, otlp_endpoint=None, content=True))
        store.close()
    drains = iter(DRAIN)

    def show(label: str, m: tuple[float, float]) -> None:
        per_call = m[0] * (4 * CALLS_PER_RUN + 3) / CALLS_PER_RUN
        print(
            f"   {label:50s} {m[0]:6.2f} ({m[1]:5.2f})  ~{per_call:5.1f}/call"
            f"   until built {next(drains):6.2f}"
        )

    print("\n1. TraceRecorder.record, µs per event: median (min); per tool call; and per event")
    print("   until the worker has built every span (the CPU it costs, off the hot path)")
    show("InMemoryRecorder.record (reference)", memory)
    show("TraceRecorder(background=False), no processors", inline)
    show("TraceRecorder (background worker), no processors", bare)
    show("tracing_recorder(store): batch->redact->SQLite", piped)
    show("same, content capture on", content)

    redactor = Redactor(secrets={"DB": "hunter2-correct-horse"})
    bare_p = TracerProvider()
    bare_p.add_span_processor(SimpleSpanProcessor(NoOp()))
    red_p = TracerProvider()
    red_p.add_span_processor(SimpleSpanProcessor(RedactingExporter(NoOp(), redactor)))
    rows = []
    for email in (False, True):
        b = per_span_us(bare_p, email)
        r = per_span_us(red_p, email)
        rows.append((email, b, r))
    print("\n2. One execute_tool span (7 attrs + 1 event), µs per span, synchronous export")
    for email, (b, bmin), (r, rmin) in rows:
        what = "an e-mail to mask " if email else "nothing to mask   "
        print(
            f"   {what} bare SDK {b:6.2f} ({bmin:6.2f})   through RedactingExporter"
            f" {r:6.2f} ({rmin:6.2f})   (+{r - b:5.2f}, x{r / b:4.2f})"
        )

    with tempfile.TemporaryDirectory() as tmp:
        store = open_store(f"sqlite:///{tmp}/gate.db")
        cases = [
            ("InMemoryRecorder (reference)", lambda: InMemoryRecorder()),
            (
                "TraceRecorder(background=False), no processors",
                lambda: TraceRecorder(TracerProvider(), background=False),
            ),
            ("TraceRecorder (background), no processors", lambda: TraceRecorder(TracerProvider())),
            (
                "tracing_recorder(store) (background, batch, SQLite)",
                lambda: tracing_recorder(store, otlp_endpoint=None),
            ),
        ]
        print("\n3. await Gateway.call, async no-op tool, µs (4,000 calls)")
        print(f"   {'':52s}  median     p99   p99.9   mean incl. worker")
        for label, make in cases:
            med, p99, p999, mean = gateway_us(make())
            print(f"   {label:52s} {med:7.1f} {p99:7.1f} {p999:7.1f} {mean:7.1f}")
        store.close()


if __name__ == "__main__":
    main()
