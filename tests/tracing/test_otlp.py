"""OTLP/HTTP export to a real receiver on loopback: the spans arrive as protobuf, with the
GenAI names and attributes, and no secret or e-mail address is in the bytes sent."""

from __future__ import annotations

import asyncio
import gzip
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span as PbSpan
from sqlalchemy import func, select

from opsgate.contracts import Toolbelt, tool
from opsgate.gateway import Gateway, MappingSecretStore
from opsgate.models import Message, ModelResponse, ToolCall, Usage, genai_messages
from opsgate.policy import load_policy
from opsgate.recorder import Event, EventType
from opsgate.redaction import Redactor
from opsgate.store import open_store
from opsgate.store import spans as spans_table
from opsgate.tracing import TraceRecorder, tracing_recorder
from opsgate.tracing import attributes as A
from tests.conftest import BASE_POLICY, BELT

DB_PASSWORD = "hunter2-correct-horse"
PAY_KEY = "sk-live-TOPSECRET"
EMAIL = "ana@example.com"
INVOKER = "alice.smith@corp.example.com"


@tool(scope="read")
def leaky(order_id: str) -> dict[str, Any]:
    """Returns a credential and a customer's address along with the order."""
    return {"order_id": order_id, "note": f"db password {DB_PASSWORD}", "customer": EMAIL}


BELT_WITH_LEAKY = Toolbelt([*BELT, leaky])
POLICY = BASE_POLICY.replace(
    "      slow: {timeout_seconds: 0.2}\n", "      slow: {timeout_seconds: 0.2}\n      leaky: {}\n"
) % {"stage": "autonomous_in_scope"}


class Receiver(ThreadingHTTPServer):
    """An OTLP/HTTP trace receiver that keeps the raw body of every request."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.requests: list[tuple[str, str, bytes]] = []
        self.lock = threading.Lock()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def spans(self) -> list[PbSpan]:
        out: list[PbSpan] = []
        for _, _, body in self.requests:
            request = ExportTraceServiceRequest.FromString(body)
            for rs in request.resource_spans:
                for ss in rs.scope_spans:
                    out.extend(ss.spans)
        return out

    def service_names(self) -> set[str]:
        names = set()
        for _, _, body in self.requests:
            for rs in ExportTraceServiceRequest.FromString(body).resource_spans:
                names |= {
                    kv.value.string_value
                    for kv in rs.resource.attributes
                    if kv.key == "service.name"
                }
        return names


class _Handler(BaseHTTPRequestHandler):
    server: Receiver

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        with self.server.lock:
            self.server.requests.append((self.path, self.headers.get("Content-Type", ""), body))
        if self.path != "/v1/traces":
            self.send_response(404)
            self.end_headers()
            return
        reply = ExportTraceServiceResponse().SerializeToString()
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def receiver(monkeypatch: pytest.MonkeyPatch) -> Iterator[Receiver]:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    for name in (A.OTLP_ENDPOINT_ENV, A.OTEL_TRACES_ENDPOINT_ENV, A.OTEL_ENDPOINT_ENV):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv(A.TRACE_CONTENT_ENV, raising=False)
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_TRACES_COMPRESSION", raising=False)
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_COMPRESSION", raising=False)
    server = Receiver()
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def _attrs(span: PbSpan) -> dict[str, Any]:
    def value(v: AnyValue) -> Any:
        kind = v.WhichOneof("value")
        if kind == "array_value":
            return [value(x) for x in v.array_value.values]
        return getattr(v, kind) if kind else None

    return {kv.key: value(kv.value) for kv in span.attributes}


def _run(recorder: TraceRecorder) -> str:
    gateway = Gateway(
        BELT_WITH_LEAKY,
        load_policy("p", BELT_WITH_LEAKY, text=POLICY),
        recorder=recorder,
        secrets=MappingSecretStore({"PAY_KEY": PAY_KEY}),
    )
    # The invoker is always recorded (not content), as an identity: the exporter keeps it.
    run = gateway.start_run("wf", invoker=INVOKER, agent_id="bot", request=f"ORD-7 for {EMAIL}")

    async def calls() -> None:
        assert (await gateway.call(run, "leaky", {"order_id": "ORD-7"}, call_id="c-leaky")).ok
        await gateway.call(run, "send", {"to": "evil@attacker.test", "body": "x"}, call_id="c-s")

    asyncio.run(calls())
    gateway.finish(run, output=f"done for {EMAIL}")
    gateway.close()
    return run.run_id


def test_spans_reach_an_otlp_receiver_redacted(receiver: Receiver) -> None:
    recorder = tracing_recorder(
        None,
        otlp_endpoint=receiver.base_url,  # a base URL: /v1/traces is appended
        content=True,
        redactor=Redactor(secrets={"DB_PASSWORD": DB_PASSWORD}),
    )
    run_id = _run(recorder)
    assert recorder.force_flush(10_000)
    assert receiver.requests, "nothing was exported"
    for path, content_type, body in receiver.requests:
        assert path == "/v1/traces" and content_type == "application/x-protobuf"
        for needle in (DB_PASSWORD, PAY_KEY, EMAIL, "evil@attacker.test"):
            assert needle.encode() not in body, needle

    spans = {s.name: s for s in receiver.spans()}
    assert set(spans) == {
        "invoke_agent bot",
        "execute_tool leaky",
        "execute_tool send",
        "apply_guardrail opsgate tool_call",
    }
    root, leaky_span, send = (
        spans["invoke_agent bot"],
        spans["execute_tool leaky"],
        spans["execute_tool send"],
    )
    assert root.kind == PbSpan.SPAN_KIND_INTERNAL and not root.parent_span_id
    for child in (leaky_span, send):
        assert child.kind == PbSpan.SPAN_KIND_INTERNAL
        assert child.parent_span_id == root.span_id and child.trace_id == root.trace_id
        assert root.start_time_unix_nano <= child.start_time_unix_nano
        assert child.end_time_unix_nano <= root.end_time_unix_nano

    ra = _attrs(root)
    assert ra[A.GEN_AI_OPERATION_NAME] == "invoke_agent"
    assert ra[A.GEN_AI_CONVERSATION_ID] == run_id and ra[A.GEN_AI_AGENT_ID] == "bot"
    assert ra[A.GEN_AI_WORKFLOW_NAME] == "wf" and ra[A.RUN_STATUS] == "completed"
    assert ra[A.INVOKER] == INVOKER
    la = _attrs(leaky_span)
    assert la[A.GEN_AI_OPERATION_NAME] == "execute_tool"
    assert la[A.GEN_AI_TOOL_NAME] == "leaky" and la[A.GEN_AI_TOOL_CALL_ID] == "c-leaky"
    assert la[A.GEN_AI_TOOL_CALL_RESULT] == (
        '{"order_id":"ORD-7","note":"db password [redacted:secret:DB_PASSWORD]",'
        '"customer":"[redacted:email]"}'
    )
    sa = _attrs(send)
    assert sa[A.ERROR_TYPE] == "arg_constraint"
    assert send.status.code == send.status.STATUS_CODE_ERROR
    assert [e.name for e in send.events] == ["opsgate.decision"]
    guards = [s for s in receiver.spans() if s.name == "apply_guardrail opsgate tool_call"]
    assert sorted(_attrs(g)[A.GEN_AI_SECURITY_DECISION_TYPE] for g in guards) == ["allow", "deny"]
    assert {g.parent_span_id for g in guards} == {leaky_span.span_id, send.span_id}
    assert receiver.service_names() == {"opsgate"}
    recorder.shutdown()


def test_endpoint_and_content_come_from_the_environment(
    receiver: Receiver, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv(A.OTLP_ENDPOINT_ENV, receiver.base_url + "/v1/traces")
    monkeypatch.setenv("OTEL_SERVICE_NAME", "support-bot")
    with open_store(f"sqlite:///{tmp_path / 'traces.db'}") as store:
        recorder = tracing_recorder(store)  # both exporters; content off (env unset)
        assert recorder.content is False
        _run(recorder)
        recorder.shutdown()  # flushes both
        with store.engine.connect() as conn:
            stored = conn.execute(select(func.count()).select_from(spans_table)).scalar()
    spans = receiver.spans()
    assert stored == len(spans) == 5  # the run, two calls and the gate's two decisions
    assert receiver.service_names() == {"support-bot"}
    for s in spans:
        attrs = _attrs(s)
        assert A.GEN_AI_TOOL_CALL_ARGUMENTS not in attrs
        assert A.GEN_AI_TOOL_CALL_RESULT not in attrs
        assert A.GEN_AI_INPUT_MESSAGES not in attrs
        assert A.INPUT_VALUE not in attrs and A.OUTPUT_VALUE not in attrs


def test_content_env_turns_capture_on(receiver: Receiver, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(A.TRACE_CONTENT_ENV, "True")
    monkeypatch.setenv(A.OTEL_ENDPOINT_ENV, receiver.base_url)
    recorder = tracing_recorder(None)
    assert recorder.content is True
    _run(recorder)
    recorder.shutdown()
    (leaky_span,) = [s for s in receiver.spans() if s.name == "execute_tool leaky"]
    assert _attrs(leaky_span)[A.GEN_AI_TOOL_CALL_ARGUMENTS] == '{"order_id":"ORD-7"}'


def test_phoenix_and_langfuse_find_what_they_read(
    receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue #12: the attributes each backend reads, checked on the protobuf a real receiver
    got: OpenInference span kinds, the run's input and output, the user and the session,
    the model and its tokens on LLM spans, a finish reason on output messages, the project
    (a resource attribute), the escalation reason as the error type; content stays opt-in
    and redacted."""
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "openinference.project.name=shop-support")
    recorder = tracing_recorder(None, otlp_endpoint=receiver.base_url, content=True)
    run_id = _run(recorder)
    asked = [Message.system("Be brief."), Message.user(f"refund ORD-7 for {EMAIL}")]
    answer = ModelResponse(
        None,
        (ToolCall("c1", "leaky", '{"order_id": "ORD-7"}'),),
        Usage(120, 30),
        "tool_calls",
        "gpt-4o-mini-2024-07-18",
        0.2,
        1,
        (0.2,),
    )
    data = {
        "role": "act",
        "model": "small",
        "provider": "openai",
        "latency_s": 0.2,
        "input_tokens": 120,
        "output_tokens": 30,
        "cost_usd": 0.0004,
        "error_type": None,
        "request_model": "gpt-4o-mini",
        "response_model": "gpt-4o-mini-2024-07-18",
        "finish_reason": "tool_calls",
        "temperature": 0.0,
        "max_tokens": 256,
    }
    messages = genai_messages(asked, answer)
    recorder.record(Event(EventType.MODEL_CALL, run_id, 99, time.time(), data, lambda: messages))
    assert recorder.force_flush(10_000)
    recorder.shutdown()
    spans = receiver.spans()
    by_kind: dict[str, list[PbSpan]] = {}
    for s in spans:
        by_kind.setdefault(_attrs(s)[A.OPENINFERENCE_SPAN_KIND], []).append(s)
    assert {k: len(v) for k, v in by_kind.items()} == {
        "AGENT": 1,
        "TOOL": 2,
        "GUARDRAIL": 2,
        "LLM": 1,
    }
    (root,) = by_kind["AGENT"]
    ra = _attrs(root)
    assert ra[A.USER_ID] == INVOKER and ra[A.SESSION_ID] == run_id
    assert ra[A.INPUT_VALUE] == "ORD-7 for [redacted:email]"  # content, redacted
    assert ra[A.OUTPUT_VALUE] == "done for [redacted:email]"
    assert ra[A.INPUT_MIME_TYPE] == ra[A.OUTPUT_MIME_TYPE] == "text/plain"
    (message,) = json.loads(ra[A.GEN_AI_OUTPUT_MESSAGES])
    assert message["finish_reason"] == "stop" and message["role"] == "assistant"
    (chat,) = by_kind["LLM"]
    ca = _attrs(chat)
    assert chat.name == "chat gpt-4o-mini" and ca[A.GEN_AI_REQUEST_MODEL] == "gpt-4o-mini"
    # Phoenix prices by llm.model_name: the model that answered, as the provider named it
    assert ca[A.LLM_MODEL_NAME] == ca[A.GEN_AI_RESPONSE_MODEL] == "gpt-4o-mini-2024-07-18"
    assert ca[A.GEN_AI_REQUEST_MAX_TOKENS] == 256 and ca[A.GEN_AI_REQUEST_TEMPERATURE] == 0.0
    assert (ca[A.LLM_TOKEN_COUNT_PROMPT], ca[A.LLM_TOKEN_COUNT_COMPLETION]) == (120, 30)
    assert ca["llm.input_messages.1.message.content"] == "refund ORD-7 for [redacted:email]"
    assert EMAIL not in ca[A.GEN_AI_INPUT_MESSAGES] and EMAIL not in ca[A.INPUT_VALUE]
    call = "llm.output_messages.0.message.tool_calls.0.tool_call.function.name"
    assert ca[call] == "leaky" and "tool_call" in ca[A.GEN_AI_OUTPUT_MESSAGES]
    assert ca[A.LLM_TOKEN_COUNT_TOTAL] == 150 and chat.parent_span_id == root.span_id
    tools = {_attrs(s)[A.TOOL_NAME]: _attrs(s) for s in by_kind["TOOL"]}
    assert tools["leaky"][A.INPUT_VALUE] == '{"order_id":"ORD-7"}'
    assert tools["leaky"][A.OUTPUT_MIME_TYPE] == "application/json"
    projects = {
        kv.value.string_value
        for _, _, body in receiver.requests
        for rs in ExportTraceServiceRequest.FromString(body).resource_spans
        for kv in rs.resource.attributes
        if kv.key == A.PROJECT_NAME
    }
    assert projects == {"shop-support"}
