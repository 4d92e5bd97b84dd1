"""The runs list and a run's page: filters, keyset pages, the timeline, spans, verification,
hostile text escaped, and the errors (400, 404, 503) as pages without a traceback."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from opsgate.server import Console, create_app
from tests.server.world import HOSTILE, World


@pytest.fixture
def viewer(tokens: dict[str, str]) -> dict[str, str]:
    return {"Authorization": f"Bearer {tokens['viewer']}"}


def _ids(client: TestClient, viewer: dict[str, str], **params: Any) -> set[str]:
    response = client.get("/api/runs", params=params, headers=viewer)
    assert response.status_code == 200, response.text
    return {r["run_id"] for r in response.json()["runs"]}


def test_filters(client: TestClient, viewer: dict[str, str], world: World) -> None:
    every = {world.denied, world.pending, world.live, world.escalated}
    assert _ids(client, viewer) == every
    assert _ids(client, viewer, denied=1) == {world.denied}
    assert _ids(client, viewer, escalated="true") == {world.escalated}
    assert _ids(client, viewer, waiting=1) == {world.pending}
    assert _ids(client, viewer, status="running") == {world.live}
    assert _ids(client, viewer, invoker="carol") == {world.escalated}
    assert _ids(client, viewer, agent="bot-1") == {world.denied, world.escalated}
    assert _ids(client, viewer, workflow="nope") == set()
    assert _ids(client, viewer, policy_version="t1+nope") == set()
    assert _ids(client, viewer, since="1h") == every
    assert _ids(client, viewer, since="2000-01-01") == every
    assert _ids(client, viewer, until="1h") == set()
    assert _ids(client, viewer, since="2000-01-01", until="2000-01-02") == set()
    page = client.get("/runs", params={"denied": "1"}, headers=viewer)
    assert world.denied[:12] in page.text and world.live[:12] not in page.text


def test_keyset_pages_walk_every_run_once(
    client: TestClient, viewer: dict[str, str], world: World
) -> None:
    seen: list[str] = []
    before = None
    while True:
        params: dict[str, Any] = {"limit": 1, **({"before": before} if before else {})}
        body = client.get("/api/runs", params=params, headers=viewer).json()
        seen += [r["run_id"] for r in body["runs"]]
        before = body["next"]
        if before is None:
            break
    assert len(seen) == 4 and set(seen) == {
        world.denied,
        world.pending,
        world.live,
        world.escalated,
    }
    page = client.get("/runs", params={"limit": 2}, headers=viewer)
    assert "Older runs" in page.text and 'hx-get="/runs?limit=2&amp;before=' in page.text
    more = client.get(
        "/runs",
        params={"limit": 2, "before": body_cursor(client, viewer)},
        headers={**viewer, "HX-Request": "true"},
    )
    assert more.status_code == 200 and "<html" not in more.text and "<tr>" in more.text


def body_cursor(client: TestClient, viewer: dict[str, str]) -> str:
    cursor: str = client.get("/api/runs", params={"limit": 2}, headers=viewer).json()["next"]
    return cursor


@pytest.mark.parametrize(
    ("params", "says"),
    [
        ({"since": "yesterday"}, "since"),
        ({"since": "0d"}, "more than zero"),
        ({"until": "2999-01-01"}, "`until`"),
        ({"before": "abc"}, "before"),
        ({"before": "12.5"}, "before"),
        ({"limit": "0"}, "limit"),
        ({"limit": "many"}, "limit"),
        ({"denied": "perhaps"}, "denied"),
    ],
)
def test_a_malformed_filter_is_a_400_with_a_message(
    client: TestClient, viewer: dict[str, str], params: dict[str, str], says: str
) -> None:
    api = client.get("/api/runs", params=params, headers=viewer)
    assert api.status_code == 400 and says in api.json()["error"]
    page = client.get("/runs", params=params, headers=viewer)
    assert page.status_code == 400 and says in page.text and "Traceback" not in page.text


def test_unknown_run_is_a_404_page(client: TestClient, viewer: dict[str, str]) -> None:
    page = client.get("/runs/0123456789abcdef", headers=viewer)
    assert page.status_code == 404 and "no run" in page.text and "<html" in page.text
    assert client.get("/api/runs/nope", headers=viewer).status_code == 404
    assert client.get("/runs/nope/verify", headers=viewer).status_code == 404
    assert client.get("/no/such/page", headers=viewer).status_code == 404


def test_an_unreachable_database_is_a_clear_503(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'missing-folder' / 'opsgate.db'}"
    with TestClient(create_app(Console(url))) as c:
        page = c.get("/runs", headers={"Authorization": "Bearer ogt_x"})
        assert page.status_code == 503
        assert "does not exist" in page.text and "Traceback" not in page.text
        api = c.get("/api/runs", headers={"Authorization": "Bearer ogt_x"})
        assert api.status_code == 503 and "does not exist" in api.json()["error"]


def test_the_run_page_tells_the_denied_call(
    client: TestClient, viewer: dict[str, str], world: World
) -> None:
    page = client.get(f"/runs/{world.denied}", headers=viewer).text
    for expected in (
        "gate: deny pay",
        "arg_constraint",
        "workflows.wf.tools.pay.constraints.amount.max",
        "`amount` must be at most 200, not 500",
        "t1+",
        "model step: small (act)",
        "812 / 64",
        "$0.003100",
        "1.25 s",
        "CHANGED via pay",
        "run ended: completed",
        "invoke_agent bot-1",  # the span waterfall
        "execute_tool pay",
    ):
        assert expected.replace("`", "&#96;") in page or expected in page, expected
    assert "[redacted:email:" in page  # the trail's redaction, rendered as stored
    assert "ana@example.com" not in page
    assert "sk-live-TOPSECRET" not in page


def test_the_run_page_tells_an_escalation(
    client: TestClient, viewer: dict[str, str], world: World
) -> None:
    page = client.get(f"/runs/{world.escalated}", headers=viewer).text
    assert "escalated: handoff" in page and "the customer asks for a manager" in page
    assert "partial progress" in page and "ORD-3" in page
    detail = client.get(f"/api/runs/{world.escalated}", headers=viewer).json()
    assert [i["type"] for i in detail["timeline"]][-2:] == ["escalated", "run_ended"]
    assert detail["spans"] and detail["spans"][0]["depth"] == 0


def test_hostile_text_is_escaped(client: TestClient, viewer: dict[str, str], world: World) -> None:
    for path in ("/runs", f"/runs/{world.pending}", "/approvals", f"/approvals/{world.request_id}"):
        page = client.get(path, headers=viewer)
        assert page.status_code == 200
        assert HOSTILE not in page.text and "<script>alert" not in page.text, path
        assert "&lt;script&gt;alert(" in page.text, path
    assert "script-src 'self'" in page.headers["content-security-policy"]


def test_verify_this_run_passes(client: TestClient, viewer: dict[str, str], world: World) -> None:
    fragment = client.get(f"/runs/{world.denied}/verify", headers={**viewer, "HX-Request": "true"})
    assert "PASS" in fragment.text and "<html" not in fragment.text
    result = client.get(f"/api/runs/{world.denied}/verify", headers=viewer).json()
    assert result["passed"] and result["proved"] == 13 and not result["failed"]
    live = client.get(f"/api/runs/{world.live}/verify", headers=viewer).json()
    assert live["passed"]  # a live run's events, signed by a later run's checkpoint


@pytest.mark.parametrize(
    "edit",
    [
        "CAST(replace(body, '500.0', '50.0') AS BLOB)",  # an edited event
        "replace(body, '500.0', '50.0')",  # edited, and stored as text
    ],
)
def test_verify_this_run_fails_on_a_tampered_event(
    client: TestClient, viewer: dict[str, str], world: World, edit: str
) -> None:
    path = world.url.removeprefix("sqlite:///")
    with sqlite3.connect(path) as db:  # an attacker with the file drops the guards
        for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'"):
            db.execute(f'DROP TRIGGER "{name}"')
        db.execute(
            f"UPDATE audit_events SET body = {edit} "
            "WHERE run_id = ? AND type = 'tool_call_proposed'",
            (world.denied,),
        )
    result = client.get(f"/api/runs/{world.denied}/verify", headers=viewer).json()
    assert not result["passed"] and result["failed"]
    page = client.get(f"/runs/{world.denied}/verify", headers=viewer)
    assert page.status_code == 200 and "FAIL" in page.text
    run = client.get(f"/runs/{world.denied}", headers=viewer)
    assert run.status_code == 200  # the page still renders what can be read
    if "CAST" not in edit:  # a row that cannot be read as recorded is said so on the page
        assert "does not verify" in run.text


def test_the_filters_on_both_backends(db_url: str, tmp_path: Path) -> None:
    """`denied` reads the trail's decision bodies: text in SQLite, bytea in PostgreSQL."""
    from opsgate.server import Role, create_token
    from opsgate.store import open_store
    from tests.server.world import build_world

    built = build_world(tmp_path, db_url)
    with open_store(db_url, migrate=False) as store:
        token = create_token(store, name="v", role=Role.VIEWER, created_by="t")[0]
    with TestClient(create_app(Console(db_url, signing_key=built.key))) as c:
        bearer = {"Authorization": f"Bearer {token}"}
        assert _ids(c, bearer, denied=1) == {built.denied}
        assert _ids(c, bearer, waiting=1) == {built.pending}
        assert c.get(f"/api/runs/{built.denied}/verify", headers=bearer).json()["passed"]


def test_a_database_failure_after_start_is_a_503_and_a_bug_a_masked_500(
    world: World, tokens: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from sqlalchemy.exc import OperationalError

    import opsgate.server._pages as pages  # tests this module

    def down(*_: object, **__: object) -> None:
        raise OperationalError("SELECT", {}, Exception("unable to open database file"))

    def bug(*_: object, **__: object) -> None:
        raise RuntimeError("secret internals /etc/passwd")

    bearer = {"Authorization": f"Bearer {tokens['viewer']}"}
    app = create_app(Console(world.url, signing_key=world.key))
    with TestClient(app, raise_server_exceptions=False) as c:
        monkeypatch.setattr(pages, "list_runs", down)
        page = c.get("/runs", headers=bearer)
        assert page.status_code == 503 and "cannot open" in page.text
        assert "Traceback" not in page.text
        monkeypatch.setattr(pages, "list_runs", bug)
        page = c.get("/runs", headers=bearer)
        assert page.status_code == 500 and "secret internals" not in page.text
        assert "Traceback" not in page.text and "went wrong" in page.text
