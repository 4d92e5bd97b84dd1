"""The README's "Framework adapters" examples run as written: each framework's block, after
the shared set-up block, drives the framework's own loop with a scripted model (the one a
reader would pass is a real model), and the trail names the approver."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

README = Path(__file__).resolve().parents[2] / "README.md"


def _blocks() -> dict[str, str]:
    text = README.read_text()
    section = text[text.index("## Framework adapters") :]
    section = section[: section.index("\n## ", 1)]
    found = re.findall(r"```python\n# adapters: ([^\n]+)\n(.*?)```", section, re.S)
    return {title.split(":")[0].split(",")[0].strip(): body for title, body in found}


def _exec(*names: str) -> dict[str, Any]:
    namespace: dict[str, Any] = {"__name__": "readme_adapters"}
    blocks = _blocks()
    for name in names:
        exec(compile(blocks[name], f"README.md ({name})", "exec"), namespace)
    return namespace


def _approved_by_lea(namespace: dict[str, Any]) -> None:
    events = namespace["gateway"].recorder.events
    granted = [e.data for e in events if e.type.value == "approval_granted"]
    assert [(g["tool"], g["approver"]) for g in granted] == [("refund", "lea")]
    decided = {e.data["call_id"]: e.data["reason"] for e in events if e.type.value == "decision"}
    assert [decided[c] for c in ("c1", "c2", "c3")] == [
        "allowed",
        "arg_constraint",
        "approval_required",
    ]


def test_the_blocks_are_there() -> None:
    assert list(_blocks()) == [
        "the tools",
        "OpenAI Agents SDK",
        "pydantic-ai",
        "LangGraph",
    ]


def test_the_set_up_and_a_plain_callable(capsys: pytest.CaptureFixture[str]) -> None:
    _exec("the tools")
    first, second = capsys.readouterr().out.splitlines()
    assert first == "{'order_id': 'ORD-7', 'total': 120.0}"
    assert json.loads(second)["reason"] == "arg_constraint"


def test_the_openai_agents_example() -> None:
    from agents import set_tracing_disabled
    from agents.testing import ScriptedModel, assistant_message, function_call

    set_tracing_disabled(True)  # the SDK would export its traces to OpenAI (with a key set)
    namespace = _exec("the tools", "OpenAI Agents SDK")
    model = ScriptedModel(
        [
            [function_call("get_order", {"order_id": "ORD-7"}, call_id="c1")],
            [function_call("refund", {"order_id": "ORD-7", "amount": 500}, call_id="c2")],
            [function_call("refund", {"order_id": "ORD-7", "amount": 80}, call_id="c3")],
            [assistant_message("Refunded 80.")],
        ]
    )
    assert asyncio.run(namespace["support"](model)) == "Refunded 80."
    _approved_by_lea(namespace)


def test_the_pydantic_ai_example() -> None:
    from pydantic_ai.messages import ModelMessage, ModelResponse, TextPart, ToolCallPart
    from pydantic_ai.models.function import AgentInfo, FunctionModel

    namespace = _exec("the tools", "pydantic-ai")
    turns = [
        [ToolCallPart("get_order", {"order_id": "ORD-7"}, tool_call_id="c1")],
        [ToolCallPart("refund", {"order_id": "ORD-7", "amount": 500}, tool_call_id="c2")],
        [ToolCallPart("refund", {"order_id": "ORD-7", "amount": 80}, tool_call_id="c3")],
        [TextPart("Refunded 80.")],
    ]

    def script(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        return ModelResponse(parts=turns.pop(0))

    assert asyncio.run(namespace["support"](FunctionModel(script))) == "Refunded 80."
    _approved_by_lea(namespace)


def test_the_langgraph_example() -> None:
    from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
    from langchain_core.messages import AIMessage

    class ScriptedChatModel(GenericFakeChatModel):
        def bind_tools(self, tools: Any, **kwargs: Any) -> Any:
            return self

    def call(name: str, args: dict[str, Any], call_id: str) -> AIMessage:
        return AIMessage("", tool_calls=[{"name": name, "args": args, "id": call_id}])

    model = ScriptedChatModel(
        messages=iter(
            [
                call("get_order", {"order_id": "ORD-7"}, "c1"),
                call("refund", {"order_id": "ORD-7", "amount": 500}, "c2"),
                call("refund", {"order_id": "ORD-7", "amount": 80}, "c3"),
                AIMessage("Refunded 80."),
            ]
        )
    )
    namespace = _exec("the tools", "LangGraph")
    support: Callable[[Any], Any] = namespace["support"]
    assert asyncio.run(support(model)) == "Refunded 80."
    _approved_by_lea(namespace)
