"""The repair loop against the scripted loopback server: invalid calls go back to the model."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from opsgate.errors import ModelOutputError, ModelServerError
from opsgate.models import (
    Message,
    ModelSettings,
    OpenAICompatibleClient,
    ToolCall,
    attempt_latencies,
    basic_validator,
    complete_tool_call,
    failed_responses,
)
from tests.conftest import BELT
from tests.models.fake_openai import FakeOpenAI, error_reply, text_reply, tool_reply

TOOLS = BELT.openai_tools(["lookup"])
ASK = [Message.user("Where is ORD-7?")]


def contract_check(call: ToolCall) -> str | None:
    """What the gateway will plug in: the tool's contract (raises InvalidToolCall)."""
    BELT.get(call.name).validate_args(call.arguments)
    return None


@pytest.fixture
def server() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as fake:
        yield fake


@pytest.fixture
def client(server: FakeOpenAI) -> OpenAICompatibleClient:
    return OpenAICompatibleClient(
        server.base_url, "fake-model", timeout_s=2.0, backoff_base_s=0.01, max_retries=2
    )


async def test_valid_first_time(server: FakeOpenAI, client: OpenAICompatibleClient) -> None:
    server.add(tool_reply(("lookup", '{"order_id": "ORD-7"}')))
    final, responses = await complete_tool_call(client, ASK, TOOLS, validate=contract_check)
    assert responses == [final]
    assert final.tool_calls[0].arguments == '{"order_id": "ORD-7"}'


async def test_invalid_arguments_then_valid(
    server: FakeOpenAI, client: OpenAICompatibleClient
) -> None:
    server.add(
        tool_reply(("lookup", '{"order_id": 7}'), prompt_tokens=30),
        tool_reply(("lookup", '{"order_id": "ORD-7"}'), prompt_tokens=50),
    )
    final, responses = await complete_tool_call(client, ASK, TOOLS, validate=contract_check)
    assert len(responses) == 2
    assert responses[-1] is final
    assert sum(r.usage.input_tokens for r in responses) == 80  # both turns are counted
    # The second request carries the bad call and the error, answered by id.
    repair = server.requests[1].json["messages"]
    assert repair[0] == {"role": "user", "content": "Where is ORD-7?"}
    assert repair[1]["role"] == "assistant"
    bad_id = repair[1]["tool_calls"][0]["id"]
    assert repair[1]["tool_calls"][0]["function"]["arguments"] == '{"order_id": 7}'
    assert repair[2]["role"] == "tool" and repair[2]["tool_call_id"] == bad_id
    assert repair[2]["content"].startswith("error: ")
    assert "order_id" in repair[2]["content"]
    assert len(repair) == 3
    assert [Message.user("Where is ORD-7?")] == ASK  # the caller's list is untouched


async def test_truncated_arguments_are_repaired(
    server: FakeOpenAI, client: OpenAICompatibleClient
) -> None:
    server.add(
        tool_reply(("lookup", '{"order_id": "OR'), finish_reason="length"),
        tool_reply(("lookup", '{"order_id": "ORD-7"}')),
    )
    validate = basic_validator(TOOLS)
    _, responses = await complete_tool_call(client, ASK, TOOLS, validate=validate)
    assert [r.finish_reason for r in responses] == ["length", "tool_calls"]
    assert "not valid JSON" in server.requests[1].json["messages"][2]["content"]


async def test_always_invalid_raises_with_raw_kept(
    server: FakeOpenAI, client: OpenAICompatibleClient
) -> None:
    server.add(
        tool_reply(("refund_all", '{"to": "ana@example.com"}')),
        tool_reply(("lookup", "not json")),
        tool_reply(("lookup", '{"order_id": 7, "email": "ana@example.com"}')),
        tool_reply(("lookup", '{"order_id": "ORD-7"}')),  # never asked for
    )
    with pytest.raises(ModelOutputError) as info:
        await complete_tool_call(client, ASK, TOOLS, validate=contract_check, max_repairs=2)
    error = info.value
    assert error.raw.startswith('lookup {"order_id": 7, "email": ')
    assert "ana@example.com" not in error.raw  # redacted, kept for debugging
    assert "[redacted:email]" in error.raw
    assert error.model == "fake-model"
    assert error.attempts == 3
    assert len(failed_responses(error)) == 3
    assert len(attempt_latencies(error)) == 3
    assert "after 2 repair turns" in str(error)
    assert len(server.requests) == 3
    assert server.remaining == 1
    # The first turn named an unknown tool: the model was told which tools exist.
    assert "unknown tool `refund_all`" in server.requests[1].json["messages"][2]["content"]


async def test_zero_repairs(server: FakeOpenAI, client: OpenAICompatibleClient) -> None:
    server.add(tool_reply(("lookup", "{}")))
    with pytest.raises(ModelOutputError, match="after 0 repair turns") as info:
        await complete_tool_call(client, ASK, TOOLS, validate=contract_check, max_repairs=0)
    assert info.value.raw == "lookup {}"


async def test_every_call_of_a_turn_is_answered(
    server: FakeOpenAI, client: OpenAICompatibleClient
) -> None:
    server.add(
        tool_reply(("lookup", '{"order_id": "ORD-1"}'), ("lookup", '{"order_id": 2}')),
        tool_reply(("lookup", '{"order_id": "ORD-1"}'), ("lookup", '{"order_id": "ORD-2"}')),
    )
    final, responses = await complete_tool_call(client, ASK, TOOLS, validate=contract_check)
    assert len(final.tool_calls) == 2 and len(responses) == 2
    messages = server.requests[1].json["messages"]
    ids = [c["id"] for c in messages[1]["tool_calls"]]
    answers = messages[2:]
    assert [m["tool_call_id"] for m in answers] == ids
    assert answers[0]["content"].startswith("not run")
    assert answers[1]["content"].startswith("error: ")


async def test_text_answer_is_final_unless_a_tool_is_required(
    server: FakeOpenAI, client: OpenAICompatibleClient
) -> None:
    server.add(text_reply("It shipped."))
    final, responses = await complete_tool_call(client, ASK, TOOLS, validate=contract_check)
    assert final.text == "It shipped." and len(responses) == 1

    server.add(text_reply("I think it shipped."), tool_reply(("lookup", '{"order_id": "A"}')))
    required = ModelSettings(tool_choice="required")
    final, responses = await complete_tool_call(
        client, ASK, TOOLS, validate=contract_check, settings=required
    )
    assert len(responses) == 2 and final.tool_calls
    messages = server.requests[2].json["messages"]
    assert messages[1] == {"role": "assistant", "content": "I think it shipped."}
    assert messages[2]["role"] == "user" and "tool call" in messages[2]["content"]


async def test_http_failure_mid_repair_keeps_earlier_responses(
    server: FakeOpenAI, client: OpenAICompatibleClient
) -> None:
    server.add(tool_reply(("lookup", "{}")), *[error_reply(500)] * 3)
    with pytest.raises(ModelServerError) as info:
        await complete_tool_call(client, ASK, TOOLS, validate=contract_check)
    assert info.value.attempts == 3
    (earlier,) = failed_responses(info.value)
    assert earlier.tool_calls[0].arguments == "{}"


async def test_retry_budget_is_shared_across_turns(
    server: FakeOpenAI, client: OpenAICompatibleClient
) -> None:
    # Turn 1 uses the one retry the run allows; turn 2 must not retry its 500.
    server.add(
        error_reply(503),
        tool_reply(("lookup", "{}")),
        error_reply(500),
        tool_reply(("lookup", '{"order_id": "A"}')),
    )
    with pytest.raises(ModelServerError) as info:
        await complete_tool_call(client, ASK, TOOLS, validate=contract_check, retry_budget=1)
    assert info.value.attempts == 1
    assert failed_responses(info.value)[0].attempts == 2
    assert server.remaining == 1


async def test_validator_returning_messages(
    server: FakeOpenAI, client: OpenAICompatibleClient
) -> None:
    server.add(
        tool_reply(("lookup", '{"order_id": "X"}')), tool_reply(("lookup", '{"order_id": "Y"}'))
    )

    def only_y(call: ToolCall) -> str | None:
        return None if '"Y"' in call.arguments else "order_id must be Y"

    final, _ = await complete_tool_call(client, ASK, TOOLS, validate=only_y)
    assert final.tool_calls[0].arguments == '{"order_id": "Y"}'
    assert "order_id must be Y" in server.requests[1].json["messages"][2]["content"]


async def test_negative_max_repairs_refused(client: OpenAICompatibleClient) -> None:
    with pytest.raises(ValueError):
        await complete_tool_call(client, ASK, TOOLS, validate=contract_check, max_repairs=-1)
