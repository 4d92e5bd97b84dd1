"""Alerts: rules per workflow, kept in the store, evaluated on the record, sent to sinks.

- Rules (`create_rule`, `update_rule`, `delete_rule`, `list_rules`, `get_rule`): a workflow,
  a kind (`KINDS`), a threshold, a window, sinks (`SINKS`), enabled, who made them.
- `evaluate(store, now)`: the rules that fire now (`Firing`); it only reads, so the console
  shows it on every page load.
- `notify(store, firings)`: the log line and the signed webhook (retried, every attempt
  recorded, re-sent only after the rule's re-notify interval). `opsgate alerts check` is
  `evaluate` then `notify`, for cron; then, for rules with ``demote_to``, the demotion of
  their workflow (`opsgate.autonomy.demote_on_firings`: autonomy builds on alerts, never
  the other way round).
"""

from opsgate.alerts._evaluate import UNSAFE_REASONS, Firing, evaluate, evaluate_rule
from opsgate.alerts._notify import (
    SIGNATURE_HEADER,
    Delivery,
    Notified,
    last_delivered,
    notify,
    recent_deliveries,
    sign,
)
from opsgate.alerts._rules import (
    KINDS,
    SINKS,
    UNITS,
    Rule,
    RuleNotFound,
    create_rule,
    delete_rule,
    get_rule,
    list_rules,
    update_rule,
    webhook_host,
    workflow_known,
)

__all__ = [
    "KINDS",
    "SIGNATURE_HEADER",
    "SINKS",
    "UNITS",
    "UNSAFE_REASONS",
    "Delivery",
    "Firing",
    "Notified",
    "Rule",
    "RuleNotFound",
    "create_rule",
    "delete_rule",
    "evaluate",
    "evaluate_rule",
    "get_rule",
    "last_delivered",
    "list_rules",
    "notify",
    "recent_deliveries",
    "sign",
    "update_rule",
    "webhook_host",
    "workflow_known",
]
