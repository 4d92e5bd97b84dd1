"""Field-level trust: which parts of one tool result are system-made and which anyone can write.

One result mixes data the system controls (ids, owners, sizes, timestamps) with text
outsiders write (bodies, descriptions, names they choose). A `TrustMap` says which is
which with JSONPath-like selectors over the result, and a default for the rest::

    TrustMap.parse("untrusted", {"$.files[*].id": "trusted", "$.files[*].owner": "trusted"})

Selectors: ``$`` (the whole result), ``.name`` / ``['name']``, ``[*]`` / ``.*`` (any
element or member), ``[3]`` (one element), ``..name`` (a member at any depth). A node
takes the trust of the most specific selector that matches it (literal steps weigh more
than wildcards; on a tie, ``untrusted`` wins), else its parent's; so a selector on an
object covers everything under it.

The walk carries only the selectors still in play; once none is, a subtree is flattened
whole, so a result with no field rules costs what it did before field rules existed.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import orjson

from opsgate.provenance._atoms import canonical_number

__all__ = ["Selector", "SelectorError", "TrustMap", "flatten", "json_text", "leaf_text"]

Trust = Literal["trusted", "untrusted"]

_STEP = re.compile(
    r"""\.\.(?P<desc>[A-Za-z_][\w\-]*|\*)
      | \.(?P<key>[A-Za-z_][\w\-]*)
      | \.(?P<star>\*)
      | \[\s*(?P<index>-?\d+)\s*\]
      | \[\s*(?P<any>\*)\s*\]
      | \[\s*'(?P<sq>[^']*)'\s*\]
      | \[\s*"(?P<dq>[^"]*)"\s*\]
    """,
    re.VERBOSE,
)


class SelectorError(ValueError):
    """A field selector that cannot be parsed (says where)."""


@dataclass(frozen=True, slots=True)
class Selector:
    """A parsed selector: its text, its steps and how specific it is."""

    text: str
    steps: tuple[tuple[str, str | int | None], ...]
    specificity: int

    @classmethod
    def parse(cls, text: str) -> Selector:
        """Parse ``$.a[*].b``-style text.

        Raises:
            SelectorError: not a selector (names the offending position).
        """
        if not isinstance(text, str) or not text.startswith("$"):
            raise SelectorError(f"selector `{text}` must start with `$`")
        steps: list[tuple[str, str | int | None]] = []
        at = 1
        while at < len(text):
            m = _STEP.match(text, at)
            if m is None:
                raise SelectorError(f"selector `{text}`: cannot read `{text[at:]}`")
            kind = m.lastgroup or ""
            value = m.group(kind)
            if kind == "desc":
                steps.append(("desc", None if value == "*" else value))
            elif kind in ("key", "sq", "dq"):
                steps.append(("key", value))
            elif kind == "index":
                steps.append(("index", int(value)))
            else:
                steps.append(("any", None))
            at = m.end()
        weight = sum(2 if kind in ("key", "index") else 1 for kind, _ in steps)
        return cls(text, tuple(steps), weight)


def leaf_text(value: Any) -> str:
    """A scalar as the text it is read as."""
    if isinstance(value, str):
        return value
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        text = repr(value)
        return canonical_number(text) if "n" not in text else text
    return str(value)


def flatten(content: Any) -> str:
    """Content as text: strings as they are, structures as their keys and leaves on lines
    (not JSON, whose escapes would glue ``\\n`` onto the next token)."""
    if isinstance(content, str):
        return content
    if isinstance(content, (Mapping, list, tuple)):
        parts: list[str] = []
        _collect(content, parts)
        return "\n".join(p for p in parts if p)
    return leaf_text(content)


def json_text(content: Any) -> str:
    """Content as text to label, fast: structures through orjson, their escapes and the
    colon after each key turned to spaces (so ``"a":1.5`` reads as the number 1.5 and an
    escaped newline does not glue two words)."""
    if isinstance(content, (Mapping, list, tuple)):
        try:
            text = orjson.dumps(content, option=orjson.OPT_NON_STR_KEYS).decode()
        except TypeError:
            return flatten(content)
        if "\\" in text:
            text = (
                text.replace("\\n", " ")
                .replace("\\t", " ")
                .replace("\\r", " ")
                .replace('\\"', '"')
                .replace("\\\\", "\\")
            )
        return text.replace('":', '" ')
    return flatten(content)


def _collect(content: Any, parts: list[str]) -> None:
    if isinstance(content, Mapping):
        for key, item in content.items():
            parts.append(leaf_text(key))
            _collect(item, parts)
    elif isinstance(content, (list, tuple)):
        for item in content:
            _collect(item, parts)
    else:
        parts.append(leaf_text(content))


_State = tuple[int, int]


@dataclass(frozen=True, slots=True)
class TrustMap:
    """The trust of each part of a tool's result.

    Attributes:
        default: The trust of what no selector names.
        rules: ``(selector, trust)`` pairs.
    """

    default: Trust
    rules: tuple[tuple[Selector, Trust], ...] = ()

    @classmethod
    def parse(cls, default: Trust, fields: Mapping[str, Trust] | None = None) -> TrustMap:
        """Build from a default and ``{selector: trust}``.

        Raises:
            SelectorError: a selector or a trust label is malformed.
        """
        if default not in ("trusted", "untrusted"):
            raise SelectorError(f"trust `{default}` is not trusted or untrusted")
        rules: list[tuple[Selector, Trust]] = []
        for text, trust in (fields or {}).items():
            if trust not in ("trusted", "untrusted"):
                raise SelectorError(f"`{text}`: trust `{trust}` is not trusted or untrusted")
            rules.append((Selector.parse(text), trust))
        return cls(default, tuple(rules))

    @property
    def uniform(self) -> bool:
        """Whether every part of a result gets the default (no field rules)."""
        return not self.rules

    def describe(self) -> str | dict[str, Any]:
        """A JSON-able form: the trust, or ``{default, fields}``."""
        if self.uniform:
            return self.default
        return {"default": self.default, "fields": {s.text: t for s, t in self.rules}}

    def split(self, content: Any) -> tuple[list[str], list[str]]:
        """The text of ``content`` under each label: ``(trusted parts, untrusted parts)``."""
        trusted: list[str] = []
        untrusted: list[str] = []
        out = {"trusted": trusted, "untrusted": untrusted}
        start = [(i, 0) for i in range(len(self.rules))]
        trust, states = self._settle(start, self.default)
        self._walk(content, trust, states, out)
        return trusted, untrusted

    def trust_at(self, path: tuple[str | int, ...]) -> Trust:
        """The trust of the node at ``path`` (used to explain a match)."""
        states: list[_State] = [(i, 0) for i in range(len(self.rules))]
        trust, states = self._settle(states, self.default)
        for step in path:
            trust, states = self._settle(self._advance(states, step), trust)
        return trust

    def _settle(self, states: list[_State], inherited: Trust) -> tuple[Trust, list[_State]]:
        """Apply the selectors complete at this node; return its trust and the live states."""
        best: tuple[int, Trust] | None = None
        live: list[_State] = []
        rules = self.rules
        for state in states:
            rule, pos = state
            selector, trust = rules[rule]
            if pos == len(selector.steps):
                rank = (selector.specificity, trust == "untrusted")
                if best is None or rank > (best[0], best[1] == "untrusted"):
                    best = (selector.specificity, trust)
            else:
                live.append(state)
        return (best[1] if best else inherited), live

    def _advance(self, states: list[_State], step: str | int) -> list[_State]:
        nxt: list[_State] = []
        rules = self.rules
        for rule, pos in states:
            kind, value = rules[rule][0].steps[pos]
            if kind == "desc":
                nxt.append((rule, pos))  # stays in play at every depth below
                if value is None or value == step:
                    nxt.append((rule, pos + 1))
            elif (
                kind == "any"
                or (kind == "key" and value == step)
                or (kind == "index" and isinstance(step, int) and value == step)
            ):
                nxt.append((rule, pos + 1))
        return nxt

    def _walk(
        self, node: Any, trust: Trust, states: list[_State], out: dict[str, list[str]]
    ) -> None:
        if not states or not isinstance(node, (Mapping, list, tuple)):
            text = flatten(node)
            if text:
                out[trust].append(text)
            return
        if isinstance(node, Mapping):
            for key, item in node.items():
                name = leaf_text(key)
                out[trust].append(name)
                child_trust, live = self._settle(self._advance(states, name), trust)
                self._walk(item, child_trust, live, out)
        else:
            for index, item in enumerate(node):
                child_trust, live = self._settle(self._advance(states, index), trust)
                self._walk(item, child_trust, live, out)

    def unmatched(self, schema: Mapping[str, Any] | None) -> list[str]:
        """The selectors that match nothing a result under ``schema`` (a JSON schema) can
        hold; none when the schema says nothing about the result's shape."""
        if not schema:
            return []
        defs = {**schema.get("$defs", {}), **schema.get("definitions", {})}
        return [s.text for s, _ in self.rules if not _schema_has(schema, s.steps, defs, 0)]


def _resolve(schema: Any, defs: Mapping[str, Any]) -> Any:
    ref = schema.get("$ref") if isinstance(schema, Mapping) else None
    if isinstance(ref, str) and ref.rsplit("/", 1)[-1] in defs:
        return defs[ref.rsplit("/", 1)[-1]]
    return schema


def _children(schema: Mapping[str, Any], step: tuple[str, Any]) -> list[Any]:
    """The sub-schemas one step of a selector can reach; ``[{}]`` when unconstrained."""
    kind, value = step
    found: list[Any] = []
    props = schema.get("properties")
    extra = schema.get("additionalProperties", props is None)
    items = schema.get("items")
    typed = schema.get("type")
    if kind in ("key", "any", "desc"):
        if isinstance(props, Mapping):
            if kind == "key" or (kind == "desc" and value is not None):
                if value in props:
                    found.append(props[value])
            else:
                found.extend(props.values())
        if extra and typed in (None, "object"):
            found.append(extra if isinstance(extra, Mapping) else {})
    if kind in ("index", "any", "desc") and typed in (None, "array"):
        if isinstance(items, Mapping):
            found.append(items)
        elif items is None and typed == "array":
            found.append({})
    return found


def _schema_has(
    schema: Any, steps: tuple[tuple[str, Any], ...], defs: Mapping[str, Any], depth: int
) -> bool:
    if depth > 32:
        return True  # a recursive schema: assume reachable
    schema = _resolve(schema, defs)
    if not steps:
        return True
    if not isinstance(schema, Mapping) or not schema:
        return True  # an unconstrained node may hold anything
    for key in ("anyOf", "oneOf", "allOf"):
        options = schema.get(key)
        if isinstance(options, list) and options:
            return any(_schema_has(o, steps, defs, depth + 1) for o in options)
    step = steps[0]
    if step[0] == "desc":
        # `..name`: `name` here, or anywhere below.
        here = step[1] is None or bool(
            isinstance(schema.get("properties"), Mapping) and step[1] in schema["properties"]
        )
        if here and _schema_has_after_desc(schema, step, steps[1:], defs, depth):
            return True
        below = _children(schema, ("any", None))
        return any(_schema_has(child, steps, defs, depth + 1) for child in below)
    return any(_schema_has(child, steps[1:], defs, depth + 1) for child in _children(schema, step))


def _schema_has_after_desc(
    schema: Mapping[str, Any],
    step: tuple[str, Any],
    rest: tuple[tuple[str, Any], ...],
    defs: Mapping[str, Any],
    depth: int,
) -> bool:
    return any(_schema_has(child, rest, defs, depth + 1) for child in _children(schema, step))
