"""Filling a store for `bench/server.py`: many runs shaped like the gateway's, fast.

The audit trail goes through `AuditLog.append` itself, in batches: the same redaction,
canonical bodies, hash chain and `runs` rows (`apply_run_events`) as the real recorder
writes, then one signed checkpoint. Spans, cost entries and approval requests are bulk
inserts through SQLAlchemy Core on the store's own tables, in the shapes the trace
recorder, the cost recorder and `DurableApprovalQueue` write (copied from a recorded
world: `tests/server/world.py`).

Times are relative to the fill: runs arrive at ``runs_per_day`` up to a minute ago, the
pending approval requests are in the last 20 hours (they expire after 24).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from sqlalchemy import insert

from opsgate.audit import AuditLog, Signer
from opsgate.recorder import Event, EventType
from opsgate.store import Store, approvals, cost_entries, spans

#: Bumped when the shape of a fill changes (it is part of the cache key).
FILL_VERSION = 1

WORKFLOWS = (
    "support_triage",
    "refunds",
    "billing_disputes",
    "account_recovery",
    "incident_summary",
    "sales_leads",
)
TOOLS = {  # tool -> (scope, argument names)
    "lookup_order": ("read", ("order_id",)),
    "search_kb": ("read", ("query",)),
    "get_customer": ("read", ("customer_id",)),
    "draft_reply": ("draft", ("ticket_id", "body")),
    "refund": ("write", ("order_id", "amount", "reason")),
    "update_ticket": ("write", ("ticket_id", "status")),
}
MODELS = (("small", "act", "qwen2.5-7b-instruct"), ("large", "plan", "gpt-4.1-mini"))
POLICY = "2026-11-25.1+de081b383bfa"
_TICKET = (
    "Hello, I ordered the blue kettle (order {order}) on the 3rd and it arrived with a "
    "cracked lid. I have attached photos. I would like a refund of {amount} EUR to my card "
    "ending 4242, or a replacement if that is faster. My account e-mail is "
    "{user}@example.com and my phone is +44 20 7946 0{digits}. Previous ticket: {ticket}. "
)


@dataclass(slots=True)
class Sizes:
    """What one fill holds (the cache key)."""

    runs: int
    events_per_run: int
    runs_per_day: int = 1000
    pending: int = 300
    seed: int = 14

    def key(self) -> str:
        return (
            f"r{self.runs}-e{self.events_per_run}-d{self.runs_per_day}-p{self.pending}"
            f"-s{self.seed}-v{FILL_VERSION}"
        )


@dataclass(slots=True)
class FillReport:
    """What was written, and how long it took."""

    runs: int = 0
    events: int = 0
    spans: int = 0
    cost_entries: int = 0
    pending: int = 0
    decided: int = 0
    seconds: float = 0.0
    statuses: dict[str, int] = field(default_factory=dict)


class _Run:
    """One run being generated: its events, spans, cost rows and approval rows."""

    def __init__(self, rng: random.Random, run_id: str, at: float, purpose: str) -> None:
        self.rng = rng
        self.run_id = run_id
        self.at = at
        self.purpose = purpose
        self.workflow = rng.choice(WORKFLOWS)
        self.invoker = (
            f"{rng.choice(('ana', 'bo', 'chen', 'dara', 'eli', 'femi'))}-{rng.randrange(200)}"
        )
        self.agent_id = f"{self.workflow}-agent-{rng.randrange(4)}"
        self.trace_id = f"{rng.getrandbits(128):032x}"
        self.root_span = self._span_id()
        self.events: list[Event] = []
        self.spans: list[dict[str, Any]] = []
        self.costs: list[dict[str, Any]] = []
        self.approvals: list[dict[str, Any]] = []
        self.cost_usd = 0.0
        self.tool_calls = 0
        self.model_calls = 0
        self.denials = 0
        self.errors = 0

    def _span_id(self) -> str:
        return f"{self.rng.getrandbits(64):016x}"

    def _tick(self, low: float = 0.05, high: float = 2.5) -> float:
        self.at += self.rng.uniform(low, high)
        return self.at

    def event(self, kind: EventType, data: dict[str, Any]) -> None:
        self.events.append(Event(kind, self.run_id, len(self.events), self._tick(), data))

    def _span(
        self,
        name: str,
        kind: str,
        start: float,
        end: float,
        attrs: dict[str, Any],
        parent: str | None,
        events: list[Any] | None = None,
    ) -> str:
        span_id = self.root_span if parent is None else self._span_id()
        self.spans.append(
            {
                "span_id": span_id,
                "trace_id": self.trace_id,
                "parent_span_id": parent,
                "run_id": self.run_id,
                "name": name,
                "kind": kind,
                "start_ns": int(start * 1e9),
                "end_ns": int(end * 1e9),
                "status": "UNSET",
                "attributes": orjson.dumps(attrs).decode(),
                "events": orjson.dumps(events or []).decode(),
            }
        )
        return span_id

    def start(self, request: str, ticket: str) -> None:
        self.started = self.at
        self.request = request
        self.event(
            EventType.RUN_STARTED,
            {
                "agent_id": self.agent_id,
                "invoker": self.invoker,
                "policy_version": POLICY,
                "purpose": self.purpose,
                "request": request,
                "stage": "write_with_approval",
                "workflow": self.workflow,
            },
        )
        self.event(
            EventType.CONTEXT_READ, {"source": "request", "text": request, "trust": "trusted"}
        )
        self.event(
            EventType.CONTEXT_READ,
            {"source": "ticket", "text": ticket, "trust": "untrusted"},
        )

    def model(self, role: str | None = None) -> None:
        name, default_role, model_id = self.rng.choice(MODELS)
        role = role or default_role
        tokens_in = self.rng.randrange(600, 6000)
        tokens_out = self.rng.randrange(20, 600)
        cost = round(tokens_in * 0.4e-6 + tokens_out * 1.6e-6, 6)
        latency = round(self.rng.uniform(0.3, 4.0), 3)
        begin = self.at
        self.event(
            EventType.MODEL_CALL,
            {
                "attempts": 1,
                "cache_hit": False,
                "cached_input_tokens": 0,
                "cost_usd": cost,
                "error_type": None,
                "estimate": False,
                "finish_reason": "tool_calls",
                "input_tokens": tokens_in,
                "latency_s": latency,
                "max_tokens": None,
                "model": name,
                "ok": True,
                "output_tokens": tokens_out,
                "provider": "openai",
                "request_model": model_id,
                "response_model": model_id,
                "role": role,
                "temperature": 0.0,
            },
        )
        self.cost_usd += cost
        self.model_calls += 1
        self._span(
            f"chat {model_id}",
            "CLIENT",
            begin,
            self.at,
            {
                "gen_ai.operation.name": "chat",
                "gen_ai.provider.name": "openai",
                "gen_ai.request.model": model_id,
                "gen_ai.conversation.id": self.run_id,
                "gen_ai.usage.input_tokens": tokens_in,
                "gen_ai.usage.output_tokens": tokens_out,
                "opsgate.cost.usd": cost,
                "opsgate.model": name,
                "opsgate.model.role": role,
                "gen_ai.response.model": model_id,
            },
            self.root_span,
        )
        self._cost(
            "model",
            role=role,
            model=name,
            tokens=(tokens_in, tokens_out),
            cost=cost,
            latency=latency,
        )

    def _cost(
        self,
        kind: str,
        *,
        role: str | None = None,
        model: str | None = None,
        tool: str | None = None,
        tokens: tuple[int, int] = (0, 0),
        cost: float = 0.0,
        latency: float = 0.0,
        ok: bool = True,
    ) -> None:
        self.costs.append(
            {
                "run_id": self.run_id,
                "workflow": self.workflow,
                "at": self.at,
                "kind": kind,
                "role": role,
                "model": model,
                "tool": tool,
                "input_tokens": tokens[0],
                "output_tokens": tokens[1],
                "cached_input_tokens": 0,
                "cost_usd": cost,
                "estimate": False,
                "latency_s": latency,
                "cache_hit": False,
                "attempts": 1,
                "ok": ok,
                "purpose": self.purpose,
            }
        )

    def _args(self, tool: str) -> dict[str, Any]:
        rng = self.rng
        values = {
            "order_id": f"ORD-{rng.randrange(10**6):06d}",
            "query": rng.choice(("refund policy damaged item", "reset 2fa", "invoice vat")),
            "customer_id": f"C{rng.randrange(10**5):05d}",
            "ticket_id": f"T-{rng.randrange(10**6)}",
            "body": "Dear customer, thank you for your patience. " * rng.randrange(2, 8),
            "amount": float(rng.randrange(5, 400)),
            "reason": rng.choice(("damaged", "late", "duplicate charge")),
            "status": rng.choice(("solved", "pending", "escalated")),
        }
        return {name: values[name] for name in TOOLS[tool][1]}

    def call(self, tool: str, effect: str = "allow", *, fails: bool = False) -> dict[str, Any]:
        """A proposed call, its decision and (when allowed) its result; returns what an
        approval request needs."""
        call_id = f"{self.rng.getrandbits(64):016x}"
        args = self._args(tool)
        begin = self.at
        self.event(EventType.TOOL_CALL_PROPOSED, {"args": args, "call_id": call_id, "tool": tool})
        decision: dict[str, Any] = {
            "call_id": call_id,
            "effect": effect,
            "message": f"`{tool}` allowed",
            "policy_version": POLICY,
            "reason": "allowed",
            "rule": f"workflows.{self.workflow}.tools.{tool}",
            "tool": tool,
        }
        if effect == "deny":
            decision |= {
                "argument": "amount" if "amount" in args else TOOLS[tool][1][0],
                "message": f"`{tool}` denied: the value comes from untrusted input only",
                "reason": "untrusted_source",
                "source": "ticket",
            }
            self.denials += 1
        elif effect == "needs_approval":
            decision |= {
                "message": f"`{tool}` needs approval: `args.amount > 50.0`",
                "reason": "approval_required",
                "rule": f"workflows.{self.workflow}.tools.{tool}.approval_when",
            }
        self.event(EventType.DECISION, decision)
        guard_at = self.at
        parent = self._span(
            f"execute_tool {tool}",
            "INTERNAL",
            begin,
            begin,
            {
                "gen_ai.operation.name": "execute_tool",
                "gen_ai.tool.name": tool,
                "gen_ai.tool.call.id": call_id,
                "gen_ai.conversation.id": self.run_id,
                "opsgate.decision": effect,
                "opsgate.decision.reason": decision["reason"],
                "opsgate.decision.rule": decision["rule"],
            },
            self.root_span,
            [
                {
                    "name": "opsgate.decision",
                    "time_ns": int(guard_at * 1e9),
                    "attributes": {"opsgate.decision": effect},
                }
            ],
        )
        self._span(
            "apply_guardrail opsgate tool_call",
            "INTERNAL",
            guard_at,
            guard_at,
            {
                "gen_ai.operation.name": "apply_guardrail",
                "gen_ai.guardian.name": "opsgate",
                "gen_ai.security.decision.type": effect,
                "gen_ai.security.decision.code": decision["reason"],
                "gen_ai.security.policy.id": decision["rule"],
                "gen_ai.security.policy.version": POLICY,
            },
            parent,
        )
        if effect == "allow":
            self.result(tool, call_id, args, fails=fails)
        self.spans[-2]["end_ns"] = int(self.at * 1e9)
        return {"call_id": call_id, "args": args, "tool": tool, "decision": decision}

    def result(self, tool: str, call_id: str, args: dict[str, Any], *, fails: bool) -> None:
        self.tool_calls += 1
        if fails:
            self.errors += 1
            self.event(
                EventType.TOOL_ERROR,
                {
                    "attempts": 3,
                    "call_id": call_id,
                    "error": "TimeoutError: upstream took > 10 s",
                    "tool": tool,
                },
            )
            self._cost("tool", tool=tool, ok=False)
            return
        result = {
            "order_id": args.get("order_id", "ORD-000001"),
            "status": "delivered",
            "total": 129.9,
            "customer": {"name": "Ana Pereira", "email": "ana.pereira@example.com"},
            "items": [{"sku": f"SKU-{i}", "qty": 1, "price": 43.3} for i in range(3)],
        }
        self.event(
            EventType.TOOL_RESULT,
            {
                "attempts": 1,
                "call_id": call_id,
                "result": result,
                "tool": tool,
                "trust": "untrusted" if tool == "search_kb" else "trusted",
            },
        )
        self._cost("tool", tool=tool, latency=round(self.rng.uniform(0.01, 0.8), 3))
        if TOOLS[tool][0] == "write":
            self.event(
                EventType.WRITE_PERFORMED,
                {
                    "args": args,
                    "call_id": call_id,
                    "policy_version": POLICY,
                    "result": {"ok": True},
                    "tool": tool,
                },
            )

    def ask(self, call: dict[str, Any]) -> dict[str, Any]:
        """An approval request for ``call`` (pending until someone decides it)."""
        request_id = f"{self.rng.getrandbits(128):032x}"
        origins = {
            name: {"kind": "token", "source": "request", "sources": ["request"], "trust": "trusted"}
            for name in call["args"]
        }
        self.event(
            EventType.APPROVAL_REQUESTED,
            {
                "call_id": call["call_id"],
                "origins": origins,
                "reason": "approval_required",
                "request_id": request_id,
                "rule": call["decision"]["rule"],
                "tool": call["tool"],
            },
        )
        decision = {
            key: call["decision"][key]
            for key in ("effect", "reason", "rule", "message", "policy_version")
        }
        state = {
            "v": 1,
            "run_id": self.run_id,
            "workflow": self.workflow,
            "invoker": self.invoker,
            "agent_id": self.agent_id,
            "policy_version": POLICY,
            "request": self.request,
            "steps": self.model_calls,
            "tool_calls": self.tool_calls,
            "cost_usd": self.cost_usd,
            "call_counts": {f"{call['tool']}:{orjson.dumps(call['args']).decode()}": 1},
            "provenance": [[self.request, "request", "trusted"]],
        }
        row = {
            "request_id": request_id,
            "run_id": self.run_id,
            "call_id": call["call_id"],
            "workflow": self.workflow,
            "invoker": self.invoker,
            "agent_id": self.agent_id,
            "tool": call["tool"],
            "args": orjson.dumps(call["args"]).decode(),
            "decision": orjson.dumps(
                {**decision, "context": {"request": self.request, "origins": origins}}
            ).decode(),
            "status": "pending",
            "approver": None,
            "reason": None,
            "requested_at": self.at,
            "expires_at": self.at + 24 * 3600.0,
            "decided_at": None,
            "executed_at": None,
            "run_state": orjson.dumps(state).decode(),
        }
        self.approvals.append(row)
        return row

    def answer(self, row: dict[str, Any], approved: bool) -> None:
        approver = f"approver-{self.rng.randrange(12)}"
        self.event(
            EventType.APPROVAL_GRANTED if approved else EventType.APPROVAL_DENIED,
            {
                "call_id": row["call_id"],
                "request_id": row["request_id"],
                "tool": row["tool"],
                "approver": approver,
                "reason": "checked the order",
                "via": "approval queue",
            },
        )
        row |= {
            "status": "approved" if approved else "denied",
            "approver": approver,
            "reason": "checked the order",
            "decided_at": self.at,
            "executed_at": self.at + 0.5,
        }
        if approved:
            self.result(row["tool"], row["call_id"], orjson.loads(row["args"]), fails=False)

    def end(self, status: str, reason: str) -> None:
        self.event(
            EventType.RUN_ENDED,
            {
                "cost_usd": round(self.cost_usd, 6),
                "denials": self.denials,
                "elapsed_s": round(self.at - self.started, 6),
                "errors": self.errors,
                "model_calls": self.model_calls,
                "output": None,
                "reason": reason,
                "refusals": 0,
                "retries": 0,
                "status": status,
                "steps": self.model_calls,
                "tool_calls": self.tool_calls,
            },
        )
        self._span(
            f"invoke_agent {self.agent_id}",
            "INTERNAL",
            self.started,
            self.at,
            {
                "gen_ai.operation.name": "invoke_agent",
                "gen_ai.agent.name": self.agent_id,
                "gen_ai.conversation.id": self.run_id,
                "opsgate.workflow": self.workflow,
            },
            None,
        )


def _outcome(rng: random.Random) -> str:
    roll = rng.random()
    for name, share in (
        ("escalated", 0.07),
        ("failed", 0.03),
        ("denied", 0.10),
        ("approved", 0.04),
        ("refused", 0.01),
    ):
        if roll < share:
            return name
        roll -= share
    return "completed"


def make_run(rng: random.Random, at: float, events: int, outcome: str) -> _Run:
    """One run of about ``events`` events ending as ``outcome``."""
    purpose = "eval" if rng.random() < 0.1 else "production"
    run = _Run(rng, f"{rng.getrandbits(128):032x}", at, purpose)
    order = f"ORD-{rng.randrange(10**6):06d}"
    amount = rng.randrange(5, 400)
    request = f"Customer asks for a refund of {amount} EUR on {order}; check and answer."
    ticket = _TICKET.format(
        order=order,
        amount=amount,
        user=f"user{rng.randrange(10**5)}",
        digits=rng.randrange(100, 999),
        ticket=f"T-{rng.randrange(10**6)}",
    ) * rng.randrange(1, 4)
    run.start(request, ticket)
    target = max(8, int(rng.gauss(events, events * 0.2)))
    steps = max(1, round((target - 5) / 4))
    tools = list(TOOLS)
    special = rng.randrange(steps)
    for step in range(steps):
        run.model()
        tool = rng.choice(tools[:3]) if step < steps - 1 else rng.choice(tools)
        if step != special:
            run.call(tool)
            continue
        if outcome == "denied":
            run.call("refund", "deny")
        elif outcome == "failed":
            run.call(tool, fails=True)
            run.end("failed", "tool_error")
            return run
        elif outcome in ("approved", "refused", "pending"):
            row = run.ask(run.call("refund", "needs_approval"))
            if outcome == "pending":
                return run
            run.answer(row, outcome == "approved")
        elif outcome == "escalated":
            run.call(tool)
            run.event(
                EventType.ESCALATED,
                {
                    "cap": None,
                    "message": "the customer asks for a manager",
                    "reason": "handoff",
                    "progress": {"completed": [{"tool": tool, "scope": "read"}], "unexecuted": []},
                },
            )
            run.end("escalated", "handoff")
            return run
        elif outcome == "running":
            return run
        else:
            run.call(tool)
    run.model("summarize")
    run.end("completed", "done")
    return run


def fill(
    store: Store,
    sizes: Sizes,
    *,
    batch_runs: int = 250,
    progress: Callable[[int], None] | None = None,
) -> FillReport:
    """Write ``sizes.runs`` runs into ``store`` (an empty, migrated one)."""
    rng = random.Random(sizes.seed)
    signer = Signer.generate()
    log = AuditLog(store, signer)
    report = FillReport()
    t0 = time.perf_counter()
    now = time.time()
    gap = 86400.0 / sizes.runs_per_day
    first = now - 60.0 - sizes.runs * gap
    pending_from = now - 20 * 3600.0
    # the pending requests are spread over the runs of the last 20 hours
    recent = [i for i in range(sizes.runs) if first + i * gap >= pending_from]
    pending = set(rng.sample(recent, min(sizes.pending, len(recent))))
    live = set(rng.sample(recent[-200:], min(5, len(recent))))
    batch: list[_Run] = []

    def flush() -> None:
        events = [e for r in batch for e in r.events]
        log.append(events)
        with store.engine.begin() as conn:
            span_rows = [s for r in batch for s in r.spans]
            cost_rows = [c for r in batch for c in r.costs]
            approval_rows = [a for r in batch for a in r.approvals]
            if span_rows:
                conn.execute(insert(spans), span_rows)
            if cost_rows:
                conn.execute(insert(cost_entries), cost_rows)
            if approval_rows:
                conn.execute(insert(approvals), approval_rows)
        report.events += len(events)
        report.spans += len(span_rows)
        report.cost_entries += len(cost_rows)
        for r in batch:
            for a in r.approvals:
                if a["status"] == "pending":
                    report.pending += 1
                else:
                    report.decided += 1
        batch.clear()

    for i in range(sizes.runs):
        at = first + i * gap + rng.uniform(0, gap)
        if i in pending:
            outcome = "pending"
        elif i in live:
            outcome = "running"
        else:
            outcome = _outcome(rng)
        run = make_run(rng, at, sizes.events_per_run, outcome)
        report.statuses[outcome] = report.statuses.get(outcome, 0) + 1
        batch.append(run)
        report.runs += 1
        if len(batch) >= batch_runs:
            flush()
            if progress is not None:
                progress(report.runs)
    if batch:
        flush()
    log.checkpoint()
    log.close()
    report.seconds = time.perf_counter() - t0
    return report
