"""A policy bound to a toolbelt and compiled for the hot path; `decide` lives here.

Binding checks everything that can be known before a call: every tool named exists,
every constrained argument exists, every CEL condition compiles and refers to real
arguments. Compiling precomputes what does not depend on the call (the stage's verdict on
a tool's scope, static approvals, the decision objects themselves), so `decide` is a few
dict look-ups and comparisons, plus a CEL evaluation only where policy has a condition.

Order of evaluation (first match wins; a deny always beats an approval, which beats an
allow; anything not matched is denied):

1. workflow unknown → ``unknown_workflow``; tool not in the workflow → ``tool_not_allowed``
2. a cap reached → ``cap_exceeded``
3. the tool's scope above the stage → ``scope_above_stage``; a write that already ran with the
   same arguments in this run, unless the policy says it is ``repeatable`` →
   ``duplicate_write``
4. a committed plan that does not name the tool (or none where one is required) →
   ``outside_plan``
5. an argument constraint fails → ``arg_constraint``
6. a deny condition holds → ``rule_denied`` (a failing condition → ``condition_error``)
7. a target not corroborated by its sources, or another checked argument derived from
   untrusted input → ``untrusted_derivation`` (deny, or approval), unless a declared
   endorsement holds for it (then the decision names it: ``endorsed``)
8. approval rules (stage, impact, ``approval``, ``approval_when``, rules) → ``approval_required``
9. allow
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from opsgate.contracts import Toolbelt, ToolContract, Trust
from opsgate.errors import PolicyError
from opsgate.policy._cel import Condition, compile_condition, type_problem
from opsgate.policy._decision import Decision, Effect, ProposedCall, Reason, RunState
from opsgate.policy._document import (
    STAGE_SCOPES,
    ArgConstraint,
    Caps,
    Kpi,
    PolicyDocument,
    Prerequisite,
    Stage,
    ToolPolicy,
    WorkflowPolicy,
)
from opsgate.policy._load import content_version as _content_version
from opsgate.provenance import SelectorError, SourceSpec, TrustMap

__all__ = ["CompiledPolicy", "Quota", "ToolSettings"]

_ALLOW = Effect.ALLOW
_DENY = Effect.DENY
_APPROVAL = Effect.NEEDS_APPROVAL
_MISSING = object()


@dataclass(frozen=True, slots=True)
class _Check:
    arg: str
    rule: str
    test: Callable[[Any], str | None]


@dataclass(frozen=True, slots=True)
class _Conditional:
    rule: str
    condition: Condition
    message: str


@dataclass(frozen=True, slots=True)
class _Endorse:
    rule: str
    id: str
    args: frozenset[str]
    condition: Condition


@dataclass(frozen=True, slots=True)
class Quota:
    """A compiled quota across runs (``quotas:`` of a workflow).

    Attributes:
        key: Its name in the store: ``workflow:tool`` or ``workflow:tool.arg``.
        tool: The tool it limits.
        arg: The argument it totals (None: it counts calls).
        max: The most calls, or the largest total, per window.
        window_s: The window, in seconds.
        by: Whose calls add up: the ``workflow``'s, each ``invoker``'s or each ``agent``'s.
        rule: Its place in the policy (``workflows.wf.quotas.refund.amount``).
    """

    key: str
    tool: str
    arg: str | None
    max: float
    window_s: float
    by: str
    rule: str

    def amount(self, args: Mapping[str, Any]) -> float:
        """What one call adds: 1, or its argument's value (0 when absent)."""
        if self.arg is None:
            return 1.0
        value = args.get(self.arg)
        return (
            float(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0.0
        )

    def subject(self, workflow: str, invoker: str, agent_id: str) -> str:
        """Whose tally the call adds to."""
        return {"workflow": workflow, "invoker": invoker, "agent": agent_id}[self.by]


@dataclass(frozen=True, slots=True)
class _Prerequisite:
    tool: str
    same: tuple[str, ...]
    rule: str


@dataclass(frozen=True, slots=True)
class _Provenance:
    targets: tuple[tuple[str, SourceSpec | None], ...]
    checked: tuple[str, ...]
    target_effect: Effect
    arg_effect: Effect
    rule: str
    endorsements: tuple[_Endorse, ...]
    egress: frozenset[str]


@dataclass(frozen=True, slots=True)
class ToolSettings:
    """How a tool runs in one workflow.

    Attributes:
        timeout_s: Execution timeout.
        output_trust: Provenance label of its results (the default of `output_map`).
        output_map: Field-level labels of its results.
    """

    timeout_s: float
    output_trust: Trust
    output_map: TrustMap


@dataclass(frozen=True, slots=True)
class _Entry:
    """One tool as one workflow (and agent) sees it."""

    contract: ToolContract
    scope_denied: Decision | None
    once: bool
    prerequisites: tuple[_Prerequisite, ...]
    checks: tuple[_Check, ...]
    deny_when: tuple[_Conditional, ...]
    provenance: _Provenance | None
    approval: Decision | None
    approval_when: tuple[_Conditional, ...]
    allow: Decision
    settings: ToolSettings


@dataclass(frozen=True, slots=True)
class _Scope:
    """A workflow, or a workflow narrowed for one agent identity."""

    workflow: str
    stage: Stage
    caps: Caps
    tools: Mapping[str, _Entry]
    cap_decisions: Mapping[str, Decision]
    plan_mode: str


def _constraint_checks(
    name: str, spec: ArgConstraint, rule: str, json_type: str | None
) -> list[_Check]:
    def fail_type(kind: str) -> PolicyError:
        return PolicyError(
            f"`{kind}` needs a {kind_of[kind]} argument, `{name}` is {json_type}", location=rule
        )

    kind_of = {"min": "number", "max": "number", "pattern": "string", "max_length": "str/list"}
    numeric = json_type in (None, "number", "integer")
    checks: list[_Check] = []
    if spec.in_ is not None:
        allowed = frozenset(spec.in_)
        shown = ", ".join(map(str, spec.in_))

        def in_test(v: Any) -> str | None:
            values = v if isinstance(v, list) else [v]
            for item in values:
                if (
                    isinstance(item, bool)
                    or not isinstance(item, (str, int, float))
                    or (item not in allowed)
                ):
                    return f"`{name}` must be one of {shown}, not {item!r}"
            return None

        checks.append(_Check(name, f"{rule}.in", in_test))
    if spec.not_in is not None:
        banned = frozenset(spec.not_in)

        def not_in_test(v: Any) -> str | None:
            values = v if isinstance(v, list) else [v]
            for item in values:
                if (
                    isinstance(item, (str, int, float))
                    and not isinstance(item, bool)
                    and (item in banned)
                ):
                    return f"`{name}` may not be {item!r}"
            return None

        checks.append(_Check(name, f"{rule}.not_in", not_in_test))
    for bound, op in (("min", spec.min), ("max", spec.max)):
        if op is None:
            continue
        if not numeric:
            raise fail_type(bound)
        limit = op
        if bound == "min":

            def min_test(v: Any, limit: float = limit) -> str | None:
                if isinstance(v, bool) or not isinstance(v, (int, float)) or math.isnan(v):
                    return f"`{name}` must be a number"
                return None if v >= limit else f"`{name}` must be at least {limit:g}, not {v:g}"

            checks.append(_Check(name, f"{rule}.min", min_test))
        else:

            def max_test(v: Any, limit: float = limit) -> str | None:
                if isinstance(v, bool) or not isinstance(v, (int, float)) or math.isnan(v):
                    return f"`{name}` must be a number"
                return None if v <= limit else f"`{name}` must be at most {limit:g}, not {v:g}"

            checks.append(_Check(name, f"{rule}.max", max_test))
    if spec.pattern is not None:
        if json_type not in (None, "string", "array"):
            raise fail_type("pattern")
        regex = re.compile(spec.pattern)

        def pattern_test(v: Any) -> str | None:
            values = v if isinstance(v, list) else [v]
            for item in values:
                if not isinstance(item, str) or regex.fullmatch(item) is None:
                    return f"`{name}` must match `{regex.pattern}`, not {item!r}"
            return None

        checks.append(_Check(name, f"{rule}.pattern", pattern_test))
    if spec.max_length is not None:
        if json_type not in (None, "string", "array"):
            raise fail_type("max_length")
        longest = spec.max_length

        def length_test(v: Any) -> str | None:
            if isinstance(v, (str, list)) and len(v) > longest:
                return f"`{name}` is longer than {longest}"
            return None

        checks.append(_Check(name, f"{rule}.max_length", length_test))
    return checks


def _json_type(contract: ToolContract, arg: str) -> str | None:
    prop = contract.parameters_schema.get("properties", {}).get(arg, {})
    kind = prop.get("type")
    if kind is None and "anyOf" in prop:
        kinds = {p.get("type") for p in prop["anyOf"]} - {"null", None}
        kind = kinds.pop() if len(kinds) == 1 else None
    return kind if isinstance(kind, str) else None


def _ran(state: RunState, tool: str, match: Mapping[str, Any] | None = None) -> bool:
    """Whether ``tool`` ran in the run with arguments matching ``match``."""
    return any(True for _ in _past(state, tool, match))


def _past(
    state: RunState, tool: str, match: Mapping[str, Any] | None
) -> Iterable[Mapping[str, Any]]:
    """The arguments of each call of ``tool`` that ran and matches ``match``."""
    for call in state.completed:
        if call.tool != tool:
            continue
        args = call.args
        if match and any(args.get(k, _MISSING) != v for k, v in match.items()):
            continue
        yield args


def _history_args(what: str, given: tuple[Any, ...], names: int) -> tuple[Any, ...]:
    """The arguments of a history function, the receiver (``run.``) dropped: ``names``
    strings, then an optional map to match."""
    if given and isinstance(given[0], Mapping):
        given = given[1:]  # run.count(...): CEL passes `run` first
    match = given[names] if len(given) == names + 1 else None
    if (
        len(given) not in (names, names + 1)
        or not all(isinstance(g, str) for g in given[:names])
        or (match is not None and not isinstance(match, Mapping))
    ):
        raise TypeError(f"{what} takes {names} name(s) and an optional map of arguments")
    return (*given[:names], match)


class _CallVariables:
    """The per-call CEL variables, built only when a condition asks for them."""

    __slots__ = ("args", "state")

    def __init__(self, args: Mapping[str, Any], state: RunState) -> None:
        self.args = args
        self.state = state

    def count(self, *given: Any) -> int:
        """`run.count(tool[, {arg: value}])`: calls of ``tool`` that ran."""
        tool, match = _history_args("run.count", given, 1)
        return sum(1 for _ in _past(self.state, tool, match))

    def sum(self, *given: Any) -> float:
        """`run.sum(tool, arg[, {arg: value}])`: the total of a numeric argument."""
        tool, arg, match = _history_args("run.sum", given, 2)
        total = 0.0
        for args in _past(self.state, tool, match):
            value = args.get(arg)
            if isinstance(value, int | float) and not isinstance(value, bool):
                total += value
        return total

    def called(self, *given: Any) -> bool:
        """`run.called(tool[, {arg: value}])`: whether such a call ran."""
        tool, match = _history_args("run.called", given, 1)
        return _ran(self.state, tool, match)

    def prov(self, value: Any) -> dict[str, Any]:
        """`prov(value)` in CEL: where the value comes from in this run."""
        return self.state.provenance.origin(value, full=True).as_dict()

    def __getitem__(self, name: str) -> Any:
        if name == "args":
            return self.args
        if name == "request":
            return self.state.request
        if name == "read":
            return self.state.provenance.read()
        if name == "run":
            state = self.state
            return {
                "workflow": state.workflow,
                "agent": state.agent_id,
                "invoker": state.invoker,
                "steps": state.steps,
                "tool_calls": state.tool_calls,
                "cost_usd": state.cost_usd,
            }
        raise KeyError(name)


class CompiledPolicy:
    """A validated policy bound to a toolbelt. Immutable; safe to share across runs.

    Attributes:
        document: The validated document.
        version: Declared version plus content hash (``2026-11-25.1+3f2a…``).
        source: Where the document came from.
        toolbelt: The contracts it governs.
    """

    def __init__(
        self, document: PolicyDocument, toolbelt: Toolbelt, *, version: str, source: str
    ) -> None:
        self.document = document
        self.version = version
        self.source = source
        self.toolbelt = toolbelt
        self.notices: list[str] = []
        """Where the policy overrides what a contract says (trust of outputs), for review."""
        self._scopes: dict[tuple[str, str | None], _Scope] = {}
        self._quotas: dict[tuple[str, str], tuple[Quota, ...]] = {}
        self._staged: dict[tuple[str, str], CompiledPolicy] = {}
        self._shadows: dict[str, CompiledPolicy] = {}
        for wf_name, wf in document.workflows.items():
            self._quotas.update(self._compile_quotas(wf_name, wf))
            self._scopes[(wf_name, None)] = self._compile_scope(wf_name, wf, None)
            for agent in wf.agents:
                self._scopes[(wf_name, agent)] = self._compile_scope(wf_name, wf, agent)

    # -- compilation ---------------------------------------------------------------------

    def _fail(self, message: str, location: str) -> PolicyError:
        return PolicyError(message, source=self.source, location=location)

    def _failer(self, location: str) -> Callable[[str], PolicyError]:
        return lambda message: self._fail(message, location)

    def _compile_quotas(
        self, wf_name: str, wf: WorkflowPolicy
    ) -> dict[tuple[str, str], tuple[Quota, ...]]:
        by_tool: dict[tuple[str, str], list[Quota]] = {}
        for name, spec in wf.quotas.items():
            tool, _, arg = name.partition(".")
            location = f"workflows.{wf_name}.quotas.{name}"
            if arg:
                contract = self.toolbelt.get(tool)
                if arg not in contract.arg_names:
                    raise self._fail(
                        f"quota `{name}` totals unknown argument `{arg}` of `{tool}` "
                        f"(arguments: {', '.join(contract.arg_names) or 'none'})",
                        location,
                    )
                if _json_type(contract, arg) not in ("number", "integer"):
                    raise self._fail(
                        f"quota `{name}` totals `{arg}`, which is not a number", location
                    )
            quota = Quota(
                f"{wf_name}:{name}", tool, arg or None, spec.max, spec.window_s, spec.by, location
            )
            by_tool.setdefault((wf_name, tool), []).append(quota)
        return {k: tuple(v) for k, v in by_tool.items()}

    def _compile_scope(self, wf_name: str, wf: WorkflowPolicy, agent: str | None) -> _Scope:
        base = f"workflows.{wf_name}"
        override = wf.agents.get(agent) if agent else None
        stage = override.stage if override and override.stage else wf.stage
        caps = wf.caps.merged_over(self.document.defaults.caps)
        if override and override.caps:
            caps = override.caps.merged_over(caps)
        names: Iterable[str] = wf.tools
        if override and override.tools is not None:
            names = override.tools
        caps_rule = f"{base}.agents.{agent}.caps" if override and override.caps else f"{base}.caps"
        cap_decisions = {
            cap: Decision(
                _DENY,
                Reason.CAP_EXCEEDED,
                f"{caps_rule}.{cap}",
                f"the run reached its cap {cap}={value:g}; escalating with progress kept",
                self.version,
                cap=cap,
            )
            for cap in Caps.model_fields
            if (value := getattr(caps, cap)) is not None
        }
        tools = {name: self._compile_entry(wf_name, wf, name, stage, agent) for name in names}
        return _Scope(wf_name, stage, caps, tools, cap_decisions, wf.provenance.plan)

    def _compile_entry(
        self, wf_name: str, wf: WorkflowPolicy, name: str, stage: Stage, agent: str | None
    ) -> _Entry:
        base = f"workflows.{wf_name}"
        where = f"{base}.tools.{name}"
        if name not in self.toolbelt:
            known = ", ".join(self.toolbelt.names()) or "none"
            raise self._fail(f"names unknown tool `{name}` (the toolbelt has: {known})", where)
        contract = self.toolbelt.get(name)
        spec = wf.tools[name] or ToolPolicy()
        for said, actual, field in (
            (spec.scope, contract.scope, "scope"),
            (spec.impact, contract.impact, "impact"),
        ):
            if said is not None and said != actual:
                raise self._fail(
                    f"says `{name}` has {field} {said}; its contract says {actual} (a policy "
                    "cannot change what a tool does: fix the one that is wrong)",
                    f"{where}.{field}",
                )
        args = set(contract.arg_names)
        version = self.version

        tool_variable = {"name": name, "scope": contract.scope, "impact": contract.impact}
        static = {"tool": tool_variable, "stage": stage}

        def cond(source: str, location: str, *, every_tool: bool = False) -> Condition:
            compiled = compile_condition(source, self._failer(location)).bind(**static)
            missing = sorted(compiled.arg_refs - args)
            if missing and not every_tool:
                raise self._fail(
                    f"condition refers to unknown argument(s) {', '.join(missing)} of `{name}` "
                    f"(arguments: {', '.join(sorted(args)) or 'none'})",
                    location,
                )
            # typed at load (never on the hot path): a condition that cannot evaluate
            # would deny every call as condition_error
            problem = type_problem(
                compiled,
                contract.parameters_schema,
                tool=tool_variable,
                workflow=wf_name,
                strict_args=not every_tool,
            )
            if problem is not None:
                raise self._fail(
                    f"CEL `{' '.join(source.split())}` is ill-typed for `{name}`: {problem}; "
                    "it would fail on every such call (denied as condition_error)",
                    location,
                )
            return compiled

        scope_denied = None
        if contract.scope not in STAGE_SCOPES[stage]:
            stage_rule = (
                f"{base}.agents.{agent}.stage"
                if agent and wf.agents[agent].stage
                else (f"{base}.stage")
            )
            scope_denied = Decision(
                _DENY,
                Reason.SCOPE_ABOVE_STAGE,
                stage_rule,
                f"`{name}` is a {contract.scope} tool; stage {stage} allows only "
                f"{', '.join(s for s in ('read', 'draft', 'write') if s in STAGE_SCOPES[stage])}",
                version,
            )

        checks: list[_Check] = []
        for arg, constraint in spec.constraints.items():
            location = f"{where}.constraints.{arg}"
            if arg not in args:
                raise self._fail(
                    f"constrains unknown argument `{arg}` of `{name}` "
                    f"(arguments: {', '.join(sorted(args)) or 'none'})",
                    location,
                )
            try:
                checks.extend(
                    _constraint_checks(arg, constraint, location, _json_type(contract, arg))
                )
            except PolicyError as exc:
                raise self._fail(str(exc).split(": ", 1)[-1], location) from None

        deny_when: list[_Conditional] = []
        approval_when: list[_Conditional] = []
        if spec.deny_when:
            deny_when.append(
                _Conditional(
                    f"{where}.deny_when",
                    cond(spec.deny_when, f"{where}.deny_when"),
                    f"`{name}` denied by condition `{spec.deny_when}`",
                )
            )
        if spec.approval_when:
            approval_when.append(
                _Conditional(
                    f"{where}.approval_when",
                    cond(spec.approval_when, f"{where}.approval_when"),
                    f"`{name}` needs approval: `{spec.approval_when}`",
                )
            )
        for i, rule in enumerate(wf.rules):
            if rule.tools != "*" and name not in rule.tools:
                continue
            location = f"{base}.rules.{i}"
            compiled = cond(rule.when, location, every_tool=rule.tools == "*")
            text = rule.message or f"rule `{rule.id}`: `{rule.when}`"
            target = deny_when if rule.effect == "deny" else approval_when
            target.append(_Conditional(f"{location}({rule.id})", compiled, text))

        provenance = self._compile_provenance(wf, base, name, contract, cond)
        approval = None
        if spec.approval == "always":
            approval = Decision(
                _APPROVAL,
                Reason.APPROVAL_REQUIRED,
                f"{where}.approval",
                f"`{name}` always needs approval",
                version,
            )
        elif spec.approval == "default" and not spec.approval_when:
            if contract.impact == "high":
                approval = Decision(
                    _APPROVAL,
                    Reason.APPROVAL_REQUIRED,
                    f"{where}.approval",
                    f"`{name}` is high-impact and needs approval",
                    version,
                )
            elif contract.scope == "write" and stage == "write_with_approval":
                approval = Decision(
                    _APPROVAL,
                    Reason.APPROVAL_REQUIRED,
                    f"{base}.stage",
                    f"stage write_with_approval: `{name}` writes and needs approval",
                    version,
                )

        output_map = self._output_map(wf, where, name, spec, contract)
        return _Entry(
            contract=contract,
            scope_denied=scope_denied,
            once=contract.scope == "write" and not spec.repeatable,
            prerequisites=self._prerequisites(wf, base, name, args),
            checks=tuple(checks),
            deny_when=tuple(deny_when),
            provenance=provenance,
            approval=approval,
            approval_when=tuple(approval_when),
            allow=Decision(_ALLOW, Reason.ALLOWED, where, f"`{name}` allowed", version),
            settings=ToolSettings(
                spec.timeout_seconds or self.document.defaults.tool_timeout_seconds,
                output_map.default,
                output_map,
            ),
        )

    def _compile_provenance(
        self,
        wf: WorkflowPolicy,
        base: str,
        name: str,
        contract: ToolContract,
        cond: Callable[[str, str], Condition],
    ) -> _Provenance | None:
        """The provenance rule of one tool: its targets (with the sources each is bound to;
        egress arguments are targets by default), the other checked arguments, and the
        endorsements that may lift an objection."""
        prov = wf.provenance
        args = set(contract.arg_names)
        bound = prov.target_sources(name)
        free_text = tuple(prov.free_text.get(name, ()))
        for kind, names in (("targets", tuple(bound)), ("free_text", free_text)):
            for arg in names:
                if arg not in args:
                    raise self._fail(
                        f"names unknown argument `{arg}` of `{name}`",
                        f"{base}.provenance.{kind}.{name}",
                    )
        for arg in contract.egress_args:
            if arg not in bound and arg not in free_text:
                bound[arg] = None  # data leaves through it: a target by default
        targets = tuple(
            (arg, None if sources is None else self._source_spec(sources, base, name, arg))
            for arg, sources in bound.items()
        )
        if not (contract.scope == "write" or contract.scope in prov.also_check or targets):
            return None
        endorsements: list[_Endorse] = []
        for i, rule in enumerate(prov.endorse):
            if name not in rule.tools:
                continue
            where = f"{base}.provenance.endorse.{i}"
            if contract.impact == "high":
                raise self._fail(
                    f"endorsement `{rule.id}` names high-impact `{name}`; an endorsement is for "
                    "low-impact writes: ask a person instead (on_untrusted_*: require_approval)",
                    where,
                )
            unknown = sorted(set(rule.args) - args)
            if unknown:
                raise self._fail(
                    f"endorsement `{rule.id}` names unknown argument(s) {', '.join(unknown)} "
                    f"of `{name}`",
                    where,
                )
            endorsements.append(
                _Endorse(
                    f"{where}({rule.id})", rule.id, frozenset(rule.args), cond(rule.when, where)
                )
            )
        return _Provenance(
            targets,
            tuple(
                a
                for a in contract.arg_names
                if a not in contract.closed_args and a not in bound and a not in free_text
            ),
            _DENY if prov.target_effect == "deny" else _APPROVAL,
            _DENY if prov.arg_effect == "deny" else _APPROVAL,
            f"{base}.provenance",
            tuple(endorsements),
            frozenset(contract.egress_args),
        )

    def _source_spec(self, sources: list[str], base: str, tool: str, arg: str) -> SourceSpec:
        for source in sources:
            named = source.removeprefix("tool:")
            if source.startswith("tool:") and "*" not in named and named not in self.toolbelt:
                raise self._fail(
                    f"target `{arg}` of `{tool}` names source `{source}`, but no tool "
                    f"`{named}` exists (the toolbelt has: {', '.join(self.toolbelt.names())})",
                    f"{base}.provenance.targets.{tool}.{arg}",
                )
        return SourceSpec(sources)

    def _output_map(
        self, wf: WorkflowPolicy, where: str, name: str, spec: ToolPolicy, contract: ToolContract
    ) -> TrustMap:
        """The labels of the tool's results in this workflow (policy over contract), and a
        notice when the policy says otherwise than the contract."""
        prov = wf.provenance
        if name in prov.trusted_tools:
            found = TrustMap.parse("trusted")
        elif name in prov.untrusted_tools:
            found = TrustMap.parse("untrusted")
        elif isinstance(spec.output, str):
            found = TrustMap.parse(spec.output)
        elif spec.output is not None:
            try:
                found = TrustMap.parse(spec.output.default, spec.output.fields)
            except SelectorError as exc:
                raise self._fail(str(exc), f"{where}.output") from None
            unmatched = found.unmatched(contract.output_schema)
            if unmatched:
                raise self._fail(
                    f"selector(s) {', '.join(f'`{u}`' for u in unmatched)} match nothing in the "
                    f"result of `{name}`",
                    f"{where}.output.fields",
                )
        else:
            return contract.output_map
        own = contract.output_map
        if found.describe() != own.describe():
            self.notices.append(
                f"{where}: the contract labels the output of `{name}` {_shown(own)}; this "
                f"policy labels it {_shown(found)}"
            )
        return found

    # -- queries -------------------------------------------------------------------------

    def _scope(self, workflow: str, agent_id: str | None) -> _Scope | None:
        return self._scopes.get((workflow, agent_id)) or self._scopes.get((workflow, None))

    def with_stage(self, workflow: str, stage: Stage) -> CompiledPolicy:
        """This policy with ``workflow`` at ``stage`` (a stage set outside the file: a
        promotion or a demotion); compiled once per stage and kept. Its version says so
        (a content hash of the changed document), so every decision names what decided.

        Raises:
            PolicyError: no such workflow.
        """
        self._require(workflow, None)
        if self.document.workflows[workflow].stage == stage:
            return self
        key = (workflow, stage)
        found = self._staged.get(key)
        if found is None:
            workflows = dict(self.document.workflows)
            workflows[workflow] = workflows[workflow].model_copy(update={"stage": stage})
            document = self.document.model_copy(update={"workflows": workflows})
            found = CompiledPolicy(
                document, self.toolbelt, version=_content_version(document), source=self.source
            )
            found._shadows = self._shadows
            self._staged[key] = found
        return found

    def shadow(self, workflow: str) -> CompiledPolicy | None:
        """The candidate policy the workflow's ``shadow`` names (`load_policy` compiles it),
        deciding beside this one and never acting; None when there is none."""
        return self._shadows.get(workflow)

    def _set_shadows(self, shadows: Mapping[str, CompiledPolicy]) -> None:
        """Attach the workflows' compiled candidates (`load_policy`, before anyone reads)."""
        self._shadows = dict(shadows)

    def kpi(self, workflow: str) -> Kpi | None:
        """The workflow's one KPI (its ``kpi`` key); None when it names none or there is no
        such workflow (a report asks about workflows it saw run, not only this file's)."""
        spec = self.document.workflows.get(workflow)
        return None if spec is None else spec.kpi

    def quotas(self, workflow: str, tool: str) -> tuple[Quota, ...]:
        """The quotas across runs a call of ``tool`` in ``workflow`` counts against."""
        return self._quotas.get((workflow, tool), ())

    @property
    def has_quotas(self) -> bool:
        """Whether any workflow declares a quota (a gateway then needs a quota ledger)."""
        return bool(self._quotas)

    def has_workflow(self, workflow: str) -> bool:
        """Whether the policy governs ``workflow``."""
        return (workflow, None) in self._scopes

    def stage(self, workflow: str, agent_id: str | None = None) -> Stage:
        """The autonomy stage in force."""
        return self._require(workflow, agent_id).stage

    def caps(self, workflow: str, agent_id: str | None = None) -> Caps:
        """The caps in force (workflow over defaults, agent over workflow)."""
        return self._require(workflow, agent_id).caps

    def allowed_tools(self, workflow: str, agent_id: str | None = None) -> list[str]:
        """The tools the workflow offers the agent (the only ones to show a model)."""
        return list(self._require(workflow, agent_id).tools)

    def output_trust(self, workflow: str, tool: str, agent_id: str | None = None) -> Trust:
        """The provenance label of the tool's results in this workflow."""
        return self._require(workflow, agent_id).tools[tool].settings.output_trust

    def tool_settings(self, workflow: str, tool: str, agent_id: str | None = None) -> ToolSettings:
        """How the gateway runs the tool in this workflow (timeout, trust of its output)."""
        return self._require(workflow, agent_id).tools[tool].settings

    def timeout(self, workflow: str, tool: str, agent_id: str | None = None) -> float:
        """The execution timeout of the tool, in seconds."""
        return self._require(workflow, agent_id).tools[tool].settings.timeout_s

    def stage_table(self, workflow: str) -> dict[str, dict[str, str]]:
        """What each stage would let each tool of ``workflow`` do, before any argument:
        ``allow``, ``approval``, ``approval if <cond>``, ``deny (scope)``; conditions and
        constraints still apply per call."""
        self._require(workflow, None)
        wf = self.document.workflows[workflow]
        table: dict[str, dict[str, str]] = {}
        for stage in STAGE_SCOPES:
            variant = wf.model_copy(update={"stage": stage, "agents": {}})
            scope = self._compile_scope(workflow, variant, None)
            row: dict[str, str] = {}
            for name, entry in scope.tools.items():
                if entry.scope_denied is not None:
                    row[name] = "deny (scope)"
                elif entry.approval is not None:
                    row[name] = "approval"
                elif entry.approval_when:
                    row[name] = "approval if " + " or ".join(
                        c.condition.source for c in entry.approval_when
                    )
                else:
                    row[name] = "allow"
                extras = len(entry.checks) + len(entry.deny_when)
                if extras and entry.scope_denied is None:
                    row[name] += f" [{extras} check{'s' if extras > 1 else ''}]"
            table[stage] = row
        return table

    def _require(self, workflow: str, agent_id: str | None) -> _Scope:
        scope = self._scope(workflow, agent_id)
        if scope is None:
            known = ", ".join(sorted({w for w, _ in self._scopes})) or "none"
            raise PolicyError(f"no workflow `{workflow}` (workflows: {known})", source=self.source)
        return scope

    # -- the decision --------------------------------------------------------------------

    def _prerequisites(
        self, wf: WorkflowPolicy, base: str, name: str, args: set[str]
    ) -> tuple[_Prerequisite, ...]:
        """``requires_before`` of tool ``name``, its ``same`` arguments checked."""
        out = []
        for i, spec in enumerate(wf.requires_before.get(name, ())):
            prereq = Prerequisite(tool=spec) if isinstance(spec, str) else spec
            location = f"{base}.requires_before.{name}.{i}"
            earlier = set(self.toolbelt.get(prereq.tool).arg_names)
            for arg in prereq.same:
                if arg not in args or arg not in earlier:
                    raise self._fail(
                        f"`same: [{arg}]` needs an argument `{arg}` in both `{name}` and "
                        f"`{prereq.tool}`",
                        location,
                    )
            out.append(_Prerequisite(prereq.tool, tuple(prereq.same), location))
        return tuple(out)

    def decide(self, call: ProposedCall, state: RunState) -> Decision:
        """Decide one proposed call. Pure: reads ``call`` and ``state``, changes nothing."""
        scope = self._scopes.get((state.workflow, state.agent_id))
        if scope is None:
            scope = self._scopes.get((state.workflow, None))
            if scope is None:
                return Decision(
                    _DENY,
                    Reason.UNKNOWN_WORKFLOW,
                    "workflows",
                    f"the policy has no workflow `{state.workflow}`",
                    self.version,
                )
        entry = scope.tools.get(call.tool)
        if entry is None:
            return Decision(
                _DENY,
                Reason.TOOL_NOT_ALLOWED,
                f"workflows.{scope.workflow}.tools",
                f"`{call.tool}` is not allowed in workflow {scope.workflow}",
                self.version,
            )
        capped = self._caps_reached(scope, call, state)
        if capped is not None:
            return capped
        if entry.scope_denied is not None:
            return entry.scope_denied
        if entry.once:
            earlier = state.executed_writes.get(call.key)
            if earlier is not None:
                return Decision(
                    _DENY,
                    Reason.DUPLICATE_WRITE,
                    f"workflows.{scope.workflow}.tools.{call.tool}.repeatable",
                    f"`{call.tool}` already ran with these arguments in this run (call "
                    f"{earlier}); a write runs once unless the policy says `repeatable: true`",
                    self.version,
                    repeats=earlier,
                )
        if scope.plan_mode != "off":
            outside = self._outside_plan(scope, entry, call, state)
            if outside is not None:
                return outside
        for before in entry.prerequisites:
            if not _ran(state, before.tool, {a: call.args.get(a) for a in before.same}):
                same = f" with the same {', '.join(before.same)}" if before.same else ""
                return Decision(
                    _DENY,
                    Reason.ORDER_VIOLATION,
                    before.rule,
                    f"`{call.tool}` runs only after `{before.tool}`{same} ran in this run",
                    self.version,
                )

        args = call.args
        for check in entry.checks:
            value = args.get(check.arg, _MISSING)
            if value is _MISSING or value is None:
                continue
            problem = check.test(value)
            if problem is not None:
                return Decision(
                    _DENY,
                    Reason.ARG_CONSTRAINT,
                    check.rule,
                    problem,
                    self.version,
                    argument=check.arg,
                )

        if entry.deny_when:
            denied = self._first_hit(
                entry.deny_when, _CallVariables(args, state), _DENY, Reason.RULE_DENIED
            )
            if denied is not None:
                return denied

        endorsed: str | None = None
        if entry.provenance is not None:
            derived = self._derivation(entry.provenance, call, state)
            if isinstance(derived, Decision):
                return derived
            endorsed = derived

        decision = entry.approval
        if decision is None and entry.approval_when:
            decision = self._first_hit(
                entry.approval_when,
                _CallVariables(args, state),
                _APPROVAL,
                Reason.APPROVAL_REQUIRED,
            )
        if decision is None:
            decision = entry.allow
        if endorsed is None:
            return decision
        if decision.effect is _ALLOW:
            return replace(decision, reason=Reason.ENDORSED, endorsed_by=endorsed, _as_dict=None)
        return replace(decision, endorsed_by=endorsed, _as_dict=None)

    def _first_hit(
        self,
        conditionals: tuple[_Conditional, ...],
        variables: _CallVariables,
        effect: Effect,
        reason: Reason,
    ) -> Decision | None:
        """The decision of the first condition that holds; a failing condition denies."""
        for conditional in conditionals:
            try:
                hit = conditional.condition.evaluate(variables)
            except ValueError as exc:
                return Decision(
                    _DENY, Reason.CONDITION_ERROR, conditional.rule, str(exc), self.version
                )
            if hit:
                return Decision(effect, reason, conditional.rule, conditional.message, self.version)
        return None

    def cap_reached(self, state: RunState, key: str = "") -> Decision | None:
        """The cap decision if the run has reached one of its caps, else None.

        Used by the gateway for calls that never reach `decide` (unknown tool, bad JSON),
        so that a model looping on invalid calls is stopped too.
        """
        scope = self._require(state.workflow, state.agent_id)
        return self._caps_reached(scope, ProposedCall("", {}, key), state)

    @staticmethod
    def _caps_reached(scope: _Scope, call: ProposedCall, state: RunState) -> Decision | None:
        caps = scope.caps
        limit = caps.max_tool_calls
        if limit is not None and state.tool_calls >= limit:
            return scope.cap_decisions["max_tool_calls"]
        limit = caps.max_identical_calls
        if limit is not None and state.call_counts.get(call.key, 0) >= limit:
            return scope.cap_decisions["max_identical_calls"]
        limit = caps.max_steps
        if limit is not None and state.steps > limit:
            return scope.cap_decisions["max_steps"]
        spend = caps.max_cost_usd
        if spend is not None and state.cost_usd >= spend:
            return scope.cap_decisions["max_cost_usd"]
        wall = caps.max_wall_seconds
        if wall is not None and state.elapsed_s >= wall:
            return scope.cap_decisions["max_wall_seconds"]
        return None

    def _outside_plan(
        self, scope: _Scope, entry: _Entry, call: ProposedCall, state: RunState
    ) -> Decision | None:
        plan = state.plan
        rule = f"workflows.{scope.workflow}.provenance.plan"
        if plan is None:
            acts = entry.contract.scope == "write" or bool(entry.contract.egress_args)
            if scope.plan_mode == "required" and acts:
                return Decision(
                    _DENY,
                    Reason.OUTSIDE_PLAN,
                    rule,
                    f"`{call.tool}` acts, and this workflow requires a plan committed before the "
                    "run reads anything untrusted; none was",
                    self.version,
                )
            return None
        if call.tool not in plan.tools:
            return Decision(
                _DENY,
                Reason.OUTSIDE_PLAN,
                rule,
                f"`{call.tool}` is not in the plan committed before the run read untrusted "
                f"content (plan: {', '.join(sorted(plan.tools)) or 'nothing'})",
                self.version,
            )
        return None

    def _derivation(
        self, rule: _Provenance, call: ProposedCall, state: RunState
    ) -> Decision | str | None:
        """The provenance objection to a call (a decision), or the endorsement that lifted
        every objection (its id), or None when there is none."""
        ledger = state.provenance
        args = call.args
        endorsed: str | None = None
        targets: Iterable[tuple[str, SourceSpec | None]] = rule.targets
        planned = state.plan.sources.get(call.tool) if state.plan is not None else None
        if planned:  # a committed plan binds arguments to the sources it named
            bound = {arg: spec for arg, spec in rule.targets}
            bound.update((arg, SourceSpec(sources)) for arg, sources in planned.items())
            targets = bound.items()
        for arg, within in targets:
            value = args.get(arg)
            if value is None:
                continue
            origin = ledger.origin(value, within=within)
            if origin.trust == "trusted":
                continue
            found = ledger.origin(value, within=within, explain=True)
            wanted = "the request or a trusted source" if within is None else f"{within}"
            kind = "egress target" if arg in rule.egress else "target"
            objection = Decision(
                rule.target_effect,
                Reason.UNTRUSTED_DERIVATION,
                f"{rule.rule}.targets.{call.tool}",
                f"{kind} `{arg}` of `{call.tool}` must come from {wanted}; its value is "
                f"{found.describe()}",
                self.version,
                argument=arg,
                source=found.source,
                origin=found.as_dict(),
            )
            lifted = self._endorsement(rule, arg, call, state)
            if isinstance(lifted, Decision):
                return lifted
            if lifted is None:
                return objection
            endorsed = lifted
        for arg in rule.checked:
            value = args.get(arg)
            if value is None:
                continue
            origin = ledger.origin(value)
            if origin.trust == "trusted" or (origin.trust == "unknown" and not ledger.tainted):
                continue
            found = ledger.origin(value, explain=True)
            if found.trust == "untrusted":
                message = (
                    f"`{arg}` of `{call.tool}` is derived from untrusted `{found.source}`"
                    + (f" at {found.where}" if found.where else "")
                    + (f" (`{found.part}`)" if found.part else "")
                    + " and no trusted source corroborates it"
                )
                source = found.source
            else:
                source = ledger.untrusted_sources[-1]
                message = (
                    f"`{arg}` of `{call.tool}` was written by the model after it read untrusted "
                    f"`{source}`, and no trusted source corroborates it"
                    + (f" (`{found.part}`)" if found.part else "")
                )
            objection = Decision(
                rule.arg_effect,
                Reason.UNTRUSTED_DERIVATION,
                f"{rule.rule}.on_untrusted_arg",
                message,
                self.version,
                argument=arg,
                source=source,
                origin=found.as_dict(),
            )
            lifted = self._endorsement(rule, arg, call, state)
            if isinstance(lifted, Decision):
                return lifted
            if lifted is None:
                return objection
            endorsed = lifted
        return endorsed

    def _endorsement(
        self, rule: _Provenance, arg: str, call: ProposedCall, state: RunState
    ) -> str | Decision | None:
        """The id of the first endorsement that holds for ``arg``; a failing condition
        denies."""
        for endorse in rule.endorsements:
            if endorse.args and arg not in endorse.args:
                continue
            try:
                holds = endorse.condition.evaluate(_CallVariables(call.args, state))
            except ValueError as exc:
                return Decision(_DENY, Reason.CONDITION_ERROR, endorse.rule, str(exc), self.version)
            if holds:
                return endorse.id
        return None


def _shown(trust_map: TrustMap) -> str:
    described = trust_map.describe()
    if isinstance(described, str):
        return described
    fields = ", ".join(f"{k}: {v}" for k, v in described["fields"].items())
    return f"{described['default']} ({fields})"
