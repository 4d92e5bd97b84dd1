"""A run: one invocation of an agent, the state the gate decides on, and how it ended."""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType
from typing import Any, Literal

from opsgate.policy import CommittedPlan
from opsgate.provenance import ProvenanceLedger

__all__ = [
    "CompletedCall",
    "Escalation",
    "Progress",
    "Run",
    "RunPurpose",
    "RunStatus",
    "UnexecutedCall",
]

#: What a run was for: production work, or a trial of `agent-eval run`.
RunPurpose = Literal["production", "eval"]


class RunStatus(StrEnum):
    """Where a run is. A finished run takes no more calls."""

    RUNNING = "running"
    AWAITING_APPROVAL = "awaiting_approval"
    COMPLETED = "completed"
    ESCALATED = "escalated"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class CompletedCall:
    """A call that ran: part of the partial progress an escalation keeps."""

    call_id: str
    tool: str
    scope: str
    args: dict[str, Any]
    result: Any


@dataclass(frozen=True, slots=True)
class UnexecutedCall:
    """A call proposed but not executed: waiting on approval, or cut off by a cap."""

    call_id: str
    tool: str
    args: dict[str, Any]
    why: str


@dataclass(frozen=True, slots=True)
class Progress:
    """What a run had done when it stopped."""

    completed: tuple[CompletedCall, ...]
    unexecuted: tuple[UnexecutedCall, ...]

    def as_dict(self) -> dict[str, Any]:
        """JSON data for records."""
        return {
            "completed": [
                {"call_id": c.call_id, "tool": c.tool, "scope": c.scope, "args": c.args}
                for c in self.completed
            ],
            "unexecuted": [
                {"call_id": u.call_id, "tool": u.tool, "args": u.args, "why": u.why}
                for u in self.unexecuted
            ],
        }


@dataclass(frozen=True, slots=True)
class Escalation:
    """Why a run stopped and handed over to a person, with what it had done.

    Attributes:
        reason: A stable code: ``cap_exceeded``, ``approval_expired``, ``requested``.
        message: What happened, for the person taking over.
        cap: The cap that was hit, for ``cap_exceeded``.
        progress: Completed calls and results, and calls drafted but not executed.
    """

    reason: str
    message: str
    cap: str | None
    progress: Progress


@dataclass(slots=True)
class RunCounts:
    """A run's cap counters. The gateway changes them (``run._counts``); everyone else reads
    them through `Run`'s read-only properties, so an agent cannot reset its own caps."""

    steps: int = 0
    tool_calls: int = 0
    retries: int = 0
    cost_usd: float = 0.0
    model_calls: int = 0
    refusals: int = 0
    denials: int = 0
    errors: int = 0
    calls: Counter[str] = field(default_factory=Counter)


@dataclass(eq=False)
class Run:
    """One invocation of an agent under one policy version.

    Created by `Gateway.start_run`; the gateway is the only writer of its counters (read
    only here). It satisfies `opsgate.policy.RunState`, so `decide` reads it directly.
    """

    workflow: str
    invoker: str
    agent_id: str
    policy_version: str
    request: str
    deps: Any = None
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    #: "production", or "eval" for an agent-eval trial (kept out of production roll-ups)
    purpose: RunPurpose = "production"
    status: RunStatus = RunStatus.RUNNING
    reason: str = ""
    provenance: ProvenanceLedger = field(default_factory=ProvenanceLedger)
    plan: CommittedPlan | None = None
    executed_writes: dict[str, str] = field(default_factory=dict)
    """Each write that ran, by its call key (tool + arguments): the id of its call."""
    completed: list[CompletedCall] = field(default_factory=list)
    unexecuted: list[UnexecutedCall] = field(default_factory=list)
    escalation: Escalation | None = None
    started_at: float = field(default_factory=time.time)
    _started_mono: float = field(default_factory=time.monotonic, repr=False)
    _next_seq: int = field(default=0, repr=False)
    _secret_values: dict[str, str] = field(default_factory=dict, repr=False)
    _counts: RunCounts = field(default_factory=RunCounts, repr=False)

    @property
    def steps(self) -> int:
        """Model turns taken."""
        return self._counts.steps

    @property
    def tool_calls(self) -> int:
        """Tool calls proposed (refused ones included)."""
        return self._counts.tool_calls

    @property
    def retries(self) -> int:
        """Retries made (tool retries and model HTTP retries)."""
        return self._counts.retries

    @property
    def cost_usd(self) -> float:
        """Spent so far."""
        return self._counts.cost_usd

    @property
    def model_calls(self) -> int:
        """Model calls made (failed ones included)."""
        return self._counts.model_calls

    @property
    def refusals(self) -> int:
        """Proposed calls that were not valid calls of a known tool."""
        return self._counts.refusals

    @property
    def denials(self) -> int:
        """Calls denied by the policy or by a person."""
        return self._counts.denials

    @property
    def errors(self) -> int:
        """Tool calls that failed."""
        return self._counts.errors

    @property
    def call_counts(self) -> Mapping[str, int]:
        """How often each call (tool + arguments) was proposed, read-only."""
        return MappingProxyType(self._counts.calls)

    @property
    def elapsed_s(self) -> float:
        """Seconds since the run started."""
        return time.monotonic() - self._started_mono

    @property
    def active(self) -> bool:
        """Whether the run still takes calls."""
        return self.status in (RunStatus.RUNNING, RunStatus.AWAITING_APPROVAL)

    def progress(self) -> Progress:
        """A snapshot of what the run has done so far."""
        return Progress(tuple(self.completed), tuple(self.unexecuted))

    def snapshot(self) -> dict[str, Any]:
        """The run's state as JSON data, to persist it while it waits for a person."""
        return {
            "v": 1,
            "run_id": self.run_id,
            "workflow": self.workflow,
            "invoker": self.invoker,
            "agent_id": self.agent_id,
            "policy_version": self.policy_version,
            "request": self.request,
            "steps": self.steps,
            "tool_calls": self.tool_calls,
            "retries": self.retries,
            "cost_usd": self.cost_usd,
            "model_calls": self.model_calls,
            "refusals": self.refusals,
            "denials": self.denials,
            "errors": self.errors,
            "call_counts": dict(self.call_counts),
            "provenance": self.provenance.snapshot(),
            "plan": self.plan.as_dict() if self.plan is not None else None,
            "executed_writes": dict(self.executed_writes),
            "completed": [
                {
                    "call_id": c.call_id,
                    "tool": c.tool,
                    "scope": c.scope,
                    "args": c.args,
                    "result": c.result,
                }
                for c in self.completed
            ],
            "unexecuted": [
                {"call_id": u.call_id, "tool": u.tool, "args": u.args, "why": u.why}
                for u in self.unexecuted
            ],
            "started_at": self.started_at,
            "elapsed_s": self.elapsed_s,
            "next_seq": self._next_seq,
        }

    @classmethod
    def restore(cls, state: dict[str, Any], deps: Any = None) -> Run:
        """A run rebuilt from `snapshot` output (in this process or another)."""
        if state.get("v") != 1:
            raise ValueError(f"unknown run snapshot version {state.get('v')!r}")
        run = cls(
            workflow=state["workflow"],
            invoker=state["invoker"],
            agent_id=state["agent_id"],
            policy_version=state["policy_version"],
            request=state["request"],
            deps=deps,
            run_id=state["run_id"],
            provenance=ProvenanceLedger.restore(state["provenance"]),
            plan=CommittedPlan.from_dict(state["plan"]) if state.get("plan") else None,
            executed_writes=dict(state.get("executed_writes") or {}),
            completed=[CompletedCall(**c) for c in state["completed"]],
            unexecuted=[UnexecutedCall(**u) for u in state["unexecuted"]],
            started_at=state["started_at"],
        )
        run._counts = RunCounts(
            steps=state["steps"],
            tool_calls=state["tool_calls"],
            retries=state["retries"],
            cost_usd=state["cost_usd"],
            model_calls=state.get("model_calls", 0),
            refusals=state["refusals"],
            denials=state["denials"],
            errors=state["errors"],
            calls=Counter(state["call_counts"]),
        )
        run._started_mono = time.monotonic() - float(state.get("elapsed_s", 0.0))
        run._next_seq = int(state["next_seq"])
        return run

    def next_seq(self) -> int:
        """The next event sequence number of the run (the gateway's to call)."""
        seq = self._next_seq
        self._next_seq = seq + 1
        return seq
