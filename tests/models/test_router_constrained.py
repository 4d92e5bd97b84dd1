"""Constrained tool calls (the embedded model's): ids and the plain-text history."""

from __future__ import annotations

from opsgate.models import Message, as_plain_text, parse_constrained
from opsgate.models._types import ModelResponse, Usage


def _response(text: str) -> ModelResponse:
    return ModelResponse(text, (), Usage(), "stop", "m", 0.0, 1, (0.0,))


def test_constrained_call_ids_are_unique_per_turn_and_deterministic() -> None:
    text = '{"name": "lookup", "arguments": {"order_id": "ORD-1"}}'
    first = parse_constrained(_response(text), turn=3).tool_calls[0]
    again = parse_constrained(_response(text), turn=5).tool_calls[0]
    same = parse_constrained(_response(text), turn=3).tool_calls[0]
    assert first.id != again.id, "a repeated identical call is a new call"
    assert first.id == same.id, "no randomness reaches the next prompt"
    history = [
        Message.assistant(None, tool_calls=(first,)),
        Message.tool(first.id, '{"status": "shipped"}'),
    ]
    plain = as_plain_text(history)
    assert plain[1].content == 'Result of lookup: {"status": "shipped"}'
    assert first.id not in repr(plain)


async def test_a_required_call_is_asked_for_without_the_final_answer() -> None:
    """A lane step that must act asks the constrained model for a call only: the schema
    has no final-answer branch and the instructions offer no way out in words."""
    from opsgate.models import ConstrainedToolClient, ModelSettings, OpenAICompatibleClient
    from tests.models.fake_openai import FakeOpenAI, text_reply

    tool = {
        "type": "function",
        "function": {
            "name": "lookup",
            "description": "Look up.",
            "parameters": {"type": "object", "properties": {"id": {"type": "string"}}},
        },
    }
    call = '{"name": "lookup", "arguments": {"id": "A"}}'
    with FakeOpenAI([text_reply(call), text_reply(call)]) as server:
        client = ConstrainedToolClient(OpenAICompatibleClient(server.base_url, "fake-model"))
        await client.complete([Message.user("hi")], [tool], ModelSettings(tool_choice="required"))
        await client.complete([Message.user("hi")], [tool], ModelSettings())
        forced, free = (r.json for r in server.requests)
    branches = forced["response_format"]["json_schema"]["schema"]["anyOf"]
    assert [b["properties"]["name"]["const"] for b in branches] == ["lookup"]
    assert "final_answer" not in str(forced["messages"])
    assert "final_answer" in str(free["messages"])
    assert len(free["response_format"]["json_schema"]["schema"]["anyOf"]) == 2
