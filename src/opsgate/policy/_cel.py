"""CEL conditions: compiled once at load, checked for names, evaluated on the hot path.

Conditions see four variables:

- ``args``: the call's validated arguments (``args.amount``);
- ``tool``: ``{name, scope, impact}`` of the contract;
- ``run``: ``{workflow, agent, invoker, steps, tool_calls, cost_usd}``;
- ``stage``: the autonomy stage in force.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

import cel

__all__ = ["VARIABLES", "Condition", "compile_condition"]

VARIABLES = frozenset({"args", "tool", "run", "stage"})

# CEL's standard functions and the extensions the bindings ship (strings, math, lists).
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
        "bool",
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
        "lowerAscii",
        "upperAscii",
        "trim",
        "split",
        "join",
        "replace",
        "indexOf",
        "lastIndexOf",
        "substring",
        "charAt",
        "max",
        "min",
        "abs",
        "ceil",
        "floor",
        "round",
        "sort",
        "getFullYear",
        "getMonth",
        "getDayOfMonth",
        "getDayOfWeek",
        "getDayOfYear",
        "getHours",
        "getMinutes",
        "getSeconds",
        "getMilliseconds",
        "format",
        "in",
    }
)
_ARG_REF = re.compile(r"\bargs\.([A-Za-z_]\w*)")


class Condition:
    """A compiled CEL condition that must evaluate to a boolean."""

    __slots__ = ("arg_refs", "program", "source")

    def __init__(self, source: str, program: cel.Program) -> None:
        self.source = source
        self.program = program
        self.arg_refs = frozenset(_ARG_REF.findall(source))

    def evaluate(self, variables: Mapping[str, Any]) -> bool:
        """Evaluate; any error or a non-boolean result raises `ValueError`."""
        try:
            result = self.program.execute(dict(variables))
        except Exception as exc:  # the bindings raise KeyError/TypeError/RuntimeError
            raise ValueError(f"condition `{self.source}` failed: {exc}") from None
        if not isinstance(result, bool):
            raise ValueError(f"condition `{self.source}` gave {result!r}, not true/false")
        return result


def compile_condition(source: str, fail: Callable[[str], Exception]) -> Condition:
    """Compile and check a condition; ``fail(message)`` builds the error to raise."""
    if not isinstance(source, str) or not source.strip():
        raise fail("a condition must be a non-empty CEL expression")
    try:
        program = cel.compile(source)
    except ValueError as exc:
        first = str(exc).splitlines()
        detail = " ".join(line.strip() for line in first[:2])
        raise fail(f"invalid CEL `{source}`: {detail}") from None
    unknown_vars = sorted(set(program.variables()) - VARIABLES)
    # comprehension variables (`x` in `list.all(x, ...)`) are reported too: allow those
    # that the expression binds itself.
    bound = set(re.findall(r"\.\s*(?:all|exists|exists_one|map|filter)\(\s*(\w+)\s*,", source))
    unknown_vars = [v for v in unknown_vars if v not in bound]
    if unknown_vars:
        raise fail(
            f"CEL `{source}` uses unknown variable(s) {', '.join(unknown_vars)}; "
            f"conditions see {', '.join(sorted(VARIABLES))}"
        )
    unknown_fns = sorted(f for f in program.functions() if f.isidentifier() and f not in _FUNCTIONS)
    if unknown_fns:
        raise fail(f"CEL `{source}` calls unknown function(s) {', '.join(unknown_fns)}")
    return Condition(source, program)
