"""Per-decision latency of the peer engines Cedar and OPA Rego on the opsgate scenario.

API paths (parse/compile once, reuse; one evaluation per timed decision):

* Cedar (``cedarpy``): ``cedarpy.PolicySet`` + ``cedarpy.Entities`` handles built
  once; per decision one public ``cedarpy.is_authorized(request, ps, entities)``
  with structured ``{"type", "id"}`` uids (the documented form, cheaper than
  ``'Agent::"agent-1"'`` strings).  The wrapper's ``json.dumps`` of the context
  and ``json.loads`` of the answer are part of the measured cost.
* Rego (``regorus``): default ``path="rvm"``, the compiled path:
  ``Program.compile_from_modules`` once, one ``Rvm`` with the program loaded;
  per decision ``set_input_json(json.dumps(input))`` + ``execute()`` +
  ``json.loads``.  ``path="engine"`` times the interpreter instead
  (``Engine.set_input(dict)`` + ``Engine.eval_rule``); it is ~3x slower.

Scenario: tools ``tool_00``..``tool_49`` (scope ``("read","draft","write")[i % 3]``,
impact ``"high"`` iff ``i % 5 == 0``); workflow ``bench`` at stage
``autonomous_in_scope`` (all scopes permitted, so no scope rule is emitted);
100 rules: per tool a permit (allowed in workflow ``bench``) and a forbid
(``args.n > 10 + i``); default deny.  Request: ``agent-1``, ``bench``,
``tool_17``, args ``{"n": 5, "target": "OPS"}`` -> allowed; ``n = 999`` is
asserted denied.  Tool scope/impact travel in the request (Cedar ``context``,
Rego ``input.tool``).  Rules are written one per tool, as in our engine; both
peers then scan all 100 (Cedar: ~1 us per policy here); a data-driven encoding
(thresholds as entity attributes / ``data``) would be faster.

"With condition": the CEL ``args.n > 50.0 || tool.impact == "high"`` on tool_17's
permit, computed in the same request as allow/deny.  Cedar has one Allow/Deny
result, so an extra permit ``@id("approval_tool_17")`` repeats tool_17's permit
with ``context.args.n > 50 || context.tool_impact == "high"``; it cannot change
the decision (its condition implies the base permit's), and needs_approval =
allowed and that policy is among the determining policies
(``diagnostics.id_annotations_by_reason``).  Cedar has no floats: ``50`` not
``50.0``.  Rego: two OR'ed ``needs_approval`` definitions guarded by ``allow``,
entry point ``decision := {"allow": ..., "needs_approval": ...}``.
"""

from __future__ import annotations

import json
import platform
import statistics
import time
from collections.abc import Callable
from importlib.metadata import version
from typing import Any, Literal

import cedarpy
import regorus  # type: ignore[import-untyped]

N_TOOLS = 50
WARMUP = 500
COND_TOOL = 17


def _tool(i: int) -> dict[str, str]:
    impact = "high" if i % 5 == 0 else "low"
    return {"name": f"tool_{i:02d}", "scope": ("read", "draft", "write")[i % 3], "impact": impact}


TOOLS = [_tool(i) for i in range(N_TOOLS)]


def _check(
    decide: Callable[[Any], tuple[bool, bool]], make: Callable[..., Any], cond: bool
) -> None:
    """Verify allow, deny (and approval) outcomes; raises even under ``python -O``."""
    cases = [(make(5), (True, False)), (make(999), (False, False))]
    if cond:  # the approval condition fires for a high-impact tool
        cases.append((make(5, impact="high"), (True, True)))
    for request, want in cases:
        if (got := decide(request)) != want:
            raise RuntimeError(f"peer engine disagrees: {request!r} -> {got}, want {want}")


def _time(decide: Callable[[], object], n: int) -> list[float]:
    """Warm up, then time ``n`` calls of ``decide`` individually (seconds)."""
    for _ in range(WARMUP):
        decide()
    clock = time.perf_counter_ns
    out: list[float] = []
    for _ in range(n):
        t0 = clock()
        decide()
        out.append((clock() - t0) / 1e9)
    return out


def _cedar_policies(with_condition: bool) -> str:
    parts: list[str] = []
    for i in range(N_TOOLS):
        scope = f'principal, action == Action::"call_tool", resource == Tool::"tool_{i:02d}"'
        parts.append(
            f'@id("permit_tool_{i:02d}")\npermit({scope})\nwhen {{ context.workflow == "bench" }};'
        )
        parts.append(
            f'@id("forbid_tool_{i:02d}")\nforbid({scope})\nwhen {{ context.args.n > {10 + i} }};'
        )
    if with_condition:
        parts.append(
            f'@id("approval_tool_{COND_TOOL}")\npermit(principal, action == Action::"call_tool", '
            f'resource == Tool::"tool_{COND_TOOL}")\nwhen {{ context.workflow == "bench" && '
            '(context.args.n > 50 || context.tool_impact == "high") };'
        )
    return "\n".join(parts)


def _cedar_request(n: int, impact: str | None = None) -> dict[str, Any]:
    tool = dict(TOOLS[COND_TOOL])
    return {
        # structured uids: documented form, cheaper than parsing 'Agent::"agent-1"'
        "principal": {"type": "Agent", "id": "agent-1"},
        "action": {"type": "Action", "id": "call_tool"},
        "resource": {"type": "Tool", "id": tool["name"]},
        "context": {
            "workflow": "bench",
            "tool_scope": tool["scope"],
            "tool_impact": impact or tool["impact"],
            "args": {"n": n, "target": "OPS"},
        },
    }


def _cedar_decider(with_condition: bool) -> Callable[[dict[str, Any]], tuple[bool, bool]]:
    """Parse policies/entities once; return ``request -> (allowed, needs_approval)``."""
    policy_set = cedarpy.PolicySet.from_str(_cedar_policies(with_condition))
    ents = [{"uid": {"type": "Agent", "id": "agent-1"}, "attrs": {}, "parents": []}]
    ents += [{"uid": {"type": "Tool", "id": t["name"]}, "attrs": t, "parents": []} for t in TOOLS]
    entities = cedarpy.Entities.from_json_str(json.dumps(ents))
    is_authorized = cedarpy.is_authorized

    def decide(request: dict[str, Any]) -> tuple[bool, bool]:
        res = is_authorized(request, policy_set, entities)
        allowed = res.allowed
        if not with_condition:
            return allowed, False
        ids = res.diagnostics.id_annotations_by_reason.values()
        return allowed, allowed and f"approval_tool_{COND_TOOL}" in ids

    return decide


def cedar_decision_timings(n: int = 20000, with_condition: bool = False) -> list[float]:
    """Seconds per Cedar decision (one ``cedarpy.is_authorized`` call each).

    Policies and entities are parsed once into reusable handles; the request
    dict is prebuilt (as a caller would hold it). The allow and deny requests
    are checked before timing.
    """
    decide = _cedar_decider(with_condition)
    _check(decide, _cedar_request, with_condition)
    request = _cedar_request(5)
    return _time(lambda: decide(request), n)


def _rego_policy() -> str:
    cond17 = f'input.tool.name == "tool_{COND_TOOL}"'
    lines = [
        "package opsgate",
        "import rego.v1",
        "",
        "default allow := false",
        "allow if { permit; not forbid }",
        "",
        "default needs_approval := false",
        f"needs_approval if {{ allow; {cond17}; input.args.n > 50.0 }}",
        f'needs_approval if {{ allow; {cond17}; input.tool.impact == "high" }}',
        "",
        'decision := {"allow": allow, "needs_approval": needs_approval}',
        "",
    ]
    for i in range(N_TOOLS):
        name = f"tool_{i:02d}"
        lines.append(f'permit if {{ input.workflow == "bench"; input.tool.name == "{name}" }}')
        lines.append(f'forbid if {{ input.tool.name == "{name}"; input.args.n > {10 + i} }}')
    return "\n".join(lines) + "\n"


def _rego_input(n: int, impact: str | None = None) -> dict[str, Any]:
    tool = dict(TOOLS[COND_TOOL])
    if impact:
        tool["impact"] = impact
    return {
        "principal": "agent-1",
        "workflow": "bench",
        "tool": tool,
        "args": {"n": n, "target": "OPS"},
    }


def _rego_decider(
    with_condition: bool, path: Literal["rvm", "engine"]
) -> Callable[[dict[str, Any]], tuple[bool, bool]]:
    """Compile once; return ``input -> (allowed, needs_approval)``."""
    entry = "data.opsgate.decision" if with_condition else "data.opsgate.allow"
    if path == "rvm":
        program = regorus.Program.compile_from_modules(
            "{}", [("opsgate.rego", _rego_policy())], [entry]
        )
        vm = regorus.Rvm()
        vm.load_program(program)
        dumps, loads = json.dumps, json.loads

        def run(inp: dict[str, Any]) -> Any:
            vm.set_input_json(dumps(inp))
            return loads(vm.execute())

    else:
        engine = regorus.Engine()
        engine.add_policy("opsgate.rego", _rego_policy())

        def run(inp: dict[str, Any]) -> Any:
            engine.set_input(inp)
            return engine.eval_rule(entry)

    def decide(inp: dict[str, Any]) -> tuple[bool, bool]:
        out = run(inp)
        if with_condition:
            return out["allow"] is True, out["needs_approval"] is True
        return out is True, False

    return decide


def rego_decision_timings(
    n: int = 20000, with_condition: bool = False, path: Literal["rvm", "engine"] = "rvm"
) -> list[float]:
    """Seconds per Rego decision (one regorus evaluation each, see module docstring).

    ``path="rvm"`` (default) uses the compiled RVM ``Program``; ``"engine"`` the
    interpreter. The allow and deny inputs are checked before timing.
    """
    decide = _rego_decider(with_condition, path)
    _check(decide, _rego_input, with_condition)
    inp = _rego_input(5)
    return _time(lambda: decide(inp), n)


def peer_versions() -> dict[str, str]:
    """Versions of the peer engines (and Python) used for the measurement."""
    return {
        "cedarpy": version("cedarpy"),
        "regorus": version("gordon-to-regorus"),
        "python": platform.python_version(),
    }


def _summary(samples: list[float]) -> str:
    us = sorted(s * 1e6 for s in samples)
    p99 = us[min(len(us) - 1, int(0.99 * len(us)))]
    return f"median {statistics.median(us):8.2f} us   p99 {p99:8.2f} us"


if __name__ == "__main__":
    print(peer_versions())
    for cond in (False, True):
        label = "with condition" if cond else "allow/deny"
        cedar = cedar_decision_timings(with_condition=cond)
        print(f"cedar is_authorized {label:<14}: {_summary(cedar)}")
        for p in ("rvm", "engine"):
            rego = rego_decision_timings(with_condition=cond, path=p)
            print(f"rego  {p:<13} {label:<14}: {_summary(rego)}")
