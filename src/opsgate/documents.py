"""One reader for opsgate's YAML documents (policies, router files, suites, MCP configs).

Each document is read the same way (YAML with duplicate keys refused, a safe loader), checked
to be a mapping, and validated into its pydantic model; every problem is a `DocumentProblem`
worded the same way wherever it came from:

    policy.yaml at `workflows.support.tools.refund`: line 12: unknown key `amout`

Each owner re-raises it as its own error (`PolicyError`, `ConfigError`, `SuiteError`), so a
person fixes the file without reading a traceback.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

__all__ = [
    "DocumentProblem",
    "error_location",
    "line_of",
    "read_document",
    "read_yaml",
    "validate_document",
]

M = TypeVar("M", bound=BaseModel)

#: Words a validation error of one kind differently (the document, its location, the error).
Wording = Callable[[Any, tuple[Any, ...], dict[str, Any]], str | None]


class DocumentProblem(Exception):
    """What is wrong with a document, and where.

    Attributes:
        problem: The problem, one sentence.
        source: The file (or the name given to text).
        location: The dotted key path, when known.
        line: The 1-based line, when known.
    """

    def __init__(
        self, problem: str, *, source: str, location: str = "", line: int | None = None
    ) -> None:
        self.problem = problem
        self.source = source
        self.location = location
        self.line = line
        super().__init__(str(self))

    @property
    def detail(self) -> str:
        """The line and the problem, without the file and location."""
        return (f"line {self.line}: " if self.line else "") + self.problem

    def __str__(self) -> str:
        at = f" at `{self.location}`" if self.location else ""
        return f"{self.source}{at}: {self.detail}"


# libyaml's parser when PyYAML was built with it (several times faster on large suites);
# the safe constructor either way.
_SafeBase: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _UniqueKeyLoader(_SafeBase):  # type: ignore[valid-type,misc]
    """SafeLoader that refuses a key given twice in one mapping (PyYAML keeps the last)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            try:
                duplicate = key in seen
            except TypeError:  # `? [a, b]: c`: a list or a mapping as a key
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping",
                    node.start_mark,
                    "found a list or a mapping as a key",
                    key_node.start_mark,
                ) from None
            if duplicate:
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping",
                    node.start_mark,
                    f"found duplicate key `{key}`",
                    key_node.start_mark,
                )
            seen.add(key)
        mapping: dict[Any, Any] = super().construct_mapping(node, deep=deep)
        return mapping


def read_document(source: str | Path, text: str | None = None) -> tuple[str, str]:
    """The name and the text of a document: ``text`` when given (``source`` names it),
    else the file ``source``.

    Raises:
        DocumentProblem: the file is missing or unreadable.
    """
    name = str(source)
    if text is not None:
        return name, text
    try:
        return name, Path(source).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DocumentProblem("file not found", source=name) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DocumentProblem(f"cannot read the file: {exc}", source=name) from None


def read_yaml(text: str, source: str) -> Any:
    """Parse YAML text (a key given twice in one mapping is an error).

    Raises:
        DocumentProblem: the YAML error, with its line and column.
    """
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)  # a safe loader
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = exc.problem or exc.context or "invalid YAML"
        raise DocumentProblem(f"{line}{problem}", source=source) from None
    except yaml.YAMLError as exc:
        raise DocumentProblem(f"invalid YAML: {exc}", source=source) from None
    except UnicodeEncodeError as exc:  # a lone surrogate: text no UTF-8 file can hold
        raise DocumentProblem(
            f"character {exc.start + 1} is not valid Unicode ({exc.reason})", source=source
        ) from None


def validate_document(
    model: type[M],
    data: Any,
    *,
    text: str,
    source: str,
    kind: str,
    shape: str,
    wording: Wording | None = None,
    extra: dict[str, Any] | None = None,
) -> M:
    """``data`` (read from ``text``) validated as ``model``.

    Args:
        model: The document's model.
        data: What `read_yaml` read.
        text: The YAML, to find the line of a problem.
        source: The document's name.
        kind: What it is ("policy"), for one that is empty.
        shape: What it holds, for one that is not a mapping ("a policy is a mapping with
            `version` and `workflows`").
        wording: Words some errors the owner's way (None: the common wording).
        extra: Keys added to the mapping before validation (not from the file).

    Raises:
        DocumentProblem: the first problem (and how many more there are).
    """
    if data is None:
        raise DocumentProblem(f"the {kind} is empty", source=source)
    if not isinstance(data, dict):
        raise DocumentProblem(f"{shape}, not a {type(data).__name__}", source=source)
    try:
        return model.model_validate({**data, **(extra or {})})
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        loc = error_location(data, err["loc"], err["type"])
        message = (wording(data, loc, dict(err)) if wording else None) or _worded(dict(err))
        more = exc.error_count() - 1
        suffix = f" (and {more} more error{'s' if more > 1 else ''})" if more else ""
        raise DocumentProblem(
            message + suffix,
            source=source,
            location=".".join(str(p) for p in loc),
            line=line_of(text, loc),
        ) from None


def _worded(err: dict[str, Any]) -> str:
    if err["type"] == "extra_forbidden":
        return f"unknown key `{err['loc'][-1]}`"
    if err["type"] == "missing":
        return f"missing required key `{err['loc'][-1]}`"
    return str(err["msg"]).removeprefix("Value error, ")


def error_location(data: Any, loc: Sequence[Any], kind: str) -> tuple[Any, ...]:
    """The keys and indexes into ``data`` that a pydantic error location names.

    Pydantic puts labels of its own among them: the union branch it tried (``ToolPolicy``,
    ``list[str]``), validator tags (``function-after[...]``), ``[key]`` for a key that failed.
    A label is whatever the document does not hold at that point, so a key of the document
    that looks like one (``"a[b]"``) is kept. The key of a ``missing`` error is kept too.
    """
    path: list[Any] = []
    node = data
    for i, part in enumerate(loc):
        held = isinstance(node, dict) and part in node
        held = held or (isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node))
        if held:
            path.append(part)
            node = node[part]
        elif kind == "missing" and i == len(loc) - 1:
            path.append(part)
    return tuple(path)


def line_of(text: str, loc: tuple[Any, ...]) -> int | None:
    """The 1-based line of the node at ``loc`` (a pydantic error location), if it exists."""
    try:
        # libyaml's composer when there is one: ten times faster, and it recurses in C (the
        # pure-Python one overflows Python's stack on a few hundred nested lists)
        node = yaml.compose(text, Loader=_SafeBase)
    except (yaml.YAMLError, UnicodeEncodeError, RecursionError):
        return None
    line = None
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                if key_node.value == str(part):
                    line = key_node.start_mark.line + 1
                    node = value_node
                    break
            else:
                return line
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            if part >= len(node.value):
                return line
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            return line
    return line
