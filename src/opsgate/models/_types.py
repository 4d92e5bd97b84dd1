"""The values that cross the model boundary: messages in, one response out.

They are frozen dataclasses, not pydantic models: they are built by opsgate itself (from a
parsed HTTP body, or by an agent loop), never from untrusted input that needs validating
field by field, and they are created once per model turn on the hot path of a run.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from opsgate.errors import ModelError

__all__ = [
    "Message",
    "ModelResponse",
    "ModelSettings",
    "Role",
    "ToolCall",
    "ToolChoice",
    "Usage",
    "attempt_latencies",
    "failed_responses",
]

Role = Literal["system", "user", "assistant", "tool"]
ToolChoice = Literal["auto", "required", "none"]

_ROLES = frozenset({"system", "user", "assistant", "tool"})
_TOOL_CHOICES = frozenset({"auto", "required", "none"})


@dataclass(frozen=True, slots=True)
class ToolCall:
    """One tool call proposed by a model.

    Attributes:
        id: The provider's id of the call; the ``tool`` message answering it must carry it.
        name: The tool's name, as the model wrote it (it may name no known tool).
        arguments: The raw JSON text the model sent. Kept as text, not parsed: whether it is
            JSON at all, and valid for the tool, is for the gateway's contract to decide.
    """

    id: str
    name: str
    arguments: str


@dataclass(frozen=True, slots=True)
class Message:
    """One chat message.

    Attributes:
        role: ``system``, ``user``, ``assistant`` or ``tool``.
        content: The text (None for an assistant turn that only calls tools).
        tool_calls: The calls an ``assistant`` message proposed.
        tool_call_id: For a ``tool`` message, the id of the call it answers.

    Raises:
        ValueError: an unknown role, or a ``tool`` message without ``tool_call_id``
            (providers refuse the whole request for it, so it is caught here instead).
    """

    role: Role
    content: str | None
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None

    def __post_init__(self) -> None:
        if self.role not in _ROLES:
            raise ValueError(f"unknown message role {self.role!r}; expected one of {_ROLES}")
        if self.role == "tool" and not self.tool_call_id:
            raise ValueError("a `tool` message needs the `tool_call_id` of the call it answers")
        if self.tool_calls and self.role != "assistant":
            raise ValueError("only an `assistant` message carries tool calls")

    @classmethod
    def system(cls, content: str) -> Message:
        """A system message."""
        return cls("system", content)

    @classmethod
    def user(cls, content: str) -> Message:
        """A user message."""
        return cls("user", content)

    @classmethod
    def assistant(cls, content: str | None, tool_calls: Iterable[ToolCall] = ()) -> Message:
        """An assistant message (what a model said), with the tool calls it proposed."""
        return cls("assistant", content, tuple(tool_calls))

    @classmethod
    def tool(cls, tool_call_id: str, content: str) -> Message:
        """The answer to one tool call (its result, or the reason it was refused)."""
        return cls("tool", content, tool_call_id=tool_call_id)


@dataclass(frozen=True, slots=True)
class Usage:
    """Tokens one model turn consumed, as the provider counted them.

    Attributes:
        input_tokens: Prompt tokens (including the cached ones).
        output_tokens: Completion tokens.
        cached_input_tokens: Prompt tokens served from the provider's prompt cache (priced
            lower by most providers, hence kept apart).
    """

    input_tokens: int = 0
    output_tokens: int = 0
    cached_input_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        """Input plus output tokens."""
        return self.input_tokens + self.output_tokens

    def __add__(self, other: Usage) -> Usage:
        # Summing is what cost accounting does with the turns of a repair loop or a run.
        if not isinstance(other, Usage):
            return NotImplemented
        return Usage(
            self.input_tokens + other.input_tokens,
            self.output_tokens + other.output_tokens,
            self.cached_input_tokens + other.cached_input_tokens,
        )


@dataclass(frozen=True, slots=True)
class ModelResponse:
    """What one model call returned, and what it cost to get it.

    Attributes:
        text: The assistant's text, or None (a turn that only calls tools).
        tool_calls: The tool calls proposed, in order.
        usage: Tokens consumed by the successful attempt (failed attempts are not billed
            by providers, but they are counted in ``attempts``).
        finish_reason: ``stop``, ``tool_calls``, ``length``, ``content_filter``, ... as the
            provider said (``unknown`` when it said nothing).
        model: The model that answered, as the provider named it (it may differ from the
            model asked for, for instance a dated snapshot).
        latency_s: Wall time of the whole call, retries and back-off waits included.
        attempts: HTTP attempts made (1 when the first one succeeded).
        attempt_latencies: The duration of each attempt, in order (waits excluded).
        cache_hit: True when the response was served from a response cache, not a model.
    """

    text: str | None
    tool_calls: tuple[ToolCall, ...]
    usage: Usage
    finish_reason: str
    model: str
    latency_s: float
    attempts: int
    attempt_latencies: tuple[float, ...]
    cache_hit: bool = False

    @property
    def message(self) -> Message:
        """The assistant message to append to the conversation before answering its calls."""
        return Message("assistant", self.text, self.tool_calls)


@dataclass(frozen=True, slots=True)
class ModelSettings:
    """How to sample one model call.

    Attributes:
        temperature: Sampling temperature (0 for the most repeatable answers).
        max_tokens: Cap on output tokens, or None for the provider's default.
        json_schema: Constrain the text answer to a JSON schema (OpenAI's
            ``response_format: json_schema``, also honoured by vLLM, Ollama and llama.cpp).
            Either a bare JSON schema (sent as ``{"name": "output", "schema": ...,
            "strict": true}``) or the full ``{"name", "schema", "strict"}`` object.
        tool_choice: ``auto`` (the model may call tools), ``required`` (it must) or
            ``none`` (it must not). Sent only when tools are given.
        timeout_s: Per-attempt timeout overriding the client's, or None.

    Raises:
        ValueError: a negative temperature, a non-positive ``max_tokens`` or timeout, or an
            unknown ``tool_choice``.
    """

    temperature: float = 0.0
    max_tokens: int | None = None
    json_schema: Mapping[str, Any] | None = None
    tool_choice: ToolChoice = "auto"
    timeout_s: float | None = None

    def __post_init__(self) -> None:
        if self.temperature < 0:
            raise ValueError("temperature must be >= 0")
        if self.max_tokens is not None and self.max_tokens <= 0:
            raise ValueError("max_tokens must be > 0")
        if self.timeout_s is not None and self.timeout_s <= 0:
            raise ValueError("timeout_s must be > 0")
        if self.tool_choice not in _TOOL_CHOICES:
            raise ValueError(f"tool_choice must be one of {sorted(_TOOL_CHOICES)}")


def attempt_latencies(error: ModelError) -> tuple[float, ...]:
    """The duration of each HTTP attempt behind a failed model call.

    A `ModelError` raised by a models client carries them (as ``attempt_latencies``) so
    that a failed call is counted like a successful one; an error from elsewhere has none.
    """
    value = getattr(error, "attempt_latencies", ())
    return tuple(value) if isinstance(value, tuple) else ()


def failed_responses(error: ModelError) -> tuple[ModelResponse, ...]:
    """The responses a repair loop received before it failed (each one cost tokens).

    `complete_tool_call` attaches them (as ``responses``) to the error it raises, whether
    the repairs ran out or a later turn's HTTP call failed.
    """
    value = getattr(error, "responses", ())
    return tuple(value) if isinstance(value, tuple) else ()
