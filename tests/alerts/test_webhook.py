"""The webhook sink against a real local HTTP server: signed bodies, retries on 5xx, 429 and
timeouts with backoff, a dead server counted as failed deliveries, every attempt recorded,
re-notify deduplication, the log sink's line."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from opsgate.alerts import (
    SIGNATURE_HEADER,
    Firing,
    create_rule,
    evaluate,
    last_delivered,
    notify,
    recent_deliveries,
)
from opsgate.store import Store
from tests.alerts.conftest import NOW, Recorder

SECRET = "whsec-test-7f3a"


class Hook:
    """A local HTTP server answering POSTs with scripted statuses (then 200), and keeping
    what it received."""

    def __init__(self) -> None:
        self.statuses: list[int] = []
        self.delay_s = 0.0
        self.received: list[tuple[dict[str, str], bytes]] = []
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                hook.received.append(({k.lower(): v for k, v in self.headers.items()}, body))
                delay, hook.delay_s = hook.delay_s, 0.0  # only the first request waits
                time.sleep(delay)
                status = hook.statuses.pop(0) if hook.statuses else 200
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/opsgate?token=abc"
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def store(sqlite_store: Store) -> Store:
    """SQLite only: the webhook's behaviour does not depend on the backend (the evaluation
    and rule tests run on both)."""
    return sqlite_store


@pytest.fixture
def hook() -> Iterator[Hook]:
    server = Hook()
    yield server
    server.close()


@pytest.fixture(autouse=True)
def _secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALERT_HOOK_SECRET", SECRET)


def _firing_rule(store: Store, rec: Recorder, url: str, **kwargs: Any) -> int:
    rec.approval("support", NOW - 3600)
    return create_rule(
        store,
        workflow="support",
        kind="approval_backlog",
        threshold=30,
        created_by="ana",
        sinks=["webhook"],
        webhook_url=url,
        webhook_secret_env="ALERT_HOOK_SECRET",
        **kwargs,
    ).rule_id


def _fast(**kwargs: Any) -> dict[str, Any]:
    waits: list[float] = []
    return {"backoff_s": 0.01, "timeout_s": 2.0, "sleep": waits.append, **kwargs}


def test_signed_retried_on_500_then_delivered(store: Store, rec: Recorder, hook: Hook) -> None:
    rule_id = _firing_rule(store, rec, hook.url)
    hook.statuses = [500, 503]
    waits: list[float] = []
    (outcome,) = notify(store, evaluate(store, now=NOW), now=NOW, backoff_s=0.5, sleep=waits.append)
    assert (outcome.outcome, outcome.attempts) == ("delivered", 3)
    assert waits == [0.5, 1.0]  # exponential backoff
    assert len(hook.received) == 3
    bodies = {body for _, body in hook.received}
    assert len(bodies) == 1  # the same signed body on every attempt
    headers, body = hook.received[-1]
    expected = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    assert headers[SIGNATURE_HEADER.lower()] == expected
    assert [h["x-opsgate-attempt"] for h, _ in hook.received] == ["1", "2", "3"]
    sent = json.loads(body)
    assert sent["rule_id"] == rule_id and sent["kind"] == "approval_backlog"
    assert sent["workflow"] == "support" and sent["firing_id"] == headers["x-opsgate-delivery"]
    deliveries = list(reversed(recent_deliveries(store)))
    assert [(d.attempt, d.status_code, d.ok) for d in deliveries] == [
        (1, 500, False),
        (2, 503, False),
        (3, 200, True),
    ]
    assert {d.firing_id for d in deliveries} == {sent["firing_id"]}
    assert {d.url_host for d in deliveries} == {hook.url.split("/")[2]}  # the host only
    assert last_delivered(store, rule_id) is not None


def test_429_is_retried_and_a_4xx_is_not(store: Store, rec: Recorder, hook: Hook) -> None:
    _firing_rule(store, rec, hook.url)
    hook.statuses = [429, 400]
    (outcome,) = notify(store, evaluate(store, now=NOW), now=NOW, **_fast())
    assert (outcome.outcome, outcome.attempts) == ("failed", 2)
    assert [d.status_code for d in recent_deliveries(store)] == [400, 429]


def test_a_timeout_is_retried(store: Store, rec: Recorder, hook: Hook) -> None:
    _firing_rule(store, rec, hook.url)
    hook.delay_s = 1.0
    (outcome,) = notify(store, evaluate(store, now=NOW), now=NOW, **_fast(timeout_s=0.2))
    assert outcome.outcome == "delivered"
    first, second = reversed(recent_deliveries(store))
    assert (first.error, first.status_code, first.ok) == ("ReadTimeout", None, False)
    assert (second.status_code, second.ok) == (200, True)


def test_a_dead_server_is_failed_deliveries_not_a_crash(
    store: Store, rec: Recorder, caplog: pytest.LogCaptureFixture
) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    _firing_rule(store, rec, f"http://127.0.0.1:{port}/hook")
    with caplog.at_level(logging.WARNING, logger="opsgate.alerts"):
        (outcome,) = notify(store, evaluate(store, now=NOW), now=NOW, **_fast(attempts=3))
    assert (outcome.outcome, outcome.attempts) == ("failed", 3)
    deliveries = recent_deliveries(store)
    assert [d.attempt for d in deliveries] == [3, 2, 1]
    assert all(not d.ok and d.error == "ConnectError" for d in deliveries)
    assert "failed after 3 attempt(s)" in caplog.text and SECRET not in caplog.text


def test_renotify_interval_deduplicates(store: Store, rec: Recorder, hook: Hook) -> None:
    _firing_rule(store, rec, hook.url, renotify_minutes=30)
    firings = evaluate(store, now=NOW)
    notify(store, firings, **_fast())
    (again,) = notify(store, firings, **_fast())
    assert again.outcome == "suppressed" and len(hook.received) == 1
    assert len(recent_deliveries(store)) == 1  # nothing recorded for a suppressed one
    (later,) = notify(store, firings, now=time.time() + 31 * 60, **_fast())
    assert later.outcome == "delivered" and len(hook.received) == 2


def test_a_failed_delivery_does_not_count_for_renotify(
    store: Store, rec: Recorder, hook: Hook
) -> None:
    _firing_rule(store, rec, hook.url)
    hook.statuses = [500]
    notify(store, evaluate(store, now=NOW), **_fast(attempts=1))
    (retry,) = notify(store, evaluate(store, now=NOW), **_fast(attempts=1))
    assert retry.outcome == "delivered"


def test_a_missing_secret_is_never_sent_unsigned(
    store: Store, rec: Recorder, hook: Hook, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ALERT_HOOK_SECRET")
    _firing_rule(store, rec, hook.url)
    (outcome,) = notify(store, evaluate(store, now=NOW), now=NOW, **_fast())
    assert outcome.outcome == "failed" and hook.received == []
    (delivery,) = recent_deliveries(store)
    assert "`ALERT_HOOK_SECRET` is not set" in str(delivery.error) and not delivery.ok


def test_the_log_sink_writes_one_escaped_line(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    hostile = "sup\x1b[2Jport\u202e"  # text from the store reaches a log raw: never
    firing = Firing(
        7, hostile, "approval_backlog", 30, 7, None, 1, 45, f"`{hostile}`: 1", ("log",), NOW
    )
    with caplog.at_level(logging.WARNING, logger="opsgate.alerts"):
        (outcome,) = notify(store, [firing], now=NOW)
    assert outcome.outcome == "none"
    (line,) = [r.getMessage() for r in caplog.records]
    assert line.startswith("alert firing: rule=7 kind=approval_backlog workflow=")
    assert "\x1b" not in line and "\u202e" not in line and "\\u001b[2J" in line
