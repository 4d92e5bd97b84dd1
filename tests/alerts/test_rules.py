"""Rule CRUD and its input checks: every bad input is a `ConfigError` saying what to change."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from opsgate.alerts import (
    RuleNotFound,
    create_rule,
    delete_rule,
    get_rule,
    list_rules,
    update_rule,
    workflow_known,
)
from opsgate.errors import ConfigError
from opsgate.store import Store, alert_rules
from tests.alerts.conftest import RECENT, Recorder


def test_create_list_update_delete(store: Store, rec: Recorder) -> None:
    rule = create_rule(
        store,
        workflow="support",
        kind="approval_backlog",
        threshold=30,
        created_by="ana",
        sinks=["log", "webhook"],
        webhook_url="https://hooks.example.com/services/T0/B0/xyz",
        webhook_secret_env="ALERT_HOOK_SECRET",
    )
    assert rule.sinks == ("log", "webhook") and rule.enabled and rule.created_by == "ana"
    assert rule.as_dict()["webhook_host"] == "hooks.example.com"
    assert "xyz" not in str(rule.as_dict())  # a listing never shows the URL's path
    changed = update_rule(store, rule.rule_id, updated_by="bob", threshold=90, enabled=False)
    assert (changed.threshold, changed.enabled, changed.updated_by) == (90.0, False, "bob")
    assert changed.webhook_url == rule.webhook_url
    assert [r.rule_id for r in list_rules(store)] == [rule.rule_id]
    delete_rule(store, rule.rule_id, deleted_by="carla")
    assert list_rules(store) == []
    with pytest.raises(RuleNotFound):
        get_rule(store, rule.rule_id)
    with store.engine.connect() as conn:  # the row stays, naming who deleted it
        assert conn.execute(select(alert_rules.c.deleted_by)).scalar_one() == "carla"
    with pytest.raises(RuleNotFound):
        delete_rule(store, rule.rule_id, deleted_by="carla")


def test_a_webhook_url_alone_means_the_webhook_sink(sqlite_store: Store) -> None:
    rule = create_rule(
        sqlite_store,
        workflow="w",
        kind="success_rate_drop",
        threshold=5,
        created_by="ana",
        webhook_url="http://127.0.0.1:9/hook",
        webhook_secret_env="S",
    )
    assert rule.sinks == ("console", "webhook")
    plain = update_rule(
        sqlite_store, rule.rule_id, updated_by="ana", sinks=["log"], webhook_url=None
    )
    assert (
        plain.sinks == ("log",) and plain.webhook_url is None and plain.webhook_secret_env is None
    )


@pytest.mark.parametrize(
    ("changes", "says"),
    [
        ({"kind": "cpu_hot"}, "no alert kind `cpu_hot`"),
        ({"threshold": -1}, "cannot be negative"),
        ({"threshold": float("nan")}, "finite"),
        ({"kind": "success_rate_drop", "threshold": 150}, "0 to 100"),
        ({"kind": "approval_backlog", "threshold": 0}, "more than 0"),
        ({"window_days": 0}, "1 to 90 days"),
        ({"renotify_minutes": -5}, "re-notify"),
        ({"sinks": ["pager"]}, "no sink `pager`"),
        ({"sinks": []}, "at least one sink"),
        ({"workflow": " "}, "a workflow is printable text"),
        ({"sinks": ["webhook"]}, "needs a URL"),
        ({"webhook_url": "ftp://x.example/h", "webhook_secret_env": "S"}, "http:// or https://"),
        ({"webhook_url": "https://u:p@x.example/h", "webhook_secret_env": "S"}, "credentials"),
        ({"webhook_url": "https://x.example:99999/", "webhook_secret_env": "S"}, "not a valid"),
        ({"webhook_url": "https://x.example/h"}, "secret's variable name"),
        (
            {"webhook_url": "https://x.example/h", "webhook_secret_env": "s3cr3t value!"},
            "not an environment variable name",
        ),
        ({"created_by": " "}, "names who made it"),
    ],
)
def test_bad_input_says_what_to_change(
    sqlite_store: Store, changes: dict[str, object], says: str
) -> None:
    fields: dict[str, object] = {
        "workflow": "support",
        "kind": "unsafe_attempts_rise",
        "threshold": 3,
        "created_by": "ana",
        **changes,
    }
    with pytest.raises(ConfigError, match=says.replace("(", r"\(")):
        create_rule(sqlite_store, **fields)  # type: ignore[arg-type]
    assert list_rules(sqlite_store) == []


def test_update_checks_the_rule_as_a_whole(sqlite_store: Store) -> None:
    rule = create_rule(
        sqlite_store, workflow="w", kind="approval_backlog", threshold=30, created_by="ana"
    )
    with pytest.raises(ConfigError, match="0 to 100"):
        update_rule(
            sqlite_store, rule.rule_id, updated_by="ana", kind="success_rate_drop", threshold=500
        )
    with pytest.raises(ConfigError, match="no field `secret`"):
        update_rule(sqlite_store, rule.rule_id, updated_by="ana", secret="x")
    assert get_rule(sqlite_store, rule.rule_id).threshold == 30


def test_a_workflow_is_known_by_what_is_recorded(store: Store, rec: Recorder) -> None:
    assert not workflow_known(store, "support")
    rec.run("support", RECENT)
    rec.approval("queue-only", RECENT)
    assert workflow_known(store, "support") and workflow_known(store, "queue-only")
    assert not workflow_known(store, "suport")


def test_the_secret_is_never_stored(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from opsgate.store import open_store

    monkeypatch.setenv("ALERT_HOOK_SECRET", "whsec-TOPSECRET-123")
    with open_store(f"sqlite:///{tmp_path / 'a.db'}") as store:
        create_rule(
            store,
            workflow="w",
            kind="approval_backlog",
            threshold=1,
            created_by="ana",
            webhook_url="http://127.0.0.1:9/h",
            webhook_secret_env="ALERT_HOOK_SECRET",
        )
    data = b"".join(p.read_bytes() for p in tmp_path.glob("a.db*"))
    assert b"ALERT_HOOK_SECRET" in data and b"whsec-TOPSECRET-123" not in data
