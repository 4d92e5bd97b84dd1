"""JSON schemas a grammar-constrained server can enforce, and the ones it cannot.

llama.cpp's server turns ``response_format: json_schema`` into a grammar; its regex support
is a subset: the class escapes ``\\d``, ``\\w``, ``\\s`` are refused, and the server then
logs "accepting any string" and constrains nothing (an id pattern such as ``^ORD-\\d{4}$``
silently stops holding). `enforceable_schema` rewrites each ``pattern`` into that subset
(``\\d`` → ``[0-9]``, ``\\w`` → ``[a-zA-Z0-9_]``, ``\\s`` → ``[ \\t\\n\\r\\f\\v]``, inside and
outside character classes; ``(?:`` → ``(``; an unanchored pattern gets ``.*`` at the open
end), which keeps or narrows what it accepts (``\\d`` is ASCII digits only here, as ids
are). `unenforceable` names what cannot be rewritten (lookarounds, back-references, word
boundaries, Unicode classes), so that a test fails loudly on a contract the model would
not be held to. The gateway validates every call against the real schema anyway.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

__all__ = ["enforceable_schema", "grammar_pattern", "unenforceable"]

_OUTSIDE = {
    "d": "[0-9]",
    "w": "[a-zA-Z0-9_]",
    "s": "[ \\t\\n\\r\\f\\v]",
    "D": "[^0-9]",
    "W": "[^a-zA-Z0-9_]",
    "S": "[^ \\t\\n\\r\\f\\v]",
}
_INSIDE = {"d": "0-9", "w": "a-zA-Z0-9_", "s": " \\t\\n\\r\\f\\v"}
_UNSUPPORTED = re.compile(r"\(\?[=!<]|\\[bBAZzpPk]|\\[1-9]|\(\?P")


def grammar_pattern(pattern: str) -> str | None:
    """``pattern`` in the grammar's regex subset, or None when it cannot be said there."""
    if _UNSUPPORTED.search(pattern):
        return None
    out: list[str] = []
    i = 0
    in_class = False
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\" and i + 1 < len(pattern):
            nxt = pattern[i + 1]
            if in_class and nxt in _INSIDE:
                out.append(_INSIDE[nxt])
            elif in_class and nxt in "DWS":
                return None  # a negated class inside a class has no plain spelling
            elif not in_class and nxt in _OUTSIDE:
                out.append(_OUTSIDE[nxt])
            else:
                out.append(ch + nxt)
            i += 2
            continue
        if in_class:
            if ch == "]" and out and out[-1] not in ("[", "[^"):
                in_class = False
            out.append(ch)
        elif ch == "[":
            in_class = True
            if pattern.startswith("[^", i):
                out.append("[^")
                i += 2
                continue
            out.append(ch)
        elif pattern.startswith("(?:", i):
            out.append("(")
            i += 3
            continue
        else:
            out.append(ch)
        i += 1
    text = "".join(out)
    if not text.startswith("^"):
        text = "^.*" + text
    if not text.endswith("$") or text.endswith("\\$"):
        text += ".*$"
    return text


def enforceable_schema(schema: Any) -> Any:
    """A copy of ``schema`` with every ``pattern`` in the grammar's subset (one that cannot
    be rewritten is kept as it is: the server will not hold it, `unenforceable` says so)."""
    if isinstance(schema, Mapping):
        out: dict[str, Any] = {}
        for key, value in schema.items():
            if key == "pattern" and isinstance(value, str):
                out[key] = grammar_pattern(value) or value
            elif key in ("enum", "const", "default", "examples"):
                out[key] = value  # data, not schema
            else:
                out[key] = enforceable_schema(value)
        return out
    if isinstance(schema, list):
        return [enforceable_schema(v) for v in schema]
    return schema


def unenforceable(schema: Any, path: str = "$") -> list[str]:
    """Where ``schema`` asks for a pattern the grammar cannot hold (``$.properties.id``)."""
    found: list[str] = []
    if isinstance(schema, Mapping):
        for key, value in schema.items():
            if key == "pattern" and isinstance(value, str) and grammar_pattern(value) is None:
                found.append(f"{path}: pattern `{value}`")
            elif key not in ("enum", "const", "default", "examples"):
                found += unenforceable(value, f"{path}.{key}")
    elif isinstance(schema, list):
        for i, value in enumerate(schema):
            found += unenforceable(value, f"{path}[{i}]")
    return found
