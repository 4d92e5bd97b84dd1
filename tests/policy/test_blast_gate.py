"""The blast-radius bound holds against the gate itself (issue #15).

Random call sequences (random tools of the workflow, arguments within and beyond every
bound, values sometimes in the invoker's request and sometimes only in untrusted content)
go through the real `Gateway` with an approver that denies everything ("without a person"),
a quota ledger and a scripted executor (no tool runs). No run may exceed the bound that
`blast_radius` computed from the policy alone: per tool, the calls that ran; per argument,
each value and the run's total; nothing outside the reachable set; a target only from
trusted content; per quota, the total over runs.
"""

from __future__ import annotations

import asyncio
import math
import re
from collections import Counter
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from opsgate.contracts import Toolbelt, ToolContract
from opsgate.gateway import (
    DenyAllApprover,
    Gateway,
    InMemoryQuotaLedger,
    MappingSecretStore,
    OutcomeStatus,
    ScriptedToolExecutor,
)
from opsgate.policy import (
    ArgumentBound,
    BlastRadius,
    CompiledPolicy,
    QuotaBound,
    blast_radius,
    load_policy,
)
from opsgate.provenance import ContextItem, canonical_tokens
from tests.conftest import BELT

EXAMPLES = Path(__file__).resolve().parents[2] / "src" / "opsgate" / "examples"

#: Small policies over the test toolbelt, each aimed at one part of the bound.
POLICIES = {
    # approval above 50 (a max constraint of 200 behind it), a pattern, duplicate writes
    "thresholds": """
version: "b1"
defaults:
  caps: {max_tool_calls: 12, max_identical_calls: 2, max_cost_usd: 1, max_wall_seconds: 60}
workflows:
  wf:
    stage: autonomous_in_scope
    tools:
      lookup: {}
      read_mail: {}
      draft: {}
      note: {approval: never}
      pay:
        constraints: {amount: {max: 200}}
        approval_when: "args.amount > 50.0"
      send:
        constraints: {to: {pattern: '[^@]+@example\\.com'}}
    provenance:
      targets: {pay: [order_id, amount], send: [to]}
      free_text: {note: [text], send: [body]}
""",
    # no max constraint, deny rules in both directions, quotas across runs, repeatable writes,
    # an allowlist, no tool-call cap
    "quotas": """
version: "b2"
defaults:
  caps: {max_identical_calls: 2, max_wall_seconds: 60}
workflows:
  wf:
    stage: autonomous_in_scope
    tools:
      lookup: {}
      read_mail: {}
      note: {approval: never, repeatable: true}
      pay:
        approval: never
        deny_when: "args.amount >= 30.0"
        repeatable: true
      send:
        constraints: {to: {in: [ana@example.com, bob@example.com]}}
    rules:
      - {id: small-only, effect: deny, tools: [pay], when: "5.0 > args.amount"}
    quotas:
      pay: {max: 4, per: 1h}
      pay.amount: {max: 70, per: 1d, by: invoker}
      note: {max: 3, per: 1h, by: agent}
    provenance:
      targets: {pay: [order_id], send: [to]}
      free_text: {note: [text], send: [body]}
""",
    # a finite argument space (duplicate_write), draft stage for one agent, ordering
    "finite": """
version: "b3"
defaults:
  caps: {max_tool_calls: 40, max_identical_calls: 3, max_cost_usd: 1, max_wall_seconds: 60}
workflows:
  wf:
    stage: autonomous_in_scope
    tools:
      lookup: {}
      draft: {}
      note: {approval: never, constraints: {ticket: {in: [T-1, T-2]}}}
      pay:
        constraints: {order_id: {in: [ORD-1, ORD-2]}, amount: {in: [5, 10, 25]}}
        approval: never
      send: {constraints: {to: {in: [ana@example.com]}}}
    requires_before: {send: [draft]}
    provenance:
      on_untrusted_write: require_approval
      targets: {pay: [order_id, amount]}
      free_text: {note: [text], send: [body]}
    agents:
      drafter: {stage: draft}
""",
}

STRINGS = [
    "ORD-1",
    "ORD-2",
    "ORD-1001",
    "ORD-1002",
    "T-1",
    "T-2",
    "ana@example.com",
    "bob@example.com",
    "eve@attacker.test",
    "refund it",
    "U-1001",
    "ACC-1001",
    "svc-payments",
    "team-payments",
    "https://status.example.com/api",
    "vpn/client.conf",
    "2026-12-03 10:00",
    "goodwill",
]
NUMBERS = [0, 1, 2, 5, 9.5, 10, 11, 20, 20.5, 25, 29.75, 30, 49.5, 50, 50.5, 51, 100, 101]
NUMBERS += [199, 200, 201, 250, 250.5, 251, 999, 1000, 1001, -1]


def _at_stage(text: str, workflow: str, stage: str) -> str:
    data = yaml.safe_load(text)
    data["workflows"][workflow]["stage"] = stage
    for agent in data["workflows"][workflow].get("agents", {}).values():
        agent.pop("stage", None)
    return yaml.safe_dump(data)


@cache
def _case(name: str) -> tuple[CompiledPolicy, str, str | None, str | None]:
    """The policy of a case, its workflow, the agent and the stage asked of the bound."""
    base, _, variant = name.partition("@")
    if base in POLICIES:
        text, workflow, belt = POLICIES[base], "wf", BELT
    else:
        text = (EXAMPLES / base / "policy.yaml").read_text()
        workflow, belt = base, Toolbelt.from_module(f"opsgate.examples.{base}.tools")
    agent = stage = None
    if variant == "autonomous":
        stage = "autonomous_in_scope"
        text = _at_stage(text, workflow, stage)
    elif variant:
        agent = variant
    return load_policy(name, belt, text=text), workflow, agent, stage


CASES = [
    "support_triage",
    "support_triage@autonomous",
    "support_triage@triage-bot-canary",
    "crm_sales",
    "crm_sales@autonomous",
    "it_helpdesk@autonomous",
    "oncall_devops",
    "oncall_devops@autonomous",
    "thresholds",
    "quotas",
    "finite",
    "finite@drafter",
]


def _valid(contract: ToolContract, arg: str, bound: ArgumentBound | None) -> Any:
    """Values of one argument that its bound (or, for a tool it says cannot run, its
    contract) admits, and the values just past each limit."""
    prop = contract.parameters_schema["properties"].get(arg, {})
    options = prop.get("anyOf", [prop])
    kinds = {o.get("type") for o in options}
    enum = [v for o in options for v in o.get("enum", [])]
    patterns = [*(bound.patterns if bound else ()), *(bound.contract_patterns if bound else ())]
    patterns += [o["pattern"] for o in options if "pattern" in o]
    if bound is not None and bound.values:
        return st.sampled_from([v for v in bound.values if v is not None])
    if enum:
        return st.sampled_from(enum)
    if kinds & {"number", "integer"}:
        low = bound.min.value if bound and bound.min else 0.0
        high = bound.max.value if bound and bound.max else 500.0
        edges = [low + d for d in (0, 0.25, 1)] + [high + d for d in (-1, -0.25, 0, 0.25, 1)]
        if "integer" in kinds:
            inside = st.integers(math.floor(low) - 1, math.ceil(min(high, low + 60)) + 1)
            anywhere_i = st.integers(-5, 200)  # whatever the bound says
            return st.one_of(st.sampled_from([round(e) for e in edges]), inside, anywhere_i)
        inside_f = st.floats(low - 1, high + 1).map(lambda x: round(x, 2))
        anywhere = st.floats(-10, 1100).map(lambda x: round(x, 2))  # whatever the bound says
        return st.one_of(st.sampled_from(edges), st.sampled_from(edges), inside_f, anywhere)
    if patterns:
        return st.from_regex(patterns[0], fullmatch=True)
    return st.sampled_from(STRINGS)


def _values(contract: ToolContract, arg: str, bound: ArgumentBound | None) -> Any:
    """Values for one argument: mostly valid ones, some anything at all."""
    prop = contract.parameters_schema["properties"].get(arg, {})
    kinds = {o.get("type") for o in prop.get("anyOf", [prop])}
    valid = _valid(contract, arg, bound)
    value = st.one_of(valid, valid, valid, st.sampled_from([*STRINGS, *NUMBERS, True]))
    if "array" in kinds:
        return st.lists(value, min_size=1, max_size=3)
    return value


def _call(policy: CompiledPolicy, workflow: str, radius: BlastRadius, agent: str | None) -> Any:
    names = [*sorted(policy.allowed_tools(workflow, agent)), "export_customer_data", "slow"]
    strategies = []
    for name in names:
        if name not in policy.toolbelt:
            continue
        contract = policy.toolbelt.get(name)
        tool = radius.tool(name)
        args = {
            a: _values(contract, a, tool.argument(a) if tool else None) for a in contract.arg_names
        }
        mine = st.sampled_from([True, True, True, False])  # its values in the request
        call = st.tuples(st.just(name), st.fixed_dictionaries(args), mine)
        # what the bound is about (writes, drafts) is proposed most
        strategies += [call] * (4 if tool is not None else 1)
    return st.one_of(strategies)


def _text(value: Any) -> str:
    if isinstance(value, list):
        return " ".join(_text(v) for v in value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


async def _drive(
    gateway: Gateway,
    workflow: str,
    agent: str,
    calls: list[tuple[str, dict[str, Any], bool]],
    mail: bool = True,
) -> tuple[list[tuple[str, dict[str, Any]]], str]:
    """One run of ``calls``; each call's values are in the request when its flag says so,
    and (``mail``) all of them in an untrusted e-mail. What ran, and the request."""
    request = "Please: " + " ; ".join(_text(list(a.values())) for _, a, mine in calls if mine)
    text = "From the customer: " + " ; ".join(_text(list(a.values())) for _, a, _ in calls)
    context = [ContextItem(text, "untrusted", "email")] if mail else []
    run = gateway.start_run(
        workflow, invoker="maria", agent_id=agent, request=request, context=context
    )
    ran = []
    for tool, args, _ in calls:
        outcome = await gateway.call(run, tool, args)
        if outcome.status in (OutcomeStatus.OK, OutcomeStatus.ERROR):
            ran.append((tool, args))
    return ran, request


def _numbers(text: str) -> set[float]:
    found = {float(n) for n in re.findall(r"\d+(?:\.\d+)?", text)}
    return found | {-n for n in found}


def _corroborated(value: Any, request: str) -> bool:
    """Whether a target's value could come from the request (the only trusted content:
    every scripted result is ``{}``): its text, or a number in it or a sum of two."""
    if isinstance(value, list):
        return all(_corroborated(v, request) for v in value)
    if isinstance(value, bool) or value is None:
        return True
    if isinstance(value, int | float):
        seen = _numbers(request)
        return value in seen or any(value - n in seen for n in seen) or value == sum(seen)
    # read as the ledger reads text: its atoms (`a@example.com;` is `a@example.com`)
    atoms = set(canonical_tokens(str(value)))
    collapsed = " ".join(str(value).lower().split())
    return atoms <= set(canonical_tokens(request)) or collapsed in " ".join(request.lower().split())


def _check_run(radius: BlastRadius, ran: list[tuple[str, dict[str, Any]]], request: str) -> None:
    counts = Counter(tool for tool, _ in ran)
    cap = radius.caps.max_tool_calls
    assert cap is None or len(ran) <= cap
    for tool, count in counts.items():
        bound = radius.tool(tool)
        if bound is None:
            assert tool in radius.reads, f"{tool} ran, but the bound says it cannot"
            continue
        assert bound.max_calls is None or count <= bound.max_calls, (tool, count, bound)
        for arg in bound.arguments:
            values = [a.get(arg.name) for t, a in ran if t == tool]
            for value in values:
                assert arg.admits(value), (tool, arg.name, value, arg)
                if arg.role == "target" and not arg.endorsed_by:
                    assert _corroborated(value, request), (tool, arg.name, value, request)
            total = sum(v for v in values if isinstance(v, int | float))
            if arg.per_run_total is not None:
                assert total <= arg.per_run_total + 1e-9, (tool, arg.name, total, arg)


def _used(quota: QuotaBound, ran: list[tuple[str, dict[str, Any]]]) -> float:
    """What the calls that ran took of a quota: their number, or their arguments' total."""
    mine = [a for tool, a in ran if tool == quota.tool]
    return len(mine) if quota.arg is None else sum(a.get(quota.arg) or 0 for a in mine)


def _check_quotas(radius: BlastRadius, runs: list[list[tuple[str, dict[str, Any]]]]) -> None:
    """Within one window (the test takes seconds), no quota's total over runs passes it,
    nor one run's what the bound leaves a run."""
    for quota in radius.quotas:
        assert _used(quota, [c for run in runs for c in run]) <= quota.max + 1e-9, quota
        for run in runs:
            assert quota.per_run is None or _used(quota, run) <= quota.per_run + 1e-9, quota


@pytest.mark.parametrize("case", CASES)
@settings(
    max_examples=max(10, round(settings().max_examples * 0.3)),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(data=st.data())
def test_no_run_exceeds_the_blast_radius(case: str, data: st.DataObject) -> None:
    policy, workflow, agent, stage = _case(case)
    radius = blast_radius(policy, workflow, stage=stage, agent_id=agent)
    calls = st.lists(_call(policy, workflow, radius, agent), min_size=1, max_size=24)
    secrets = {name: "s3cret-value" for c in policy.toolbelt for name in c.secrets}
    gateway = Gateway(
        policy.toolbelt,
        policy,
        approver=DenyAllApprover(),
        secrets=MappingSecretStore(secrets),
        executor=ScriptedToolExecutor({c.name: {} for c in policy.toolbelt}),
        quotas=InMemoryQuotaLedger(),
    )
    runs = []
    for _ in range(2):
        proposed, mail = data.draw(calls), data.draw(st.booleans())
        ran, request = asyncio.run(_drive(gateway, workflow, agent or "bot", proposed, mail))
        _check_run(radius, ran, request)
        runs.append(ran)
        for tool in sorted({t for t, _ in ran if radius.tool(t)}):
            event(f"ran {tool}")
        for tool, args in ran:
            bound = radius.tool(tool)
            for arg in bound.arguments if bound else ():
                if arg.max is not None and args.get(arg.name) == arg.max.value:
                    event(f"reached {tool}.{arg.name} = {arg.max.value:g}")
        counts = Counter(t for t, _ in ran)
        for tool in counts:
            bound = radius.tool(tool)
            if bound and counts[tool] == bound.max_calls:
                event(f"reached {tool} x {bound.max_calls}")
    _check_quotas(radius, runs)


def _gateway(policy: CompiledPolicy) -> Gateway:
    return Gateway(
        policy.toolbelt,
        policy,
        secrets=MappingSecretStore({"PAY_KEY": "k"}),
        executor=ScriptedToolExecutor({c.name: {} for c in policy.toolbelt}),
        quotas=InMemoryQuotaLedger(),
    )


_FINITE = [
    {"order_id": o, "amount": a, "reason": r}
    for o in ("ORD-1", "ORD-2")
    for a in (5, 10, 25)
    for r in ("damaged", "goodwill")
]


@pytest.mark.parametrize(
    ("case", "proposed", "runs", "total"),
    [
        # 12 calls in all (max_tool_calls), each at the approval threshold
        ("thresholds", [{"order_id": f"ORD-{i}", "amount": 50} for i in range(20)], 12, 600),
        # the quota of 4 calls per hour, whatever the run proposes
        (
            "quotas",
            [{"order_id": f"ORD-{i}", "amount": a} for i, a in enumerate([5, 10, 25, 29, 6])],
            4,
            69,
        ),
        # every one of the 12 argument sets once (then duplicate_write), each thrice proposed
        ("finite", _FINITE * 3, 12, 2 * 40 * 2),
    ],
)
def test_the_bounds_are_reached(
    case: str, proposed: list[dict[str, Any]], runs: int, total: float
) -> None:
    """The property is not vacuous: where the gate lets a run go as far as the bound
    says, a run that tries does, and no further."""
    policy, workflow, agent, stage = _case(case)
    radius = blast_radius(policy, workflow, stage=stage, agent_id=agent)
    calls = [("pay", args, True) for args in proposed]
    ran, request = asyncio.run(_drive(_gateway(policy), workflow, "bot", calls, mail=False))
    _check_run(radius, ran, request)
    pay = radius.tool("pay")
    assert pay is not None and len(ran) == runs == pay.max_calls
    assert math.isclose(sum(a["amount"] for _, a in ran), total)
    amount = pay.argument("amount")
    top = max(a["amount"] for _, a in ran)
    assert amount.max is not None and (top == amount.max.value or not amount.max.inclusive)
