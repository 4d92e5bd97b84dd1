"""OpenAICompatibleClient against a real HTTP server on loopback (tests/models/fake_openai)."""

from __future__ import annotations

import asyncio
import time
import traceback
from collections.abc import Iterator

import httpx
import pytest

from opsgate.errors import (
    ConfigError,
    ModelError,
    ModelRateLimited,
    ModelRequestError,
    ModelServerError,
    ModelTimeout,
)
from opsgate.models import (
    Message,
    ModelClient,
    ModelSettings,
    OpenAICompatibleClient,
    ToolCall,
    Usage,
    attempt_latencies,
)
from tests.models.fake_openai import (
    FakeOpenAI,
    RecordedRequest,
    Reply,
    completion,
    error_reply,
    text_reply,
    tool_reply,
)

KEY = "sk-test-Zq8vN3kP0wXy7RtL5mB2"
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "lookup",
            "description": "Look up an order.",
            "parameters": {
                "type": "object",
                "properties": {"order_id": {"type": "string"}},
                "required": ["order_id"],
            },
        },
    }
]
ASK = [Message.system("You are a support agent."), Message.user("Where is ORD-7?")]


@pytest.fixture
def server() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as fake:
        yield fake


def make_client(server: FakeOpenAI, **kwargs: object) -> OpenAICompatibleClient:
    options: dict[str, object] = {
        "api_key": KEY,
        "timeout_s": 2.0,
        "max_retries": 3,
        "backoff_base_s": 0.01,
        "backoff_max_s": 1.0,
    }
    options.update(kwargs)
    return OpenAICompatibleClient(server.base_url, "fake-model", **options)  # type: ignore[arg-type]


# -- parsing ---------------------------------------------------------------------------------


async def test_tool_call_response_is_parsed(server: FakeOpenAI) -> None:
    server.add(tool_reply(("lookup", '{"order_id": "ORD-7"}')))
    client = make_client(server)
    response = await client.complete(ASK, TOOLS)
    assert response.text is None
    assert len(response.tool_calls) == 1
    call = response.tool_calls[0]
    assert call.name == "lookup"
    assert call.arguments == '{"order_id": "ORD-7"}'
    assert call.id.startswith("call_")
    assert response.finish_reason == "tool_calls"
    assert response.attempts == 1
    assert len(response.attempt_latencies) == 1
    assert response.latency_s >= response.attempt_latencies[0] > 0
    assert response.cache_hit is False
    assert response.message == Message.assistant(None, response.tool_calls)
    await client.aclose()


async def test_plain_text_and_usage(server: FakeOpenAI) -> None:
    server.add(
        text_reply(
            "ORD-7 shipped yesterday.",
            prompt_tokens=120,
            completion_tokens=9,
            cached_tokens=64,
            model="fake-model-2026-01-01",
        )
    )
    async with make_client(server) as client:
        response = await client.complete(ASK)
    assert response.text == "ORD-7 shipped yesterday."
    assert response.tool_calls == ()
    assert response.finish_reason == "stop"
    assert response.usage == Usage(input_tokens=120, output_tokens=9, cached_input_tokens=64)
    assert response.usage.total_tokens == 129
    assert response.model == "fake-model-2026-01-01"


async def test_lenient_shapes_servers_send(server: FakeOpenAI) -> None:
    """Arguments as an object (some local servers), no call id, no usage, no model."""
    body = {
        "choices": [
            {
                "message": {
                    "role": "assistant",
                    "content": "",
                    "tool_calls": [{"function": {"name": "lookup", "arguments": {"order_id": 7}}}],
                },
                "finish_reason": None,
            }
        ]
    }
    server.add(Reply(json=body))
    async with make_client(server) as client:
        response = await client.complete(ASK, TOOLS)
    assert response.tool_calls == (ToolCall("call_0", "lookup", '{"order_id":7}'),)
    assert response.text is None
    assert response.usage == Usage()
    assert response.finish_reason == "unknown"
    assert response.model == "fake-model"


async def test_request_body_recorded(server: FakeOpenAI) -> None:
    server.add(text_reply('{"answer": "yes"}'))
    schema = {
        "type": "object",
        "properties": {"answer": {"type": "string"}},
        "required": ["answer"],
        "additionalProperties": False,
    }
    history = [
        *ASK,
        Message.assistant(None, [ToolCall("call_1", "lookup", '{"order_id": "ORD-7"}')]),
        Message.tool("call_1", '{"status": "shipped"}'),
    ]
    settings = ModelSettings(
        temperature=0.3, max_tokens=200, json_schema=schema, tool_choice="required"
    )
    async with make_client(server) as client:
        await client.complete(history, TOOLS, settings)
    (request,) = server.requests
    assert request.method == "POST"
    assert request.path == "/v1/chat/completions"
    assert request.headers["authorization"] == f"Bearer {KEY}"
    assert request.headers["content-type"] == "application/json"
    body = request.json
    assert body["model"] == "fake-model"
    assert body["temperature"] == 0.3
    assert body["max_tokens"] == 200
    assert body["tools"] == TOOLS
    assert body["tool_choice"] == "required"
    assert body["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "output", "schema": schema, "strict": True},
    }
    assert body["messages"] == [
        {"role": "system", "content": "You are a support agent."},
        {"role": "user", "content": "Where is ORD-7?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "lookup", "arguments": '{"order_id": "ORD-7"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": '{"status": "shipped"}'},
    ]


async def test_minimal_body_without_tools_or_schema(server: FakeOpenAI) -> None:
    server.add(text_reply("hi"))
    wrapper = {"name": "mine", "schema": {"type": "object"}, "strict": False}
    server.add(text_reply("{}"))
    async with OpenAICompatibleClient(server.base_url, "m") as client:  # no key: local server
        await client.complete([Message.user("hi")])
        await client.complete([Message.user("hi")], settings=ModelSettings(json_schema=wrapper))
    first, second = server.requests
    assert first.json == {
        "model": "m",
        "messages": [{"role": "user", "content": "hi"}],
        "temperature": 0.0,
    }
    assert "authorization" not in first.headers
    assert second.json["response_format"] == {"type": "json_schema", "json_schema": wrapper}


# -- retries ---------------------------------------------------------------------------------


async def test_429_with_retry_after_then_success(server: FakeOpenAI) -> None:
    server.add(
        error_reply(429, "slow down", headers={"Retry-After": "0.3"}),
        tool_reply(("lookup", '{"order_id": "ORD-7"}')),
    )
    async with make_client(server, backoff_base_s=0.0) as client:
        response = await client.complete(ASK, TOOLS)
    assert response.attempts == 2
    assert len(response.attempt_latencies) == 2
    first, second = server.requests
    assert second.at - first.at >= 0.3  # the wait the server asked for, not the back-off
    assert response.latency_s >= 0.3
    assert first.body == second.body


async def test_retry_after_ms_is_honoured(server: FakeOpenAI) -> None:
    server.add(error_reply(503, headers={"retry-after-ms": "150"}), text_reply("ok"))
    async with make_client(server, backoff_base_s=0.0) as client:
        response = await client.complete(ASK)
    assert response.attempts == 2
    assert server.requests[1].at - server.requests[0].at >= 0.15


async def test_retry_after_beyond_cap_fails_at_once(server: FakeOpenAI) -> None:
    server.add(error_reply(429, headers={"Retry-After": "30"}), text_reply("never"))
    async with make_client(server, backoff_max_s=1.0) as client:
        started = time.monotonic()
        with pytest.raises(ModelRateLimited) as info:
            await client.complete(ASK)
    assert time.monotonic() - started < 1.0
    assert info.value.attempts == 1
    assert "asked to wait 30s" in str(info.value)
    assert server.remaining == 1


async def test_500_twice_then_success(server: FakeOpenAI) -> None:
    server.add(error_reply(500), error_reply(502), text_reply("ok"))
    async with make_client(server) as client:
        response = await client.complete(ASK)
    assert response.text == "ok"
    assert response.attempts == 3
    assert len(response.attempt_latencies) == 3
    assert len(server.requests) == 3


async def test_500_beyond_retries_is_server_error(server: FakeOpenAI) -> None:
    server.add(*[error_reply(500, "boom")] * 3, text_reply("too late"))
    async with make_client(server, max_retries=2) as client:
        with pytest.raises(ModelServerError) as info:
            await client.complete(ASK)
    error = info.value
    assert error.attempts == 3
    assert error.model == "fake-model"
    assert len(attempt_latencies(error)) == 3
    assert "HTTP 500" in str(error) and "boom" in str(error) and "3 attempts" in str(error)
    assert len(server.requests) == 3
    assert server.remaining == 1


async def test_429_beyond_retries_is_rate_limited(server: FakeOpenAI) -> None:
    server.add(*[error_reply(429)] * 2)
    async with make_client(server, max_retries=1) as client:
        with pytest.raises(ModelRateLimited) as info:
            await client.complete(ASK)
    assert info.value.attempts == 2


async def test_400_is_request_error_without_retry(server: FakeOpenAI) -> None:
    server.add(error_reply(400, "Invalid schema for function 'lookup'"), text_reply("unused"))
    async with make_client(server) as client:
        with pytest.raises(ModelRequestError) as info:
            await client.complete(ASK, TOOLS)
    assert info.value.attempts == 1
    assert "HTTP 400" in str(info.value)
    assert "Invalid schema for function 'lookup'" in str(info.value)
    assert len(server.requests) == 1


async def test_404_hints_at_base_url() -> None:
    with FakeOpenAI() as server:
        client = OpenAICompatibleClient(
            server.base_url.removesuffix("/v1"), "fake-model", max_retries=3
        )
        with pytest.raises(ModelRequestError, match="must end in /v1") as info:
            await client.complete(ASK)
        await client.aclose()
    assert info.value.attempts == 1


async def test_501_is_not_retried(server: FakeOpenAI) -> None:
    server.add(error_reply(501, "not implemented"), text_reply("unused"))
    async with make_client(server) as client:
        with pytest.raises(ModelServerError, match="not retryable") as info:
            await client.complete(ASK)
    assert info.value.attempts == 1


async def test_slow_response_beyond_timeout(server: FakeOpenAI) -> None:
    server.add(text_reply("late", delay_s=2.0))
    async with make_client(server, timeout_s=0.2) as client:
        started = time.monotonic()
        with pytest.raises(ModelTimeout) as info:
            await client.complete(ASK, retry_budget=0)
    assert time.monotonic() - started < 1.0
    assert info.value.attempts == 1
    assert "0.2s" in str(info.value)


async def test_timeout_is_retried_and_settings_override_it(server: FakeOpenAI) -> None:
    server.add(text_reply("late", delay_s=1.0), text_reply("quick"))
    async with make_client(server, timeout_s=5.0) as client:
        response = await client.complete(ASK, settings=ModelSettings(timeout_s=0.2))
    assert response.text == "quick"
    assert response.attempts == 2
    assert response.attempt_latencies[0] >= 0.2


async def test_slow_response_within_timeout(server: FakeOpenAI) -> None:
    server.add(text_reply("worth the wait", delay_s=0.2))
    async with make_client(server) as client:
        response = await client.complete(ASK)
    assert response.text == "worth the wait"
    assert response.attempt_latencies[0] >= 0.2


async def test_truncated_json_body_is_server_error(server: FakeOpenAI) -> None:
    whole = Reply(json=completion("cut")).payload()
    server.add(Reply(body=whole[:40]), Reply(body=whole[:40]))
    async with make_client(server, max_retries=1) as client:
        with pytest.raises(ModelServerError, match="not JSON") as info:
            await client.complete(ASK)
    assert info.value.attempts == 2


async def test_connection_cut_mid_body_is_retried(server: FakeOpenAI) -> None:
    server.add(Reply(json=completion("cut"), cut_after=30), text_reply("whole"))
    async with make_client(server) as client:
        response = await client.complete(ASK)
    assert response.text == "whole"
    assert response.attempts == 2


async def test_body_without_choices_is_server_error(server: FakeOpenAI) -> None:
    server.add(Reply(json={"error": "model is loading"}), Reply(json={"choices": []}))
    async with make_client(server, max_retries=1) as client:
        with pytest.raises(ModelServerError, match="no choices") as info:
            await client.complete(ASK)
    assert info.value.attempts == 2


async def test_retry_budget_zero_means_no_retry(server: FakeOpenAI) -> None:
    server.add(error_reply(500), text_reply("would have worked"))
    async with make_client(server) as client:
        with pytest.raises(ModelServerError) as info:
            await client.complete(ASK, retry_budget=0)
    assert info.value.attempts == 1
    assert len(server.requests) == 1


async def test_retry_budget_and_max_retries_cap_each_other(server: FakeOpenAI) -> None:
    server.add(*[error_reply(503)] * 6)
    async with make_client(server, max_retries=2) as client:
        with pytest.raises(ModelServerError) as info:
            await client.complete(ASK, retry_budget=10)
        assert info.value.attempts == 3
        with pytest.raises(ModelServerError) as info:
            await client.complete(ASK, retry_budget=1)
        assert info.value.attempts == 2


async def test_connection_refused_is_server_error() -> None:
    with FakeOpenAI() as server:
        url = server.base_url
    client = OpenAICompatibleClient(url, "fake-model", max_retries=1, backoff_base_s=0.01)
    with pytest.raises(ModelServerError, match="ConnectError") as info:
        await client.complete(ASK)
    assert info.value.attempts == 2
    await client.aclose()


async def test_concurrent_calls_share_the_client(server: FakeOpenAI) -> None:
    server.add(*[text_reply("ok", delay_s=0.1) for _ in range(5)])
    async with make_client(server) as client:
        started = time.monotonic()
        responses = await asyncio.gather(*(client.complete(ASK) for _ in range(5)))
    assert [r.text for r in responses] == ["ok"] * 5
    assert time.monotonic() - started < 0.45  # in parallel, not one after the other


def test_complete_sync(server: FakeOpenAI) -> None:
    server.add(tool_reply(("lookup", {"order_id": "ORD-7"})), text_reply("again"))
    client = make_client(server)
    assert isinstance(client, ModelClient)
    response = client.complete_sync(ASK, TOOLS)
    assert response.tool_calls[0].arguments == '{"order_id":"ORD-7"}'
    assert client.complete_sync(ASK).text == "again"  # a second event loop works too


async def test_complete_sync_refuses_inside_a_loop(server: FakeOpenAI) -> None:
    with pytest.raises(RuntimeError, match="await complete"):
        make_client(server).complete_sync(ASK)


async def test_custom_transport_is_used() -> None:
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=completion("via transport"))

    client = OpenAICompatibleClient(
        "http://model.invalid/v1", "m", transport=httpx.MockTransport(answer)
    )
    response = await client.complete(ASK)
    assert response.text == "via transport"
    assert str(seen[0].url) == "http://model.invalid/v1/chat/completions"


# -- the key ---------------------------------------------------------------------------------


def _everything_shown(error: BaseException) -> str:
    return "\n".join(
        [str(error), repr(error), *traceback.format_exception(error), repr(vars(error))]
    )


async def test_api_key_never_in_errors(server: FakeOpenAI) -> None:
    def echo_key(request: RecordedRequest) -> Reply:
        # A careless proxy that quotes the credential back in its error.
        return error_reply(401, f"bad credential {request.headers['authorization']}")

    server.add(
        echo_key,
        error_reply(500, f"upstream said {KEY}"),
        Reply(body=f"not json {KEY}".encode()),
        text_reply("slow", delay_s=1.0),
    )
    client = make_client(server, max_retries=0, timeout_s=0.2)
    errors: list[ModelError] = []
    for kind in (ModelRequestError, ModelServerError, ModelServerError, ModelTimeout):
        with pytest.raises(kind) as info:
            await client.complete(ASK)
        errors.append(info.value)
    await client.aclose()
    assert "bad credential" in str(errors[0]) and "check the API key" in str(errors[0])
    for error in errors:
        shown = _everything_shown(error)
        assert KEY not in shown
        assert KEY[:12] not in shown
        assert error.__cause__ is None and error.__context__ is None
    assert KEY not in repr(client)
    assert "key=set" in repr(client)


async def test_key_from_environment(server: FakeOpenAI, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPSGATE_TEST_MODEL_KEY", KEY)
    server.add(text_reply("ok"))
    async with OpenAICompatibleClient(
        server.base_url, "m", api_key_env="OPSGATE_TEST_MODEL_KEY"
    ) as client:
        await client.complete(ASK)
    assert server.requests[0].headers["authorization"] == f"Bearer {KEY}"


def test_missing_key_variable_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPSGATE_TEST_MODEL_KEY", raising=False)
    with pytest.raises(ConfigError, match="OPSGATE_TEST_MODEL_KEY"):
        OpenAICompatibleClient("http://127.0.0.1:1/v1", "m", api_key_env="OPSGATE_TEST_MODEL_KEY")
    monkeypatch.setenv("OPSGATE_TEST_MODEL_KEY", "")
    with pytest.raises(ConfigError, match="not set or empty"):
        OpenAICompatibleClient("http://127.0.0.1:1/v1", "m", api_key_env="OPSGATE_TEST_MODEL_KEY")


def test_bad_key_is_refused_without_quoting_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPSGATE_TEST_MODEL_KEY", KEY + "\n")
    with pytest.raises(ConfigError) as info:
        OpenAICompatibleClient("http://127.0.0.1:1/v1", "m", api_key_env="OPSGATE_TEST_MODEL_KEY")
    assert "OPSGATE_TEST_MODEL_KEY" in str(info.value)
    assert KEY not in str(info.value)


def test_configuration_errors() -> None:
    with pytest.raises(ConfigError, match="http"):
        OpenAICompatibleClient("localhost:8000/v1", "m")
    with pytest.raises(ConfigError, match="not both"):
        OpenAICompatibleClient("http://h/v1", "m", api_key="k" * 8, api_key_env="X")
    with pytest.raises(ConfigError):
        OpenAICompatibleClient("http://h/v1", "m", max_retries=-1)
    with pytest.raises(ConfigError):
        OpenAICompatibleClient("http://h/v1", "")


def test_base_url_credentials_not_shown() -> None:
    client = OpenAICompatibleClient("https://user:hunter2pass@gw.example/v1?key=abc", "m")
    assert "hunter2pass" not in repr(client)
    assert "abc" not in repr(client)
