"""What the console computed and may serve again: a value kept per database under a key
that holds the version of the data under it (a few index look-ups the caller makes:
the newest ledger entry, the newest audit event, the approvals' counters), so a write
makes the next request compute afresh; a value older than its ``max_age_s`` is computed
again anyway. Concurrent requests for one key wait for one computation.

Per process: with several workers each keeps its own.
"""

from __future__ import annotations

import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, TypeVar, cast

from sqlalchemy import Engine

from opsgate.store import Store

__all__ = ["kept"]

_KEPT = 64  # values kept per database
T = TypeVar("T")


class _Values:
    """What was computed over one database (newest use last), with a lock per key."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.kept: OrderedDict[tuple[Any, ...], tuple[float, Any]] = OrderedDict()
        self.computing: dict[tuple[Any, ...], threading.Lock] = {}

    def get(self, key: tuple[Any, ...], now: float, max_age_s: float) -> tuple[bool, Any]:
        with self.lock:
            found = self.kept.get(key)
            if found is None or now - found[0] > max_age_s:
                return False, None
            self.kept.move_to_end(key)
            return True, found[1]

    def put(self, key: tuple[Any, ...], at: float, value: Any) -> None:
        with self.lock:
            self.kept[key] = (at, value)
            self.kept.move_to_end(key)
            while len(self.kept) > _KEPT:
                self.kept.popitem(last=False)

    def computing_lock(self, key: tuple[Any, ...]) -> threading.Lock:
        with self.lock:
            return self.computing.setdefault(key, threading.Lock())

    def done(self, key: tuple[Any, ...]) -> None:
        with self.lock:
            self.computing.pop(key, None)


_values: weakref.WeakKeyDictionary[Engine, _Values] = weakref.WeakKeyDictionary()
_values_lock = threading.Lock()


def kept(store: Store, key: tuple[Any, ...], max_age_s: float, compute: Callable[[], T]) -> T:
    """``compute()``, or what it gave for ``key`` (which must hold the data's version) within
    the last ``max_age_s`` seconds."""
    with _values_lock:
        values = _values.setdefault(store.engine, _Values())
    hit, value = values.get(key, time.time(), max_age_s)
    if hit:
        return cast(T, value)
    with values.computing_lock(key):  # the first request computes, the others wait for it
        hit, value = values.get(key, time.time(), max_age_s)
        if not hit:
            value = compute()
            values.put(key, time.time(), value)
    values.done(key)
    return cast(T, value)
