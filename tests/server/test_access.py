"""Access: every route refuses the anonymous (401) and every writing route the viewer (403);
cookie sessions carry CSRF tokens; tokens are checked on every request."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from starlette.routing import BaseRoute, Mount

from opsgate.server import Console, create_app, revoke_token
from opsgate.store import open_store
from tests.server.conftest import csrf_of, login
from tests.server.world import World

WRITING = {"POST", "PUT", "PATCH", "DELETE"}
PUBLIC = {("GET", "/login"), ("POST", "/login")}  # the way in


def _routes(routes: list[BaseRoute]) -> Iterator[BaseRoute]:
    for route in routes:
        inner = getattr(route, "original_router", None)  # FastAPI's included routers
        if inner is not None:
            yield from _routes(inner.routes)
        else:
            yield route


def _endpoints() -> list[tuple[str, str]]:
    app = create_app(Console("sqlite:///unused.db"))
    found = []
    for route in _routes(app.routes):
        if isinstance(route, Mount):
            assert route.path == "/static", f"unexpected mount {route.path}"
            continue
        assert isinstance(route, APIRoute), f"unexpected route {route}"
        for method in sorted(route.methods - {"HEAD"}):
            path = route.path.replace("{run_id}", "r1").replace("{request_id}", "q1")
            path = path.replace("{rule_id}", "1")
            found.append((method, path.replace("{token_id}", "t1")))
    return found


ENDPOINTS = _endpoints()


def test_the_app_has_the_routes_this_test_knows() -> None:
    assert len(ENDPOINTS) >= 25
    assert ("POST", "/approvals/q1/decide") in ENDPOINTS
    assert ("POST", "/api/runs/r1/stop") in ENDPOINTS
    assert ("POST", "/alerts/rules/1/delete") in ENDPOINTS
    assert ("POST", "/api/alerts/rules") in ENDPOINTS


def _call(client: TestClient, method: str, path: str, **kwargs: Any) -> Any:
    body: dict[str, Any] = {}
    if method in WRITING:
        body = {"json": {}} if path.startswith("/api") else {"data": {}}
    return client.request(method, path, follow_redirects=False, **body, **kwargs)


@pytest.mark.parametrize(("method", "path"), [e for e in ENDPOINTS if e not in PUBLIC])
def test_anonymous_gets_401_everywhere(client: TestClient, method: str, path: str) -> None:
    assert _call(client, method, path).status_code == 401
    bad = {"Authorization": "Bearer ogt_not-a-token"}
    assert _call(client, method, path, headers=bad).status_code == 401


@pytest.mark.parametrize(
    ("method", "path"), [e for e in ENDPOINTS if e[0] in WRITING and e not in PUBLIC]
)
def test_a_viewer_gets_403_on_every_writing_route(
    client: TestClient, tokens: dict[str, str], method: str, path: str
) -> None:
    bearer = {"Authorization": f"Bearer {tokens['viewer']}"}
    if path == "/logout":  # a viewer may end its own session
        return
    assert _call(client, method, path, headers=bearer).status_code == 403
    csrf = login(client, tokens["viewer"])  # a session with a valid CSRF token: still 403
    assert _call(client, method, path, headers={"X-CSRF-Token": csrf}).status_code == 403


def test_admin_routes_refuse_an_approver(client: TestClient, tokens: dict[str, str]) -> None:
    bearer = {"Authorization": f"Bearer {tokens['approver']}"}
    assert client.get("/api/tokens", headers=bearer).status_code == 403
    assert client.get("/tokens", headers=bearer).status_code == 403
    admin = {"Authorization": f"Bearer {tokens['admin']}"}
    assert client.get("/api/tokens", headers=admin).status_code == 200


def test_session_cookie_flags_and_login(client: TestClient, tokens: dict[str, str]) -> None:
    form = client.get("/login")
    wrong = client.post("/login", data={"token": "ogt_nope", "csrf": csrf_of(form.text)})
    assert wrong.status_code == 401 and "unknown or revoked token" in wrong.text
    no_csrf = client.post("/login", data={"token": tokens["viewer"]}, follow_redirects=False)
    assert no_csrf.status_code == 403
    form = client.get("/login")
    ok = client.post(
        "/login",
        data={"token": tokens["viewer"], "csrf": csrf_of(form.text)},
        follow_redirects=False,
    )
    assert ok.status_code == 303
    cookie = next(v for k, v in ok.headers.multi_items() if k == "set-cookie" and "session" in v)
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Secure" not in cookie
    assert tokens["viewer"] not in cookie  # the cookie names the token, never holds it
    assert client.get("/runs").status_code == 200


def test_cookies_are_secure_behind_tls(world: World, tokens: dict[str, str]) -> None:
    app = create_app(Console(world.url, signing_key=world.key))
    with TestClient(app, base_url="https://console.example") as c:
        form = c.get("/login")
        ok = c.post(
            "/login",
            data={"token": tokens["viewer"], "csrf": csrf_of(form.text)},
            follow_redirects=False,
        )
    cookie = next(v for k, v in ok.headers.multi_items() if k == "set-cookie" and "session" in v)
    assert "Secure" in cookie


def test_a_session_write_needs_its_csrf_token(
    client: TestClient, tokens: dict[str, str], world: World
) -> None:
    csrf = login(client, tokens["approver"])
    path = f"/approvals/{world.request_id}/decide"
    refused = client.post(path, data={"decision": "deny"}, follow_redirects=False)
    assert refused.status_code == 403 and "CSRF" in refused.text
    wrong = client.post(path, data={"decision": "deny", "csrf": "0" * 64}, follow_redirects=False)
    assert wrong.status_code == 403
    done = client.post(path, data={"decision": "deny", "csrf": csrf}, follow_redirects=False)
    assert done.status_code == 303


def test_a_revoked_token_ends_its_sessions(
    client: TestClient, tokens: dict[str, str], world: World
) -> None:
    login(client, tokens["viewer"])
    assert client.get("/runs").status_code == 200
    with open_store(world.url, migrate=False) as store:
        revoke_token(store, "viewer-ann", revoked_by="test")
    assert client.get("/runs").status_code == 401
    assert (
        client.get("/api/me", headers={"Authorization": f"Bearer {tokens['viewer']}"}).status_code
        == 401
    )


def test_logout(client: TestClient, tokens: dict[str, str]) -> None:
    csrf = login(client, tokens["viewer"])
    assert client.post("/logout", data={"csrf": csrf}, follow_redirects=False).status_code == 303
    assert client.get("/runs").status_code == 401


def test_the_openapi_schema_is_behind_a_token(client: TestClient, tokens: dict[str, str]) -> None:
    assert client.get("/api/openapi.json").status_code == 401
    schema = client.get(
        "/api/openapi.json", headers={"Authorization": f"Bearer {tokens['viewer']}"}
    ).json()
    assert (
        "/api/runs" in schema["paths"] and "/api/approvals/{request_id}/decision" in schema["paths"]
    )
    params = {p["name"] for p in schema["paths"]["/api/runs"]["get"]["parameters"]}
    assert {"workflow", "denied", "escalated", "waiting", "before", "limit"} <= params
    assert not [p for p in schema["paths"] if not p.startswith("/api/")]  # pages are not API


def test_garbage_cookies_and_fields_are_refusals_not_errors(
    client: TestClient, tokens: dict[str, str]
) -> None:
    def raw(cookie: str) -> dict[str, bytes]:
        return {"cookie": cookie.encode()}

    for value in ("é.é.é.é", "a.b.9999999999.é", "x" * 400, "...", "a.b.c.d"):
        assert client.get("/runs", headers=raw(f"opsgate_session={value}")).status_code == 401
    refused = client.post(
        "/login",
        data={"token": tokens["viewer"], "csrf": "é"},
        headers=raw("opsgate_login=é.9999999999.é"),
    )
    assert refused.status_code == 403
    form = client.get("/login")
    bad = client.post("/login", data={"token": "ogt_é", "csrf": csrf_of(form.text)})
    assert bad.status_code == 401
    login(client, tokens["approver"])
    odd = client.post("/logout", data={"csrf": "é" * 64}, follow_redirects=False)
    assert odd.status_code == 403
