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
