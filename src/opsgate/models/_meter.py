"""What a model call reports to whoever pays for it, and the interface that takes it.

The router never knows about gateways or runs: it is handed a `ModelMeter`, which says what
is left to spend (money, retries) and takes one `ModelCall` record per model asked, failed
or not. The gateway offers one per run (``Gateway.meter(run)``); a test or a script may
offer its own.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from opsgate.models._types import Message, ModelResponse

__all__ = ["ModelCall", "ModelMeter", "genai_messages"]


@dataclass(frozen=True, slots=True)
class ModelCall:
    """One model asked once (its HTTP retries included), as priced and timed.

    Attributes:
        role: The step role (``route``, ``act``, ...).
        model: The router's name of the model.
        provider: Who serves it.
        request_model: The model id sent to the provider (what price lists key on).
        response_model: The model id the provider answered with ("" on failure).
        input_tokens: Prompt tokens used.
        output_tokens: Completion tokens used.
        cached_input_tokens: Prompt tokens served from the provider's prompt cache.
        cost_usd: What it cost (0 for a cache hit or a failure).
        latency_s: Wall time, retries included.
        estimate: The price is a labelled estimate (a local model's compute).
        attempts: HTTP attempts made.
        cache_hit: Answered from the response cache.
        finish_reason: Why the model stopped ("" on failure).
        error_type: The `ModelError` subclass's name when it failed.
        temperature: The sampling temperature asked for.
        max_tokens: The cap on output tokens asked for (None: the provider's default).
        messages: The conversation sent (for debug traces only: never for the audit trail).
        response: The answer, when there was one (likewise).
    """

    role: str
    model: str
    provider: str
    request_model: str
    response_model: str = ""
    input_tokens: int = 0
    output_tokens: int = 0
    cached_input_tokens: int = 0
    cost_usd: float = 0.0
    latency_s: float = 0.0
    estimate: bool = False
    attempts: int = 1
    cache_hit: bool = False
    finish_reason: str = ""
    error_type: str | None = None
    temperature: float | None = None
    max_tokens: int | None = None
    messages: tuple[Message, ...] = field(default=(), repr=False)
    response: ModelResponse | None = field(default=None, repr=False)


@runtime_checkable
class ModelMeter(Protocol):
    """Who pays for model calls: a run's budget and retry cap, and its record."""

    @property
    def workflow(self) -> str:
        """The workflow paying (router budgets are per workflow)."""
        ...

    @property
    def purpose(self) -> str:
        """``production`` or ``eval``: a workflow's daily budget is production's spend."""
        ...

    @property
    def spent_usd(self) -> float:
        """Spent so far."""
        ...

    @property
    def max_cost_usd(self) -> float | None:
        """The payer's own cost cap, if any (the router's budget applies besides)."""
        ...

    def retry_budget(self) -> int | None:
        """Retries still allowed (None: no cap)."""
        ...

    def record(self, call: ModelCall) -> None:
        """Take one call's record (and its cost)."""
        ...


def _part_of(call: Any) -> dict[str, Any]:
    return {"type": "tool_call", "id": call.id, "name": call.name, "arguments": call.arguments}


def genai_messages(
    messages: Sequence[Message], response: ModelResponse | None = None
) -> dict[str, list[dict[str, Any]]]:
    """The conversation and the answer in OpenTelemetry's GenAI message format
    (``gen_ai.input.messages`` / ``gen_ai.output.messages``: role and typed parts)."""
    inputs: list[dict[str, Any]] = []
    for m in messages:
        parts: list[dict[str, Any]] = []
        if m.role == "tool":
            response_part = {"id": m.tool_call_id, "response": m.content}
            parts.append({"type": "tool_call_response", **response_part})
        elif m.content is not None:
            parts.append({"type": "text", "content": m.content})
        parts.extend(_part_of(c) for c in m.tool_calls)
        inputs.append({"role": m.role, "parts": parts})
    outputs: list[dict[str, Any]] = []
    if response is not None:
        out_parts: list[dict[str, Any]] = []
        if response.text is not None:
            out_parts.append({"type": "text", "content": response.text})
        out_parts.extend(_part_of(c) for c in response.tool_calls)
        outputs.append(
            {"role": "assistant", "parts": out_parts, "finish_reason": response.finish_reason}
        )
    return {"input": inputs, "output": outputs}
