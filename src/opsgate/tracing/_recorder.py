"""`TraceRecorder`: the gateway's events as OpenTelemetry spans (GenAI semantic conventions).

One run is one ``invoke_agent {agent_id}`` span (INTERNAL) from ``run_started`` to
``run_ended``. Each proposed tool call is one ``execute_tool {tool}`` child span (INTERNAL)
from ``tool_call_proposed`` to whichever ends the call: ``tool_result``, ``tool_error``, a
``decision`` to deny, ``approval_denied``, or the ``escalated`` that cut it off. Model calls
are ``chat {model}`` children (CLIENT), recorded by `TraceRecorder.record_chat`. Decisions,
approvals, retries, context reads, steps, writes and escalations are span events. Times are
the events' own wall-clock times, so spans line up with the audit trail.

Unlike the audit recorder, this one never raises: a debug trace is not the record of truth,
and a broken exporter must not stop a run. Failures are counted in
`TraceRecorder.failures`.

``record()`` is on the gateway's hot path. Building the spans costs ~8 µs per event, nearly
all of it inside the OpenTelemetry SDK (attribute validation, locks, ids), so by default
``record()`` only puts the event on a queue (well under a microsecond) and one worker thread
builds the spans, in the order the events came; agents spend most of their time waiting on
models and tools, and the worker uses that time. The CPU is the same either way (the GIL):
in a process saturated with calls, the worker's turns show as pauses of up to the
interpreter's switch interval (5 ms) in the tail of ``Gateway.call`` instead of ~35 µs on
every call. The queue is bounded: when the worker falls behind by
`TraceRecorder.max_queue` events, events are dropped and counted, never waited for.
The worker lets what arrives gather for `TraceRecorder.linger_s` after waking, then builds it
all in one go: one wake-up (one contest for the GIL with the event loop) per burst rather
than per event. Behind the audit recorder, `record_batch` takes each of its committed
batches in one hand-off (`opsgate.wiring.store_recorders` wires it so).
``background=False`` builds spans inside ``record()`` instead (deterministic; for tests
and CPU-bound batch runs). Exporting, and the redaction of every attribute (see
`RedactingExporter`), happens later still, on the batch processors' threads.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import queue
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from typing import Any

import orjson
from opentelemetry import trace as trace_api
from opentelemetry.context import Context
from opentelemetry.sdk.trace import TracerProvider as SdkTracerProvider
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.util.types import AttributeValue

from opsgate.recorder import Event, EventType
from opsgate.redaction import Redactor
from opsgate.tracing import _attributes as A

__all__ = ["TraceRecorder"]

_log = logging.getLogger("opsgate.tracing")

_INTERNAL = SpanKind.INTERNAL
_CLIENT = SpanKind.CLIENT
_EVENT_NAME = {t: A.EVENT_PREFIX + t.value for t in EventType}
_ENDED_RUNS_KEPT = 1024  # ended runs remembered, so late calls and chats find their parent
# Each run is its own trace: its span is a root whatever span is current in the caller (in
# the background mode the worker has no caller context anyway), and so is a call or a model
# call whose run is unknown.
_ROOT = Context()

Attributes = dict[str, AttributeValue]
# what the worker's queue holds: an event, a batch of events, a model call or a flush marker
# (callables), or None (stop)
_Item = Event | list[Event] | Callable[[], object] | None


class _Run:
    """What the recorder keeps of a run: its span (None when ``run_started`` was not seen),
    the context its children are started in, and its open tool spans by call id."""

    __slots__ = ("agent", "ctx", "span", "tools")

    def __init__(self, span: trace_api.Span | None, agent: str = "agent") -> None:
        self.span = span
        self.agent = agent
        self.ctx = _ROOT if span is None else trace_api.set_span_in_context(span)
        self.tools: dict[str, trace_api.Span] = {}


def _ns(at: float) -> int:
    return int(at * 1e9)


def _error(span: trace_api.Span, error_type: str, description: str | None) -> None:
    span.set_attribute(A.ERROR_TYPE, error_type)
    span.set_status(Status(StatusCode.ERROR, description))


class TraceRecorder:
    """A `Recorder` that turns the gateway's events into OpenTelemetry spans.

    Args:
        tracer_provider: Where spans go. `tracing_recorder` builds one with the redacting
            store and OTLP exporters; any OpenTelemetry tracer provider works.
        content: Record content: tool arguments and results, the run's request and
            output, and the free-text messages that can quote them (decision, error,
            approval and escalation messages). Off by default, as the GenAI conventions say.
        redactor: With ``content``, content is redacted with it as it is recorded, so that
            no span processor of the provider sees it unredacted. (Exporters should still
            be wrapped in `RedactingExporter`, which redacts every attribute.)
        max_open_runs: Runs whose ``run_ended`` never came are ended as ``abandoned``
            beyond this many open runs, so a crashing caller cannot grow memory forever.
        own_provider: `shutdown` also shuts the provider down (the factory sets it).
        background: Build spans on a worker thread (default) rather than in ``record()``.
        max_queue: Events waiting for the worker at most; more are dropped and counted.
        linger_s: Once woken, the worker waits this long for more before building spans
            (0: build at once); `force_flush` and `shutdown` do not wait for it.

    Attributes:
        failures: How many events (and `record_chat` calls) failed to be traced.
        dropped: How many were dropped: queue full, or recorded after `shutdown`.
        last_failure: The last failure, as ``Type: message``.
    """

    def __init__(
        self,
        tracer_provider: trace_api.TracerProvider,
        *,
        content: bool = False,
        redactor: Redactor | None = None,
        max_open_runs: int = 10_000,
        own_provider: bool = False,
        background: bool = True,
        max_queue: int = 100_000,
        linger_s: float = 0.02,
    ) -> None:
        if max_open_runs < 1 or max_queue < 1 or linger_s < 0:
            raise ValueError("max_open_runs and max_queue must be at least 1, linger_s >= 0")
        self.provider = tracer_provider
        self.content = content
        self.redactor = redactor
        self.max_open_runs = max_open_runs
        self.own_provider = own_provider
        self.max_queue = max_queue
        self.linger_s = linger_s
        self.failures = 0
        self.dropped = 0
        self.last_failure = ""
        self._closed = False
        self._tracer = tracer_provider.get_tracer(A.INSTRUMENTATION_SCOPE)
        self._runs: dict[str, _Run] = {}  # open runs, oldest first
        self._ended: dict[str, _Run] = {}  # recently ended (or never started) runs
        self._lock = threading.Lock()  # adding and removing runs
        self._backlog = 0  # events queued for the worker and not yet handled
        self._backlog_lock = threading.Lock()
        self._handlers: dict[str, Callable[[Event], None]] = {
            EventType.RUN_STARTED: self._run_started,
            EventType.CONTEXT_READ: self._context_read,
            EventType.TOOL_CALL_PROPOSED: self._proposed,
            EventType.DECISION: self._decision,
            EventType.APPROVAL_REQUESTED: self._approval_requested,
            EventType.APPROVAL_GRANTED: self._approval_answered,
            EventType.APPROVAL_DENIED: self._approval_answered,
            EventType.TOOL_RETRY: self._retry,
            EventType.TOOL_RESULT: self._result,
            EventType.TOOL_ERROR: self._tool_error,
            EventType.WRITE_PERFORMED: self._write,
            EventType.STEP: self._step,
            EventType.ESCALATED: self._escalated,
            EventType.RUN_ENDED: self._run_ended,
            EventType.MODEL_CALL: self._model_call,
            EventType.PLAN: self._plan,
            EventType.PLAN_COMMITTED: self._plan,
        }
        self._queue: queue.SimpleQueue[_Item] | None = None
        self._worker: threading.Thread | None = None
        if background:
            self._queue = queue.SimpleQueue()
            self._worker = threading.Thread(target=self._work, name="opsgate-tracing", daemon=True)
            self._worker.start()
            # Drain the queue at exit; registered after the provider's own exit hook, so it
            # runs before it and the provider then flushes what the worker built.
            atexit.register(_shutdown_at_exit, weakref.ref(self))

    # -- the Recorder protocol ---------------------------------------------------------------

    def record(self, event: Event) -> None:
        """Trace ``event`` (queue it for the worker). Never raises, never waits."""
        try:
            if self._queue is None and not self._closed:
                self._handle(event)
            elif self._admit(1):
                self._queue.put(event)  # type: ignore[union-attr]
        except Exception as exc:  # pragma: no cover - put on an unbounded queue
            self._failed(exc, "record")

    def record_batch(self, events: Sequence[Event]) -> None:
        """Trace ``events``, in order, in one hand-off to the worker (what the audit
        recorder gives its followers). Never raises, never waits."""
        try:
            if not events:
                return
            if self._queue is None and not self._closed:
                for event in events:
                    self._handle(event)
            elif self._admit(len(events)):
                self._queue.put(list(events))  # type: ignore[union-attr]
        except Exception as exc:  # pragma: no cover - put on an unbounded queue
            self._failed(exc, "record_batch")

    def _admit(self, n: int) -> bool:
        """Whether ``n`` events may join the worker's queue (else they are dropped)."""
        if self._closed:
            self.dropped += n
            return False
        with self._backlog_lock:
            if self._backlog >= self.max_queue:
                self.dropped += n
                return False
            self._backlog += n
        return True

    async def settle(self, run_id: str | None = None) -> None:
        """Nothing to wait for: debug traces never hold up a tool (they may lag behind)."""

    def _handle(self, event: Event) -> None:
        try:
            handler = self._handlers.get(event.type)
            if handler is not None:
                handler(event)
        except Exception as exc:
            self._failed(exc, event.type)

    def _work(self) -> None:
        q = self._queue
        assert q is not None
        handle = self._handle
        while True:
            items = [q.get()]
            if self.linger_s and isinstance(items[0], Event | list):
                time.sleep(self.linger_s)  # let a burst gather: one wake-up for all of it
            with contextlib.suppress(queue.Empty):
                while True:
                    items.append(q.get_nowait())
            taken = 0
            for item in items:
                if isinstance(item, Event):
                    taken += 1
                elif isinstance(item, list):
                    taken += len(item)
            with self._backlog_lock:  # off the queue: no longer waiting for the worker
                self._backlog -= taken
            for item in items:
                if type(item) is Event:
                    handle(item)
                elif type(item) is list:
                    for event in item:
                        handle(event)
                elif item is None:
                    return
                else:
                    try:
                        item()  # type: ignore[operator]
                    except Exception as exc:
                        self._failed(exc, "worker")

    def record_chat(
        self,
        run_id: str,
        model: str,
        provider: str,
        start_ns: int,
        end_ns: int,
        input_tokens: int | None,
        output_tokens: int | None,
        cost_usd: float | None,
        error_type: str | None = None,
    ) -> None:
        """Record one model call as a ``chat {model}`` span (CLIENT) under the run's span.

        Args:
            run_id: The run the call was made for.
            model: The model asked for (``gen_ai.request.model``).
            provider: The provider (``gen_ai.provider.name``: ``openai``, ``anthropic``...).
            start_ns: When the call started, in ns since the epoch (``time.time_ns()``).
            end_ns: When it ended.
            input_tokens: Input tokens used, if known.
            output_tokens: Output tokens used, if known.
            cost_usd: What it cost, if known.
            error_type: Why it failed (an exception type, an HTTP status class), if it did.

        Never raises; a failure is counted in `failures`.
        """
        args = (run_id, model, provider, start_ns, end_ns)
        usage = (input_tokens, output_tokens, cost_usd, error_type)
        q = self._queue
        if self._closed:
            self.dropped += 1
        elif q is None:
            self._chat(*args, *usage)
        elif self._backlog >= self.max_queue:
            self.dropped += 1
        else:
            q.put(lambda: self._chat(*args, *usage))

    def _chat(
        self,
        run_id: str,
        model: str,
        provider: str,
        start_ns: int,
        end_ns: int,
        input_tokens: int | None,
        output_tokens: int | None,
        cost_usd: float | None,
        error_type: str | None,
        extra: Attributes | None = None,
    ) -> None:
        try:
            attrs: Attributes = {
                A.GEN_AI_OPERATION_NAME: A.OP_CHAT,
                A.GEN_AI_PROVIDER_NAME: provider,
                A.GEN_AI_REQUEST_MODEL: model,
                A.GEN_AI_CONVERSATION_ID: run_id,
                A.OPENINFERENCE_SPAN_KIND: A.KIND_LLM,
                A.SESSION_ID: run_id,
                A.LLM_MODEL_NAME: model,
                A.LLM_PROVIDER: provider,
            }
            if input_tokens is not None:
                attrs[A.GEN_AI_USAGE_INPUT_TOKENS] = input_tokens
                attrs[A.LLM_TOKEN_COUNT_PROMPT] = input_tokens
            if output_tokens is not None:
                attrs[A.GEN_AI_USAGE_OUTPUT_TOKENS] = output_tokens
                attrs[A.LLM_TOKEN_COUNT_COMPLETION] = output_tokens
            if input_tokens is not None and output_tokens is not None:
                attrs[A.LLM_TOKEN_COUNT_TOTAL] = input_tokens + output_tokens
            if cost_usd is not None:
                attrs[A.COST_USD] = float(cost_usd)
            if extra:
                attrs.update(extra)
            run = self._runs.get(run_id) or self._ended.get(run_id)
            span = self._tracer.start_span(
                f"{A.OP_CHAT} {model}",
                context=_ROOT if run is None else run.ctx,
                kind=_CLIENT,
                attributes=attrs,
                start_time=start_ns,
            )
            if error_type is not None:
                _error(span, error_type, None)
            span.end(end_time=max(end_ns, start_ns))
        except Exception as exc:
            self._failed(exc, "record_chat")

    # -- lifecycle ---------------------------------------------------------------------------

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        """Build the spans of every event recorded so far and export every ended span
        (waits at most ``timeout_millis``); True if all was done in time."""
        deadline = time.monotonic() + timeout_millis / 1000
        q, worker = self._queue, self._worker
        if q is not None and worker is not None and worker.is_alive():
            drained = threading.Event()
            q.put(drained.set)
            if not drained.wait(timeout_millis / 1000):
                return False
        flush = getattr(self.provider, "force_flush", None)
        if flush is None:
            return True
        try:
            left = max(0, int((deadline - time.monotonic()) * 1000))
            return bool(flush(left))
        except Exception as exc:
            self._failed(exc, "force_flush")
            return False

    def shutdown(self, timeout_s: float = 30.0) -> None:
        """Build the spans of the events queued, end the spans of runs still open (as
        ``abandoned``) and flush them; with ``own_provider``, shut the provider and its
        exporters down too. Later events are dropped. Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._queue is not None and self._worker is not None:
            self._queue.put(None)
            self._worker.join(timeout_s)
            if self._worker.is_alive():  # stuck in an exporter: leave its runs to it
                _log.warning("the tracing worker did not finish within %gs", timeout_s)
                return
        with self._lock:
            runs = list(self._runs.values())
            self._runs.clear()
            late = [r for r in self._ended.values() if r.tools]
        now = time.time_ns()
        for run in runs + late:
            self._abandon(run, now)
        if self.own_provider and isinstance(self.provider, SdkTracerProvider):
            self.provider.shutdown()
        else:
            self.force_flush()

    @property
    def open_runs(self) -> int:
        """How many runs have a span open."""
        return len(self._runs)

    # -- internals ---------------------------------------------------------------------------

    def _failed(self, exc: Exception, what: str) -> None:
        self.failures += 1
        self.last_failure = f"{type(exc).__name__}: {exc}"
        if self.failures == 1:
            _log.warning("tracing failed on %s (later failures are logged at debug)", what)
        _log.debug("tracing failed on %s", what, exc_info=exc)

    def _content(self, value: Any) -> str:
        """Content as a span attribute: redacted, then text as it is, data as JSON."""
        if self.redactor is not None:
            value = self.redactor.redact(value)
        if isinstance(value, str):
            return value
        return orjson.dumps(value, default=repr).decode()

    def _run_of(self, run_id: str) -> _Run:
        """The run's state; a detached one when ``run_started`` was never seen."""
        run = self._runs.get(run_id) or self._ended.get(run_id)
        if run is None:
            run = _Run(None)
            with self._lock:
                run = self._ended.setdefault(run_id, run)
                self._trim_ended()
        return run

    def _trim_ended(self) -> None:
        # Called with the lock held. Drops the oldest; a dropped run's late spans stay open
        # in memory only if nothing ever ends them, which the gateway never does.
        ended = self._ended
        while len(ended) > _ENDED_RUNS_KEPT:
            del ended[next(iter(ended))]

    def _abandon(self, run: _Run, end_ns: int) -> None:
        for span in run.tools.values():
            _error(span, A.ERROR_ABANDONED, None)
            span.end(end_time=end_ns)
        run.tools.clear()
        if run.span is not None and run.span.is_recording():
            _error(run.span, A.ERROR_ABANDONED, None)
            run.span.end(end_time=end_ns)

    def _run_started(self, e: Event) -> None:
        d = e.data
        agent = str(d.get("agent_id", ""))
        attrs: Attributes = {
            A.GEN_AI_OPERATION_NAME: A.OP_INVOKE_AGENT,
            A.GEN_AI_AGENT_ID: agent,
            A.GEN_AI_AGENT_NAME: agent,
            A.GEN_AI_CONVERSATION_ID: e.run_id,
            A.OPENINFERENCE_SPAN_KIND: A.KIND_AGENT,
            A.SESSION_ID: e.run_id,
        }
        if d.get("invoker") is not None:
            attrs[A.USER_ID] = str(d["invoker"])
        for key, name in (
            ("workflow", A.GEN_AI_WORKFLOW_NAME),
            ("policy_version", A.POLICY_VERSION),
            ("invoker", A.INVOKER),
            ("stage", A.POLICY_STAGE),
        ):
            value = d.get(key)
            if value is not None:
                attrs[name] = str(value)
        if self.content and d.get("request") is not None:
            message = {"role": "user", "parts": [{"type": "text", "content": d["request"]}]}
            attrs[A.GEN_AI_INPUT_MESSAGES] = self._content([message])
            attrs[A.INPUT_VALUE] = self._content(d["request"])
            attrs[A.INPUT_MIME_TYPE] = A.MIME_TEXT
        span = self._tracer.start_span(
            f"{A.OP_INVOKE_AGENT} {agent}",
            context=_ROOT,
            kind=_INTERNAL,
            attributes=attrs,
            start_time=_ns(e.at),
        )
        evicted: list[_Run] = []
        with self._lock:
            self._ended.pop(e.run_id, None)
            self._runs[e.run_id] = _Run(span, str(e.data.get("agent_id") or "agent"))
            while len(self._runs) > self.max_open_runs:
                oldest = next(iter(self._runs))
                evicted.append(self._runs.pop(oldest))
        for run in evicted:
            self._abandon(run, _ns(e.at))

    def _run_event(self, e: Event, attrs: Attributes) -> None:
        span = self._run_of(e.run_id).span
        if span is not None:
            span.add_event(_EVENT_NAME[e.type], attrs, _ns(e.at))

    def _context_read(self, e: Event) -> None:
        d = e.data
        self._run_event(
            e,
            {A.PROVENANCE_SOURCE: str(d.get("source")), A.PROVENANCE_TRUST: str(d.get("trust"))},
        )

    def _model_call(self, e: Event) -> None:
        """A router call: a ``chat {provider's model id}`` CLIENT span (the id a backend
        prices by) ending when the event was recorded; its messages with content on."""
        d = e.data
        end_ns = int(e.at * 1e9)
        start_ns = end_ns - int(float(d.get("latency_s") or 0.0) * 1e9)
        model = str(d.get("model"))
        request_model = str(d.get("request_model") or model)
        extra: Attributes = {A.ROUTER_MODEL: model, A.MODEL_ROLE: str(d.get("role"))}
        if d.get("response_model"):
            extra[A.GEN_AI_RESPONSE_MODEL] = str(d["response_model"])
            extra[A.LLM_MODEL_NAME] = str(d["response_model"])
        if d.get("finish_reason"):
            extra[A.GEN_AI_RESPONSE_FINISH_REASONS] = [str(d["finish_reason"])]
        if isinstance(d.get("temperature"), int | float):
            extra[A.GEN_AI_REQUEST_TEMPERATURE] = float(d["temperature"])
        if isinstance(d.get("max_tokens"), int):
            extra[A.GEN_AI_REQUEST_MAX_TOKENS] = int(d["max_tokens"])
        debug = e.debug_content() if self.content else None
        if debug:
            extra.update(self._messages(debug))
        self._chat(
            e.run_id,
            request_model,
            str(d.get("provider")),
            start_ns,
            end_ns,
            int(d.get("input_tokens") or 0),
            int(d.get("output_tokens") or 0),
            float(d.get("cost_usd") or 0.0),
            d.get("error_type"),
            extra,
        )

    def _messages(self, debug: dict[str, Any]) -> Attributes:
        """A model call's prompt and answer (GenAI messages) as the GenAI, OpenInference
        and Langfuse attributes, each redacted."""
        inputs = debug.get("input") or []
        outputs = debug.get("output") or []
        attrs: Attributes = {
            A.GEN_AI_INPUT_MESSAGES: self._content(inputs),
            A.INPUT_VALUE: self._content(inputs),
            A.INPUT_MIME_TYPE: A.MIME_JSON,
        }
        if len(inputs) <= A.LLM_MESSAGES_FLATTENED:
            for i, message in enumerate(inputs):
                self._flatten(attrs, f"{A.LLM_INPUT_MESSAGES}.{i}.message", message)
        if outputs:
            attrs[A.GEN_AI_OUTPUT_MESSAGES] = self._content(outputs)
            texts = [p.get("content") for p in outputs[0]["parts"] if p.get("type") == "text"]
            if texts and len(texts) == len(outputs[0]["parts"]):
                attrs[A.OUTPUT_VALUE] = self._content("".join(str(t) for t in texts))
                attrs[A.OUTPUT_MIME_TYPE] = A.MIME_TEXT
            else:
                attrs[A.OUTPUT_VALUE] = self._content(outputs)
                attrs[A.OUTPUT_MIME_TYPE] = A.MIME_JSON
            self._flatten(attrs, f"{A.LLM_OUTPUT_MESSAGES}.0.message", outputs[0])
        return attrs

    def _flatten(self, attrs: Attributes, prefix: str, message: dict[str, Any]) -> None:
        attrs[f"{prefix}.role"] = str(message.get("role"))
        calls = 0
        for part in message.get("parts") or ():
            kind = part.get("type")
            if kind == "text":
                attrs[f"{prefix}.content"] = self._content(str(part.get("content")))
            elif kind == "tool_call_response":
                attrs[f"{prefix}.content"] = self._content(str(part.get("response")))
                attrs[f"{prefix}.tool_call_id"] = str(part.get("id"))
            elif kind == "tool_call":
                call = f"{prefix}.tool_calls.{calls}.tool_call"
                attrs[f"{call}.id"] = str(part.get("id"))
                attrs[f"{call}.function.name"] = str(part.get("name"))
                attrs[f"{call}.function.arguments"] = self._content(str(part.get("arguments")))
                calls += 1

    def _plan(self, e: Event) -> None:
        """A planner's plan: its own ``plan {agent}`` span under the run (the steps are
        content: recorded only with content capture on)."""
        run = self._runs.get(e.run_id)
        if run is None:
            return
        at = int(e.at * 1e9)
        attrs: Attributes = {
            A.GEN_AI_OPERATION_NAME: A.OP_PLAN,
            A.GEN_AI_CONVERSATION_ID: e.run_id,
        }
        steps = e.data.get("steps") or []
        if self.content:
            attrs["opsgate.plan.steps"] = orjson.dumps(steps).decode()
        if e.type == EventType.PLAN_COMMITTED:  # committed intent: tool names are not content
            attrs[A.PLAN_COMMITTED] = bool(e.data.get("accepted"))
            attrs[A.PLAN_TOOLS] = [str(t) for t in e.data.get("tools") or []]
            if e.data.get("reason"):
                attrs[A.PLAN_REFUSED] = str(e.data["reason"])
        span = self._tracer.start_span(
            f"{A.OP_PLAN} {run.agent}",
            context=run.ctx,
            kind=_INTERNAL,
            attributes=attrs,
            start_time=at,
        )
        span.end(end_time=at)

    def _step(self, e: Event) -> None:
        self._run_event(e, {A.RUN_STEPS: int(e.data.get("step", 0))})

    def _write(self, e: Event) -> None:
        d = e.data
        self._run_event(
            e,
            {A.GEN_AI_TOOL_CALL_ID: str(d.get("call_id")), A.GEN_AI_TOOL_NAME: str(d.get("tool"))},
        )

    def _proposed(self, e: Event) -> None:
        d = e.data
        tool = str(d.get("tool"))
        call_id = str(d.get("call_id"))
        attrs: Attributes = {
            A.GEN_AI_OPERATION_NAME: A.OP_EXECUTE_TOOL,
            A.GEN_AI_TOOL_NAME: tool,
            A.GEN_AI_TOOL_CALL_ID: call_id,
            A.GEN_AI_TOOL_TYPE: A.TOOL_TYPE_FUNCTION,
            A.GEN_AI_CONVERSATION_ID: e.run_id,
            A.OPENINFERENCE_SPAN_KIND: A.KIND_TOOL,
            A.TOOL_NAME: tool,
            A.SESSION_ID: e.run_id,
        }
        if self.content:
            arguments = self._content(d.get("args"))
            attrs[A.GEN_AI_TOOL_CALL_ARGUMENTS] = arguments
            attrs[A.INPUT_VALUE] = arguments
            attrs[A.INPUT_MIME_TYPE] = A.MIME_JSON
        run = self._run_of(e.run_id)
        run.tools[call_id] = self._tracer.start_span(
            f"{A.OP_EXECUTE_TOOL} {tool}",
            context=run.ctx,
            kind=_INTERNAL,
            attributes=attrs,
            start_time=_ns(e.at),
        )

    def _tool(self, e: Event) -> tuple[_Run, trace_api.Span | None]:
        run = self._run_of(e.run_id)
        return run, run.tools.get(str(e.data.get("call_id")))

    def _decision(self, e: Event) -> None:
        d = e.data
        run, span = self._tool(e)
        effect = str(d.get("effect"))
        reason = str(d.get("reason"))
        attrs: Attributes = {
            A.DECISION: effect,
            A.DECISION_REASON: reason,
            A.DECISION_RULE: str(d.get("rule")),
        }
        if d.get("argument") is not None:
            attrs[A.DECISION_ARGUMENT] = str(d["argument"])
        if d.get("cap") is not None:
            attrs[A.DECISION_CAP] = str(d["cap"])
        at = _ns(e.at)
        if span is None:  # no proposal seen: keep the decision on the run span
            attrs[A.GEN_AI_TOOL_CALL_ID] = str(d.get("call_id"))
            attrs[A.GEN_AI_TOOL_NAME] = str(d.get("tool"))
            self._run_event(e, attrs)
            return
        deny = effect == "deny"
        if deny:
            attrs[A.ERROR_TYPE] = reason
        span.set_attributes(attrs)
        self._guardrail(span, e.run_id, d, effect, reason, at)
        # The event marks the time; the details are the span's (not repeated: hot path).
        event_attrs: Attributes = {A.DECISION: effect}
        message = d.get("message") if self.content else None
        text = None if message is None else self._content(message)
        if text is not None:
            event_attrs[A.DECISION_MESSAGE] = text
        span.add_event(_EVENT_NAME[e.type], event_attrs, at)
        if deny:
            run.tools.pop(str(d.get("call_id")), None)
            # the reason code is never sensitive: the status says it when content is off
            span.set_status(Status(StatusCode.ERROR, text or reason))
            span.end(end_time=at)

    def _guardrail(
        self,
        parent: trace_api.Span,
        run_id: str,
        d: dict[str, Any],
        effect: str,
        reason: str,
        at: int,
    ) -> None:
        """The decision as an ``apply_guardrail`` child span of the call it guards."""
        attrs: Attributes = {
            A.GEN_AI_OPERATION_NAME: A.OP_APPLY_GUARDRAIL,
            A.GEN_AI_CONVERSATION_ID: run_id,
            A.OPENINFERENCE_SPAN_KIND: A.KIND_GUARDRAIL,
            A.GEN_AI_GUARDIAN_NAME: A.GUARDIAN_NAME,
            A.GEN_AI_SECURITY_TARGET_TYPE: A.TARGET_TOOL_CALL,
            A.GEN_AI_SECURITY_DECISION_TYPE: A.GUARDRAIL_DECISION.get(effect, effect),
            A.GEN_AI_SECURITY_DECISION_CODE: reason,
            A.GEN_AI_SECURITY_POLICY_ID: str(d.get("rule")),
        }
        if d.get("policy_version") is not None:
            attrs[A.GEN_AI_SECURITY_POLICY_VERSION] = str(d["policy_version"])
        span = self._tracer.start_span(
            f"{A.OP_APPLY_GUARDRAIL} {A.GUARDIAN_NAME} {A.TARGET_TOOL_CALL}",
            context=trace_api.set_span_in_context(parent),
            kind=_INTERNAL,
            attributes=attrs,
            start_time=at,
        )
        span.end(end_time=at)

    def _approval_requested(self, e: Event) -> None:
        d = e.data
        _, span = self._tool(e)
        if span is not None:
            span.add_event(
                _EVENT_NAME[e.type],
                {
                    A.APPROVAL_REQUEST_ID: str(d.get("request_id")),
                    A.DECISION_REASON: str(d.get("reason")),
                    A.DECISION_RULE: str(d.get("rule")),
                },
                _ns(e.at),
            )

    def _approval_answered(self, e: Event) -> None:
        d = e.data
        run, span = self._tool(e)
        if span is None:
            return
        approver = str(d.get("approver"))
        attrs: Attributes = {
            A.APPROVAL_REQUEST_ID: str(d.get("request_id")),
            A.APPROVAL_APPROVER: approver,
        }
        if self.content and d.get("reason"):
            attrs[A.APPROVAL_REASON] = self._content(d["reason"])
        at = _ns(e.at)
        span.set_attribute(A.APPROVAL_APPROVER, approver)
        span.add_event(_EVENT_NAME[e.type], attrs, at)
        if e.type == EventType.APPROVAL_DENIED:
            run.tools.pop(str(d.get("call_id")), None)
            _error(span, EventType.APPROVAL_DENIED.value, None)
            span.end(end_time=at)

    def _retry(self, e: Event) -> None:
        d = e.data
        _, span = self._tool(e)
        if span is None:
            return
        attrs: Attributes = {
            A.TOOL_ATTEMPTS: int(d.get("attempt", 0)),
            A.ERROR_TYPE: str(d.get("error_type")),
        }
        if self.content and d.get("error") is not None:
            attrs[A.ERROR_MESSAGE] = self._content(d["error"])
        span.add_event(_EVENT_NAME[e.type], attrs, _ns(e.at))

    def _result(self, e: Event) -> None:
        d = e.data
        run, span = self._tool(e)
        if span is None:
            return
        run.tools.pop(str(d.get("call_id")), None)
        attrs: Attributes = {
            A.PROVENANCE_TRUST: str(d.get("trust")),
            A.TOOL_ATTEMPTS: int(d.get("attempts", 1)),
        }
        if self.content:
            result = self._content(d.get("result"))
            attrs[A.GEN_AI_TOOL_CALL_RESULT] = result
            attrs[A.OUTPUT_VALUE] = result
            attrs[A.OUTPUT_MIME_TYPE] = (
                A.MIME_TEXT if isinstance(d.get("result"), str) else A.MIME_JSON
            )
        span.set_attributes(attrs)
        span.end(end_time=_ns(e.at))

    def _tool_error(self, e: Event) -> None:
        d = e.data
        run, span = self._tool(e)
        if span is None:
            return
        run.tools.pop(str(d.get("call_id")), None)
        span.set_attribute(A.TOOL_ATTEMPTS, int(d.get("attempts", 0)))
        text = self._content(d["error"]) if self.content and d.get("error") else None
        _error(span, str(d.get("error_type")), text)
        span.end(end_time=_ns(e.at))

    def _escalated(self, e: Event) -> None:
        d = e.data
        reason = str(d.get("reason"))
        attrs: Attributes = {A.ESCALATION_REASON: reason}
        if d.get("cap") is not None:
            attrs[A.DECISION_CAP] = str(d["cap"])
        if self.content and d.get("message") is not None:
            attrs[A.ESCALATION_MESSAGE] = self._content(d["message"])
        self._run_event(e, attrs)
        run = self._run_of(e.run_id)
        at = _ns(e.at)
        for span in run.tools.values():  # calls the escalation cut off (approval expired)
            span.add_event(_EVENT_NAME[e.type], attrs, at)
            _error(span, reason, None)
            span.end(end_time=at)
        run.tools.clear()

    def _run_ended(self, e: Event) -> None:
        d = e.data
        with self._lock:
            run = self._runs.pop(e.run_id, None)
            if run is None:
                return
            self._ended[e.run_id] = run
            self._trim_ended()
        at = _ns(e.at)
        for tool_span in run.tools.values():
            _error(tool_span, A.ERROR_UNFINISHED, None)
            tool_span.end(end_time=at)
        run.tools.clear()
        span = run.span
        if span is None:  # pragma: no cover - open runs always have a span
            return
        status = str(d.get("status"))
        attrs: Attributes = {
            A.RUN_STATUS: status,
            A.RUN_REASON: str(d.get("reason")),
            A.COST_USD: float(d.get("cost_usd") or 0.0),
        }
        for key, name in _END_COUNTS:
            value = d.get(key)
            if value is not None:
                attrs[name] = int(value)
        if self.content and d.get("output") is not None:
            output = d["output"]
            text = output if isinstance(output, str) else orjson.dumps(output).decode()
            # the GenAI output message schema requires a finish reason (backends drop the
            # messages without one)
            message = {
                "role": "assistant",
                "parts": [{"type": "text", "content": text}],
                "finish_reason": "stop",
            }
            attrs[A.GEN_AI_OUTPUT_MESSAGES] = self._content([message])
            attrs[A.OUTPUT_VALUE] = self._content(text)
            attrs[A.OUTPUT_MIME_TYPE] = A.MIME_TEXT
        span.set_attributes(attrs)
        if status != "completed":
            # the reason (`cap_exceeded`, `approval_expired`, `model_error`), not the status
            reason = str(d.get("reason") or "") or status
            _error(span, reason, reason)
        span.end(end_time=at)


_END_COUNTS: tuple[tuple[str, str], ...] = (
    ("steps", A.RUN_STEPS),
    ("tool_calls", A.RUN_TOOL_CALLS),
    ("refusals", A.RUN_REFUSALS),
    ("denials", A.RUN_DENIALS),
    ("errors", A.RUN_ERRORS),
    ("retries", A.RUN_RETRIES),
)


def _shutdown_at_exit(ref: weakref.ref[TraceRecorder]) -> None:
    recorder = ref()
    if recorder is not None:
        recorder.shutdown(timeout_s=5.0)
