"""What the gate decides, and what it decides on."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from opsgate.provenance import ProvenanceLedger

__all__ = ["CommittedPlan", "Decision", "Effect", "ProposedCall", "Reason", "RunState"]


class Effect(StrEnum):
    """The three outcomes of a decision. Default deny: anything unmatched is `DENY`."""

    ALLOW = "allow"
    DENY = "deny"
    NEEDS_APPROVAL = "needs_approval"


class Reason(StrEnum):
    """Stable reason codes: dashboards, evals and alerts key on them; never rename one."""

    ALLOWED = "allowed"
    UNKNOWN_WORKFLOW = "unknown_workflow"
    UNKNOWN_TOOL = "unknown_tool"
    INVALID_ARGUMENTS = "invalid_arguments"
    TOOL_NOT_ALLOWED = "tool_not_allowed"
    SCOPE_ABOVE_STAGE = "scope_above_stage"
    ARG_CONSTRAINT = "arg_constraint"
    RULE_DENIED = "rule_denied"
    CONDITION_ERROR = "condition_error"
    UNTRUSTED_DERIVATION = "untrusted_derivation"
    CAP_EXCEEDED = "cap_exceeded"
    APPROVAL_REQUIRED = "approval_required"
    RUN_NOT_ACTIVE = "run_not_active"
    OUTSIDE_PLAN = "outside_plan"
    DUPLICATE_WRITE = "duplicate_write"
    PLAN_AFTER_UNTRUSTED = "plan_after_untrusted"
    ENDORSED = "endorsed"
    ORDER_VIOLATION = "order_violation"
    QUOTA_EXCEEDED = "quota_exceeded"
    TOOL_DEFINITION_CHANGED = "tool_definition_changed"
    INVALID_TOOL_SCHEMA = "invalid_tool_schema"
    UPSTREAM_UNAVAILABLE = "upstream_unavailable"
    INTERNAL_ERROR = "internal_error"


@dataclass(frozen=True, slots=True)
class Decision:
    """The gate's answer for one proposed call.

    Attributes:
        effect: allow, deny or needs_approval.
        reason: A stable `Reason` code.
        rule: The policy rule that fired, as a dotted path into the policy document
            (e.g. ``workflows.support.tools.refund.constraints.amount``).
        message: One sentence a person (or the model) can act on.
        policy_version: The version of the policy that decided.
        argument: The argument concerned, when one is.
        source: The provenance source concerned, when one is.
        cap: The cap that was hit, for ``cap_exceeded``.
        origin: Where the argument concerned was found (trust, source, kind, field), for
            provenance decisions.
        endorsed_by: The endorsement rule that let an argument derived from untrusted
            content through (audited as such).
        repeats: For ``duplicate_write``, the call id of the earlier identical write.
    """

    effect: Effect
    reason: Reason
    rule: str
    message: str
    policy_version: str
    argument: str | None = None
    source: str | None = None
    cap: str | None = None
    origin: Mapping[str, Any] | None = None
    endorsed_by: str | None = None
    repeats: str | None = None
    _as_dict: dict[str, Any] | None = field(default=None, compare=False, repr=False)

    @property
    def allowed(self) -> bool:
        """Whether the call may run now."""
        return self.effect is Effect.ALLOW

    def as_dict(self) -> dict[str, Any]:
        """A JSON-able form, for records and reports (a fresh copy each time)."""
        if self._as_dict is not None:
            return dict(self._as_dict)
        out: dict[str, Any] = {
            "effect": self.effect.value,
            "reason": self.reason.value,
            "rule": self.rule,
            "message": self.message,
            "policy_version": self.policy_version,
        }
        if self.argument is not None:
            out["argument"] = self.argument
        if self.source is not None:
            out["source"] = self.source
        if self.cap is not None:
            out["cap"] = self.cap
        if self.origin is not None:
            out["origin"] = dict(self.origin)
        if self.endorsed_by is not None:
            out["endorsed_by"] = self.endorsed_by
        if self.repeats is not None:
            out["repeats"] = self.repeats
        object.__setattr__(self, "_as_dict", out)
        return dict(out)


@dataclass(frozen=True, slots=True)
class ProposedCall:
    """A tool call the model proposed, after its arguments were validated.

    Attributes:
        tool: The tool's name.
        args: The validated arguments, as JSON data.
        key: A canonical key (tool + sorted-key JSON of the arguments) for loop detection.
    """

    tool: str
    args: Mapping[str, Any]
    key: str = ""


@dataclass(frozen=True, slots=True)
class CommittedPlan:
    """Intent committed before the run read anything untrusted: the tools it will call and,
    per argument, the sources its value will come from. Calls outside it are denied.

    Attributes:
        tools: The tools the plan names.
        sources: Per tool, per argument, the sources (``request``, ``tool:NAME``) it binds.
    """

    tools: frozenset[str]
    sources: Mapping[str, Mapping[str, tuple[str, ...]]] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """A JSON-able form (the audit event, a snapshot)."""
        return {
            "tools": sorted(self.tools),
            "sources": {
                t: {a: list(s) for a, s in args.items()} for t, args in self.sources.items()
            },
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CommittedPlan:
        """Back from `as_dict`."""
        return cls(
            frozenset(data.get("tools", ())),
            {
                t: {a: tuple(s) for a, s in args.items()}
                for t, args in data.get("sources", {}).items()
            },
        )


class RunState(Protocol):
    """What `decide` reads about the run so far (the gateway's `Run` provides it)."""

    @property
    def workflow(self) -> str: ...
    @property
    def agent_id(self) -> str: ...
    @property
    def invoker(self) -> str: ...
    @property
    def steps(self) -> int: ...
    @property
    def tool_calls(self) -> int: ...
    @property
    def retries(self) -> int: ...
    @property
    def cost_usd(self) -> float: ...
    @property
    def elapsed_s(self) -> float: ...
    @property
    def call_counts(self) -> Mapping[str, int]: ...
    @property
    def provenance(self) -> ProvenanceLedger: ...
    @property
    def request(self) -> str: ...
    @property
    def plan(self) -> CommittedPlan | None: ...
    @property
    def executed_writes(self) -> Mapping[str, str]: ...
    @property
    def completed(self) -> Sequence[PastCall]: ...


class PastCall(Protocol):
    """A call that ran in the run (what history conditions and ordering rules read)."""

    @property
    def tool(self) -> str: ...
    @property
    def args(self) -> Mapping[str, Any]: ...


@dataclass(slots=True)
class SimpleRunState:
    """A plain `RunState`, for `opsgate policy explain` and tests."""

    workflow: str
    agent_id: str = "agent"
    invoker: str = "user"
    steps: int = 0
    tool_calls: int = 0
    retries: int = 0
    cost_usd: float = 0.0
    elapsed_s: float = 0.0
    call_counts: dict[str, int] = field(default_factory=dict)
    provenance: ProvenanceLedger = field(default_factory=lambda: _ledger())
    request: str = ""
    plan: CommittedPlan | None = None
    executed_writes: dict[str, str] = field(default_factory=dict)
    completed: list[PastCall] = field(default_factory=list)


def _ledger() -> ProvenanceLedger:
    from opsgate.provenance import ProvenanceLedger

    return ProvenanceLedger()
