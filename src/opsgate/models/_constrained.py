"""`ConstrainedToolClient`: tool calls as JSON-schema-constrained output.

Small local models call tools unreliably in the chat format; a grammar-constrained answer
always parses. The answer is one of the tools (its name a constant, its arguments that
tool's schema) or a final answer. Portable to any OpenAI-compatible server that supports
``response_format`` (llama.cpp, vLLM, Ollama, OpenAI); the gateway still validates it.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from opsgate.errors import ModelOutputError
from opsgate.models._client import ModelClient
from opsgate.models._grammar import enforceable_schema
from opsgate.models._repair import raw_output
from opsgate.models._types import Message, ModelResponse, ModelSettings, ToolCall
from opsgate.models._wrapper import WrapperClient

__all__ = [
    "FINAL_ANSWER",
    "ConstrainedToolClient",
    "as_plain_text",
    "constrained_tool_schema",
    "parse_constrained",
]

FINAL_ANSWER = "final_answer"


def constrained_tool_schema(
    tools: Sequence[Mapping[str, Any]], *, required: bool = False
) -> dict[str, Any]:
    """The JSON schema of "one call of one of these tools, or a final answer" (``required``:
    no final answer), its patterns in the subset a grammar-constrained server enforces
    (`enforceable_schema`)."""
    branches: list[dict[str, Any]] = [
        _branch(t["function"]["name"], t["function"].get("parameters") or {"type": "object"})
        for t in tools
    ]
    if required:
        return {"name": "tool_call", "strict": True, "schema": {"anyOf": branches}}
    branches.append(
        {
            "type": "object",
            "properties": {
                "name": {"const": FINAL_ANSWER},
                "arguments": {
                    "type": "object",
                    "properties": {"text": {"type": "string"}},
                    "required": ["text"],
                    "additionalProperties": False,
                },
            },
            "required": ["name", "arguments"],
            "additionalProperties": False,
        }
    )
    return {"name": "tool_call", "strict": True, "schema": {"anyOf": branches}}


def _branch(name: str, parameters: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {"name": {"const": name}, "arguments": enforceable_schema(parameters)},
        "required": ["name", "arguments"],
        "additionalProperties": False,
    }


def as_plain_text(messages: Sequence[Message]) -> list[Message]:
    """History without tool-call structure, for a request that declares no tools."""
    out: list[Message] = []
    names: dict[str | None, str] = {}  # call id -> tool: the model reads names, not ids
    for m in messages:
        if m.role == "assistant" and m.tool_calls:
            calls = [{"name": c.name, "arguments": _loads(c.arguments)} for c in m.tool_calls]
            names.update({c.id: c.name for c in m.tool_calls})
            try:
                text = orjson.dumps(calls[0] if len(calls) == 1 else calls).decode()
            except TypeError:  # arguments nested too deep to write back: quote them as sent
                calls = [{"name": c.name, "arguments": c.arguments} for c in m.tool_calls]
                text = orjson.dumps(calls[0] if len(calls) == 1 else calls).decode()
            out.append(Message.assistant(text))
        elif m.role == "tool":
            tool = names.get(m.tool_call_id, "tool")
            out.append(Message.user(f"Result of {tool}: {m.content}"))
        else:
            out.append(m)
    return out


def _loads(text: str) -> Any:
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return text


def parse_constrained(response: ModelResponse, turn: int = 0) -> ModelResponse:
    """Turn constrained output into a tool call, or into the final text.

    The call id is derived from the turn (the conversation's length) and the text: unique
    within a run, where the conversation only grows, so a repeated identical call is a new
    call; and deterministic, so that the id a model reads back in the next prompt never
    makes two runs of the same task differ.

    Raises:
        ModelOutputError: a call whose arguments cannot be written back as JSON.
    """
    data = _loads(response.text or "")
    if not isinstance(data, dict) or not isinstance(data.get("name"), str):
        return response  # not JSON after all: the executor treats it as text
    arguments = data.get("arguments")
    if data["name"] == FINAL_ANSWER:
        text = arguments.get("text") if isinstance(arguments, dict) else None
        return dataclasses.replace(response, text=str(text or ""), tool_calls=())
    try:
        text = orjson.dumps(arguments if arguments is not None else {}).decode()
    except TypeError as exc:  # nested deeper than JSON is written (orjson: 254 levels)
        raise ModelOutputError(
            f"model `{response.model}` answered a call of `{data['name']}` whose arguments "
            f"are not JSON data ({exc})",
            raw=raw_output(response),
            model=response.model,
            attempts=response.attempts,
        ) from None
    call = ToolCall(
        id="call_" + hashlib.sha256(f"{turn}:{response.text or ''}".encode()).hexdigest()[:16],
        name=data["name"],
        arguments=text,
    )
    return dataclasses.replace(response, text=None, tool_calls=(call,), finish_reason="tool_calls")


def _menu(tools: Sequence[Mapping[str, Any]]) -> str:
    return "\n".join(
        f"- {t['function']['name']}: {t['function'].get('description', '')} arguments: "
        f"{orjson.dumps(t['function'].get('parameters', {})).decode()}"
        for t in tools
    )


class ConstrainedToolClient(WrapperClient):
    """Asks ``inner`` for a tool call as constrained JSON whenever tools are offered; a
    request without tools passes through unchanged."""

    def __init__(self, inner: ModelClient) -> None:
        super().__init__(inner)

    async def complete(
        self,
        messages: Sequence[Message],
        tools: Sequence[Mapping[str, Any]] | None = None,
        settings: ModelSettings | None = None,
        *,
        retry_budget: int | None = None,
    ) -> ModelResponse:
        """The inner client's answer, as a tool call of ``tools`` or a final text."""
        if not tools:
            return await self.inner.complete(messages, tools, settings, retry_budget=retry_budget)
        required = settings is not None and settings.tool_choice == "required"
        done = (
            ""
            if required
            else " When you are done (or must ask the requester something), answer with "
            f'{{"name": "{FINAL_ANSWER}", "arguments": {{"text": ...}}}}.'
        )
        instructions = Message.system(
            'To use a tool, answer with JSON {"name": <tool>, "arguments": {...}}.'
            f"{done} One call per answer.\nTools:\n{_menu(tools)}"
        )
        response = await self.inner.complete(
            [*as_plain_text(messages), instructions],
            None,
            dataclasses.replace(
                settings or ModelSettings(),
                json_schema=constrained_tool_schema(tools, required=required),
                tool_choice="auto",
            ),
            retry_budget=retry_budget,
        )
        return parse_constrained(response, turn=len(messages))
