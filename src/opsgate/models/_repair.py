"""Repair turns: an invalid tool call goes back to the model with the error, a few times.

Small and local models often get a call almost right: a number sent as a string, a field
missing, a tool name misspelt, JSON cut off by ``max_tokens``. Telling the model exactly what
was wrong and asking again fixes most of these in one turn, and costs far less than failing
the run. The number of turns is capped, each one is a full model call whose cost the caller
must count (hence every response is returned), and when the cap is reached the failure is a
`ModelOutputError` carrying the last raw output (redacted) for whoever debugs it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import orjson

from opsgate.errors import InvalidToolCall, ModelError, ModelOutputError
from opsgate.models._client import ModelClient
from opsgate.models._types import Message, ModelResponse, ModelSettings, ToolCall
from opsgate.redaction import Redactor

__all__ = ["basic_validator", "complete_tool_call"]

Validator = Callable[[ToolCall], str | None]

_REDACTOR = Redactor()  # no salt: debugging output, nothing to prove later
_RAW_MAX = 4000  # characters of raw output kept on the error
_NOT_RUN = (
    "not run: another tool call of this turn was invalid. Propose all the calls again, "
    "with the invalid one fixed."
)
_NEED_TOOL = "error: answer with a tool call (one of the tools offered), not with text."


async def complete_tool_call(
    client: ModelClient,
    messages: Sequence[Message],
    tools: Sequence[Mapping[str, Any]] | None,
    *,
    validate: Validator,
    max_repairs: int = 2,
    settings: ModelSettings | None = None,
    retry_budget: int | None = None,
) -> tuple[ModelResponse, list[ModelResponse]]:
    """Ask the model for its next turn, repairing invalid tool calls.

    Every tool call of a response goes through ``validate``. If any is invalid, the
    assistant turn and one ``tool`` message per call (the error for an invalid call, "not
    run" for the others: providers refuse a conversation that leaves a call unanswered) are
    appended to a copy of ``messages``, and the model is asked again, at most
    ``max_repairs`` times. With ``tool_choice="required"``, a text-only answer is invalid
    too. A response without tool calls is otherwise final: the model answered in text.

    Args:
        client: The model.
        messages: The conversation so far (not modified).
        tools: The tools offered, in OpenAI's format.
        validate: Returns the error to show the model for an invalid call, or None. It may
            also raise `InvalidToolCall` (as ``ToolContract.validate_args`` and
            ``Toolbelt.get`` do), whose message is used.
        max_repairs: Repair turns allowed after the first answer.
        settings: Sampling settings for every turn.
        retry_budget: HTTP retries the run still allows, shared by all turns: the retries
            one turn used are taken off what the next one may use.

    Returns:
        The last response (all its calls valid) and every response received, in order, the
        last included: each one cost tokens.

    Raises:
        ModelOutputError: still invalid after ``max_repairs`` repairs; ``raw`` holds the last
            output (tool names and argument text, redacted) and ``attempts`` the HTTP
            attempts of all turns.
        ModelError: a turn's HTTP call failed (see the client).

        Either error carries every response received before it (`failed_responses`).
    """
    if max_repairs < 0:
        raise ValueError("max_repairs must be >= 0")
    conversation = list(messages)
    responses: list[ModelResponse] = []
    budget = retry_budget
    required = settings is not None and settings.tool_choice == "required" and bool(tools)
    errors: list[str | None] = []
    for _turn in range(max_repairs + 1):
        try:
            response = await client.complete(conversation, tools, settings, retry_budget=budget)
        except ModelError as exc:
            setattr(exc, "responses", tuple(responses))  # noqa: B010
            raise
        responses.append(response)
        if budget is not None:
            budget = max(0, budget - (response.attempts - 1))
        errors = [_check(validate, call) for call in response.tool_calls]
        if not response.tool_calls:
            if not required:
                return response, responses
            conversation += [response.message, Message.user(_NEED_TOOL)]
            errors = [_NEED_TOOL]
            continue
        if all(e is None for e in errors):
            return response, responses
        conversation.append(response.message)
        for call, problem in zip(response.tool_calls, errors, strict=True):
            content = _NOT_RUN if problem is None else f"error: {problem} (fix the call, try again)"
            conversation.append(Message.tool(call.id, content))
    last = responses[-1]
    first_error = next((e for e in errors if e is not None), "invalid output")
    error = ModelOutputError(
        _REDACTOR.redact_text(
            f"model `{client.name}` gave no valid tool call after {max_repairs} repair "
            f"turn{'s' if max_repairs != 1 else ''}: {first_error}"
        ),
        raw=raw_output(last),
        model=client.name,
        attempts=sum(r.attempts for r in responses),
    )
    setattr(error, "responses", tuple(responses))  # noqa: B010
    setattr(  # noqa: B010
        error, "attempt_latencies", tuple(t for r in responses for t in r.attempt_latencies)
    )
    raise error


def raw_output(response: ModelResponse) -> str:
    """A response as the model wrote it (each call as ``name arguments``, then any text),
    redacted and cut to a few thousand characters: enough to debug, safe to store."""
    lines = [f"{call.name} {call.arguments}" for call in response.tool_calls]
    if response.text:
        lines.append(response.text)
    raw = "\n".join(lines)
    if len(raw) > _RAW_MAX:
        raw = raw[:_RAW_MAX] + f"... [{len(raw) - _RAW_MAX} more chars]"
    return _REDACTOR.redact_text(raw)


def basic_validator(tools: Sequence[Mapping[str, Any]]) -> Validator:
    """A validator that needs no contracts: the tool is one offered, its arguments a JSON
    object. The gateway's contract validation (types, required fields) is stricter; use it
    when a toolbelt is at hand."""
    names = {
        str(t["function"].get("name"))
        for t in tools
        if isinstance(t.get("function"), Mapping) and t["function"].get("name")
    }

    def validate(call: ToolCall) -> str | None:
        if call.name not in names:
            known = ", ".join(sorted(names)) or "none"
            return f"unknown tool `{call.name}`; available tools: {known}"
        try:
            value = orjson.loads(call.arguments)
        except orjson.JSONDecodeError as exc:
            return f"arguments of `{call.name}` are not valid JSON ({exc})"
        if not isinstance(value, dict):
            return f"arguments of `{call.name}` must be a JSON object"
        return None

    return validate


def _check(validate: Validator, call: ToolCall) -> str | None:
    try:
        return validate(call)
    except InvalidToolCall as exc:
        return str(exc)
