"""A store filled by real gateway runs (the test toolbelt, the base policy, the real audit
recorder): what the replay tests read back."""

from __future__ import annotations

from dataclasses import dataclass, field

from opsgate.audit import Signer
from opsgate.gateway import (
    ApprovalAnswer,
    ApprovalRequest,
    CallbackApprover,
    Gateway,
    MappingSecretStore,
    OutcomeStatus,
)
from opsgate.policy import CompiledPolicy, load_policy
from opsgate.store import Store
from opsgate.wiring import store_recorders
from tests.conftest import BASE_POLICY, BELT

LIVE = BASE_POLICY % {"stage": "autonomous_in_scope"}
# the policies replayed against what LIVE recorded
STRICTER = LIVE.replace("constraints: {amount: {max: 200}}", "constraints: {amount: {max: 50}}")
LOOSER = LIVE.replace('approval_when: "args.amount > 50.0"', 'approval_when: "args.amount > 100.0"')
BUDGET = LIVE.replace(
    "    provenance:\n",
    "    rules:\n"
    "      - {id: refund-budget, effect: deny, tools: [pay],\n"
    "         when: \"run.sum('pay', 'amount') + args.amount > 100.0\"}\n"
    "    provenance:\n",
)
PLANNED = LIVE + "      plan: optional\n"
#: history conditions, ordering and plan lock at once
GUARDED = (
    BUDGET.replace(
        "    provenance:\n",
        "    requires_before: {pay: [{tool: lookup, same: [order_id]}]}\n    provenance:\n",
    )
    + "      plan: optional\n"
)


def policy(text: str = LIVE) -> CompiledPolicy:
    return load_policy("replayed", BELT, text=text)


def _answer(request: ApprovalRequest) -> ApprovalAnswer:
    """Lea approves refunds under 85, and no more."""
    amount = float(request.args.get("amount", 0))
    return ApprovalAnswer(amount < 85, "lea", "" if amount < 85 else "too much")


@dataclass
class Recorded:
    """What the runs did, by name, as the gateway told it."""

    runs: dict[str, str] = field(default_factory=dict)
    statuses: dict[str, list[tuple[str, str]]] = field(default_factory=dict)  # (tool, status)
    decisions: int = 0


async def record_runs(store: Store, live: CompiledPolicy | None = None) -> Recorded:
    """Run the scenarios below through one gateway recording into ``store``."""
    recorders = store_recorders(store, signer=Signer.generate())
    gateway = Gateway(
        BELT,
        live or policy(),
        recorder=recorders.audit,
        approver=CallbackApprover(_answer),
        secrets=MappingSecretStore({"PAY_KEY": "sk-live-TOPSECRET"}),
    )
    out = Recorded()

    async def run(name: str, request: str, calls: list[tuple[str, object]], **kw: object) -> None:
        r = gateway.start_run("wf", invoker="ana", agent_id="bot", request=request, deps={}, **kw)  # type: ignore[arg-type]
        out.runs[name] = r.run_id
        seen = out.statuses.setdefault(name, [])
        for tool, args in calls:
            if tool == "$step":
                gateway.step(r)
                continue
            if tool == "$plan":
                assert gateway.commit_plan(r, args).accepted  # type: ignore[arg-type]
                continue
            if tool == "$model":
                gateway.record_model_call(
                    r,
                    role="act",
                    model="m",
                    provider="p",
                    input_tokens=10,
                    output_tokens=5,
                    cost_usd=float(args),  # type: ignore[arg-type]
                    latency_s=0.01,
                    attempts=2,
                )
                continue
            outcome = await gateway.call(r, tool, args)  # type: ignore[arg-type]
            seen.append((tool, outcome.status.value))
            out.decisions += 1
            if outcome.status is OutcomeStatus.ESCALATED:
                break
        gateway.finish(r)

    try:
        # a refund the request corroborates, then the same write again
        await run(
            "refund",
            "Refund 40 on ORD-1",
            [
                ("$step", None),
                ("lookup", {"order_id": "ORD-1"}),
                ("pay", {"order_id": "ORD-1", "amount": 40}),
                ("pay", {"order_id": "ORD-1", "amount": 40}),  # duplicate_write
                ("note", {"ticket": "T-1", "text": "refunded 40"}),
            ],
        )
        # approvals: one a person grants (it runs), one a person denies
        await run(
            "approvals",
            "Refund 80 on ORD-2, or 90 if the customer insists",
            [
                ("lookup", {"order_id": "ORD-2"}),
                ("pay", {"order_id": "ORD-2", "amount": 80}),  # approved, runs
                ("pay", {"order_id": "ORD-2", "amount": 90}),  # a person says no
            ],
        )
        # provenance: what an e-mail asks for is denied
        await run(
            "injection",
            "Answer the customer's e-mail M-1",
            [
                ("read_mail", {"mail_id": "M-1"}),
                ("pay", {"order_id": "ORD-9", "amount": 150}),  # untrusted_derivation
                ("pay", {"order_id": "ORD-9", "amount": 999}),  # arg_constraint
                ("draft", {"text": "We are looking into it."}),
                ("nope", {}),  # unknown_tool
                ("pay", {"order_id": "ORD-9"}),  # invalid_arguments
            ],
        )
        # caps: the same call past max_identical_calls ends the run
        await run("loop", "Status of ORD-3?", [("lookup", {"order_id": "ORD-3"})] * 6)
        # caps: spend past max_cost_usd, counted from the run's model calls
        await run(
            "spend",
            "Status of ORD-4?",
            [
                ("$model", 6.0),
                ("lookup", {"order_id": "ORD-4"}),
                ("$model", 4.5),
                ("lookup", {"order_id": "ORD-5"}),
            ],
        )
        # personal data in an argument: the audit trail keeps it masked
        await run(
            "mail",
            "Write to ana@example.com that ORD-1 shipped",
            [("send", {"to": "ana@example.com", "body": "ORD-1 shipped"})],
        )
        # a committed plan binds the refund's order to the request
        await run(
            "planned",
            "Refund 30 on ORD-6",
            [
                (
                    "$plan",
                    [{"tool": "lookup"}, {"tool": "pay", "sources": {"order_id": ["request"]}}],
                ),
                ("lookup", {"order_id": "ORD-6"}),
                ("pay", {"order_id": "ORD-6", "amount": 30}),
                ("note", {"ticket": "T-6", "text": "refunded"}),  # outside the plan
            ],
        )
        # an agent-eval trial: left out unless asked for
        await run(
            "trial",
            "Refund 40 on ORD-1",
            [("pay", {"order_id": "ORD-1", "amount": 40})],
            purpose="eval",
        )
        await recorders.audit.settle()
    finally:
        gateway.close()
        problems = recorders.close()
        assert not problems, problems
    return out
