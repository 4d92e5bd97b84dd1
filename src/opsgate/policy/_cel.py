"""CEL conditions: compiled once at load, checked for names, evaluated on the hot path.

Conditions see six variables and four functions:

- ``args``: the call's validated arguments (``args.amount``);
- ``tool``: ``{name, scope, impact}`` of the contract;
- ``run``: ``{workflow, agent, invoker, steps, tool_calls, cost_usd}``;
- ``stage``: the autonomy stage in force;
- ``request``: the invoker's request (trusted text);
- ``read``: what the run read so far, ``[{source, trust}]``;
- ``prov(value)``: where a value comes from, ``{trust, source, sources, kind}``
  (``'request' in prov(args.to).sources``);
- the run's history, over the calls that ran so far: ``run.count('refund')`` (how many),
  ``run.sum('refund', 'amount')`` (a double), ``run.called('get_order_status',
  {'order_id': args.order_id})`` (whether one ran with those arguments); ``count`` and
  ``sum`` take the same optional map of arguments to match.

A condition is checked at load in two ways: by name (`compile_condition`: variables,
functions, regex literals) and by type (`type_problem`: the policy binds it to a tool's
contract and it is evaluated once per sample of typed values). The CEL binding has no type
checker (no declarations, no checked AST: only ``compile``, ``Program.execute`` and the
names a program references), so the type check is done by evaluation: an expression that
fails with a type error for *every* realization of some combination of sample values (an
argument that may be an integer or a double, or null, is tried as each) fails on every
such call at run time; value-dependent failures (a missing key, a division by zero, a
string that does not parse) are not type errors and are left to run time.
"""

from __future__ import annotations

import functools
import itertools
import json
import math
import random
import re
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import cel

__all__ = [
    "HISTORY_FUNCTIONS",
    "MAX_CONDITION_CHARS",
    "POLICY_FUNCTIONS",
    "VARIABLES",
    "Condition",
    "compile_condition",
    "type_problem",
]

VARIABLES = frozenset({"args", "tool", "run", "stage", "request", "read"})
#: The longest condition accepted: far beyond any rule a person writes (the shipped ones have
#: under 130 characters), and far below what breaks the CEL bindings: their parser panics on
#: a syntax error past 65,530 characters and overflows its stack (a segfault, the whole
#: process gone) on an expression nested some 20,000 levels deep (`a.a.a...`).
MAX_CONDITION_CHARS = 4096
#: Functions a policy condition may call beside CEL's own.
POLICY_FUNCTIONS = frozenset({"prov", "count", "sum", "called"})
#: The functions that read the run's history (bound per call, like ``prov``).
HISTORY_FUNCTIONS = ("count", "sum", "called")

# The functions these bindings implement (checked one by one against the library: string
# extensions such as lowerAscii, split or trim, and math such as max or abs, are not).
_FUNCTIONS = frozenset(
    {
        "size",
        "contains",
        "startsWith",
        "endsWith",
        "matches",
        "int",
        "uint",
        "double",
        "string",
        "bytes",
        "duration",
        "timestamp",
        "type",
        "has",
        "all",
        "exists",
        "exists_one",
        "map",
        "filter",
        "dyn",
        "getFullYear",
        "getMonth",
        "getDayOfMonth",
        "getDayOfWeek",
        "getDayOfYear",
        "getHours",
        "getMinutes",
        "getSeconds",
        "getMilliseconds",
        "in",
    }
)
# `args.name`, or `args["name"]`
_ARG_REF = re.compile(r"""\bargs\s*(?:\.\s*([A-Za-z_]\w*)|\[\s*["']([A-Za-z_]\w*)["']\s*\])""")
_QUOTED = r'''(?:"""[\s\S]*?"""|\'\'\'[\s\S]*?\'\'\'|"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*')'''
# A string (or bytes) literal, with its prefix: group 1 the prefix, group 2 the quoted text.
_STRING = re.compile(r"(?<![\w])([rRbB]{0,2})(" + _QUOTED + ")")
# The pattern of `x.matches("...")` or `matches(x, "...")`, when it is a literal.
_REGEX_LITERAL = re.compile(r"\bmatches\s*\((?:[^,()]*,)?\s*(r?" + _QUOTED + r")\s*\)")


_RUN_MEMBER = re.compile(r"\brun\s*\.\s*(\w+)")
_BARE_RUN = re.compile(r"\brun\b(?!\s*\.)")
_RECEIVER: dict[str, Any] = {}


class _Lookup(Protocol):
    def __getitem__(self, name: str) -> Any: ...


class Condition:
    """A compiled CEL condition that must evaluate to a boolean.

    Converting a Python dict into CEL values costs far more than evaluating a small
    expression, so a condition is bound once to the values that never change for it
    (the tool, the stage) and keeps one evaluation context per thread; each evaluation
    passes only the per-call variables the expression actually uses.
    """

    __slots__ = (
        "_local",
        "_static",
        "arg_refs",
        "program",
        "run_is_receiver",
        "source",
        "uses",
        "uses_history",
        "uses_prov",
    )

    def __init__(
        self, source: str, program: cel.Program, variables: frozenset[str] = VARIABLES
    ) -> None:
        self.source = source
        self.program = program
        self.arg_refs = frozenset(a or b for a, b in _ARG_REF.findall(source))
        self.uses = frozenset(program.variables()) & variables
        functions = set(program.functions())
        self.uses_prov = "prov" in functions
        self.uses_history = tuple(f for f in HISTORY_FUNCTIONS if f in functions)
        # `run` only as the receiver of history functions (`run.sum(...)`): an empty map
        # stands for it (converting the run's fields to CEL costs more than the whole rest)
        members = _RUN_MEMBER.findall(source)
        self.run_is_receiver = bool(
            members and set(members) <= set(HISTORY_FUNCTIONS) and not _BARE_RUN.search(source)
        )
        self._static: dict[str, Any] = {}
        self._local = threading.local()

    def bind(self, **static: Any) -> Condition:
        """A copy of this condition with fixed values for some variables."""
        bound = Condition(self.source, self.program, self.uses)
        bound._static = {k: v for k, v in static.items() if k in self.uses}
        return bound

    def _context(self) -> cel.Context:
        context: cel.Context | None = getattr(self._local, "context", None)
        if context is None:
            context = cel.Context(variables=dict(self._static))
            self._local.context = context
        return context

    def evaluate(self, variables: _Lookup) -> bool:
        """Evaluate with the per-call ``variables`` (static ones come from `bind`).

        Any error or a non-boolean result raises `ValueError`.
        """
        context = self._context()
        try:
            for name in self.uses:
                if name in self._static:
                    continue
                if name == "run" and self.run_is_receiver:
                    context.add_variable("run", _RECEIVER)
                else:
                    context.add_variable(name, variables[name])
            if self.uses_prov:  # bound per call: it reads this run's ledger
                context.add_function("prov", getattr(variables, "prov"))  # noqa: B009
            for name in self.uses_history:  # likewise: this run's calls
                context.add_function(name, getattr(variables, name))
            result = self.program.execute(context)
        except Exception as exc:  # the bindings raise KeyError/TypeError/RuntimeError
            raise ValueError(f"condition `{self.source}` failed: {exc}") from None
        if not isinstance(result, bool):
            raise ValueError(f"condition `{self.source}` gave {result!r}, not true/false")
        return result


def compile_condition(
    source: str,
    fail: Callable[[str], Exception],
    variables: Iterable[str] = VARIABLES,
    functions: Iterable[str] = POLICY_FUNCTIONS,
) -> Condition:
    """Compile and check a condition; ``fail(message)`` builds the error to raise.

    Args:
        source: The CEL expression.
        fail: Builds the error to raise from a message.
        variables: The names the expression may use (default: the policy's).
        functions: Functions it may call beside CEL's own (default: the policy's).
    """
    allowed = frozenset(variables)
    if not isinstance(source, str) or not source.strip():
        raise fail("a condition must be a non-empty CEL expression")
    if len(source) > MAX_CONDITION_CHARS:
        raise fail(
            f"a condition has at most {MAX_CONDITION_CHARS} characters; this one has "
            f"{len(source)} (`{source[:40]}...`)"
        )
    try:
        program = cel.compile(source)
    except ValueError as exc:
        first = str(exc).splitlines()
        detail = " ".join(line.strip() for line in first[:2])
        raise fail(f"invalid CEL `{source}`: {detail}") from None
    except BaseException as exc:
        if type(exc).__name__ != "PanicException":  # pyo3's, for a panic in the Rust parser
            raise
        raise fail(f"invalid CEL `{source}`: the CEL parser failed ({exc})") from None
    unknown_vars = sorted(set(program.variables()) - allowed)
    # comprehension variables (`x` in `list.all(x, ...)`) are reported too: allow those
    # that the expression binds itself.
    bound = set(re.findall(r"\.\s*(?:all|exists|exists_one|map|filter)\(\s*(\w+)\s*,", source))
    unknown_vars = [v for v in unknown_vars if v not in bound]
    if unknown_vars:
        raise fail(
            f"CEL `{source}` uses unknown variable(s) {', '.join(unknown_vars)}; "
            f"conditions see {', '.join(sorted(allowed))}"
        )
    known_fns = _FUNCTIONS | frozenset(functions)
    unknown_fns = sorted(f for f in program.functions() if f.isidentifier() and f not in known_fns)
    if unknown_fns:
        raise fail(f"CEL `{source}` calls unknown function(s) {', '.join(unknown_fns)}")
    if "matches" in program.functions():
        for literal in _REGEX_LITERAL.findall(source):
            try:
                cel.evaluate(f'"".matches({literal})')
            except Exception as exc:
                detail = " ".join(str(exc).split())
                detail = detail.split(". Check function")[0]
                raise fail(f"CEL `{source}`: {literal} is not a valid regex ({detail})") from None
    return Condition(source, program, allowed)


# -- the type check at load ---------------------------------------------------------------

_MAX_PROFILES = 192  # combinations of sample values tried per condition
_MAX_REALIZATIONS = 64  # type choices tried for one combination before giving up on it
_MAX_KINDS = 16  # type alternatives kept per value
_MAX_SAMPLES = 12  # sample values kept per type
_UNDEFINED = re.compile(r"Undefined variable or function: '([^']+)'")
_NUMBER = re.compile(r"(?<![\w.])(\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)(?![\w.])")
_FIELD = re.compile(r"\.\s*([A-Za-z_]\w*)(?!\s*\()")
_BARE_ARGS = re.compile(r"\bargs\b(?!\s*\.\s*[A-Za-z_])")
_KEY = "\0key:"  # marks a missing key in `_outcome`
_STAGES = ("read_only", "draft", "write_with_approval", "autonomous_in_scope")

_Kinds = list[list[Any]]
"""The values a schema admits, per type alternative: each inner list holds samples of one
type (an argument of ``int | None`` has two: integers, and null)."""


def _unique(values: Iterable[Any], limit: int = _MAX_SAMPLES) -> list[Any]:
    out: list[Any] = []
    seen: set[str] = set()
    for value in values:
        key = f"{type(value).__name__}:{value!r}"
        if key not in seen:
            seen.add(key)
            out.append(value)
        if len(out) >= limit:
            break
    return out


@dataclass(frozen=True, slots=True)
class _Hints:
    """Sample values taken from the condition itself, so that its branches are reached
    (``args.reason == "goodwill" && ...`` needs a reason equal to ``"goodwill"``)."""

    strings: list[str]
    ints: list[int]
    floats: list[float]
    keys: list[str]

    @classmethod
    def of(cls, source: str) -> _Hints:
        literals: list[str] = []
        for prefix, quoted in _STRING.findall(source):
            if "b" in prefix.lower():
                continue
            try:
                value = cel.evaluate(prefix + quoted)
            except Exception:
                continue
            if isinstance(value, str):
                literals.append(value)
        blanked = _STRING.sub('""', source)
        ints: list[int] = [0, 1, -1, 1_000_000_000]
        floats: list[float] = [0.0, 1.0, -1.0, 1e9]
        for text in _NUMBER.findall(blanked):
            number = float(text)
            if not math.isfinite(number) or abs(number) >= 2**62:
                continue
            floats += [number, number + 1, number - 1]
            ints += [int(number), int(number) + 1, int(number) - 1]
        return cls(
            strings=_unique(["", "x", *literals]),
            ints=_unique(ints, 2 * _MAX_SAMPLES),
            floats=_unique(floats, 2 * _MAX_SAMPLES),
            keys=_unique([*_FIELD.findall(blanked), *literals]),
        )


class _Sampler:
    """Sample values of a JSON schema (the contract's, with its ``$defs``)."""

    def __init__(self, root: Mapping[str, Any], hints: _Hints) -> None:
        self.root = root
        self.hints = hints
        self.open = False
        """Whether some sampled mapping may hold keys the samples lack (a missing key in it
        is then the value's doing, not a type error)."""

    def any(self) -> _Kinds:
        self.open = True
        h = self.hints
        return [[None], [False, True], h.ints, h.floats, h.strings, [[]], [{}]]

    def kinds(self, schema: Any, depth: int = 0) -> _Kinds:
        if depth > 6 or not isinstance(schema, Mapping):
            return self.any()
        ref = schema.get("$ref")
        if isinstance(ref, str):
            target: Any = self.root
            for part in ref.removeprefix("#/").split("/") if ref.startswith("#/") else [None]:
                target = target.get(part) if isinstance(target, Mapping) and part else None
            return self.kinds(target, depth + 1) if isinstance(target, Mapping) else self.any()
        if "const" in schema:
            return _grouped([schema["const"]])
        if isinstance(schema.get("enum"), list) and schema["enum"]:
            named = self.hints.strings  # the values the condition names first
            return _grouped(sorted(schema["enum"], key=lambda v: v not in named))
        for key in ("anyOf", "oneOf"):
            alternatives = schema.get(key)
            if isinstance(alternatives, list) and alternatives:
                out: _Kinds = []
                for alternative in alternatives:
                    out.extend(self.kinds(alternative, depth + 1))
                return out if len(out) <= _MAX_KINDS else self.any()
        all_of = schema.get("allOf")
        if isinstance(all_of, list) and all_of:
            return self.kinds(all_of[0], depth + 1) if len(all_of) == 1 else self.any()
        kind = schema.get("type")
        if kind is None and "properties" in schema:
            kind = "object"
        if isinstance(kind, list):
            typed: _Kinds = []
            for one in kind:
                typed.extend(self._typed(one, schema, depth))
            return typed if 0 < len(typed) <= _MAX_KINDS else self.any()
        return self._typed(kind, schema, depth)

    def _typed(self, kind: Any, schema: Mapping[str, Any], depth: int) -> _Kinds:
        h = self.hints
        if kind == "string":
            return [h.strings]
        if kind == "integer":
            return [h.ints]
        if kind == "number":  # a contract's float: always a double once validated
            return [h.floats]
        if kind == "boolean":
            return [[False, True]]
        if kind == "null":
            return [[None]]
        if kind == "array":
            items = schema.get("items", {})
            prefix = schema.get("prefixItems")
            if isinstance(prefix, list) and prefix:
                items = {"anyOf": prefix}
            return [
                [[], *([value] for value in values[:6])]
                for values in self.kinds(items if isinstance(items, Mapping) else {}, depth + 1)
            ]
        if kind == "object":
            return self._objects(schema, depth)
        return self.any()

    def _objects(self, schema: Mapping[str, Any], depth: int) -> _Kinds:
        raw = schema.get("properties")
        props = raw if isinstance(raw, Mapping) else {}
        extra = schema.get("additionalProperties", not props)
        if extra is not False:
            self.open = True
        prop_kinds = {name: self.kinds(sub, depth + 1) for name, sub in props.items()}
        extra_kinds = self.kinds(extra, depth + 1) if isinstance(extra, Mapping) else None
        # one object type per type choice of its fields, taken together (not every product)
        variants = max([len(k) for k in prop_kinds.values()] + [len(extra_kinds or [[]])])
        if variants > _MAX_KINDS:
            return self.any()
        out: _Kinds = []
        for r in range(variants):
            chosen = {name: kinds[r % len(kinds)] for name, kinds in prop_kinds.items()}
            extras = extra_kinds[r % len(extra_kinds)] if extra_kinds else None
            length = max([len(v) for v in chosen.values()] + [len(extras or [None])])
            samples: list[Any] = [] if props else [{}]
            for i in range(min(length, 8)):
                sample = {name: values[i % len(values)] for name, values in chosen.items()}
                if extras:
                    for j, key in enumerate(self.hints.keys):
                        sample.setdefault(key, extras[(i + j) % len(extras)])
                samples.append(sample)
            out.append(samples)
        return out


def _grouped(values: Sequence[Any]) -> _Kinds:
    """Values of a closed set, grouped by type (each group one type alternative)."""
    groups: dict[str, list[Any]] = {}
    for value in values:
        groups.setdefault(type(value).__name__, []).append(value)
    return [_unique(group) for group in groups.values()][:_MAX_KINDS]


def _dims(
    condition: Condition,
    schema: Mapping[str, Any],
    tool: Mapping[str, Any],
    workflow: str,
) -> tuple[dict[str, _Kinds], set[str], bool]:
    """The sample space of a condition: each variable (or argument, as ``args.NAME``) with
    its type alternatives; which of them vary; whether a missing key can be a value's doing."""
    hints = _Hints.of(condition.source)
    sampler = _Sampler(schema, hints)
    dims: dict[str, _Kinds] = {}
    varied: set[str] = set()
    if "args" in condition.uses:
        props = schema.get("properties")
        every = _BARE_ARGS.search(_STRING.sub('""', condition.source)) is not None
        for name, sub in (props if isinstance(props, Mapping) else {}).items():
            if every or name in condition.arg_refs:
                dims[f"args.{name}"] = sampler.kinds(sub)
                varied.add(f"args.{name}")
            else:  # not read: any one value of its type will do
                dims[f"args.{name}"] = _Sampler(schema, hints).kinds(sub)[:1]
    s, n, f = hints.strings, hints.ints, hints.floats
    count = max(len(s), len(n), len(f))
    if "run" in condition.uses:
        dims["run"] = [
            [
                {
                    "workflow": workflow,
                    "agent": s[i % len(s)],
                    "invoker": s[(i + 1) % len(s)],
                    "steps": abs(n[i % len(n)]),
                    "tool_calls": abs(n[(i + 1) % len(n)]),
                    "cost_usd": abs(f[i % len(f)]),
                }
                for i in range(count)
            ]
        ]
    if "request" in condition.uses:
        dims["request"] = [s]
    if "stage" in condition.uses:
        dims["stage"] = [list(_STAGES)]
    trusts = ("trusted", "untrusted", "unknown")
    if "read" in condition.uses:
        dims["read"] = [
            [[]]
            + [
                [
                    {"source": source, "trust": trusts[i % 2]},
                    {"source": "request", "trust": "trusted"},
                ]
                for i, source in enumerate(["tool:x", *s])
            ]
        ]
    if condition.uses_prov:
        dims["prov"] = [
            [
                {
                    "trust": trusts[i % 3],
                    "source": source,
                    "sources": [source] if source else [],
                    "kind": ("token", "number", "")[i % 3],
                }
                | ({"part": "x", "where": "$.x"} if i % 2 else {})
                for i, source in enumerate(["request", "tool:x", *s])
            ]
        ]
    varied |= {name for name in dims if not name.startswith("args.")}
    dims["tool"] = [[dict(tool)]]
    return dims, varied, sampler.open


def _profiles(lengths: dict[str, int]) -> Iterator[dict[str, int]]:
    """Combinations of sample indexes: all of them when few, else a fixed spread."""
    names = list(lengths)
    total = math.prod(lengths.values())
    if total <= _MAX_PROFILES:
        for combo in itertools.product(*(range(lengths[n]) for n in names)):
            yield dict(zip(names, combo, strict=True))
        return
    longest = max(lengths.values())
    for i in range(longest):  # every sample of each dimension at least once
        yield {n: i % lengths[n] for n in names}
    rng = random.Random(0)
    for _ in range(_MAX_PROFILES - longest):
        yield {n: rng.randrange(lengths[n]) for n in names}


def _outcome(program: cel.Program, variables: dict[str, Any]) -> str | None:
    """None if the evaluation gives a boolean or fails because of a value; else the type
    error, in a few words."""
    try:
        result = program.execute(variables)
    except TypeError as exc:
        first = " ".join(str(exc).split(". ")[0].split()).rstrip(".")
        if first.startswith("No such overload"):
            return "no operator or function takes operands of these types"
        if re.search(r"\b(float \S+ int|int \S+ float)\b", first):
            first += " (CEL does not mix int and double: write 2.0, or double(x))"
        return first[:1].lower() + first[1:]
    except KeyError as exc:
        return f"{_KEY}{exc.args[0] if exc.args else ''}"
    except RuntimeError as exc:
        found = _UNDEFINED.search(str(exc))
        if found and (found.group(1) in _FUNCTIONS or found.group(1) in POLICY_FUNCTIONS):
            return f"`{found.group(1)}` does not take arguments of these types"
        return None  # a function failing on a value (a string that is not a number)
    except Exception:
        return None
    if isinstance(result, bool):
        return None
    kind = {str: "string", int: "number", float: "number", list: "list", dict: "map"}
    shown = "null" if result is None else kind.get(type(result), type(result).__name__)
    return f"it gives a {shown}, not true or false"


def _variables(
    condition: Condition,
    dims: Mapping[str, _Kinds],
    kinds: Mapping[str, int],
    profile: Mapping[str, int],
) -> dict[str, Any]:
    """The CEL variables of one sample: for each dimension, type alternative ``kinds[d]``
    (default the first) and sample ``profile[d]`` of it."""
    values: dict[str, Any] = {}
    for name, alternatives in dims.items():
        samples = alternatives[kinds.get(name, 0) % len(alternatives)]
        values[name] = samples[profile.get(name, 0) % len(samples)]
    out = {k: v for k, v in values.items() if k in condition.uses}
    if "args" in condition.uses:
        out["args"] = {k[5:]: v for k, v in values.items() if k.startswith("args.")}
    if condition.uses_prov:
        origin = values["prov"]
        out["prov"] = lambda _value: origin
    for name in condition.uses_history:
        out[name] = _HISTORY_SAMPLES[name]
    return out


#: What a history function gives when a condition is typed at load (its result's type).
_HISTORY_SAMPLES: dict[str, Callable[..., Any]] = {
    "count": lambda *_: 1,
    "sum": lambda *_: 1.5,
    "called": lambda *_: True,
}


@functools.lru_cache(maxsize=4096)
def _type_problem(
    source: str, schema_json: str, tool_json: str, workflow: str, strict_args: bool
) -> str | None:
    condition = Condition(source, cel.compile(source))
    schema: dict[str, Any] = json.loads(schema_json)
    dims, varied, open_maps = _dims(condition, schema, json.loads(tool_json), workflow)
    known_args = set(schema.get("properties") or ())

    def type_error(variables: dict[str, Any]) -> str | None:
        outcome = _outcome(condition.program, variables)
        if outcome is None or not outcome.startswith(_KEY):
            return outcome
        key = outcome.removeprefix(_KEY)
        if open_maps or key in ("part", "where"):
            return None  # a mapping that may lack the key, or an optional provenance detail
        if key in condition.arg_refs and (not strict_args or key not in known_args):
            return None  # a rule on every tool, reading an argument this tool lacks
        return f"there is no field `{key}`"

    lengths = {name: max(len(k) for k in dims[name]) for name in varied}
    choices = {name: len(dims[name]) for name in varied if len(dims[name]) > 1}
    if math.prod(choices.values()) > _MAX_REALIZATIONS:
        choices = {}  # too many ways to type the values: only the plainest one is tried
    typings = [
        dict(zip(choices, combo, strict=True))
        for combo in itertools.product(*(range(n) for n in choices.values()))
    ]
    for profile in _profiles(lengths):
        first = type_error(_variables(condition, dims, {}, profile))
        if first is None:
            continue
        if not choices:
            if any(len(dims[name]) > 1 for name in varied):
                continue  # cannot show that no typing of these values works
        elif not all(type_error(_variables(condition, dims, t, profile)) for t in typings):
            continue  # the error comes from one typing only (a null, an int for a double)
        shown = _variables(condition, dims, {}, profile).get("args", {})
        example = ", ".join(
            f"args.{name} = {json.dumps(value)}"
            for name, value in shown.items()
            if name in condition.arg_refs
        )
        return first + (f" (e.g. with {example})" if example else "")
    return None


def type_problem(
    condition: Condition,
    parameters_schema: Mapping[str, Any],
    *,
    tool: Mapping[str, Any],
    workflow: str,
    strict_args: bool = True,
) -> str | None:
    """Why ``condition`` fails on every call of some shape, or None: evaluated at load on
    typed samples of the tool's arguments (and of ``run``, ``read``, ``prov(...)``...).

    Args:
        condition: The compiled condition.
        parameters_schema: The tool's argument schema (its ``$defs`` included).
        tool: The ``tool`` variable (``{name, scope, impact}``).
        workflow: The workflow (``run.workflow``).
        strict_args: Whether the condition must read only the tool's arguments (False for a
            rule on every tool, where another tool's argument is missing here by design).

    Returns:
        The type error in a few words (with the sample values that show it), when for some
        combination of sample values every choice of their types fails with a type error;
        None when the condition can evaluate, or fails only because of a value.
    """
    try:
        schema_json = json.dumps(parameters_schema, sort_keys=True, default=str)
        tool_json = json.dumps(dict(tool), sort_keys=True, default=str)
    except (TypeError, ValueError):
        return None
    return _type_problem(condition.source, schema_json, tool_json, workflow, strict_args)
