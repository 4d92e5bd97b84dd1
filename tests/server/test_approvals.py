"""The approvals inbox: what a person sees, deciding as the token's name (audited once),
idempotent double approval, conflicts, history."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient

from opsgate.audit import AuditLog
from opsgate.store import open_store
from tests.server.conftest import login
from tests.server.world import World


def _decisions(world: World) -> list[dict[str, object]]:
    with open_store(world.url, migrate=False) as store:
        return [
            r.data
            for r in AuditLog(store).records(world.pending)
            if r.type in ("approval_granted", "approval_denied")
        ]


def test_the_inbox_shows_the_exact_call_and_its_origins(
    client: TestClient, tokens: dict[str, str], world: World
) -> None:
    login(client, tokens["viewer"])
    page = client.get("/approvals").text
    assert f"req-{world.request_id}" in page
    for expected in (
        "pay",
        "<code>60.0</code>",
        "<code>ORD-1</code>",
        "<code>damaged</code>",
        "workflows.wf.tools.pay.approval_when",
        "needs approval",
        "request, tool:lookup",  # where order_id came from
        'class="countdown" data-expires=',
        "expires in 23h",
        "refund 60 on ORD-1",
    ):
        assert expected in page, expected
    assert 'name="decision"' not in page  # a viewer sees no buttons
    assert "ana.pii@example.com" not in page and "[redacted:email:" in page  # as the trail
    detail = client.get(f"/approvals/{world.request_id}").text
    assert "The run so far" in detail and "approval asked for pay" in detail


def test_approve_from_the_inbox_as_the_tokens_name(
    client: TestClient, tokens: dict[str, str], world: World
) -> None:
    csrf = login(client, tokens["approver"])
    assert 'value="approve"' in client.get("/approvals").text
    path = f"/approvals/{world.request_id}/decide"
    form = {"decision": "approve", "reason": "photo checked", "csrf": csrf}
    first = client.post(path, data=form, follow_redirects=False)
    assert first.status_code == 303 and first.headers["location"] == "/approvals"
    again = client.post(path, data=form, follow_redirects=False)  # a double click
    assert again.status_code == 303
    assert _decisions(world) == [
        {
            "approver": "approver-ann",
            "call_id": _decisions(world)[0]["call_id"],
            "reason": "photo checked",
            "request_id": world.request_id,
            "tool": "pay",
            "via": "approval queue",
        }
    ]
    page = client.get("/approvals").text
    inbox = page[: page.index("History")]
    assert f"req-{world.request_id}" not in inbox and "No pending request." in inbox
    history = page[page.index("History") :]
    assert "approver-ann" in history and "photo checked" in history and "approved" in history
    late = client.post(path, data={**form, "decision": "deny"}, follow_redirects=False)
    assert late.status_code == 409 and "already approved by approver-ann" in late.text


def test_the_api_decides_once(client: TestClient, tokens: dict[str, str], world: World) -> None:
    bearer = {"Authorization": f"Bearer {tokens['approver']}"}
    path = f"/api/approvals/{world.request_id}/decision"
    first = client.post(path, json={"approve": False, "reason": "not eligible"}, headers=bearer)
    assert first.status_code == 200 and first.json()["decided_now"] is True
    second = client.post(path, json={"approve": False, "reason": "not eligible"}, headers=bearer)
    assert second.status_code == 200 and second.json()["decided_now"] is False
    assert second.json()["status"] == "denied" and second.json()["approver"] == "approver-ann"
    assert len(_decisions(world)) == 1
    other = {"Authorization": f"Bearer {tokens['admin']}"}
    conflict = client.post(path, json={"approve": False}, headers=other)
    assert conflict.status_code == 409  # someone else's decision is not theirs to repeat
    listed = client.get("/api/approvals", headers=bearer).json()
    assert listed["pending"] == [] and listed["history"][0]["request_id"] == world.request_id
    assert (
        client.post(
            "/api/approvals/nope/decision", json={"approve": True}, headers=bearer
        ).status_code
        == 404
    )


def test_a_viewer_cannot_approve(client: TestClient, tokens: dict[str, str], world: World) -> None:
    csrf = login(client, tokens["viewer"])
    path = f"/approvals/{world.request_id}/decide"
    refused = client.post(path, data={"decision": "approve", "csrf": csrf}, follow_redirects=False)
    assert refused.status_code == 403 and "approver role" in refused.text
    assert _decisions(world) == []


def test_a_bad_decision_value_is_a_400(
    client: TestClient, tokens: dict[str, str], world: World
) -> None:
    csrf = login(client, tokens["approver"])
    path = f"/approvals/{world.request_id}/decide"
    bad = client.post(path, data={"decision": "maybe", "csrf": csrf}, follow_redirects=False)
    assert bad.status_code == 400 and re.search(r"decision", bad.text)
    assert _decisions(world) == []


def test_the_inbox_loads_the_runs_story(
    client: TestClient, tokens: dict[str, str], world: World
) -> None:
    login(client, tokens["viewer"])
    assert f'hx-get="/approvals/{world.request_id}/story"' in client.get("/approvals").text
    story = client.get(f"/approvals/{world.request_id}/story", headers={"HX-Request": "true"})
    assert story.status_code == 200 and "<html" not in story.text
    assert "approval asked for pay" in story.text and "gate: allow lookup" in story.text
    assert "&lt;script&gt;" in story.text and "<script>" not in story.text
