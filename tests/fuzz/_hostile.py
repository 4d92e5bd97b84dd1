"""Generated hostile inputs shared by the fuzz tests.

Three kinds: edge-case values (the unicode, number and size corners that break parsers),
JSON of every shape (arbitrary, truncated, deeply nested), and structure-aware mutations of a
valid document, one field at a time (a key deleted, renamed or added, a value replaced by one
of another type), rendered back to YAML text. A mutation of a shipped document reaches the
validation behind the first key, which arbitrary text almost never does.

Values that a serialiser cannot write (nesting deeper than its recursion limit, a string of
megabytes) are `Raw` fragments of YAML or JSON text, spliced into the rendered text verbatim.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any, TypeVar

import yaml
from hypothesis import event, settings
from hypothesis import strategies as st

T = TypeVar("T")

#: Strings that have broken parsers, terminals, shells or databases somewhere.
EDGE_STRINGS: tuple[str, ...] = (
    "",
    " ",
    "\x00",
    "a\x00b",
    "\ud800",  # a lone surrogate: not encodable as UTF-8
    "x\udfffy",
    "\u202e",  # right-to-left override
    "\u200f\u2066",  # RTL mark, left-to-right isolate
    "\ufeff",  # byte-order mark
    "\u200b",  # zero-width space
    "e\u0301",  # a combining accent
    "😀",
    "\U0010ffff",
    "\uffff",
    "\r\n",
    "\n",
    "\t",
    "\x1b[2J",
    "[/]",
    "{{x}}",
    "${HOME}",
    "%s%n",
    "'",
    '"',
    "\\",
    "*",
    "&a",
    "!!python/object/apply:os.system",
    "null",
    "~",
    "yes",
    "off",
    "1e400",
    "NaN",
    "-0",
    "0x10",
    "../../etc/passwd",
    "args.amount > 50.0",
    "ORD-1001",
)

EDGE_NUMBERS: tuple[int | float, ...] = (
    0,
    -1,
    1,
    2**31,
    2**63,
    2**64,
    -(2**63) - 1,
    10**100,
    0.1,
    -0.0,
    1e308,
    5e-324,
    float("nan"),
    float("inf"),
    float("-inf"),
)

EDGE_SCALARS: tuple[Any, ...] = (None, True, False, *EDGE_NUMBERS, *EDGE_STRINGS)

#: Nesting depths around the limits of the parsers in use: orjson writes 254 levels and
#: reads 1024, libyaml reads 1000, Python recurses about 1000 frames.
DEPTHS = (64, 254, 255, 500, 999, 1001, 10_000)


@dataclass(frozen=True)
class Raw:
    """A YAML (or JSON) fragment spliced verbatim where this value stands (see `render`)."""

    text: str


@dataclass(frozen=True)
class Made:
    """A value too odd for hypothesis to draw or print (a structure holding itself, 10,000
    levels of nesting, an iterator that is used up): drawn by name, made by the test."""

    name: str
    make: Callable[[], Any]

    def __repr__(self) -> str:
        return f"Made({self.name!r})"


def made(value: Any) -> Any:
    """``value``, or what it stands for when it is `Made`."""
    return value.make() if isinstance(value, Made) else value


def makers(recipes: dict[str, Callable[[], Any]]) -> st.SearchStrategy[Made]:
    """One of ``recipes``, by name."""
    return st.sampled_from(sorted(recipes)).map(lambda name: Made(name, recipes[name]))


def nested_list(depth: int, leaf: Any = 1) -> Any:
    """``[[[...leaf...]]]``, ``depth`` lists deep (built without recursion)."""
    value = leaf
    for _ in range(depth):
        value = [value]
    return value


def nested_dict(depth: int, leaf: Any = 1) -> Any:
    """``{"a": {"a": ...leaf...}}``, ``depth`` mappings deep (built without recursion)."""
    value = leaf
    for _ in range(depth):
        value = {"a": value}
    return value


def _deep_yaml(kind: str, depth: int) -> Raw:
    if kind == "list":
        return Raw("[" * depth + "1" + "]" * depth)
    if kind == "map":
        return Raw("{a: " * depth + "1" + "}" * depth)
    return Raw("[{a: " * depth + "1" + "}]" * depth)


#: YAML-only shapes: nesting past every limit, megabyte strings, anchors and aliases (a list
#: holding itself), tags the safe loader refuses, a document that is not one document.
raw_yaml: st.SearchStrategy[Raw] = st.one_of(
    st.builds(_deep_yaml, st.sampled_from(["list", "map", "mixed"]), st.sampled_from(DEPTHS)),
    st.sampled_from(
        [
            Raw('"' + "x" * 1_000_000 + '"'),
            Raw('"' + "\\u202e" * 100_000 + '"'),
            Raw("&cycle [*cycle]"),
            Raw("&self {k: *self}"),
            Raw("[&a [x, y], *a, *a]"),
            Raw("*undefined"),
            Raw("!!python/object/apply:os.system [echo hi]"),
            Raw("!!binary aGVsbG8="),
            Raw("!!timestamp 2001-12-14t21:59:43.10-05:00"),
            Raw("!!set {a, b}"),
            Raw("!custom x"),
            Raw("{? [a, b] : c}"),
            Raw("[1, 2"),
            Raw("'unterminated"),
            Raw("\n---\nsecond: document\n"),
            Raw("\t"),
            Raw("{a: 1, a: 2}"),
        ]
    ),
)


def _deep_json(kind: str, depth: int) -> Raw:
    if kind == "list":
        return Raw("[" * depth + "1" + "]" * depth)
    return Raw('{"a":' * depth + "1" + "}" * depth)


#: JSON-only shapes no encoder writes: nesting past every limit, megabyte strings, escapes of
#: lone surrogates and NUL, numbers past float and int64 range.
raw_json: st.SearchStrategy[Raw] = st.one_of(
    st.builds(_deep_json, st.sampled_from(["list", "map"]), st.sampled_from(DEPTHS)),
    st.sampled_from(
        [
            Raw('"' + "x" * 1_000_000 + '"'),
            Raw('"\\ud800"'),
            Raw('"\\udfff\\ud800"'),
            Raw('"a\\u0000b"'),
            Raw('"\\u202e\\u200f\\ufeff"'),
            Raw("1e400"),
            Raw("-1e400"),
            Raw("123456789012345678901234567890"),
            Raw("-9223372036854775809"),
            Raw("18446744073709551616"),
            Raw("NaN"),
            Raw("Infinity"),
            Raw("-0"),
            Raw("0.0000000000000000000000000000001e-400"),
        ]
    ),
)

json_scalars: st.SearchStrategy[Any] = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),
    st.text(),
    st.sampled_from(EDGE_SCALARS),
)

#: Small JSON-like values of any shape (dicts keyed by text), edge cases included.
json_values: st.SearchStrategy[Any] = st.recursive(
    json_scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)

#: What a mutation may put in a document: any value, or a YAML-only shape.
yaml_values: st.SearchStrategy[Any] = st.one_of(json_values, raw_yaml)

#: Keys a mutation may add or rename to (YAML keys need not be strings).
yaml_keys: st.SearchStrategy[Hashable] = st.one_of(
    st.text(max_size=12), st.sampled_from(EDGE_SCALARS), st.integers()
)


def _paths(doc: Any) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """(every node below the root, every mapping or list including the root) of ``doc``."""
    nodes: list[tuple[Any, ...]] = []
    containers: list[tuple[Any, ...]] = []
    stack: list[tuple[tuple[Any, ...], Any]] = [((), doc)]
    while stack:
        path, value = stack.pop()
        if isinstance(value, dict):
            containers.append(path)
            children = list(value.items())
        elif isinstance(value, list):
            containers.append(path)
            children = list(enumerate(value))
        else:
            continue
        for key, child in reversed(children):
            nodes.append((*path, key))
            stack.append(((*path, key), child))
    return sorted(nodes, key=len), sorted(containers, key=len)


def _at(doc: Any, path: tuple[Any, ...]) -> Any:
    for part in path:
        doc = doc[part]
    return doc


@st.composite
def mutated(draw: st.DrawFn, doc: Any, values: st.SearchStrategy[Any] = yaml_values) -> Any:
    """A copy of ``doc`` with exactly one change: a key or item deleted, a value replaced,
    a key renamed, or an unknown key added (a mapping) / an item inserted (a list)."""
    doc = copy.deepcopy(doc)
    nodes, containers = _paths(doc)
    kind = draw(st.sampled_from(["replace", "delete", "rename", "add"]))
    if kind in ("replace", "delete", "rename") and nodes:
        path = draw(st.sampled_from(nodes))
        parent, key = _at(doc, path[:-1]), path[-1]
        if kind == "replace":
            parent[key] = draw(values)
        elif kind == "delete":
            del parent[key]
        elif isinstance(parent, dict):
            new_key = draw(yaml_keys.filter(lambda k: k not in parent))
            parent[new_key] = parent.pop(key)
        else:
            parent[key] = {draw(yaml_keys): parent[key]}
        return doc
    container = _at(doc, draw(st.sampled_from(containers)))
    if isinstance(container, dict):
        container[draw(yaml_keys.filter(lambda k: k not in container))] = draw(values)
    else:
        container.insert(draw(st.integers(0, len(container))), draw(values))
    return doc


def render(doc: Any, *, style: str = "json") -> str:
    """``doc`` as text: ``json`` (JSON, which is YAML flow style too; any key as text) or
    ``block`` (PyYAML's block style, keys of any type), every `Raw` spliced in verbatim."""
    fragments: dict[str, str] = {}

    def swap(value: Any) -> Any:
        if isinstance(value, Raw):
            marker = f"__fuzz_raw_{len(fragments)}__"
            fragments[marker] = value.text
            return marker
        if isinstance(value, dict):
            return {k: swap(v) for k, v in value.items()}
        if isinstance(value, list):
            return [swap(v) for v in value]
        return value

    plain = swap(doc)
    if style == "block":
        try:
            text = yaml.safe_dump(plain, allow_unicode=True, sort_keys=False, width=10_000)
        except (yaml.YAMLError, RecursionError, UnicodeError):
            style = "json"
    if style == "json":
        text = json.dumps(
            plain, ensure_ascii=False, default=repr, skipkeys=False, check_circular=False
        )
    for marker, fragment in fragments.items():
        # block style writes the marker bare, json style quoted: replace the quoted form first
        text = text.replace(f'"{marker}"', fragment).replace(marker, fragment)
    return text


@st.composite
def mutated_yaml(draw: st.DrawFn, doc: Any) -> str:
    """A one-field mutation of ``doc``, as YAML text in either style."""
    return render(draw(mutated(doc)), style=draw(st.sampled_from(["block", "json"])))


#: YAML text with no structure to speak of: arbitrary text, and shapes of YAML syntax.
arbitrary_yaml_text: st.SearchStrategy[str] = st.one_of(
    st.text(),
    st.builds(lambda raw: raw.text, raw_yaml),
    st.builds(lambda v: render(v, style="json"), json_values),
    st.lists(
        st.sampled_from(
            [
                "version: 1",
                'version: "1"',
                "workflows:",
                "  wf:",
                "    stage: draft",
                "    tools: {}",
                "models: {}",
                "roles:",
                "tasks:",
                "  - id: t",
                "- x",
                ": x",
                "? x",
                "&a a",
                "*a",
                "!!str",
                "---",
                "...",
                "%YAML 1.1",
                "\t",
                "  ",
                "#",
                "'",
                "{",
                "[",
            ]
        ),
        max_size=8,
    ).map("\n".join),
)


def outcome_of(
    fn: Callable[[], T], expected: type[Exception] | tuple[type[Exception], ...]
) -> T | Exception:
    """Call ``fn``: its result, or the ``expected`` error it raised (with a message).

    Any other exception propagates: that is the failure the fuzz tests look for (a
    `KeyError`, a `RecursionError`, a yaml or orjson error leaking through a parser).
    """
    try:
        result = fn()
    except expected as exc:
        assert str(exc).strip(), f"{type(exc).__name__} without a message"
        event(f"refused: {type(exc).__name__}")
        return exc
    event("accepted")
    return result


def scaled(share: float) -> int:
    """A share of the profile's example budget (``make test``'s or ``make fuzz``'s), for a
    test whose examples cost many times more than most; never fewer than 10."""
    return max(10, round(settings().max_examples * share))
