"""JSON data that can always be written: for records and messages built from outside data.

A Python string may hold what no UTF-8 text can (a lone surrogate, from a file or a socket
decoded with ``surrogateescape``), an integer may be past 64 bits, a structure may nest past
the 254 levels orjson writes, or hold objects JSON has no type for. Each of those made
`orjson.dumps` raise where opsgate writes an audit event or a message to a model: the event
was lost and the run crashed. `json_data` turns any value into JSON data that writes, keeping
everything it can: lone surrogates become U+FFFD (as a UTF-8 decoder with ``errors=
"replace"`` does), big integers and unknown objects their text, too-deep nesting and
cycles a marker.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import orjson

__all__ = ["CYCLE", "MAX_DEPTH", "TOO_DEEP", "dumps", "json_data"]

#: Deepest nesting kept (orjson writes 254 levels; records nest the data a few levels down).
MAX_DEPTH = 200
#: What stands for a value nested deeper than `MAX_DEPTH`.
TOO_DEEP = "[nested too deep]"
#: What stands for a container inside itself.
CYCLE = "[cycle]"

_SURROGATE = re.compile("[\ud800-\udfff]")
_INT64_MIN, _UINT64_MAX = -(2**63), 2**64 - 1


def _text(value: str) -> str:
    return _SURROGATE.sub("\ufffd", value)


def _repr(value: object) -> str:
    try:
        return repr(value)
    except Exception:  # a broken __repr__, or one that recurses without end
        return f"<{type(value).__name__}>"


def json_data(value: Any, *, max_depth: int = MAX_DEPTH) -> Any:
    """``value`` as JSON data that `orjson.dumps` writes (see the module's docstring).

    Strings, numbers, booleans and None within range are kept as they are; mappings become
    dicts with text keys, lists and tuples lists; a container holding itself, a marker.
    """
    return _convert(value, max_depth, set())


def _convert(value: Any, depth: int, path: set[int]) -> Any:
    if value is None or isinstance(value, (bool, float)):
        return value
    if isinstance(value, str):
        return _text(value)
    if isinstance(value, int):
        return value if _INT64_MIN <= value <= _UINT64_MAX else str(value)
    if not isinstance(value, (Mapping, list, tuple)):
        return _text(_repr(value))
    if depth <= 0:
        return TOO_DEEP
    if id(value) in path:
        return CYCLE
    path.add(id(value))
    try:
        if isinstance(value, Mapping):
            return {
                _text(k if isinstance(k, str) else _repr(k)): _convert(v, depth - 1, path)
                for k, v in value.items()
            }
        return [_convert(v, depth - 1, path) for v in value]
    finally:
        path.discard(id(value))


def dumps(value: Any, option: int | None = None) -> bytes:
    """`orjson.dumps`, falling back to `json_data` for what it cannot write as it is."""
    try:
        return orjson.dumps(value, option=option)
    except TypeError:
        return orjson.dumps(json_data(value), option=option)
