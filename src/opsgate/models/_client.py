"""The one interface every model client offers, whatever serves the model."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

from opsgate.models._types import Message, ModelResponse, ModelSettings

__all__ = ["ModelClient"]


@runtime_checkable
class ModelClient(Protocol):
    """A chat / tool-calling model.

    Implementations: `OpenAICompatibleClient` (OpenAI, vLLM, Ollama, llama.cpp server,
    LM Studio) and whatever the router, the embedded model or the response cache wrap.
    ``name`` and ``provider`` are read-only properties here so that an implementation may
    compute them (a router names the model it would pick).
    """

    @property
    def name(self) -> str:
        """The model id (what the router's price table and the cost ledger key on)."""
        ...

    @property
    def provider(self) -> str:
        """Who serves it: ``openai``, ``vllm``, ``ollama``, ``llamacpp``, ``embedded``, ..."""
        ...

    async def complete(
        self,
        messages: Sequence[Message],
        tools: Sequence[Mapping[str, Any]] | None = None,
        settings: ModelSettings | None = None,
        *,
        retry_budget: int | None = None,
    ) -> ModelResponse:
        """Ask the model for its next turn.

        Args:
            messages: The conversation so far.
            tools: Tools offered, in OpenAI's ``tools`` format (``Toolbelt.openai_tools``).
            settings: Sampling settings; None for the defaults.
            retry_budget: Retries the run still allows (its retry cap); the client makes at
                most ``min(its own max_retries, retry_budget)`` retries. None: no run cap.

        Returns:
            The response, with its usage, latency and the number of attempts it took.

        Raises:
            ModelError: a subclass saying why (timeout, rate limited, server error, bad
                request), with ``attempts`` and ``attempt_latencies``.
        """
        ...
