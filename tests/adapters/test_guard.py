"""`opsgate.guard` itself: plain callables, wiring errors, answers, and opsgate without the
frameworks installed."""

from __future__ import annotations

import inspect
import json
import subprocess
import sys
from typing import Any

import pytest

import opsgate
from opsgate.adapters import GuardedCallable, answer_from, gate_function, guard
from opsgate.contracts import Toolbelt, tool
from opsgate.errors import ContractError
from opsgate.gateway import ApprovalAnswer, CallbackApprover, Gateway
from opsgate.policy import load_policy
from opsgate.recorder import InMemoryRecorder
from tests.adapters._support import POLICY, REQUEST, shop, trail


@tool(scope="read", output="trusted")
def get_order(order_id: str) -> dict[str, Any]:
    """Look up an order in the system of record."""
    return {"order_id": order_id, "total": 120.0}


def refund(order_id: str, amount: float, note: str = "") -> dict[str, Any]:
    """Refund part or all of an order."""
    return {"refunded": amount}


BELT = Toolbelt([get_order, gate_function(refund, scope="write", impact="high")])


async def test_a_plain_callable_returns_the_result_or_the_denial_as_text() -> None:
    gateway, run, recorder = shop(BELT)
    lookup, pay = guard(gateway, run, [get_order, refund])
    assert isinstance(lookup, GuardedCallable) and opsgate.guard is guard
    assert await lookup(order_id="ORD-7") == {"order_id": "ORD-7", "total": 120.0}
    denied = json.loads(await pay(order_id="ORD-7", amount=500))
    assert denied["reason"] == "arg_constraint" and denied["status"] == "denied"
    assert pay.last_outcome is not None and pay.last_outcome.status == "denied"
    refused = json.loads(await pay(order_id="ORD-7", amount="80"))  # a string is no number
    assert refused["reason"] == "invalid_arguments"
    held = json.loads(await pay(order_id="ORD-7", amount=80))  # needs a person: deny-all
    assert held["status"] == "approval_denied"
    assert pay.last_outcome is not None
    assert trail(recorder, pay.last_outcome.call_id)[-1] == (
        "approval_denied",
        "opsgate:no-approver",
    )


async def test_a_plain_callable_s_approvals_go_to_the_gateway_s_approver() -> None:
    approver = CallbackApprover(lambda request: ApprovalAnswer(True, "lea", "fine"))
    gateway = Gateway(BELT, load_policy("shop", BELT, text=POLICY), approver=approver)
    run = gateway.start_run("support", invoker="maria", agent_id="bot-1", request=REQUEST)
    pay = guard(gateway, run, "refund")
    assert await pay(order_id="ORD-7", amount=80) == {"refunded": 80.0}


def test_its_signature_is_the_contract_s() -> None:
    gateway, run, _ = shop(BELT)
    pay = guard(gateway, run, refund)
    assert str(inspect.signature(pay)) == "(*, order_id: str, amount: float, note: str = '')"
    assert pay.__name__ == "refund" and pay.__doc__ == "Refund part or all of an order."


def test_wiring_errors_say_what_to_do() -> None:
    gateway, run, _ = shop(BELT)

    def unknown(x: int) -> int:
        """Not in the toolbelt."""
        return x

    with pytest.raises(
        ContractError, match=r"no contract in the gateway's toolbelt.*gate_function"
    ):
        guard(gateway, run, [get_order, unknown])
    with pytest.raises(ContractError, match="unknown framework `crewai`"):
        guard(gateway, run, get_order, framework="crewai")  # type: ignore[arg-type]
    with pytest.raises(ContractError, match="names no tool"):
        guard(gateway, run, [42])


def test_an_answer_names_its_approver() -> None:
    assert answer_from({"approved": True, "approver": " lea ", "reason": "ok"}) == ApprovalAnswer(
        True, "lea", "ok"
    )
    assert answer_from(ApprovalAnswer(False, "lea")) == ApprovalAnswer(False, "lea")
    for nobody in (True, None, "yes", {"approved": True}, {"approved": "yes", "approver": "a"}):
        assert answer_from(nobody) is None
    assert answer_from({"approved": True, "approver": "  "}) is None


def test_opsgate_imports_and_guards_callables_without_the_frameworks() -> None:
    script = """
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {"agents", "pydantic_ai", "langchain_core", "langgraph"}:
            raise ImportError(f"blocked {name}")
sys.meta_path.insert(0, Block())
from opsgate import Gateway, Toolbelt, guard, load_policy, tool
from opsgate.errors import ContractError

@tool(scope="read")
def ping() -> str:
    "Ping."
    return "pong"

belt = Toolbelt([ping])
policy = 'version: "1"\\nworkflows:\\n  w:\\n    stage: read_only\\n    tools: {ping: {}}\\n'
gateway = Gateway(belt, load_policy("p", belt, text=policy))
run = gateway.start_run("w", invoker="a", agent_id="b", request="ping")
assert callable(guard(gateway, run, ping))
try:
    guard(gateway, run, [ping], framework="pydantic-ai")
except ContractError as exc:
    print(exc)
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "pydantic-ai` is not installed" in done.stdout and "opsgate[adapters]" in done.stdout


def test_each_framework_tool_is_found_by_its_name() -> None:
    recorder = InMemoryRecorder()
    gateway = Gateway(BELT, load_policy("shop", BELT, text=POLICY), recorder=recorder)
    run = gateway.start_run("support", invoker="maria", agent_id="bot-1", request=REQUEST)
    names = {
        f: [t.name for t in guard(gateway, run, ["get_order", refund], framework=f)]
        for f in ("openai-agents", "langchain")
    }
    assert names == {"openai-agents": ["get_order", "refund"], "langchain": ["get_order", "refund"]}
    toolset = guard(gateway, run, [get_order], framework="pydantic-ai")
    assert list(toolset.tools) == ["get_order"]
