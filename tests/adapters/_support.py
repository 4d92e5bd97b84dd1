"""What the framework tests share: the shop's policy, a gateway over a toolbelt, the trail."""

from __future__ import annotations

from typing import Any

from opsgate.contracts import Toolbelt
from opsgate.gateway import Gateway, Run
from opsgate.policy import load_policy
from opsgate.recorder import InMemoryRecorder

POLICY = """
version: "1"
workflows:
  support:
    stage: autonomous_in_scope
    tools:
      get_order: {}
      refund: {constraints: {amount: {max: 200}}, approval_when: "args.amount > 50.0"}
"""

REQUEST = "Refund 80 on ORD-7"


def shop(belt: Toolbelt) -> tuple[Gateway, Run, InMemoryRecorder]:
    """A gateway over ``belt`` under the shop's policy, and a run started by maria."""
    recorder = InMemoryRecorder()
    gateway = Gateway(belt, load_policy("shop", belt, text=POLICY), recorder=recorder)
    run = gateway.start_run("support", invoker="maria", agent_id="bot-1", request=REQUEST)
    return gateway, run, recorder


def trail(recorder: InMemoryRecorder, call_id: str) -> list[tuple[str, Any]]:
    """One call's events: (type, reason or approver)."""
    out = []
    for event in recorder.events:
        if event.data.get("call_id") != call_id:
            continue
        detail = event.data.get("approver") or event.data.get("reason")
        out.append((event.type.value, detail))
    return out


APPROVED = [
    ("tool_call_proposed", None),
    ("decision", "approval_required"),
    ("approval_requested", "approval_required"),
    ("approval_granted", "lea"),
    ("tool_result", None),
    ("write_performed", None),
]
DENIED_BY_LEA = [
    ("tool_call_proposed", None),
    ("decision", "approval_required"),
    ("approval_requested", "approval_required"),
    ("approval_denied", "lea"),
]
CONSTRAINT = [("tool_call_proposed", None), ("decision", "arg_constraint")]
ALLOWED = [("tool_call_proposed", None), ("decision", "allowed"), ("tool_result", None)]

__all__ = ["ALLOWED", "APPROVED", "CONSTRAINT", "DENIED_BY_LEA", "shop", "trail"]
