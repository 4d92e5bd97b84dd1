"""`notify`: firings to their sinks. The console sink is the Alerts page itself (nothing to
send); ``log`` is one warning line on the ``opsgate.alerts`` logger; ``webhook`` is a signed
JSON POST.

The webhook body is the firing as JSON (with a ``firing_id``, the same across its retries,
and ``sent_at``), signed with HMAC-SHA256 under the secret read from the environment variable
the rule names (``X-Opsgate-Signature: sha256=<hex>``); the secret is never stored, logged
or recorded. Timeouts, connection errors, 429 and 5xx are retried with exponential backoff,
a bounded number of times; every attempt is a row of ``alert_deliveries`` (the URL's host
only, the status or the error's kind). A rule whose webhook was delivered less than its
re-notify interval ago is not sent again (nothing is recorded for it).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import httpx
from sqlalchemy import func, insert, select

from opsgate.alerts._evaluate import Firing
from opsgate.alerts._rules import Rule, get_rule, webhook_host
from opsgate.errors import ConfigError
from opsgate.store import Store, alert_deliveries

__all__ = [
    "SIGNATURE_HEADER",
    "Delivery",
    "Notified",
    "last_delivered",
    "notify",
    "recent_deliveries",
    "sign",
]

logger = logging.getLogger("opsgate.alerts")

SIGNATURE_HEADER = "X-Opsgate-Signature"


@dataclass(frozen=True, slots=True)
class Delivery:
    """One delivery attempt, as recorded."""

    rule_id: int
    firing_id: str
    workflow: str
    kind: str
    url_host: str
    attempt: int
    status_code: int | None
    error: str | None
    ok: bool
    at: float

    def as_dict(self) -> dict[str, Any]:
        """JSON data."""
        return asdict(self)


@dataclass(frozen=True, slots=True)
class Notified:
    """What came of one firing's webhook: ``delivered``, ``failed``, ``suppressed`` (sent
    less than the re-notify interval ago) or ``none`` (no webhook sink)."""

    rule_id: int
    outcome: str
    attempts: int


def sign(secret: bytes, body: bytes) -> str:
    """The signature header's value: ``sha256=`` and the HMAC-SHA256 of ``body``, hex."""
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def _log_line(f: Firing) -> str:
    # workflow and message come from the store: JSON-quoted, so no control character of
    # theirs reaches a terminal or a log file raw
    return (
        f"alert firing: rule={f.rule_id} kind={f.kind} workflow={json.dumps(f.workflow)} "
        f"message={json.dumps(f.message)}"
    )


def notify(
    store: Store,
    firings: Sequence[Firing],
    *,
    now: float | None = None,
    attempts: int = 4,
    backoff_s: float = 0.5,
    timeout_s: float = 5.0,
    transport: httpx.BaseTransport | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> list[Notified]:
    """Send each firing to its rule's log and webhook sinks; never raises for a delivery.

    Args:
        attempts: Delivery attempts per webhook firing (1 and up).
        backoff_s: The wait before the second attempt; doubled before each next one.
        timeout_s: Each attempt's timeout.
    """
    at = time.time() if now is None else now
    out = []
    with httpx.Client(timeout=timeout_s, transport=transport, follow_redirects=False) as client:
        for firing in firings:
            if "log" in firing.sinks:
                logger.warning(_log_line(firing))
            if "webhook" not in firing.sinks:
                out.append(Notified(firing.rule_id, "none", 0))
                continue
            try:
                rule = get_rule(store, firing.rule_id)
            except ConfigError:  # deleted since it was evaluated
                continue
            last = last_delivered(store, rule.rule_id)
            if last is not None and at - last < rule.renotify_minutes * 60.0:
                out.append(Notified(rule.rule_id, "suppressed", 0))
                continue
            out.append(_deliver(store, client, rule, firing, max(1, attempts), backoff_s, sleep))
    return out


def _deliver(
    store: Store,
    client: httpx.Client,
    rule: Rule,
    firing: Firing,
    attempts: int,
    backoff_s: float,
    sleep: Callable[[float], None],
) -> Notified:
    assert rule.webhook_url is not None and rule.webhook_secret_env is not None
    firing_id = uuid.uuid4().hex
    host = webhook_host(rule.webhook_url)
    secret = os.environ.get(rule.webhook_secret_env, "")

    def record(attempt: int, status: int | None, error: str | None, ok: bool) -> None:
        with store.engine.begin() as conn:
            conn.execute(
                insert(alert_deliveries).values(
                    rule_id=rule.rule_id,
                    firing_id=firing_id,
                    workflow=rule.workflow,
                    kind=rule.kind,
                    url_host=host[:256],
                    attempt=attempt,
                    status_code=status,
                    error=error,
                    ok=ok,
                    at=time.time(),
                )
            )

    if not secret:
        record(1, None, f"the variable `{rule.webhook_secret_env}` is not set: not sent", False)
        logger.warning(
            "alert rule %d: webhook not sent, its secret variable %s is not set",
            rule.rule_id,
            json.dumps(rule.webhook_secret_env),
        )
        return Notified(rule.rule_id, "failed", 1)
    body = json.dumps(
        {**firing.as_dict(), "firing_id": firing_id, "sent_at": time.time()},
        sort_keys=True,
        separators=(",", ":"),
    ).encode()
    headers = {
        "Content-Type": "application/json",
        SIGNATURE_HEADER: sign(secret.encode(), body),
        "X-Opsgate-Delivery": firing_id,
        "User-Agent": "opsgate-alerts",
    }
    delay = backoff_s
    for attempt in range(1, attempts + 1):
        status: int | None = None
        error: str | None = None
        retry_after: float | None = None
        try:
            response = client.post(
                rule.webhook_url,
                content=body,
                headers={**headers, "X-Opsgate-Attempt": str(attempt)},
            )
            status = response.status_code
            retry_after = _retry_after(response.headers.get("retry-after"))
        except httpx.HTTPError as exc:  # timeouts, refused, reset: the kind only (no URL)
            error = type(exc).__name__
        ok = status is not None and 200 <= status < 300
        record(attempt, status, error, ok)
        if ok:
            return Notified(rule.rule_id, "delivered", attempt)
        transient = status is None or status == 429 or status >= 500
        if not transient or attempt == attempts:
            break
        sleep(min(max(delay, retry_after or 0.0), 30.0))
        delay *= 2
    logger.warning(
        "alert rule %d: webhook to %s failed after %d attempt(s)",
        rule.rule_id,
        json.dumps(host),
        attempt,
    )
    return Notified(rule.rule_id, "failed", attempt)


def _retry_after(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def last_delivered(store: Store, rule_id: int) -> float | None:
    """When ``rule_id``'s webhook last got a 2xx (None: never)."""
    with store.engine.connect() as conn:
        at = conn.execute(
            select(func.max(alert_deliveries.c.at)).where(
                alert_deliveries.c.rule_id == rule_id, alert_deliveries.c.ok
            )
        ).scalar()
    return None if at is None else float(at)


def recent_deliveries(
    store: Store, *, limit: int = 20, rule_id: int | None = None
) -> list[Delivery]:
    """The latest delivery attempts, newest first."""
    query = select(alert_deliveries).order_by(alert_deliveries.c.id.desc()).limit(limit)
    if rule_id is not None:
        query = query.where(alert_deliveries.c.rule_id == rule_id)
    with store.engine.connect() as conn:
        return [
            Delivery(
                int(r.rule_id),
                r.firing_id,
                r.workflow,
                r.kind,
                r.url_host,
                int(r.attempt),
                r.status_code,
                r.error,
                bool(r.ok),
                float(r.at),
            )
            for r in conn.execute(query)
        ]
