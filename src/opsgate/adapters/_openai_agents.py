"""The OpenAI Agents SDK (``openai-agents``): gated ``FunctionTool``s.

Each tool offers the model its contract's schema. A call the policy sends to a person
interrupts the run the SDK's way (``needs_approval``: the call is in
``RunResult.interruptions``); the person answers with `GuardedAgentTools.approve` or
`GuardedAgentTools.reject`, naming themselves, and the run resumes with
``Runner.run(agent, state)``. The call then passes `Gateway.call` with that answer, so the
trail names the approver; a rejection reaches the model as the tool's result, like every
denial. An approval given with the SDK's own ``state.approve(item)`` names nobody: the call
then waits for the gateway's approver instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from agents import FunctionTool, RunContextWrapper, RunState, ToolApprovalItem
from agents.tool_context import ToolContext as AgentsToolContext

from opsgate.adapters._calls import gated_call, pending_approval
from opsgate.contracts import ToolContract
from opsgate.gateway import ApprovalAnswer, Gateway, Run

__all__ = ["GuardedAgentTools", "guard_openai_agents"]


class GuardedAgentTools(list[FunctionTool]):
    """The gated tools (a list: ``Agent(tools=guarded)``), and the approval answers.

    Attributes:
        gateway: The gateway every call passes.
        run: The opsgate run the calls belong to.
    """

    def __init__(self, gateway: Gateway, run: Run, contracts: Sequence[ToolContract]) -> None:
        super().__init__(self._tool(c) for c in contracts)
        self.gateway = gateway
        self.run = run
        self._answers: dict[str, ApprovalAnswer] = {}

    def approve(
        self, state: RunState[Any, Any], item: ToolApprovalItem, *, approver: str, reason: str = ""
    ) -> None:
        """Approve an interrupted call as ``approver``; resume with ``Runner.run(agent, state)``."""
        self._answer(state, item, ApprovalAnswer(True, approver, reason))

    def reject(
        self, state: RunState[Any, Any], item: ToolApprovalItem, *, approver: str, reason: str = ""
    ) -> None:
        """Deny an interrupted call as ``approver``: the gateway records the denial and the
        model reads it as the tool's result (with ``reason``) when the run resumes."""
        self._answer(state, item, ApprovalAnswer(False, approver, reason))

    def _answer(
        self, state: RunState[Any, Any], item: ToolApprovalItem, answer: ApprovalAnswer
    ) -> None:
        call_id = item.call_id
        if not call_id:
            raise ValueError("this approval item carries no call id")
        self._answers[call_id] = answer
        # the SDK lets the call through; the gateway applies the person's answer
        state.approve(item)

    def _tool(self, contract: ToolContract) -> FunctionTool:
        name = contract.name

        async def needs_approval(
            _context: RunContextWrapper[Any], params: dict[str, Any], call_id: str
        ) -> bool:
            if call_id in self._answers:
                return True
            return pending_approval(self.gateway, self.run, name, params) is not None

        async def invoke(context: AgentsToolContext[Any], arguments: str) -> str:
            call_id = context.tool_call_id

            def provide(_param: str, _label: str, _annotation: Any) -> Any:
                return context  # a RunContextWrapper / ToolContext parameter: the SDK's

            outcome = await gated_call(
                self.gateway,
                self.run,
                name,
                arguments,
                call_id=call_id,
                provide=provide,
                answer=self._answers.pop(call_id, None),
            )
            return outcome.for_model()

        schema = contract.parameters_schema
        strict = set(schema.get("required", ())) == set(schema.get("properties", {}))
        return FunctionTool(
            name=name,
            description=contract.description,
            params_json_schema=schema,
            on_invoke_tool=invoke,
            strict_json_schema=strict,
            needs_approval=needs_approval,
        )


def guard_openai_agents(
    gateway: Gateway, run: Run, contracts: Sequence[ToolContract]
) -> GuardedAgentTools:
    """The contracts as gated Agents SDK tools (see the module)."""
    return GuardedAgentTools(gateway, run, contracts)
