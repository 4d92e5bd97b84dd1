"""The value types and the pure helpers of the client (no server needed)."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from email.utils import format_datetime

import httpx
import pytest

from opsgate.errors import ModelServerError
from opsgate.models import (
    Message,
    ModelSettings,
    ToolCall,
    Usage,
    attempt_latencies,
    basic_validator,
    failed_responses,
    parse_retry_after,
)
from opsgate.models._openai import backoff_delay, build_request_body


def test_message_checks() -> None:
    with pytest.raises(ValueError, match="tool_call_id"):
        Message("tool", "result")
    with pytest.raises(ValueError, match="role"):
        Message("robot", "hi")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="assistant"):
        Message("user", "hi", (ToolCall("1", "t", "{}"),))
    assert Message.tool("c1", "ok") == Message("tool", "ok", tool_call_id="c1")


def test_settings_checks() -> None:
    for bad in (
        {"temperature": -0.1},
        {"max_tokens": 0},
        {"timeout_s": 0},
        {"tool_choice": "any"},
    ):
        with pytest.raises(ValueError):
            ModelSettings(**bad)


def test_usage_adds_up() -> None:
    total = Usage(10, 2, 4) + Usage(5, 1)
    assert total == Usage(15, 3, 4)
    assert sum((Usage(1, 1), Usage(2, 2)), Usage()) == Usage(3, 3)


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"Retry-After": "2"}, 2.0),
        ({"Retry-After": "0.25"}, 0.25),
        ({"Retry-After": " 3 "}, 3.0),
        ({"retry-after-ms": "150", "Retry-After": "9"}, 0.15),
        ({"Retry-After": "-1"}, None),
        ({"Retry-After": "nan"}, None),
        ({"Retry-After": "soon"}, None),
        ({}, None),
    ],
)
def test_parse_retry_after(headers: dict[str, str], expected: float | None) -> None:
    assert parse_retry_after(httpx.Headers(headers)) == expected


def test_parse_retry_after_http_date() -> None:
    now = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC).timestamp()
    later = format_datetime(datetime(2026, 1, 1, 12, 0, 7, tzinfo=UTC), usegmt=True)
    assert parse_retry_after(httpx.Headers({"Retry-After": later}), now=now) == 7.0
    past = format_datetime(datetime(2025, 1, 1, tzinfo=UTC), usegmt=True)
    assert parse_retry_after(httpx.Headers({"Retry-After": past}), now=now) == 0.0


def test_backoff_is_full_jitter_and_capped() -> None:
    rng = random.Random(7)
    for retry in range(10):
        window = min(2.0, 0.1 * 2**retry)
        delays = [backoff_delay(retry, 0.1, 2.0, rng) for _ in range(200)]
        assert all(0 <= d <= window for d in delays)
        assert max(delays) > window / 2  # spread over the window, not fixed
    assert backoff_delay(10_000, 0.1, 2.0, rng) <= 2.0  # no overflow


def test_body_sends_tool_choice_only_with_tools() -> None:
    body = build_request_body("m", [Message.user("x")], [], ModelSettings(tool_choice="none"))
    assert "tools" not in body and "tool_choice" not in body


def test_basic_validator() -> None:
    validate = basic_validator([{"type": "function", "function": {"name": "lookup"}}])
    assert validate(ToolCall("1", "lookup", '{"a": 1}')) is None
    assert "unknown tool `nope`" in (validate(ToolCall("1", "nope", "{}")) or "")
    assert "not valid JSON" in (validate(ToolCall("1", "lookup", '{"a": ')) or "")
    assert "JSON object" in (validate(ToolCall("1", "lookup", "[1]")) or "")


def test_error_accessors_default_to_empty() -> None:
    error = ModelServerError("x", model="m", attempts=1)
    assert attempt_latencies(error) == ()
    assert failed_responses(error) == ()
