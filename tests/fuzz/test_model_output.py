"""Fuzzing what a model sends back (issue #11): chat-completion bodies (arbitrary bytes,
truncated JSON, wrong types, huge strings, deep nesting, unicode edge cases), JSON-constrained
tool calls, lane and plan documents, and ``Retry-After`` headers.

The invariants: the parsers return a value or their own malformed-answer error; the client
returns a response or raises a `ModelError`; and an agent driven by such a model, through
the real client, router, gateway and audit trail, always ends its run with a recorded
status and reason, loses no event (every model attempt, every proposed call's decision),
and leaves a trail that verifies."""

from __future__ import annotations

import asyncio
import math
from collections import deque
from typing import Any

import httpx
import orjson
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from opsgate.agent import HumanInTheLoopAgent, PlannerExecutor, RouterToolAgent
from opsgate.contracts import Toolbelt
from opsgate.errors import ModelError, ModelOutputError
from opsgate.examples.support_triage import POLICY_PATH, tools
from opsgate.examples.support_triage.agent import LANES
from opsgate.examples.support_triage.world import demo_world
from opsgate.gateway import (
    ApprovalAnswer,
    CallbackApprover,
    Gateway,
    MappingSecretStore,
    RunStatus,
)
from opsgate.models import (
    ROLES,
    Message,
    ModelResponse,
    ModelRouter,
    ModelSettings,
    OpenAICompatibleClient,
    ToolCall,
    Usage,
    as_plain_text,
    complete_tool_call,
    estimate_tokens,
    failed_responses,
    load_router_config,
    parse_constrained,
    parse_retry_after,
)
from opsgate.models._openai import _Malformed, parse_completion  # tests this module
from opsgate.policy import load_policy
from opsgate.provenance import ContextItem
from opsgate.recorder import EventType, InMemoryRecorder
from tests.fuzz._audited import AuditedStore
from tests.fuzz._hostile import (
    EDGE_STRINGS,
    json_values,
    mutated,
    raw_json,
    render,
    scaled,
)

BELT = Toolbelt.from_module(tools)
POLICY = load_policy(POLICY_PATH, BELT)
TOOL_NAMES = BELT.names()
ARG_NAMES = sorted({a for c in BELT for a in c.arg_names})

#: What a JSON field of a model's answer may hold.
json_fields: st.SearchStrategy[Any] = st.one_of(json_values, raw_json)

#: Values an argument may take: plausible ones (the gate then decides), and hostile ones.
argument_values: st.SearchStrategy[Any] = st.one_of(
    st.sampled_from(
        [
            "ORD-1001",
            "ORD-1003",
            "ORD-9999",
            "T-1",
            "T-3",
            "C-100",
            40.0,
            25,
            500,
            -1,
            "40",
            "damaged",
            "goodwill",
            "ana.ruiz@example.com",
            "evil@attacker.test",
            "Refunded the damaged mug.",
        ]
    ),
    json_fields,
)

#: The arguments text of a tool call: an object of (mostly) real argument names, or any
#: JSON, or JSON cut short, or no JSON at all.
call_arguments: st.SearchStrategy[str] = st.one_of(
    st.dictionaries(
        st.one_of(st.sampled_from(ARG_NAMES), st.text(max_size=6)), argument_values, max_size=4
    ).map(render),
    json_fields.map(render),
    st.tuples(
        st.dictionaries(st.sampled_from(ARG_NAMES), argument_values, max_size=3).map(render),
        st.integers(0, 40),
    ).map(lambda cut: cut[0][: cut[1]]),
    st.text(),
)

tool_names: st.SearchStrategy[str] = st.one_of(
    st.sampled_from(TOOL_NAMES), st.sampled_from(EDGE_STRINGS), st.text(max_size=10)
)

_LANE = {"lane": "refund", "confidence": 0.9, "question": "Which order?"}
_PLAN = {
    "steps": [
        {"tool": "get_ticket", "purpose": "read it"},
        {"tool": "get_order_status", "purpose": "check"},
        {"tool": "add_internal_note", "purpose": "say what was done"},
    ]
}
_CONSTRAINED_CALL = {"name": "get_order_status", "arguments": {"order_id": "ORD-1003"}}

#: The text of an answer: prose, or one of the JSON documents a pattern reads (a lane, a
#: plan, a constrained tool call), whole or mutated one field at a time.
answer_text: st.SearchStrategy[str] = st.one_of(
    st.text(),
    st.sampled_from(EDGE_STRINGS),
    *(
        st.one_of(st.just(doc), mutated(doc, values=json_fields)).map(render)
        for doc in (_LANE, _PLAN, _CONSTRAINED_CALL)
    ),
    st.builds(
        lambda name, args: f'{{"name": {orjson.dumps(name).decode()}, "arguments": {args}}}',
        tool_names.filter(lambda n: "\ud800" not in n and "\udfff" not in n),
        call_arguments,
    ),
)


def _completion(text: str | None, calls: list[tuple[str, str]]) -> dict[str, Any]:
    """A chat-completion body as OpenAI sends it (ids and time fixed: hypothesis replays a
    draw and must get the same bytes)."""
    message: dict[str, Any] = {"role": "assistant", "content": text}
    if calls:
        message["tool_calls"] = [
            {"id": f"call_{i}", "type": "function", "function": {"name": n, "arguments": a}}
            for i, (n, a) in enumerate(calls)
        ]
    return {
        "id": "chatcmpl-fuzz",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": "fuzz-model",
        "choices": [
            {"index": 0, "message": message, "finish_reason": "tool_calls" if calls else "stop"}
        ],
        "usage": {"prompt_tokens": 12, "completion_tokens": 5, "total_tokens": 17},
    }


def _body(doc: Any) -> bytes:
    # lone surrogates go out as CESU-8 bytes: what a broken server could send
    return render(doc).encode("utf-8", "surrogatepass")


@st.composite
def completion_bodies(draw: st.DrawFn) -> bytes:
    """A chat-completion body: well formed with hostile content, mutated in its structure,
    cut short, or not JSON at all."""
    calls = draw(st.lists(st.tuples(tool_names, call_arguments), max_size=3))
    text = draw(st.none() | answer_text)
    doc = _completion(text, calls)
    shape = draw(st.sampled_from(["whole", "mutated", "truncated", "bytes"]))
    if shape == "mutated":
        doc = draw(mutated(doc, values=json_fields))
    body = _body(doc)
    if shape == "truncated":
        body = body[: draw(st.integers(0, max(len(body) - 1, 0)))]
    if shape == "bytes":
        body = draw(st.binary(max_size=64))
    return body


RETRY_AFTER = (
    "0",
    "0.001",
    "-1",
    "1e400",
    "nan",
    "inf",
    "",
    " ",
    "Wed, 21 Oct 2015 07:28:00 GMT",
    "Mon, 01 Jan 0001 00:00:00 -2359",
    "Fri, 31 Dec 9999 23:59:59 +2359",
    "Fri, 31 Dec 9999 23:59:60 GMT",
    "Thu, 01 Jan 1970 00:00:00 +9999",
    "Sun, 06 Nov 1994 08:49:37",
    "99999999999999999999999999",
)
header_text: st.SearchStrategy[str] = st.one_of(
    st.sampled_from(RETRY_AFTER), st.text(st.characters(min_codepoint=32, max_codepoint=126))
)


# -- the parsers -----------------------------------------------------------------------------


@given(body=completion_bodies())
@example(
    body=b'{"choices": [{"message": {"tool_calls": [{"function": {"name": "x", '
    b'"arguments": ' + b"[" * 300 + b"]" * 300 + b"}}]}}]}"
)  # deeper than orjson writes
def test_a_completion_body_parses_or_is_malformed(body: bytes) -> None:
    """Whatever a server sends with a 200: the client's first parser."""
    try:
        text, calls, usage, finish, model = parse_completion(body, "fallback-model")
    except _Malformed as exc:
        assert str(exc)
        return
    assert text is None or isinstance(text, str)
    assert isinstance(finish, str) and finish and isinstance(model, str) and model
    assert min(usage.input_tokens, usage.output_tokens, usage.cached_input_tokens) >= 0
    for call in calls:
        assert isinstance(call.id, str) and call.id
        assert isinstance(call.name, str) and isinstance(call.arguments, str)


@given(ms=st.none() | header_text, value=st.none() | header_text)
def test_retry_after_is_a_finite_wait_or_nothing(ms: str | None, value: str | None) -> None:
    """A server sets how long the client sleeps: never forever, never negative."""
    headers = {k: v for k, v in (("retry-after-ms", ms), ("retry-after", value)) if v is not None}
    wait = parse_retry_after(headers, now=1_700_000_000.0)
    assert wait is None or (math.isfinite(wait) and wait >= 0)


def _response(text: str | None) -> ModelResponse:
    return ModelResponse(text, (), Usage(1, 1), "stop", "m", 0.01, 1, (0.01,))


@given(text=st.none() | answer_text)
@example(text='{"name": "x", "arguments": ' + "[" * 300 + "]" * 300 + "}")  # deeper than written
@example(text='{"name": "x", "arguments": ' + "[" * 254 + "]" * 254 + "}")  # as deep as written
def test_constrained_output_becomes_one_call_or_text(text: str | None) -> None:
    """What the router does with a JSON-constrained answer (a call, the final text, or a
    counted `ModelOutputError`), then with the conversation holding it on the next turn."""
    try:
        parsed = parse_constrained(_response(text), turn=3)
    except ModelOutputError as exc:
        assert exc.raw and exc.attempts == 1
        return
    assert len(parsed.tool_calls) <= 1
    if parsed.tool_calls:
        orjson.loads(parsed.tool_calls[0].arguments)  # the router wrote it: valid JSON
    history = [Message.user("hi"), parsed.message]
    history += [Message.tool(c.id, "{}") for c in parsed.tool_calls]
    plain = as_plain_text(history)
    assert len(plain) == len(history)
    assert estimate_tokens(history, BELT.openai_tools()) > 0


@given(
    status=st.sampled_from([200, 200, 200, 201, 400, 404, 429, 500, 501, 503]),
    body=completion_bodies(),
    retry_after=st.none() | header_text,
)
def test_the_client_returns_a_response_or_raises_a_model_error(
    status: int, body: bytes, retry_after: str | None
) -> None:
    """The whole HTTP stack, any status with any body: a response or a counted error."""
    requests: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        headers = {} if retry_after is None else {"Retry-After": retry_after}
        return httpx.Response(status, content=body, headers=headers)

    async def main() -> None:
        client = _client(httpx.MockTransport(answer))
        try:
            response = await client.complete([Message.user("hi")], BELT.openai_tools())
        except ModelError as exc:
            assert str(exc) and exc.attempts == len(requests)
        else:
            assert response.attempts == len(requests)
        finally:
            await client.aclose()

    asyncio.run(main())


def _contract_check(call: ToolCall) -> str | None:
    """The gateway's own validation of a call (an unknown tool or bad arguments raise
    `InvalidToolCall`, which the repair loop turns into the error it shows the model)."""
    BELT.get(call.name).validate_args(call.arguments)
    return None


@settings(max_examples=scaled(0.25))  # up to four model turns over HTTP (mocked)
@given(
    script=st.lists(st.tuples(st.sampled_from([200, 200, 200, 500]), completion_bodies())),
    max_repairs=st.integers(0, 3),
    required=st.booleans(),
)
def test_the_repair_loop_ends_with_valid_calls_or_a_model_error(
    script: list[tuple[int, bytes]], max_repairs: int, required: bool
) -> None:
    """Repair turns are capped: a model that never gets it right is a counted failure."""
    pending = deque(script)

    def answer(request: httpx.Request) -> httpx.Response:
        if not pending:
            return httpx.Response(500, json={"error": {"message": "script exhausted"}})
        status, body = pending.popleft()
        return httpx.Response(status, content=body)

    async def main() -> None:
        client = _client(httpx.MockTransport(answer))
        settings = ModelSettings(tool_choice="required" if required else "auto")
        try:
            last, responses = await complete_tool_call(
                client,
                [Message.user("Where is ORD-1003?")],
                BELT.openai_tools(),
                validate=_contract_check,
                max_repairs=max_repairs,
                settings=settings,
            )
        except ModelError as exc:
            assert str(exc)
            assert len(failed_responses(exc)) <= max_repairs + 1
            if isinstance(exc, ModelOutputError):
                assert isinstance(exc.raw, str)  # the last output, kept (redacted) to debug
        else:
            assert responses[-1] is last and len(responses) <= max_repairs + 1
            assert all(_contract_check(c) is None for c in last.tool_calls)
            assert last.tool_calls or not required
        finally:
            await client.aclose()

    asyncio.run(main())


def _client(transport: httpx.AsyncBaseTransport) -> OpenAICompatibleClient:
    return OpenAICompatibleClient(
        "http://model.invalid/v1",
        "fuzz-model",
        max_retries=1,
        backoff_base_s=0.0,
        backoff_max_s=0.01,
        timeout_s=5.0,
        transport=transport,
    )


# -- an agent driven by such a model ---------------------------------------------------------

#: One HTTP answer of the scripted model: mostly a 200 with a hostile body.
replies: st.SearchStrategy[tuple[int, bytes]] = st.tuples(
    st.sampled_from([200] * 8 + [400, 429, 500]), completion_bodies()
)


@pytest.fixture(scope="module")
def audited(tmp_path_factory: pytest.TempPathFactory) -> AuditedStore:
    return AuditedStore.create(tmp_path_factory.mktemp("fuzz-model-audit"))


def _router(mode: str, budget: float | None, transport: httpx.AsyncBaseTransport) -> ModelRouter:
    """Every role on one model behind ``transport``, tool calls ``native`` or
    ``json_schema`` (constrained output the router parses itself)."""
    roles = ", ".join(f"{r}: {{model: m}}" for r in ROLES)
    budgets = (
        "" if budget is None else f"budgets: {{support_triage: {{max_cost_per_task: {budget}}}}}"
    )
    text = (
        "version: 1\nmodels:\n  m: {provider: openai_compatible, model: fuzz-model,"
        f" base_url: 'http://model.invalid/v1', tool_calling: {mode},"
        " price: {input_per_1m: 1.0, output_per_1m: 2.0}}\n"
        f"roles: {{{roles}}}\n{budgets}\n"
    )
    config = load_router_config("fuzz-router.yaml", text=text)
    return ModelRouter(config, clients={"m": _client(transport)})


def _agent(pattern: str, gateway: Gateway, router: ModelRouter) -> Any:
    if pattern == "router":
        return RouterToolAgent(gateway, router, LANES, system="Be brief.")
    if pattern == "planner":
        return PlannerExecutor(
            gateway,
            router,
            tools=[t for t in TOOL_NAMES if t != "export_customer_data"],
            system="Plan, then act.",
        )
    return HumanInTheLoopAgent(gateway, router, tools=TOOL_NAMES, system="Be careful.")


# a run of many model turns, through the audit trail (written, then verified)
@settings(max_examples=scaled(0.25), suppress_health_check=[HealthCheck.too_slow])
@given(
    pattern=st.sampled_from(["router", "planner", "human"]),
    mode=st.sampled_from(["native", "json_schema"]),
    script=st.lists(replies, max_size=8),
    approve=st.booleans(),
    budget=st.sampled_from([None, None, 1e-9]),
    ticket=st.sampled_from(["Where is my order ORD-1003?", *EDGE_STRINGS[:12]]),
)
def test_every_agent_run_ends_recorded_whatever_the_model_says(
    audited: AuditedStore,
    pattern: str,
    mode: str,
    script: list[tuple[int, bytes]],
    approve: bool,
    budget: float | None,
    ticket: str,
) -> None:
    """The model is the least trusted part of a run: it must not be able to end one unrecorded."""
    pending = deque(script)
    attempts: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        attempts.append(request)
        if not pending:  # the script ran out: the server fails from now on
            return httpx.Response(500, json={"error": {"message": "script exhausted"}})
        status, body = pending.popleft()
        return httpx.Response(status, content=body)

    with audited.recording() as (recorder, memory):
        gateway = Gateway(
            BELT,
            POLICY,
            recorder=recorder,
            secrets=MappingSecretStore({"PAYMENTS_API_KEY": "pk-test-1234"}),
            approver=CallbackApprover(lambda r: ApprovalAnswer(approve, "lead@example.com", "ok")),
        )
        world = demo_world()
        router = _router(mode, budget, httpx.MockTransport(answer))
        agent = _agent(pattern, gateway, router)

        async def main() -> Any:
            run = gateway.start_run(
                "support_triage",
                invoker="desk",
                agent_id="triage-bot",
                request="Handle ticket T-3",
                context=[ContextItem(ticket, "untrusted", "ticket:T-3")],
                deps=world,
            )
            try:
                return run, await agent.run(run, ticket)
            finally:
                await router.client("m").aclose()  # type: ignore[attr-defined]

        try:
            run, result = asyncio.run(main())
        finally:
            gateway.close()
    _check_run(run, result, memory, attempts)


def _check_run(run: Any, result: Any, memory: InMemoryRecorder, attempts: list[Any]) -> None:
    """The run ended, with its reason, and the record holds everything that happened."""
    assert not run.active and run.status in (
        RunStatus.COMPLETED,
        RunStatus.ESCALATED,
        RunStatus.FAILED,
    )
    assert (result.status, result.reason) == (run.status, run.reason) and run.reason
    events = memory.of_run(run.run_id)
    assert [e.seq for e in events] == list(range(len(events)))  # no gap: nothing lost
    kinds = [e.type for e in events]
    assert kinds.count(EventType.RUN_ENDED) == 1 and kinds[-1] is EventType.RUN_ENDED
    assert events[-1].data["status"] == run.status.value
    model_calls = [e.data for e in events if e.type is EventType.MODEL_CALL]
    assert len(model_calls) == run.model_calls
    assert sum(c["attempts"] for c in model_calls) == len(attempts)  # every attempt counted
    decided = [e.data["call_id"] for e in events if e.type is EventType.DECISION]
    proposed = [e.data["call_id"] for e in events if e.type is EventType.TOOL_CALL_PROPOSED]
    assert sorted(decided) == sorted(proposed)  # one decision per proposed call
