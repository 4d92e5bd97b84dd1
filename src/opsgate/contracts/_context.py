"""`ToolContext`: what the gateway hands a tool besides its arguments."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Generic, TypeVar

DepsT = TypeVar("DepsT")


@dataclass(frozen=True, slots=True)
class ToolContext(Generic[DepsT]):
    """Passed to a tool that declares a parameter annotated ``ToolContext[...]``.

    The model never sees or proposes any of it: the gateway builds it at execution.

    Attributes:
        run_id: The run the call belongs to.
        workflow: The workflow the run is under.
        call_id: The id of this call (stable across retries: use it as an idempotency key).
        deps: What the caller passed as the run's dependencies (a client, an in-memory world).
        secrets: Only the secrets the contract declared, read from the secret store.
    """

    run_id: str
    workflow: str
    call_id: str
    deps: DepsT
    secrets: Mapping[str, str] = field(default_factory=dict, repr=False)
