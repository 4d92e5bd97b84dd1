"""The bench suite's agent and world: the shared executor loop over one read tool.

The model (the loopback server) calls ``lookup_order`` once, then answers: every task is
exactly two model calls through the router, one gated tool call, and the scoring.
"""

from __future__ import annotations

from typing import Any

from opsgate.agent import AgentResult, execute
from opsgate.gateway import Gateway, Run
from opsgate.models import Message, ModelRouter

SYSTEM = "You answer questions about orders. Look the order up, then say its status."


class LookupAgent:
    """Look up, then answer (what `agent-eval` calls ``agent.run``)."""

    def __init__(self, gateway: Gateway, router: ModelRouter) -> None:
        self.gateway = gateway
        self.router = router

    async def run(self, run: Run, context: str) -> AgentResult:
        """One executor loop with the lookup tool."""
        return await execute(
            self.gateway,
            self.router,
            run,
            system=SYSTEM,
            messages=[Message.user(context)],
            tools=("lookup_order",),
        )


def build_agent(gateway: Gateway, router: ModelRouter) -> LookupAgent:
    """The suite's ``agent:`` factory."""
    return LookupAgent(gateway, router)


def world_for_task(task: Any) -> dict[str, Any]:
    """The task's world: the one order its request names (a fresh copy per trial)."""
    order = str(task.id).removeprefix("lookup-")
    return {"orders": {f"ORD-{order}": {"status": "shipped", "lookups": 0}}}
