"""Ids as customers type them, put in the system's form by the tool's contract before the
call is validated and decided; the change recorded on the proposed call."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field

from opsgate.contracts import Normalize, Toolbelt, tool
from opsgate.examples.support_triage.tools import order_id
from opsgate.gateway import Gateway
from opsgate.policy import load_policy
from opsgate.recorder import EventType, InMemoryRecorder


def _boom(value: object) -> object:
    raise RuntimeError("a broken normaliser")


OrderId = Annotated[str, Normalize(order_id), Field(pattern=r"^ORD-\d{4}$")]


@tool(scope="read", output="trusted")
def lookup(order_id: OrderId, note: Annotated[str, Normalize(_boom)] = "") -> dict[str, Any]:
    """Look up an order."""
    return {"order_id": order_id}


@tool(scope="read")
def plain(order_id: str) -> str:
    """No normaliser."""
    return order_id


BELT = Toolbelt([lookup, plain])
POLICY = (
    'version: "1"\nworkflows:\n  wf:\n    stage: read_only\n    tools: {lookup: {}, plain: {}}\n'
)


def test_the_contract_normalises_what_it_knows_and_leaves_the_rest() -> None:
    contract = BELT.get("lookup")
    fixed, changed = contract.normalize_args('{"order_id": "#A-1050", "note": "x"}')
    assert fixed == {"order_id": "ORD-1050", "note": "x"}  # the broken normaliser: unchanged
    assert changed == {"order_id": {"from": "#A-1050", "to": "ORD-1050"}}
    assert contract.normalize_args('{"order_id": "ORD-1050"}') == ('{"order_id": "ORD-1050"}', {})
    assert contract.normalize_args("not json") == ("not json", {})
    assert contract.normalize_args("[1, 2]") == ("[1, 2]", {})
    raw = '{"order_id": "a1050"}'
    assert BELT.get("plain").normalize_args(raw) == (raw, {})  # no normaliser: untouched


async def test_the_gateway_runs_the_normalised_call_and_records_the_change() -> None:
    recorder = InMemoryRecorder()
    gateway = Gateway(BELT, load_policy("p", BELT, text=POLICY), recorder=recorder)
    run = gateway.start_run("wf", invoker="ana", agent_id="bot", request="where is a1050?")
    outcome = await gateway.call(run, "lookup", '{"order_id": "a1050"}')
    assert outcome.ok and outcome.result == {"order_id": "ORD-1050"}
    (proposed,) = recorder.of_type(EventType.TOOL_CALL_PROPOSED)
    assert proposed.data["args"]["order_id"] == "ORD-1050"
    assert proposed.data["normalized"] == {"order_id": {"from": "a1050", "to": "ORD-1050"}}
    refused = await gateway.call(run, "lookup", '{"order_id": "T-12"}')  # not an order id
    assert refused.decision.reason.value == "invalid_arguments"
    assert gateway.preview(run, "lookup", '{"order_id": "ord1050"}').effect.value == "allow"
