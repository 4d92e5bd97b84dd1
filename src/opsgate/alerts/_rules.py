"""Alert rules: what to watch in one workflow, past which threshold, and where to say so.

Rules are rows of ``alert_rules``; every change names its actor. Input is checked here, once,
for the CLI, the console and the API alike: a bad kind, threshold, window, sink, webhook URL,
secret variable name or demotion stage is a `ConfigError` saying what to change.

A rule may also act: with ``demote_to`` a stage, `opsgate alerts check` demotes its workflow
to that stage when it fires (`opsgate.autonomy.demote_on_firings`).
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import insert, select, update

from opsgate.errors import ConfigError
from opsgate.policy import STAGES
from opsgate.store import Store, alert_rules, approvals, cost_entries, runs

__all__ = [
    "KINDS",
    "SINKS",
    "UNITS",
    "Rule",
    "RuleNotFound",
    "create_rule",
    "delete_rule",
    "get_rule",
    "list_rules",
    "update_rule",
    "webhook_host",
    "workflow_known",
]

#: Each kind and what its threshold means (shown beside it in the CLI and the console).
KINDS: dict[str, str] = {
    "cost_per_success_drift": "ratio of rise in cost per successful task (0.25: +25 %)",
    "success_rate_drop": "percentage points of drop in success rate",
    "unsafe_attempts_rise": "more unsafe attempts than the window before, by this many",
    "escalation_rate_rise": "percentage points of rise in the share of runs ending escalated",
    "approval_backlog": "minutes a pending approval may wait",
}
#: Each kind's threshold unit, short (table cells).
UNITS: dict[str, str] = {
    "cost_per_success_drift": "ratio",
    "success_rate_drop": "points",
    "unsafe_attempts_rise": "attempts",
    "escalation_rate_rise": "points",
    "approval_backlog": "minutes",
}
SINKS = ("console", "log", "webhook")

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
_CAPS = {"success_rate_drop": 100.0, "escalation_rate_rise": 100.0}
_WINDOW_MAX = 90
_RENOTIFY_MAX = 7 * 24 * 60


class RuleNotFound(ConfigError):
    """No (undeleted) rule has that id: the console answers 404."""


@dataclass(frozen=True, slots=True)
class Rule:
    """One alert rule as stored.

    Attributes:
        threshold: In the unit of its kind (`KINDS`).
        window_days: Each of the two windows compared (not used by ``approval_backlog``).
        sinks: Where a firing goes: ``console``, ``log``, ``webhook``.
        webhook_secret_env: The name of the environment variable with the HMAC secret
            (never the secret).
        renotify_minutes: A rule that keeps firing is delivered again only after this.
        demote_to: The autonomy stage its workflow is demoted to when it fires (None: it
            only notifies).
    """

    rule_id: int
    workflow: str
    kind: str
    threshold: float
    window_days: int
    sinks: tuple[str, ...]
    webhook_url: str | None
    webhook_secret_env: str | None
    renotify_minutes: int
    enabled: bool
    created_at: float
    created_by: str
    updated_at: float | None
    updated_by: str | None
    demote_to: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """JSON data (the webhook URL as its host only: its path may hold a token)."""
        return {
            "rule_id": self.rule_id,
            "workflow": self.workflow,
            "kind": self.kind,
            "threshold": self.threshold,
            "window_days": self.window_days,
            "sinks": list(self.sinks),
            "webhook_host": webhook_host(self.webhook_url) if self.webhook_url else None,
            "webhook_secret_env": self.webhook_secret_env,
            "renotify_minutes": self.renotify_minutes,
            "enabled": self.enabled,
            "created_at": self.created_at,
            "created_by": self.created_by,
            "updated_at": self.updated_at,
            "updated_by": self.updated_by,
            "demote_to": self.demote_to,
        }


def webhook_host(url: str) -> str:
    """``host[:port]`` of a URL: all a delivery record or a listing shows of it."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    return f"{host}:{parts.port}" if parts.port else host


def _rule(r: Any) -> Rule:
    return Rule(
        rule_id=int(r.rule_id),
        workflow=r.workflow,
        kind=r.kind,
        threshold=float(r.threshold),
        window_days=int(r.window_days),
        sinks=tuple(s for s in r.sinks.split(",") if s),
        webhook_url=r.webhook_url,
        webhook_secret_env=r.webhook_secret_env,
        renotify_minutes=int(r.renotify_minutes),
        enabled=bool(r.enabled),
        created_at=float(r.created_at),
        created_by=r.created_by,
        updated_at=r.updated_at,
        updated_by=r.updated_by,
        demote_to=r.demote_to,
    )


def _actor(actor: str) -> str:
    clean = (actor or "").strip()
    if not clean:
        raise ConfigError("a change to an alert rule names who made it (`--as NAME`)")
    return clean[:256]


def _check(
    workflow: str,
    kind: str,
    threshold: float,
    window_days: int,
    sinks: tuple[str, ...] | list[str],
    webhook_url: str | None,
    webhook_secret_env: str | None,
    renotify_minutes: int,
    demote_to: str | None = None,
) -> dict[str, Any]:
    """The row's values, checked; a `ConfigError` naming the first problem."""
    name = (workflow or "").strip()
    if not name or len(name) > 128 or not name.isprintable():
        raise ConfigError(f"a workflow is printable text of 1 to 128 characters, not `{workflow}`")
    if kind not in KINDS:
        raise ConfigError(f"no alert kind `{kind}`: use one of {', '.join(KINDS)}")
    if threshold != threshold or threshold in (float("inf"), float("-inf")):
        raise ConfigError("the threshold must be a finite number")
    if threshold < 0:
        raise ConfigError(f"the threshold of `{kind}` cannot be negative ({threshold:g})")
    if kind == "approval_backlog" and threshold <= 0:
        raise ConfigError("the threshold of `approval_backlog` is minutes, more than 0")
    if kind in _CAPS and threshold > _CAPS[kind]:
        raise ConfigError(f"the threshold of `{kind}` is points, 0 to 100, not {threshold:g}")
    if not 1 <= window_days <= _WINDOW_MAX:
        raise ConfigError(f"the window is 1 to {_WINDOW_MAX} days, not {window_days}")
    if not 0 <= renotify_minutes <= _RENOTIFY_MAX:
        raise ConfigError(f"the re-notify interval is 0 to {_RENOTIFY_MAX} minutes")
    chosen = [s.strip() for s in sinks if s.strip()]
    unknown = [s for s in chosen if s not in SINKS]
    if unknown:
        raise ConfigError(f"no sink `{unknown[0]}`: use console, log or webhook")
    if not chosen:
        raise ConfigError("a rule needs at least one sink (console, log or webhook)")
    url = (webhook_url or "").strip() or None
    env = (webhook_secret_env or "").strip() or None
    if url is not None:
        _check_url(url)
    if "webhook" in chosen:
        if url is None or env is None:
            raise ConfigError("the webhook sink needs a URL and the secret's variable name")
    elif url is not None:
        chosen.append("webhook")  # a URL given is a webhook meant
        if env is None:
            raise ConfigError("the webhook sink needs the secret's variable name (`--secret-env`)")
    stage = (demote_to or "").strip() or None
    if stage is not None and stage not in STAGES:
        raise ConfigError(
            f"no autonomy stage `{stage}` to demote to: use one of {', '.join(STAGES)}"
        )
    if stage == STAGES[-1]:
        raise ConfigError(f"`{stage}` is the highest stage: a demotion goes to a lower one")
    if env is not None and not _ENV_NAME.match(env):
        raise ConfigError(
            f"`{env}` is not an environment variable name (letters, digits and _): name the "
            "variable that holds the secret, never the secret itself"
        )
    return {
        "workflow": name,
        "kind": kind,
        "threshold": float(threshold),
        "window_days": int(window_days),
        "sinks": ",".join(s for s in SINKS if s in chosen),
        "webhook_url": url,
        "webhook_secret_env": env if url is not None else None,
        "renotify_minutes": int(renotify_minutes),
        "demote_to": stage,
    }


def _check_url(url: str) -> None:
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise ConfigError("the webhook URL is not a valid URL") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError("the webhook URL must be http:// or https:// with a host")
    if parts.username or parts.password:
        raise ConfigError("the webhook URL may not carry credentials: sign with the secret")
    if len(url) > 2000 or not url.isprintable() or " " in url or port == 0:
        raise ConfigError("the webhook URL is not a valid URL")


def create_rule(
    store: Store,
    *,
    workflow: str,
    kind: str,
    threshold: float,
    created_by: str,
    window_days: int = 7,
    sinks: tuple[str, ...] | list[str] = ("console",),
    webhook_url: str | None = None,
    webhook_secret_env: str | None = None,
    renotify_minutes: int = 60,
    enabled: bool = True,
    demote_to: str | None = None,
) -> Rule:
    """A new rule (a workflow with nothing recorded yet is allowed: `workflow_known`).

    Raises:
        ConfigError: bad input, saying what to change.
    """
    values = _check(
        workflow,
        kind,
        threshold,
        window_days,
        sinks,
        webhook_url,
        webhook_secret_env,
        renotify_minutes,
        demote_to,
    )
    actor = _actor(created_by)
    with store.engine.begin() as conn:
        rule_id = conn.execute(
            insert(alert_rules)
            .values(**values, enabled=enabled, created_at=time.time(), created_by=actor)
            .returning(alert_rules.c.rule_id)
        ).scalar_one()
    return get_rule(store, int(rule_id))


def get_rule(store: Store, rule_id: int) -> Rule:
    """The rule ``rule_id`` (not deleted).

    Raises:
        ConfigError: no such rule.
    """
    with store.engine.connect() as conn:
        row = conn.execute(
            select(alert_rules).where(
                alert_rules.c.rule_id == rule_id, alert_rules.c.deleted_at.is_(None)
            )
        ).first()
    if row is None:
        raise RuleNotFound(f"no alert rule {rule_id}")
    return _rule(row)


def list_rules(store: Store, *, workflow: str | None = None) -> list[Rule]:
    """Rules not deleted, by workflow then id."""
    query = select(alert_rules).where(alert_rules.c.deleted_at.is_(None))
    if workflow is not None:
        query = query.where(alert_rules.c.workflow == workflow)
    with store.engine.connect() as conn:
        rows = conn.execute(query.order_by(alert_rules.c.workflow, alert_rules.c.rule_id))
        return [_rule(r) for r in rows]


def update_rule(store: Store, rule_id: int, *, updated_by: str, **changes: Any) -> Rule:
    """Change some of a rule's fields (the names of `create_rule`'s), checked as a whole.

    Raises:
        ConfigError: no such rule, an unknown field, or bad input.
    """
    current = get_rule(store, rule_id)
    known = {
        "workflow",
        "kind",
        "threshold",
        "window_days",
        "sinks",
        "webhook_url",
        "webhook_secret_env",
        "renotify_minutes",
        "enabled",
        "demote_to",
    }
    unknown = sorted(set(changes) - known)
    if unknown:
        raise ConfigError(f"an alert rule has no field `{unknown[0]}`")
    merged = {**{k: getattr(current, k) for k in known}, **changes}
    values = _check(
        merged["workflow"],
        merged["kind"],
        float(merged["threshold"]),
        int(merged["window_days"]),
        tuple(merged["sinks"]),
        merged["webhook_url"],
        merged["webhook_secret_env"],
        int(merged["renotify_minutes"]),
        merged["demote_to"],
    )
    actor = _actor(updated_by)
    with store.engine.begin() as conn:
        conn.execute(
            update(alert_rules)
            .where(alert_rules.c.rule_id == rule_id, alert_rules.c.deleted_at.is_(None))
            .values(
                **values,
                enabled=bool(merged["enabled"]),
                updated_at=time.time(),
                updated_by=actor,
            )
        )
    return get_rule(store, rule_id)


def delete_rule(store: Store, rule_id: int, *, deleted_by: str) -> Rule:
    """Delete a rule: it stops being evaluated; its row stays, naming who deleted it.

    Raises:
        ConfigError: no such rule.
    """
    rule = get_rule(store, rule_id)
    actor = _actor(deleted_by)
    with store.engine.begin() as conn:
        conn.execute(
            update(alert_rules)
            .where(alert_rules.c.rule_id == rule_id)
            .values(deleted_at=time.time(), deleted_by=actor)
        )
    return rule


def workflow_known(store: Store, workflow: str) -> bool:
    """Whether anything is recorded for ``workflow`` (runs, spend or approvals): a rule on
    an unknown one is kept (it may be about to start), and the caller says so."""
    with store.engine.connect() as conn:
        for table in (runs, cost_entries, approvals):
            found = conn.execute(
                select(table.c.workflow).where(table.c.workflow == workflow).limit(1)
            ).first()
            if found is not None:
                return True
    return False
