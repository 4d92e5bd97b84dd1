"""`FallbackClient`: the next model when one fails.

A failed model raises a `ModelError` (after its own retries); the next one of the chain is
asked with the same request. Anything else (a refused budget, a bug) stops the chain: only
a model's failure is a reason to ask another.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from opsgate.errors import ModelError
from opsgate.models._client import ModelClient
from opsgate.models._types import Message, ModelResponse, ModelSettings

__all__ = ["FallbackClient"]


class FallbackClient:
    """Asks each of ``members`` (name, client) in order until one answers.

    Raises:
        ValueError: no members.
    """

    def __init__(self, members: Sequence[tuple[str, ModelClient]]) -> None:
        if not members:
            raise ValueError("a fallback chain needs at least one model")
        self.members = tuple(members)

    @property
    def name(self) -> str:
        """The first model's id."""
        return self.members[0][1].name

    @property
    def provider(self) -> str:
        """The first model's provider."""
        return self.members[0][1].provider

    async def answer(
        self,
        messages: Sequence[Message],
        tools: Sequence[Mapping[str, Any]] | None = None,
        settings: ModelSettings | None = None,
        *,
        retry_budget: int | None = None,
    ) -> tuple[ModelResponse, str]:
        """The first answer, with the name of the member that gave it.

        Raises:
            ModelError: the last member's, when every member failed.
        """
        last: ModelError | None = None
        for name, client in self.members:
            try:
                response = await client.complete(
                    messages, tools, settings, retry_budget=retry_budget
                )
            except ModelError as exc:
                last = exc
                continue
            return response, name
        assert last is not None
        raise last

    async def complete(
        self,
        messages: Sequence[Message],
        tools: Sequence[Mapping[str, Any]] | None = None,
        settings: ModelSettings | None = None,
        *,
        retry_budget: int | None = None,
    ) -> ModelResponse:
        """The first answer (see `answer`)."""
        response, _ = await self.answer(messages, tools, settings, retry_budget=retry_budget)
        return response
