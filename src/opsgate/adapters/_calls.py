"""One call of a framework's model through the gateway: the shared steps of every adapter.

`pending_approval` says whether to pause a call the framework's way (`Gateway.preview`:
nothing recorded); `answer_from` reads a person's answer as the frameworks carry it;
`gated_call` passes the call to `Gateway.call`, the framework's values for the function's
framework parameters and, if given, the person's answer with it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from opsgate.adapters._core import Provider, framework_values
from opsgate.errors import ContractError
from opsgate.gateway import ApprovalAnswer, Gateway, Run, ToolOutcome
from opsgate.policy import Decision, Effect

__all__ = ["answer_from", "gated_call", "pending_approval"]


def pending_approval(
    gateway: Gateway, run: Run, tool: str, args: str | bytes | Mapping[str, Any] | None
) -> Decision | None:
    """The decision, when the policy would send this call to a person as it stands
    (`Gateway.preview`: nothing is recorded). A call that is invalid, denied or allowed is
    left to `Gateway.call`."""
    decision = gateway.preview(run, tool, args)
    return decision if decision.effect is Effect.NEEDS_APPROVAL else None


def answer_from(value: Any) -> ApprovalAnswer | None:
    """A person's answer as the frameworks carry it: an `ApprovalAnswer`, or a mapping
    ``{"approved": bool, "approver": "who", "reason": "..."}``. None when it names nobody
    (an answer without an approver identity is not taken as one)."""
    if isinstance(value, ApprovalAnswer):
        return value
    if not isinstance(value, Mapping):
        return None
    approver = value.get("approver")
    approved = value.get("approved")
    if not isinstance(approver, str) or not approver.strip() or not isinstance(approved, bool):
        return None
    reason = value.get("reason")
    return ApprovalAnswer(approved, approver.strip(), reason if isinstance(reason, str) else "")


async def gated_call(
    gateway: Gateway,
    run: Run,
    tool: str,
    args: str | bytes | Mapping[str, Any] | None,
    *,
    call_id: str | None,
    provide: Provider | None = None,
    answer: ApprovalAnswer | None = None,
) -> ToolOutcome:
    """One call of the model through the gateway, with the framework's values for the
    function's framework parameters and, if given, the person's answer."""
    call_id = call_id or os.urandom(8).hex()
    with framework_values(run.run_id, call_id, provide or _nothing):
        return await gateway.call(run, tool, args, call_id=call_id, approval=answer)


def _nothing(param: str, label: str, annotation: Any) -> Any:
    raise ContractError(f"parameter `{param}` ({label}) has no value outside its framework")
