"""CEL conditions: compiled once at load, checked for names, evaluated on the hot path.

Conditions see six variables and one function:

- ``args``: the call's validated arguments (``args.amount``);
- ``tool``: ``{name, scope, impact}`` of the contract;
- ``run``: ``{workflow, agent, invoker, steps, tool_calls, cost_usd}``;
- ``stage``: the autonomy stage in force;
- ``request``: the invoker's request (trusted text);
- ``read``: what the run read so far, ``[{source, trust}]``;
- ``prov(value)``: where a value comes from, ``{trust, source, sources, kind}``
  (``'request' in prov(args.to).sources``).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterable
from typing import Any, Protocol

import cel

__all__ = ["POLICY_FUNCTIONS", "VARIABLES", "Condition", "compile_condition"]

VARIABLES = frozenset({"args", "tool", "run", "stage", "request", "read"})
#: Functions a policy condition may call beside CEL's own.
POLICY_FUNCTIONS = frozenset({"prov"})

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
_ARG_REF = re.compile(r"\bargs\.([A-Za-z_]\w*)")


class _Lookup(Protocol):
    def __getitem__(self, name: str) -> Any: ...


class Condition:
    """A compiled CEL condition that must evaluate to a boolean.

    Converting a Python dict into CEL values costs far more than evaluating a small
    expression, so a condition is bound once to the values that never change for it
    (the tool, the stage) and keeps one evaluation context per thread; each evaluation
    passes only the per-call variables the expression actually uses.
    """

    __slots__ = ("_local", "_static", "arg_refs", "program", "source", "uses", "uses_prov")

    def __init__(
        self, source: str, program: cel.Program, variables: frozenset[str] = VARIABLES
    ) -> None:
        self.source = source
        self.program = program
        self.arg_refs = frozenset(_ARG_REF.findall(source))
        self.uses = frozenset(program.variables()) & variables
        self.uses_prov = "prov" in program.functions()
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
                if name not in self._static:
                    context.add_variable(name, variables[name])
            if self.uses_prov:  # bound per call: it reads this run's ledger
                context.add_function("prov", getattr(variables, "prov"))  # noqa: B009
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
    try:
        program = cel.compile(source)
    except ValueError as exc:
        first = str(exc).splitlines()
        detail = " ".join(line.strip() for line in first[:2])
        raise fail(f"invalid CEL `{source}`: {detail}") from None
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
    return Condition(source, program, allowed)
