"""Reading a policy file: YAML (duplicate keys refused) into a validated `PolicyDocument`.

Errors name the file, the line and the dotted key, so that a person can fix them
without reading a traceback.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson
import yaml
from pydantic import ValidationError

from opsgate.errors import PolicyError
from opsgate.policy._document import PolicyDocument

__all__ = ["content_version", "error_location", "parse_policy", "read_yaml"]


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


def read_yaml(text: str, source: str, error: type[PolicyError] = PolicyError) -> Any:
    """Parse YAML text, turning syntax errors into ``error`` with file and line."""
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)  # a safe loader
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = exc.problem or exc.context or "invalid YAML"
        raise error(f"{line}{problem}", source=source) from None
    except yaml.YAMLError as exc:
        raise error(f"invalid YAML: {exc}", source=source) from None
    except UnicodeEncodeError as exc:  # a lone surrogate: text no UTF-8 file can hold
        raise error(
            f"character {exc.start + 1} is not valid Unicode ({exc.reason})", source=source
        ) from None


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


def parse_policy(source: str | Path, *, text: str | None = None) -> tuple[PolicyDocument, str]:
    """Read and validate a policy document.

    Args:
        source: A file path, or a name for ``text`` when it is given.
        text: The YAML itself, when it does not come from a file.

    Returns:
        The document and the name of its source.

    Raises:
        PolicyError: unreadable file, YAML error, unknown key, wrong type, invalid value.
    """
    name = str(source)
    if text is None:
        try:
            text = Path(source).read_text(encoding="utf-8")
        except FileNotFoundError:
            raise PolicyError("file not found", source=name) from None
        except (OSError, UnicodeDecodeError) as exc:
            raise PolicyError(f"cannot read the file: {exc}", source=name) from None
    data = read_yaml(text, name)
    if data is None:
        raise PolicyError("the policy is empty", source=name)
    if not isinstance(data, dict):
        raise PolicyError(
            f"a policy is a mapping with `version` and `workflows`, not a {type(data).__name__}",
            source=name,
        )
    try:
        return PolicyDocument.model_validate(data), name
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        loc = error_location(data, err["loc"], err["type"])
        where = ".".join(str(p) for p in loc)
        line = line_of(text, loc)
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = f"unknown key `{err['loc'][-1]}`"
        elif err["type"] == "missing":
            msg = f"missing required key `{err['loc'][-1]}`"
        more = exc.error_count() - 1
        suffix = f" (and {more} more error{'s' if more > 1 else ''})" if more else ""
        prefix = f"line {line}: " if line else ""
        raise PolicyError(f"{prefix}{msg}{suffix}", source=name, location=where) from None


def content_version(doc: PolicyDocument) -> str:
    """The policy's version: its declared version plus a hash of its meaning.

    Comments and formatting do not change the hash; any change to a rule does.
    """
    data = doc.model_dump(mode="json", by_alias=True)
    try:
        canonical = orjson.dumps(data, option=orjson.OPT_SORT_KEYS)
    except TypeError:  # an integer past 64 bits (a cap of 2**64): the same JSON, but exact
        text = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        canonical = text.encode()
    return f"{doc.version}+{hashlib.sha256(canonical).hexdigest()[:12]}"
