"""Call matchers: whether a call (tool, arguments) matches a suite's `CallMatcher`, with its
operators (``gt``, ``gte``, ``lt``, ``lte``, ``in``, ``contains``, ``not``)."""

from __future__ import annotations

from typing import Any

from opsgate.evals._suite import CallMatcher

__all__ = ["match_call"]


def _op(op: str, actual: Any, value: Any) -> bool:
    if op == "gt":
        return bool(actual > value)
    if op == "gte":
        return bool(actual >= value)
    if op == "lt":
        return bool(actual < value)
    if op == "lte":
        return bool(actual <= value)
    if op == "in":
        return actual in value
    if op == "contains":
        return str(value).lower() in str(actual).lower()
    if op == "not":
        return bool(actual != value)
    return False


def _matches_value(expected: Any, actual: Any) -> bool:
    if isinstance(expected, dict):
        try:
            return all(_op(op, actual, value) for op, value in expected.items())
        except TypeError:
            return False
    if isinstance(expected, (int, float)) and isinstance(actual, (int, float)):
        return float(expected) == float(actual)
    return bool(expected == actual)


def match_call(matcher: CallMatcher, tool: str, args: dict[str, Any]) -> bool:
    """Whether a call of ``tool`` with ``args`` matches ``matcher``."""
    if matcher.tool != tool:
        return False
    return all(
        name in args and _matches_value(expected, args[name])
        for name, expected in matcher.args.items()
    )
