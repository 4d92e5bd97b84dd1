"""`Normalize`: an argument a person typed, put in the form the system uses before the call
is validated (``a1050``, ``#A-1050``, ``ord1050`` → ``ORD-1050``).

A model copies ids the way the customer spelled them; a contract that knows its ids' form
repairs them rather than refusing call after call. The normaliser is the tool author's,
declared on the argument's type (``Annotated[str, Normalize(order_id), Field(...)]``); the
gateway records what it changed (``normalized`` on the proposed call), and the value that
runs is the normalised one (validated, decided, provenance-checked as such).
"""

from __future__ import annotations

import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["Normalize", "normalizers_of"]


@dataclass(frozen=True, slots=True)
class Normalize:
    """Marks an argument's type with its normaliser: ``fn(value) -> value``.

    The function gets what the model sent (any JSON value) and returns the value to use;
    it should leave what it does not recognise as it is (validation then says why), and it
    must not raise (an exception is treated as "unchanged").
    """

    fn: Callable[[Any], Any]


def normalizers_of(hints: Mapping[str, Any]) -> dict[str, Callable[[Any], Any]]:
    """The normaliser of each argument whose type carries a `Normalize` marker."""
    found: dict[str, Callable[[Any], Any]] = {}
    for name, annotation in hints.items():
        if typing.get_origin(annotation) is typing.Annotated:
            for meta in annotation.__metadata__:
                if isinstance(meta, Normalize):
                    found[name] = meta.fn
    return found
