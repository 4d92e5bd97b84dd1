"""Blast radius: an upper bound, from the policy alone, of what one run can do without a person.

The seed's question ("what is the maximum damage this agent can do in one run?") answered
from the contracts, the stage, the constraints, the approval and deny rules, the caps and
the quotas, never from a model. Every figure is an upper bound that the gate enforces
(tests/policy/test_blast_*.py drive random calls through the real `Gateway` with a deny-all
approver and check that no run exceeds it); where the analysis cannot bound a dimension it
says so ("unbounded", with why) rather than guess.

What it reads: a condition (``approval_when``, ``deny_when``, rules) is analysed only in the
form ``args.X <op> number`` (or ``number <op> args.X``), op one of ``> >= < <=``; any other
condition can only narrow what runs, so the bound stays sound without it, and the argument
it names gets a note. Reaching a tool through its ``requires_before`` is checked only for
prerequisites that can never run; plans, history conditions (``run.sum``) and provenance
only narrow further. Counts are of calls that ran: a write whose tool failed (no effect)
may be proposed again within ``max_identical_calls``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any, TypeGuard

from opsgate.contracts import ToolContract
from opsgate.errors import PolicyError
from opsgate.policy._compiled import CompiledPolicy, Quota
from opsgate.policy._document import (
    STAGE_SCOPES,
    STAGES,
    ArgConstraint,
    Caps,
    Prerequisite,
    Stage,
    ToolPolicy,
    WorkflowPolicy,
)

__all__ = [
    "ArgumentBound",
    "BlastRadius",
    "Limit",
    "QuotaBound",
    "ToolBound",
    "Unreachable",
    "blast_radius",
]

_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_COMPARE = re.compile(rf"^\s*args\.([A-Za-z_]\w*)\s*(>=|<=|>|<)\s*({_NUMBER})\s*$")
_COMPARE_REVERSED = re.compile(rf"^\s*({_NUMBER})\s*(>=|<=|>|<)\s*args\.([A-Za-z_]\w*)\s*$")
_FLIP = {">": "<", "<": ">", ">=": "<=", "<=": ">="}
Scalar = str | int | float | bool | None


@dataclass(frozen=True, slots=True)
class Limit:
    """One end of a numeric range: the value, and whether it is itself allowed."""

    value: float
    inclusive: bool = True

    def admits_below(self, x: float) -> bool:
        """Whether ``x`` is within this upper limit."""
        return x <= self.value if self.inclusive else x < self.value

    def admits_above(self, x: float) -> bool:
        """Whether ``x`` is within this lower limit."""
        return x >= self.value if self.inclusive else x > self.value


@dataclass(frozen=True, slots=True)
class ArgumentBound:
    """What values one argument of a reachable tool can take without a person.

    Attributes:
        name: The argument.
        type: Its JSON type (``number``, ``integer``, ``string``, ``boolean``, ``array``...).
        role: ``target`` (a provenance target or egress argument), ``free_text``,
            ``checked`` (provenance-checked), ``closed`` (a closed set) or ``unchecked``.
        bounded: Whether the analysis bounds its values (a finite set, a pattern, or for a
            number a largest value).
        values: The finite set of possible values, when there is one.
        patterns: Regexes every value matches in full (policy ``pattern``).
        contract_patterns: Regexes every value contains a match of (the contract's).
        excluded: Values never allowed (``not_in``).
        max_length: The longest string or list.
        min: The smallest possible number. max: The largest, per call.
        per_run_total: The largest total of the argument over one run (numbers).
        sources: Where a target's value must come from (``request``, ``tool:NAME``,
            ``trusted``: any trusted source).
        endorsed_by: Endorsements that may let a value derived from untrusted input through.
        notes: How each bound was found, and what the analysis did not read.
    """

    name: str
    type: str
    role: str
    bounded: bool
    values: tuple[Scalar, ...] | None = None
    patterns: tuple[str, ...] = ()
    contract_patterns: tuple[str, ...] = ()
    excluded: tuple[Scalar, ...] = ()
    max_length: int | None = None
    min: Limit | None = None
    max: Limit | None = None
    per_run_total: float | None = None
    sources: tuple[str, ...] | None = None
    endorsed_by: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()

    def admits(self, value: Any) -> bool:
        """Whether ``value`` is within this bound (what the gate tests check)."""
        items = value if isinstance(value, list) else [value]
        return all(self._admits_one(v) for v in items)

    def _admits_one(self, value: Any) -> bool:
        if value is None:
            return True
        if self.values is not None and value not in self.values:
            return False
        if value in self.excluded:
            return False
        if isinstance(value, str):
            return all(re.fullmatch(p, value) for p in self.patterns) and all(
                re.search(p, value) for p in self.contract_patterns
            )
        if isinstance(value, int | float) and not isinstance(value, bool):
            low_ok = self.min is None or self.min.admits_above(value)
            return low_ok and (self.max is None or self.max.admits_below(value))
        return True


@dataclass(frozen=True, slots=True)
class QuotaBound:
    """A quota across runs, and what it leaves one run.

    Attributes:
        key: ``tool`` or ``tool.arg``. tool, arg: what it limits (arg None: calls).
        max: Calls, or the total of ``arg``, per window. per: The window (``1h``).
        by: Whose calls add up (``workflow``, ``invoker``, ``agent``).
        per_run: What it lets one run do at most (the windows one run can span at its
            ``max_wall_seconds``); None without a wall cap.
    """

    key: str
    tool: str
    arg: str | None
    max: float
    per: str
    by: str
    per_run: float | None


@dataclass(frozen=True, slots=True)
class ToolBound:
    """A tool one run can call without a person, and how far.

    Attributes:
        tool, scope, impact: The tool and its contract.
        max_calls: The most calls of it that run in one run (None: unbounded).
        max_calls_by: What sets that number (``max_tool_calls``, a quota, ...).
        repeatable: Whether the same write may run twice with the same arguments.
        approval: When a person is needed anyway (``never``, or the condition).
        requires_before: Tools that must have run first.
        arguments: Per argument, its possible values.
        notes: What the analysis did not read.
    """

    tool: str
    scope: str
    impact: str
    max_calls: int | None
    max_calls_by: str
    repeatable: bool
    approval: str
    requires_before: tuple[str, ...]
    arguments: tuple[ArgumentBound, ...]
    notes: tuple[str, ...] = ()

    def argument(self, name: str) -> ArgumentBound:
        """The bound of one argument."""
        return next(a for a in self.arguments if a.name == name)


@dataclass(frozen=True, slots=True)
class Unreachable:
    """A tool of the workflow that runs only with a person, or never, at this stage."""

    tool: str
    scope: str
    impact: str
    why: str


@dataclass(frozen=True, slots=True)
class BlastRadius:
    """What one run of a workflow can do without a person (see the module docstring).

    Attributes:
        workflow, stage, agent_id, policy_version: What was analysed.
        caps: The run's caps in force (``max_tool_calls`` bounds every tool's calls
            together; ``max_cost_usd`` is the run's spend).
        reachable: Write and draft tools (and reads with egress arguments) that can run.
        reads: Read tools that can run (no effect outside; listed by name).
        needs_a_person: Tools every call of which waits for an approval.
        unreachable: Tools the stage (or a prerequisite that cannot run) rules out.
        quotas: The quotas across runs, per window.
        unbounded: Every dimension the analysis cannot bound, one phrase each.
    """

    workflow: str
    stage: Stage
    agent_id: str | None
    policy_version: str
    caps: Caps
    reachable: tuple[ToolBound, ...]
    reads: tuple[str, ...]
    needs_a_person: tuple[Unreachable, ...]
    unreachable: tuple[Unreachable, ...]
    quotas: tuple[QuotaBound, ...]
    unbounded: tuple[str, ...] = field(default=())

    def tool(self, name: str) -> ToolBound | None:
        """The bound of a reachable tool; None when it cannot run without a person."""
        return next((t for t in self.reachable if t.tool == name), None)

    def as_dict(self) -> dict[str, Any]:
        """JSON data (the schema `opsgate policy blast-radius --json` prints)."""
        data: dict[str, Any] = _plain(asdict(self))
        data["caps"] = self.caps.model_dump()
        return data


def _plain(data: Any) -> Any:
    """JSON data: tuples as lists, all the way down."""
    if isinstance(data, dict):
        return {k: _plain(v) for k, v in data.items()}
    if isinstance(data, list | tuple):
        return [_plain(v) for v in data]
    return data


# -- the analysis ------------------------------------------------------------------------


def blast_radius(
    policy: CompiledPolicy,
    workflow: str,
    *,
    stage: str | None = None,
    agent_id: str | None = None,
) -> BlastRadius:
    """The upper bound of what one run of ``workflow`` can do without a person.

    Args:
        policy: The compiled policy.
        workflow: The workflow to analyse.
        stage: Analyse as if the workflow (and the agent) were at this stage.
        agent_id: An agent identity the workflow narrows (its tools, stage, caps).

    Raises:
        PolicyError: an unknown workflow, stage or agent.
    """
    wf = _workflow(policy, workflow, agent_id)
    if stage is not None and stage not in STAGES:
        raise PolicyError(f"unknown stage `{stage}` (stages: {', '.join(STAGES)})")
    in_force = stage if stage is not None else policy.stage(workflow, agent_id)
    caps = policy.caps(workflow, agent_id)
    names = policy.allowed_tools(workflow, agent_id)
    blocked = _blocked(policy, wf, names, in_force)
    reachable, reads = [], []
    for name in names:
        if name in blocked:
            continue
        contract = policy.toolbelt.get(name)
        if contract.scope == "read" and not contract.egress_args:
            reads.append(name)
            continue
        quotas = policy.quotas(workflow, name)
        reachable.append(_tool_bound(contract, wf, in_force, caps, quotas))
    quota_bounds = tuple(
        _quota_bound(q, caps) for name in names for q in policy.quotas(workflow, name)
    )
    return BlastRadius(
        workflow=workflow,
        stage=in_force,
        agent_id=agent_id,
        policy_version=policy.version,
        caps=caps,
        reachable=tuple(reachable),
        reads=tuple(reads),
        needs_a_person=tuple(u for u in blocked.values() if u.why.startswith("approval")),
        unreachable=tuple(u for u in blocked.values() if not u.why.startswith("approval")),
        quotas=quota_bounds,
        unbounded=_unbounded(caps, reachable),
    )


def _workflow(policy: CompiledPolicy, workflow: str, agent_id: str | None) -> WorkflowPolicy:
    """The workflow's document, its name and the agent's checked (the compiled policy
    falls back to the workflow for an agent it does not know: here that is a typo)."""
    if not policy.has_workflow(workflow):
        known = ", ".join(sorted(policy.document.workflows)) or "none"
        raise PolicyError(f"no workflow `{workflow}` (workflows: {known})", source=policy.source)
    wf = policy.document.workflows[workflow]
    if agent_id is not None and agent_id not in wf.agents:
        known = ", ".join(sorted(wf.agents)) or "none"
        raise PolicyError(
            f"workflow `{workflow}` has no agent `{agent_id}` (agents: {known})",
            source=policy.source,
        )
    return wf


def _static_approval(contract: ToolContract, spec: ToolPolicy, stage: Stage) -> str | None:
    """Why every call of the tool needs a person (as `CompiledPolicy` compiles it)."""
    if spec.approval == "always":
        return "approval: always"
    if spec.approval == "default" and not spec.approval_when:
        if contract.impact == "high":
            return "approval: high impact"
        if contract.scope == "write" and stage == "write_with_approval":
            return "approval: a write under write_with_approval"
    return None


def _blocked(
    policy: CompiledPolicy, wf: WorkflowPolicy, names: Sequence[str], stage: Stage
) -> dict[str, Unreachable]:
    """The tools no call of which runs without a person, each with why; then those that
    need one of them to have run first (``requires_before``), until nothing changes."""
    blocked: dict[str, Unreachable] = {}
    for name in names:
        contract = policy.toolbelt.get(name)
        spec = wf.tools[name] or ToolPolicy()
        why = None
        if contract.scope not in STAGE_SCOPES[stage]:
            why = f"scope above stage: a {contract.scope} tool at {stage}"
        else:
            why = _static_approval(contract, spec, stage)
        if why is not None:
            blocked[name] = Unreachable(name, contract.scope, contract.impact, why)
    changed = True
    while changed:
        changed = False
        for name in names:
            needed = [p for p in _prerequisites(wf, name) if p in blocked or p not in names]
            if name not in blocked and needed:
                contract = policy.toolbelt.get(name)
                why = f"requires {', '.join(needed)} first, which cannot run without a person"
                blocked[name] = Unreachable(name, contract.scope, contract.impact, why)
                changed = True
    return blocked


def _prerequisites(wf: WorkflowPolicy, name: str) -> tuple[str, ...]:
    specs = wf.requires_before.get(name, ())
    return tuple(s.tool if isinstance(s, Prerequisite) else s for s in specs)


def _conditions(
    wf: WorkflowPolicy, name: str, spec: ToolPolicy, static: bool
) -> tuple[list[str], list[str]]:
    """The deny conditions and approval conditions of a tool (the latter only where no
    static approval rule decides)."""
    deny = [spec.deny_when] if spec.deny_when else []
    approve = [spec.approval_when] if spec.approval_when else []
    for rule in wf.rules:
        if rule.tools == "*" or name in rule.tools:
            (deny if rule.effect == "deny" else approve).append(rule.when)
    return deny, [] if static else approve


def _tool_bound(
    contract: ToolContract,
    wf: WorkflowPolicy,
    stage: Stage,
    caps: Caps,
    quotas: Sequence[Quota],
) -> ToolBound:
    name = contract.name
    spec = wf.tools[name] or ToolPolicy()
    deny, approve = _conditions(wf, name, spec, _static_approval(contract, spec, stage) is not None)
    analysed = _analysed(deny, approve)
    arguments = [_argument(contract, wf, spec, arg, analysed) for arg in contract.arg_names]
    once = contract.scope == "write" and not spec.repeatable
    count, by = _max_calls(arguments, once, caps, quotas)
    arguments = [_with_total(a, count, quotas, caps) for a in arguments]
    notes = tuple(
        f"condition `{c}` not analysed (it can only narrow the bound)"
        for c in [*deny, *approve]
        if _parse(c) is None
    )
    return ToolBound(
        tool=name,
        scope=contract.scope,
        impact=contract.impact,
        max_calls=count,
        max_calls_by=by,
        repeatable=not once,
        approval=" or ".join(approve) if approve else "never",
        requires_before=_prerequisites(wf, name),
        arguments=tuple(arguments),
        notes=notes,
    )


def _parse(condition: str) -> tuple[str, str, float] | None:
    """``(arg, op, number)`` of a condition ``args.X op number``; None for anything else."""
    text = condition.strip()
    while text.startswith("(") and text.endswith(")"):
        text = text[1:-1].strip()
    found = _COMPARE.match(text)
    if found:
        return found.group(1), found.group(2), float(found.group(3))
    found = _COMPARE_REVERSED.match(text)
    if found:
        return found.group(3), _FLIP[found.group(2)], float(found.group(1))
    return None


@dataclass(frozen=True, slots=True)
class _Cut:
    """What a condition that must be false for the call to run says of one argument."""

    arg: str
    low: Limit | None
    high: Limit | None
    note: str


def _analysed(deny: Iterable[str], approve: Iterable[str]) -> list[_Cut]:
    """The limits the parsed conditions put on arguments: a call runs without a person
    only where every deny and approval condition is false."""
    cuts = []
    for kind, conditions in (("denied", deny), ("needs a person", approve)):
        for condition in conditions:
            parsed = _parse(condition)
            if parsed is None:
                continue
            arg, op, number = parsed
            low = {"<": Limit(number), "<=": Limit(number, False)}.get(op)
            high = {">": Limit(number), ">=": Limit(number, False)}.get(op)
            side = {">": "above", ">=": "from", "<": "below", "<=": "up to"}[op]
            cuts.append(_Cut(arg, low, high, f"{side} {number:g} {kind} (`{condition}`)"))
    return cuts


def _argument(
    contract: ToolContract,
    wf: WorkflowPolicy,
    spec: ToolPolicy,
    arg: str,
    cuts: Sequence[_Cut],
) -> ArgumentBound:
    variants, nullable = _variants(contract.parameters_schema, arg)
    kind = variants[0].get("type", "unknown") if len(variants) == 1 else "mixed"
    constraint = spec.constraints.get(arg)
    values = _values(variants, constraint, nullable)
    low, high, notes = _range(variants, constraint, [c for c in cuts if c.arg == arg], values)
    patterns = (constraint.pattern,) if constraint and constraint.pattern else ()
    # one alternative only: of two patterns, a value matches either, not both
    contract_patterns = (variants[0]["pattern"],) if "pattern" in variants[0] else ()
    contract_patterns = contract_patterns if len(variants) == 1 else ()
    excluded = tuple(constraint.not_in) if constraint and constraint.not_in else ()
    role, sources, endorsed = _provenance(contract, wf, arg)
    numeric = kind in ("number", "integer")
    bounded = values is not None or (
        high is not None if numeric else bool(patterns or contract_patterns)
    )
    if numeric and high is None:
        notes.append("no largest value (no max constraint)")
    if not numeric and any(c.arg == arg for c in cuts):
        notes.append("a numeric condition on a value that is not a number (not analysed)")
    return ArgumentBound(
        name=arg,
        type=kind,
        role=role,
        bounded=bounded,
        values=values,
        patterns=patterns,
        contract_patterns=contract_patterns,
        excluded=excluded,
        max_length=_max_length(variants, constraint),
        min=low,
        max=high,
        sources=sources,
        endorsed_by=endorsed,
        notes=tuple(notes),
    )


def _variants(schema: dict[str, Any], arg: str) -> tuple[list[dict[str, Any]], bool]:
    """The JSON schema alternatives of an argument (``$ref`` resolved, ``null`` apart)."""
    definitions = schema.get("$defs", {})

    def resolve(node: dict[str, Any]) -> dict[str, Any]:
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            return {**definitions.get(ref.removeprefix("#/$defs/"), {}), **node}
        return node

    prop = resolve(schema.get("properties", {}).get(arg, {}))
    options = [resolve(o) for o in prop.get("anyOf", [prop])]
    nullable = any(o.get("type") == "null" for o in options)
    return [o for o in options if o.get("type") != "null"] or [{}], nullable


def _numeric(kind: str) -> bool:
    return kind in ("number", "integer")


def _is_number(value: Any) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _values(
    variants: list[dict[str, Any]], constraint: ArgConstraint | None, nullable: bool
) -> tuple[Scalar, ...] | None:
    """The finite set of values an argument can take, when it has one."""
    found: list[Scalar] | None = None
    if all("enum" in v or "const" in v or v.get("type") == "boolean" for v in variants):
        found = []
        for v in variants:
            found += v.get("enum", [v["const"]] if "const" in v else [True, False])
    if constraint is not None and constraint.in_ is not None:
        allowed: list[Scalar] = list(constraint.in_)
        found = allowed if found is None else [v for v in found if v in allowed]
    if found is None:
        return None
    if nullable:
        found.append(None)
    return tuple(dict.fromkeys(found))


def _range(
    variants: list[dict[str, Any]],
    constraint: ArgConstraint | None,
    cuts: Sequence[_Cut],
    values: Sequence[Scalar] | None,
) -> tuple[Limit | None, Limit | None, list[str]]:
    """The smallest and largest number an argument can take, and where each comes from."""
    lows: list[tuple[Limit, str]] = []
    highs: list[tuple[Limit, str]] = []
    numbers = [float(v) for v in values or () if _is_number(v)]
    if numbers and len(numbers) == len([v for v in values or () if v is not None]):
        lows.append((Limit(min(numbers)), "the possible values"))
        highs.append((Limit(max(numbers)), "the possible values"))
    if len(variants) == 1:
        v = variants[0]
        for key, inclusive, into in (
            ("minimum", True, lows),
            ("exclusiveMinimum", False, lows),
            ("maximum", True, highs),
            ("exclusiveMaximum", False, highs),
        ):
            if _is_number(v.get(key)):
                into.append((Limit(float(v[key]), inclusive), "contract"))
    if constraint is not None:
        if constraint.min is not None:
            lows.append((Limit(constraint.min), "constraint min"))
        if constraint.max is not None:
            highs.append((Limit(constraint.max), "constraint max"))
    for cut in cuts:
        if cut.low is not None:
            lows.append((cut.low, cut.note))
        if cut.high is not None:
            highs.append((cut.high, cut.note))
    low = max(lows, key=lambda x: (x[0].value, not x[0].inclusive), default=None)
    high = min(highs, key=lambda x: (x[0].value, x[0].inclusive), default=None)
    notes = [f"max {_shown_limit(high[0])}: {high[1]}"] if high else []
    return (low[0] if low else None), (high[0] if high else None), notes


def _shown_limit(limit: Limit) -> str:
    return f"{'≤' if limit.inclusive else '<'} {limit.value:g}"


def _max_length(variants: list[dict[str, Any]], constraint: ArgConstraint | None) -> int | None:
    lengths = [int(v[k]) for v in variants for k in ("maxLength", "maxItems") if k in v]
    if constraint is not None and constraint.max_length is not None:
        lengths.append(constraint.max_length)
    if len(variants) > 1 and len(lengths) < len(variants):
        return None
    return min(lengths, default=None)


def _provenance(
    contract: ToolContract, wf: WorkflowPolicy, arg: str
) -> tuple[str, tuple[str, ...] | None, tuple[str, ...]]:
    """The argument's role for provenance, where its value must come from, and the
    endorsements that may waive that (as `CompiledPolicy` compiles them)."""
    prov = wf.provenance
    name = contract.name
    bound = prov.target_sources(name)
    free = prov.free_text.get(name, [])
    endorsed = tuple(
        e.id for e in prov.endorse if name in e.tools and (not e.args or arg in e.args)
    )
    is_target = arg in bound or (arg in contract.egress_args and arg not in free)
    checked = contract.scope == "write" or contract.scope in prov.also_check or bool(bound)
    if is_target:
        sources = bound.get(arg)
        return "target", tuple(sources) if sources else ("trusted",), endorsed
    if arg in free:
        return "free_text", None, ()
    if arg in contract.closed_args:
        return "closed", None, ()
    return ("checked", None, endorsed) if checked else ("unchecked", None, ())


def _max_calls(
    arguments: Sequence[ArgumentBound], once: bool, caps: Caps, quotas: Sequence[Quota]
) -> tuple[int | None, str]:
    """The most calls of a tool that run in one run, and what sets it."""
    options: list[tuple[int, str]] = []
    if caps.max_tool_calls is not None:
        options.append((caps.max_tool_calls, "max_tool_calls"))
    per_key = 1 if once else caps.max_identical_calls
    space = _argument_space(arguments)
    if per_key is not None and space is not None:
        why = "duplicate_write" if once else "max_identical_calls"
        options.append((per_key * space, f"{why} × {space} possible argument set(s)"))
    for quota in quotas:
        windows = _windows(quota, caps)
        if quota.arg is None and windows is not None:
            options.append((math.floor(quota.max) * windows, f"quota {_quota_key(quota)}"))
    if not options:
        return None, "nothing"
    return min(options)


def _argument_space(arguments: Sequence[ArgumentBound]) -> int | None:
    """How many distinct argument sets a call can have, when finitely many."""
    total = 1
    for a in arguments:
        if a.values is not None and a.type != "array":
            total *= len(a.values)
        elif a.type == "integer" and a.min is not None and a.max is not None:
            low = math.ceil(a.min.value) + (0 if a.min.admits_above(math.ceil(a.min.value)) else 1)
            high = math.floor(a.max.value) - (
                0 if a.max.admits_below(math.floor(a.max.value)) else 1
            )
            total *= max(high - low + 1, 0)
        else:
            return None
    return total


def _windows(quota: Quota, caps: Caps) -> int | None:
    """How many of the quota's windows one run can span (its wall cap; one more for the
    moments between the cap check and the reservation)."""
    if caps.max_wall_seconds is None:
        return None
    return math.floor(caps.max_wall_seconds / quota.window_s) + 1


def _quota_key(quota: Quota) -> str:
    return quota.key.split(":", 1)[1]


def _with_total(
    a: ArgumentBound, count: int | None, quotas: Sequence[Quota], caps: Caps
) -> ArgumentBound:
    """The argument's largest total over one run: calls × largest value, or a quota on
    its total (only for values that cannot be negative: a negative one gives back)."""
    if a.type not in ("number", "integer"):
        return a
    totals: list[float] = []
    notes = list(a.notes)
    if count is not None and a.max is not None:
        totals.append(count * max(a.max.value, 0.0))
    for quota in quotas:
        windows = _windows(quota, caps)
        if quota.arg == a.name and windows is not None and a.min and a.min.value >= 0:
            totals.append(quota.max * windows)
            notes.append(
                f"total at most {quota.max * windows:g} per run: quota {_quota_key(quota)}"
            )
    if not totals:
        return a
    return replace(a, per_run_total=min(totals), notes=tuple(notes))


def _quota_bound(quota: Quota, caps: Caps) -> QuotaBound:
    windows = _windows(quota, caps)
    per_run = None
    if windows is not None:
        per_run = (math.floor(quota.max) if quota.arg is None else quota.max) * windows
    return QuotaBound(
        key=_quota_key(quota),
        tool=quota.tool,
        arg=quota.arg,
        max=quota.max,
        per=_window(quota.window_s),
        by=quota.by,
        per_run=per_run,
    )


def _window(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g}{unit}"
    return f"{seconds:g}s"


def _sources(sources: Sequence[str]) -> str:
    """``request or tool:get_contacts``, in words."""
    named = ("the request or a trusted source" if s == "trusted" else s for s in sources)
    return " or ".join(named)


def _unbounded(caps: Caps, tools: Sequence[ToolBound]) -> tuple[str, ...]:
    """Every dimension the analysis leaves open, one phrase each (never hidden)."""
    found = []
    if caps.max_tool_calls is None:
        found.append("tool calls per run: unbounded (no max_tool_calls cap)")
    if caps.max_cost_usd is None:
        found.append("cost per run: unbounded (no max_cost_usd cap)")
    for tool in tools:
        if tool.max_calls is None:
            found.append(f"{tool.tool} calls: unbounded (no cap or quota limits them)")
        for a in tool.arguments:
            if a.bounded or not (a.role in ("target", "checked") or _numeric(a.type)):
                continue  # content (free text, a draft's body) is not a damage dimension
            why = (
                "no max constraint"
                if a.type in ("number", "integer")
                else "no allowlist or pattern"
            )
            source = f"; must come from {_sources(a.sources)}" if a.sources else ""
            found.append(f"{tool.tool}.{a.name}: unbounded ({why}{source})")
    return tuple(found)
