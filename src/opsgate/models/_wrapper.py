"""`WrapperClient`: a `ModelClient` around another, the base of the router's layers.

Fallback, caching, constrained tool calls and metering are each one wrapper around a
client (the shape of pydantic-ai's ``WrapperModel``), so the router composes them instead
of branching through one long method, and each can be tested alone.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from opsgate.models._client import ModelClient
from opsgate.models._types import Message, ModelResponse, ModelSettings

__all__ = ["WrapperClient"]


class WrapperClient:
    """Passes everything to ``inner``; subclasses override what they change."""

    def __init__(self, inner: ModelClient) -> None:
        self.inner = inner

    @property
    def name(self) -> str:
        """The inner client's model id."""
        return self.inner.name

    @property
    def provider(self) -> str:
        """The inner client's provider."""
        return self.inner.provider

    async def complete(
        self,
        messages: Sequence[Message],
        tools: Sequence[Mapping[str, Any]] | None = None,
        settings: ModelSettings | None = None,
        *,
        retry_budget: int | None = None,
    ) -> ModelResponse:
        """The inner client's answer."""
        return await self.inner.complete(messages, tools, settings, retry_budget=retry_budget)
