"""The policy document: what a YAML policy may say, validated.

A minimal policy::

    version: "2026-11-25.1"
    workflows:
      support_triage:
        stage: write_with_approval
        tools:
          get_order_status: {}
          refund:
            constraints: {amount: {max: 200}}
            approval_when: "args.amount > 50.0"
        provenance:
          targets: {refund: [order_id, amount]}

Every mapping forbids unknown keys, so a typo is an error, not a silently ignored rule.
"""

from __future__ import annotations

import fnmatch
import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from opsgate.contracts import Impact, Scope, Trust

__all__ = [
    "STAGES",
    "STAGE_SCOPES",
    "AgentOverride",
    "ArgConstraint",
    "Caps",
    "Defaults",
    "Endorsement",
    "Kpi",
    "KpiMetric",
    "OutputTrust",
    "PolicyDocument",
    "ProvenancePolicy",
    "Rule",
    "Stage",
    "ToolPolicy",
    "WorkflowPolicy",
]

Stage = Literal["read_only", "draft", "write_with_approval", "autonomous_in_scope"]
STAGES: tuple[Stage, ...] = ("read_only", "draft", "write_with_approval", "autonomous_in_scope")

#: The scopes each autonomy stage lets run (writes under ``write_with_approval`` need approval).
STAGE_SCOPES: dict[Stage, frozenset[Scope]] = {
    "read_only": frozenset({"read"}),
    "draft": frozenset({"read", "draft"}),
    "write_with_approval": frozenset({"read", "draft", "write"}),
    "autonomous_in_scope": frozenset({"read", "draft", "write"}),
}

Name = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_\-.]{0,127}$")]
Scalar = str | int | float


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Caps(_Strict):
    """Hard limits on one run; hitting one escalates the run with its progress kept."""

    max_steps: int | None = Field(None, ge=1, description="Model turns in the run.")
    max_tool_calls: int | None = Field(None, ge=1, description="Tool calls proposed in the run.")
    max_identical_calls: int | None = Field(
        None, ge=1, description="The same tool with the same arguments (a loop)."
    )
    max_retries: int | None = Field(None, ge=0, description="Tool retries in the whole run.")
    max_cost_usd: float | None = Field(None, gt=0, description="Spend of the run, in USD.")
    max_wall_seconds: float | None = Field(None, gt=0, description="Wall time of the run.")

    def merged_over(self, base: Caps) -> Caps:
        """These caps, with unset ones taken from ``base``."""
        return Caps(
            **{
                name: getattr(base, name) if (value := getattr(self, name)) is None else value
                for name in Caps.model_fields
            }
        )


class ArgConstraint(_Strict):
    """Narrows one argument beyond its contract. All given checks must hold."""

    in_: list[Scalar] | None = Field(None, alias="in", description="Allowed values.")
    not_in: list[Scalar] | None = Field(None, description="Forbidden values.")
    min: float | None = Field(None, description="Smallest allowed number.")
    max: float | None = Field(None, description="Largest allowed number.")
    pattern: str | None = Field(None, description="Regular expression the whole value matches.")
    max_length: int | None = Field(None, ge=0, description="Longest allowed string or list.")

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @field_validator("pattern")
    @classmethod
    def _pattern_compiles(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"pattern `{value}` is not a valid regex: {exc}") from None
        return value

    @model_validator(mode="after")
    def _not_empty(self) -> ArgConstraint:
        if all(getattr(self, f) is None for f in type(self).model_fields):
            raise ValueError(
                "a constraint needs at least one of in, not_in, min, max, pattern, max_length"
            )
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min {self.min} is greater than max {self.max}")
        return self


class OutputTrust(_Strict):
    """Field-level trust of a tool's result: a default, and labels by selector."""

    default: Trust
    fields: dict[str, Trust] = Field(default_factory=dict)


class ToolPolicy(_Strict):
    """What a workflow lets one tool do."""

    scope: Scope | None = Field(
        None,
        description="The tool's scope (read, draft, write). A tool an MCP proxy fronts takes "
        "it from here before `mcp.yaml` and the server's hints; a tool with a code contract "
        "must agree with it (a policy that says otherwise does not load).",
    )
    impact: Impact | None = Field(
        None, description="The tool's impact (low, high), as `scope` says."
    )
    constraints: dict[str, ArgConstraint] = Field(
        default_factory=dict, description="Per-argument constraints narrowing the contract."
    )
    approval: Literal["default", "always", "never"] = Field(
        "default",
        description="default: approval iff `approval_when` holds when it is given, else for "
        "high-impact tools and for writes under write_with_approval; always / never override.",
    )
    approval_when: str | None = Field(
        None, description="CEL: approval needed when true (replaces the default rule)."
    )
    deny_when: str | None = Field(None, description="CEL: the call is denied when true.")
    output: Trust | OutputTrust | None = Field(
        None,
        description="Overrides the contract's output trust: a label, or a default with "
        "field-level labels by selector (`{default: trusted, fields: {$.body: untrusted}}`).",
    )
    timeout_seconds: float | None = Field(None, gt=0, description="Execution timeout.")
    repeatable: bool = Field(
        False,
        description="A write that may run again with identical arguments in one run (by "
        "default the repeat is refused as `duplicate_write`: a triple refund is a bug).",
    )

    @model_validator(mode="after")
    def _approval_is_consistent(self) -> ToolPolicy:
        if self.approval_when and self.approval != "default":
            raise ValueError(
                f"approval `{self.approval}` conflicts with approval_when; drop one of them"
            )
        return self


class Rule(_Strict):
    """A workflow-wide CEL rule. A deny rule beats any approval; approval beats allow."""

    id: Name
    effect: Literal["deny", "require_approval"]
    tools: list[str] | Literal["*"] = "*"
    when: str
    message: str | None = None


OnUntrusted = Literal["deny", "require_approval"]


class Endorsement(_Strict):
    """A declared middle way: the request itself endorses arguments derived from untrusted
    content for low-impact writes ("use the address in the customer's e-mail"). Audited as
    such on every call it lets through; never for a high-impact tool."""

    id: Name
    tools: list[str] = Field(min_length=1)
    args: list[str] = Field(
        default_factory=list, description="The arguments it endorses (empty: all checked)."
    )
    when: str = Field(description="CEL over `request`, `args`, `read`, `prov(...)`, `run`.")
    message: str | None = None


class ProvenancePolicy(_Strict):
    """How derivation from untrusted input limits a call."""

    on_untrusted_write: OnUntrusted = Field("deny", description="Default for both settings below.")
    on_untrusted_target: OnUntrusted | None = Field(
        None, description="A target (recipient, account, amount, URL) not corroborated."
    )
    on_untrusted_arg: OnUntrusted | None = Field(
        None, description="Any other checked argument derived from untrusted input."
    )
    also_check: list[Literal["draft", "read"]] = Field(
        default_factory=list, description="Scopes checked besides write (always checked)."
    )
    targets: dict[str, list[str] | dict[str, list[str]]] = Field(
        default_factory=dict,
        description="Per tool, the arguments (recipient, account, amount, URL) that must come "
        "from the invoker's request or a trusted source: a list (any trusted source), or per "
        "argument the sources it must come from (`request`, `tool:NAME`, `kb:*`, `trusted`).",
    )
    free_text: dict[str, list[str]] = Field(
        default_factory=dict,
        description="Per tool, arguments that carry content (a note, a reply body), not "
        "instructions: they may be derived from untrusted input. Never a target.",
    )
    endorse: list[Endorsement] = Field(default_factory=list)
    plan: Literal["off", "optional", "required"] = Field(
        "off",
        description="Committed intent: `optional` enforces a plan the agent commits before it "
        "reads anything untrusted; `required` also denies writes and egress without one.",
    )
    trusted_tools: list[str] = Field(default_factory=list, description="Output trusted.")
    untrusted_tools: list[str] = Field(default_factory=list, description="Output untrusted.")
    trusted_resources: list[str] = Field(
        default_factory=list,
        description="MCP resources (URI patterns, `*` and `?` wildcards) whose text a run reads "
        "as trusted; the others are as the proxy's config says (untrusted by default).",
    )
    untrusted_resources: list[str] = Field(
        default_factory=list,
        description="MCP resources read as untrusted whatever the proxy's config says (before "
        "`trusted_resources`).",
    )

    def resource_trust(self, uri: str) -> Trust | None:
        """The trust the policy gives a resource's text, or None when it says nothing."""
        if any(fnmatch.fnmatchcase(uri, p) for p in self.untrusted_resources):
            return "untrusted"
        if any(fnmatch.fnmatchcase(uri, p) for p in self.trusted_resources):
            return "trusted"
        return None

    @field_validator("plan", mode="before")
    @classmethod
    def _yaml_off_is_false(cls, value: Any) -> Any:
        # YAML 1.1 reads a bare `off` as false and `on` as true.
        if value is False:
            return "off"
        if value is True:
            return "optional"
        return value

    @property
    def target_effect(self) -> OnUntrusted:
        """What happens to a target that is not corroborated."""
        return self.on_untrusted_target or self.on_untrusted_write

    @property
    def arg_effect(self) -> OnUntrusted:
        """What happens to another checked argument derived from untrusted input."""
        return self.on_untrusted_arg or self.on_untrusted_write

    def target_sources(self, tool: str) -> dict[str, list[str] | None]:
        """Per target argument of ``tool``, its sources (None: any trusted source)."""
        spec = self.targets.get(tool, [])
        if isinstance(spec, list):
            return dict.fromkeys(spec)
        return {arg: list(sources) for arg, sources in spec.items()}


class AgentOverride(_Strict):
    """Narrows a workflow for one agent identity."""

    stage: Stage | None = None
    tools: list[str] | None = Field(None, description="A subset of the workflow's tools.")
    caps: Caps | None = None


class QuotaSpec(_Strict):
    """A limit across runs, kept in the store: at most ``max`` calls (key ``tool``) or
    ``max`` of an argument's total (key ``tool.arg``) per window, per workflow, invoker or
    agent. Calls in flight count (a call reserves its share when it is allowed)."""

    max: float = Field(ge=0, description="The most calls, or the largest total, per window.")
    per: str = Field(pattern=r"^[1-9][0-9]*[smhd]$", description="The window: 30s, 15m, 1h, 1d.")
    by: Literal["workflow", "invoker", "agent"] = "workflow"

    @property
    def window_s(self) -> float:
        """The window in seconds."""
        unit = {"s": 1, "m": 60, "h": 3600, "d": 86400}[self.per[-1]]
        return float(int(self.per[:-1]) * unit)


class Prerequisite(_Strict):
    """A call that must have run earlier in the run (``requires_before``); with ``same``,
    one whose arguments of those names were equal to the new call's ("send only after a
    draft of the same ticket")."""

    tool: str
    same: list[str] = Field(default_factory=list)


KpiMetric = Literal["success_rate", "cost_per_successful_task", "escalation_rate", "approval_rate"]
#: Where a higher value is the better one (else the lower is).
_HIGHER_IS_BETTER = {"success_rate": True, "approval_rate": True}


class Kpi(_Strict):
    """The one figure a workflow is judged by, and the value it should reach: rates are
    fractions in [0, 1] (met at or above the target, but the escalation rate: at or below),
    the cost per successful task is USD (met at or below)."""

    metric: KpiMetric
    target: float = Field(allow_inf_nan=False)

    @model_validator(mode="after")
    def _target_fits_the_metric(self) -> Kpi:
        if self.metric == "cost_per_successful_task":
            if self.target < 0:
                raise ValueError(
                    f"target of `{self.metric}` is USD per successful task, >= 0, "
                    f"not {self.target:g}"
                )
        elif not 0.0 <= self.target <= 1.0:
            raise ValueError(
                f"target of `{self.metric}` is a fraction between 0 and 1 (0.9 for 90%), "
                f"not {self.target:g}"
            )
        return self

    @property
    def higher_is_better(self) -> bool:
        """Whether the target is met at or above it (else at or below)."""
        return _HIGHER_IS_BETTER.get(self.metric, False)

    def met(self, value: float) -> bool:
        """Whether ``value`` meets the target."""
        return value >= self.target if self.higher_is_better else value <= self.target


class WorkflowPolicy(_Strict):
    """Everything the gate enforces for one workflow."""

    description: str = ""
    stage: Stage
    tools: dict[str, ToolPolicy | None]
    rules: list[Rule] = Field(default_factory=list)
    quotas: dict[str, QuotaSpec] = Field(
        default_factory=dict,
        description="Limits across runs: `send_email: {max: 50, per: 1h}`, "
        "`refund.amount: {max: 2000, per: 1d, by: invoker}` (quota_exceeded).",
    )
    requires_before: dict[str, list[str | Prerequisite]] = Field(
        default_factory=dict,
        description="Ordering: a tool runs only after these ran in the run (order_violation).",
    )
    provenance: ProvenancePolicy = Field(default_factory=ProvenancePolicy)
    caps: Caps = Field(default_factory=Caps)
    agents: dict[str, AgentOverride] = Field(default_factory=dict)
    shadow: str | None = Field(
        None,
        min_length=1,
        description="A candidate policy file (relative to this one) that decides every call "
        "of the workflow too and never acts; where it disagrees, a `shadow_decision` event "
        "is recorded (`opsgate policy shadow-report`). Not part of the policy's version.",
    )
    kpi: Kpi | None = Field(
        None,
        # left out of `model_dump`, so of the policy's version: it decides nothing (and every
        # version hashed before the key existed stays what it was)
        exclude=True,
        description="The workflow's one KPI, shown with its trend and target on the console's "
        "Overview: `{metric: success_rate, target: 0.9}` (metrics: success_rate, "
        "cost_per_successful_task, escalation_rate, approval_rate). Not part of the "
        "policy's version.",
    )

    @model_validator(mode="after")
    def _names_are_consistent(self) -> WorkflowPolicy:
        ids = [r.id for r in self.rules]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ValueError(f"rule ids must be unique: {', '.join(dupes)}")
        known = set(self.tools)
        for rule in self.rules:
            if rule.tools != "*":
                for name in rule.tools:
                    if name not in known:
                        raise ValueError(
                            f"rule `{rule.id}` names tool `{name}`, which the workflow does "
                            f"not allow (allowed: {', '.join(sorted(known))})"
                        )
        for key in self.quotas:
            tool_name = key.split(".", 1)[0]
            if tool_name not in known:
                raise ValueError(
                    f"quota `{key}` names tool `{tool_name}`, which the workflow does not "
                    f"allow (allowed: {', '.join(sorted(known))})"
                )
        for later, earlier in self.requires_before.items():
            for name in [later, *(p if isinstance(p, str) else p.tool for p in earlier)]:
                if name not in known:
                    raise ValueError(
                        f"requires_before names tool `{name}`, which the workflow does not "
                        f"allow (allowed: {', '.join(sorted(known))})"
                    )
        prov = self.provenance
        for tool_name, args in prov.free_text.items():
            both = sorted(set(args) & set(prov.target_sources(tool_name)))
            if both:
                raise ValueError(
                    f"`{tool_name}` argument(s) {', '.join(both)} cannot be both "
                    "a target and free text"
                )
        endorsed = [t for e in prov.endorse for t in e.tools]
        named = [*prov.targets, *prov.free_text, *prov.trusted_tools, *prov.untrusted_tools]
        for name in [*named, *endorsed]:
            if name not in known:
                raise ValueError(f"provenance names tool `{name}`, not in the workflow's tools")
        for tool_name, sources in prov.targets.items():
            if isinstance(sources, dict):
                for arg, specs in sources.items():
                    if not specs:
                        raise ValueError(
                            f"target `{arg}` of `{tool_name}` lists no source; list one, or "
                            "put the argument in a plain list for any trusted source"
                        )
        for agent, override in self.agents.items():
            for name in override.tools or ():
                if name not in known:
                    raise ValueError(
                        f"agent `{agent}` names tool `{name}`, not in the workflow's tools"
                    )
        return self


class Defaults(_Strict):
    """Defaults every workflow inherits."""

    caps: Caps = Field(
        default_factory=lambda: Caps(
            max_steps=30,
            max_tool_calls=50,
            max_identical_calls=3,
            max_retries=3,
            max_cost_usd=1.0,
            max_wall_seconds=600.0,
        )
    )
    tool_timeout_seconds: float = Field(30.0, gt=0)


class PolicyDocument(_Strict):
    """A whole policy file."""

    version: Annotated[str, Field(min_length=1, max_length=64)]
    description: str = ""
    toolbelt: str | None = Field(
        None, description="Import path of the module whose @tool functions the policy governs."
    )
    defaults: Defaults = Field(default_factory=Defaults)
    workflows: dict[Name, WorkflowPolicy]

    @field_validator("version", mode="before")
    @classmethod
    def _version_is_text(cls, value: Any) -> Any:
        if isinstance(value, (int, float)):
            return str(value)
        return value
