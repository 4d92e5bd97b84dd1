"""The console's Alerts page and API: viewers see rules and what fires now (and the
Overview lists it); only admins create, edit and delete, through forms with CSRF."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from opsgate.alerts import get_rule, list_rules
from opsgate.server import Console, Role, create_app, create_token
from opsgate.store import open_store
from tests.alerts.conftest import Recorder
from tests.server.conftest import login

HOSTILE = '<script>alert("x")</script>'


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'opsgate.db'}"


@pytest.fixture
def tokens(url: str) -> dict[str, str]:
    with open_store(url) as store:
        Recorder(store).approval(HOSTILE, time.time() - 3600, expires_at=time.time() + 3600)
        return {
            role.label: create_token(store, name=f"{role.label}-ann", role=role, created_by="t")[0]
            for role in Role
        }


@pytest.fixture
def client(url: str, tokens: dict[str, str]) -> Iterator[TestClient]:
    with TestClient(create_app(Console(url)), base_url="http://127.0.0.1") as c:
        yield c


def _form(**changes: str | list[str]) -> dict[str, str | list[str]]:
    return {
        "workflow": HOSTILE,
        "kind": "approval_backlog",
        "threshold": "30",
        "window_days": "7",
        "sinks": ["console", "log"],
        "renotify_minutes": "60",
        "enabled": "1",
        **changes,
    }


def test_an_admin_creates_edits_and_deletes_a_rule(
    client: TestClient, tokens: dict[str, str], url: str
) -> None:
    csrf = login(client, tokens["admin"])
    page = client.get("/alerts")
    assert page.status_code == 200 and "No alert rules yet" in page.text
    assert 'action="/alerts/rules"' in page.text  # the admin's form
    created = client.post("/alerts/rules", data={**_form(), "csrf": csrf})
    assert created.status_code == 200 and "rule 1 created" in created.text
    assert "<script>alert" not in created.text and "&lt;script&gt;" in created.text
    assert "Firing now (1)" in created.text  # the backlog of the hostile workflow
    with open_store(url, migrate=False) as store:
        (rule,) = list_rules(store)
    assert rule.created_by == "admin-ann" and rule.sinks == ("console", "log")
    edit = client.get("/alerts/rules/1")
    assert edit.status_code == 200 and 'value="30"' in edit.text
    saved = client.post(
        "/alerts/rules/1",
        data={**_form(threshold="90", sinks=["console"]), "csrf": csrf, "enabled": ""},
        follow_redirects=False,
    )
    assert saved.status_code == 303
    with open_store(url, migrate=False) as store:
        rule = get_rule(store, 1)
    assert (rule.threshold, rule.enabled, rule.updated_by) == (90.0, False, "admin-ann")
    assert "Firing now (0)" in client.get("/alerts").text
    deleted = client.post("/alerts/rules/1/delete", data={"csrf": csrf}, follow_redirects=False)
    assert deleted.status_code == 303
    assert client.get("/alerts/rules/1").status_code == 404


def test_writes_need_the_csrf_token(client: TestClient, tokens: dict[str, str]) -> None:
    login(client, tokens["admin"])
    refused = client.post("/alerts/rules", data=_form(), follow_redirects=False)
    assert refused.status_code == 403 and "CSRF" in refused.text
    wrong = client.post("/alerts/rules", data={**_form(), "csrf": "0" * 64})
    assert wrong.status_code == 403


def test_a_viewer_sees_and_cannot_write(client: TestClient, tokens: dict[str, str]) -> None:
    admin = {"Authorization": f"Bearer {tokens['admin']}"}
    made = client.post(
        "/api/alerts/rules",
        json={"workflow": "nowhere", "kind": "success_rate_drop", "threshold": 5},
        headers=admin,
    )
    assert made.status_code == 201 and "nothing is recorded" in made.json()["note"]
    csrf = login(client, tokens["viewer"])
    page = client.get("/alerts")
    assert page.status_code == 200 and "nowhere" in page.text
    assert 'action="/alerts/rules"' not in page.text and "Edit" not in page.text
    for path in ("/alerts/rules", "/alerts/rules/1", "/alerts/rules/1/delete"):
        answer = client.post(path, data={**_form(), "csrf": csrf}, follow_redirects=False)
        assert answer.status_code == 403, path
    assert client.get("/alerts/rules/1").status_code == 403
    viewer = {"Authorization": f"Bearer {tokens['viewer']}"}
    body = {"workflow": "w", "kind": "success_rate_drop", "threshold": 5}
    assert client.post("/api/alerts/rules", json=body, headers=viewer).status_code == 403
    data = client.get("/api/alerts", headers=viewer).json()
    assert [r["workflow"] for r in data["rules"]] == ["nowhere"] and data["firing"] == []


def test_bad_input_is_a_400_saying_why(client: TestClient, tokens: dict[str, str]) -> None:
    csrf = login(client, tokens["admin"])
    cases = {
        "kind": ("cpu_hot", "no alert kind"),
        "threshold": ("-2", "cannot be negative"),
        "webhook_url": ("javascript:alert(1)", "http:// or https://"),
    }
    for field, (value, says) in cases.items():
        answer = client.post("/alerts/rules", data={**_form(**{field: value}), "csrf": csrf})
        assert answer.status_code == 400 and says in answer.text, field
    admin = {"Authorization": f"Bearer {tokens['admin']}"}
    bad = client.post(
        "/api/alerts/rules",
        json={"workflow": "w", "kind": "approval_backlog", "threshold": 5, "sinks": ["pager"]},
        headers=admin,
    )
    assert bad.status_code == 400 and "no sink `pager`" in bad.json()["error"]
    missing = client.post("/api/alerts/rules/99/delete", headers=admin)
    assert missing.status_code == 404


def test_the_overview_lists_what_fires(client: TestClient, tokens: dict[str, str]) -> None:
    admin = {"Authorization": f"Bearer {tokens['admin']}"}
    for sinks in (["console"], ["log"]):
        body = {"workflow": HOSTILE, "kind": "approval_backlog", "threshold": 30, "sinks": sinks}
        assert client.post("/api/alerts/rules", json=body, headers=admin).status_code == 201
    login(client, tokens["viewer"])
    overview = client.get("/")
    assert overview.status_code == 200
    assert "1 alert(s) firing" in overview.text  # the console sink's rule only
    assert len(re.findall("approval request\\(s\\) pending", overview.text)) == 1
    assert "<script>alert" not in overview.text


def test_the_rule_form_and_api_set_the_stage_a_firing_demotes_to(
    client: TestClient, tokens: dict[str, str], url: str
) -> None:
    csrf = login(client, tokens["admin"])
    form = client.get("/alerts").text
    assert '<select name="demote_to">' in form and '<option value="read_only">' in form
    assert '<option value="autonomous_in_scope">' not in form  # the top is no demotion
    client.post("/alerts/rules", data={**_form(demote_to="draft"), "csrf": csrf})
    with open_store(url, migrate=False) as store:
        (rule,) = list_rules(store)
    assert rule.demote_to == "draft"
    assert "<td>draft</td>" in client.get("/alerts").text
    bad = client.post(
        "/api/alerts/rules",
        json={"workflow": "wf", "kind": "success_rate_drop", "threshold": 5, "demote_to": "nap"},
        headers={"Authorization": f"Bearer {tokens['admin']}"},
    )
    assert bad.status_code == 400 and "nap" in bad.text
