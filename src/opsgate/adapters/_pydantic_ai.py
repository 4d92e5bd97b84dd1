"""pydantic-ai: a gated ``FunctionToolset``.

Each tool offers the model its contract's schema. A call the policy sends to a person is
deferred the framework's way (``ApprovalRequired``): the run ends with
``DeferredToolRequests`` (the agent's ``output_type`` must allow it), whose ``metadata``
says why. `GuardedToolset.answer` turns the person's answer, with who they are, into the
``DeferredToolResults`` for the next run; the call then passes `Gateway.call` with that
answer, so the trail names the approver, and a denial reaches the model as the tool's
result, like every denial. A bare ``approvals={id: True}`` names nobody: the call then
waits for the gateway's approver instead; a ``ToolDenied`` never reaches the gateway.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from pydantic_ai import ApprovalRequired, DeferredToolRequests, DeferredToolResults, RunContext
from pydantic_ai.tools import Tool
from pydantic_ai.toolsets import FunctionToolset

from opsgate.adapters._calls import answer_from, gated_call, pending_approval
from opsgate.contracts import ToolContract
from opsgate.gateway import Gateway, Run

__all__ = ["GuardedToolset", "guard_pydantic_ai"]


class GuardedToolset(FunctionToolset[Any]):
    """The gated tools as a toolset (``Agent(..., toolsets=[guarded])``).

    Attributes:
        gateway: The gateway every call passes.
        run: The opsgate run the calls belong to.
    """

    def __init__(self, gateway: Gateway, run: Run, contracts: Sequence[ToolContract]) -> None:
        self.gateway = gateway
        self.run = run
        super().__init__(
            [
                Tool.from_schema(
                    self._function(c),
                    name=c.name,
                    description=c.description,
                    json_schema=c.parameters_schema,
                    takes_ctx=True,
                )
                for c in contracts
            ]
        )

    def answer(
        self,
        requests: DeferredToolRequests,
        *,
        approver: str,
        approve: bool | Mapping[str, bool] = True,
        reason: str = "",
    ) -> DeferredToolResults:
        """The ``deferred_tool_results`` of the next run: the person's answer to each
        approval request (``approve``: one answer for all, or per tool call id)."""
        results = DeferredToolResults()
        for call in requests.approvals:
            if isinstance(approve, bool):
                approved = approve
            elif call.tool_call_id in approve:
                approved = approve[call.tool_call_id]
            else:
                raise ValueError(f"no answer for tool call `{call.tool_call_id}` in approve=")
            # the framework lets the call through; the gateway applies the person's answer
            results.approvals[call.tool_call_id] = True
            results.metadata[call.tool_call_id] = {
                "approved": approved,
                "approver": approver,
                "reason": reason,
            }
        return results

    def _function(self, contract: ToolContract) -> Callable[..., Any]:
        name = contract.name

        async def call(ctx: RunContext[Any], **arguments: Any) -> str:
            answer = None
            if ctx.tool_call_approved:
                answer = answer_from(ctx.tool_call_metadata)
            else:
                decision = pending_approval(self.gateway, self.run, name, arguments)
                if decision is not None:
                    raise ApprovalRequired(
                        metadata={
                            "tool": name,
                            "reason": decision.reason.value,
                            "rule": decision.rule,
                            "message": decision.message,
                        }
                    )

            def provide(_param: str, _label: str, _annotation: Any) -> Any:
                return ctx  # a RunContext parameter: pydantic-ai's

            outcome = await gated_call(
                self.gateway,
                self.run,
                name,
                arguments,
                call_id=ctx.tool_call_id,
                provide=provide,
                answer=answer,
            )
            return outcome.for_model()

        call.__name__ = name
        return call


def guard_pydantic_ai(
    gateway: Gateway, run: Run, contracts: Sequence[ToolContract]
) -> GuardedToolset:
    """The contracts as a gated pydantic-ai toolset (see the module)."""
    return GuardedToolset(gateway, run, contracts)
