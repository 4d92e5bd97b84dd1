"""`opsgate serve --workers N`: several processes, one session key; the security headers;
what the console keeps between requests is refreshed when the data under it change."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import insert, update
from typer.testing import CliRunner

import opsgate.server._serve as serving  # tests this module
from opsgate.cli.main import app
from opsgate.errors import ConfigError
from opsgate.server import Console, Role, create_app, create_token
from opsgate.server._approvals import inbox, pending_page
from opsgate.store import approvals, cost_entries, open_store
from tests.server.conftest import csrf_of, login
from tests.server.world import World, build_world


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(stat[1]) == pid:
                found.append(int(entry.name))
    return found


def _cmdline(pid: int) -> bytes:
    try:
        return (Path("/proc") / str(pid) / "cmdline").read_bytes()
    except OSError:
        return b""


@pytest.fixture
def two_workers(world: World) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """The real `opsgate serve --workers 2` over the world, on a free loopback port."""
    port = _free_port()
    opsgate = Path(sys.executable).with_name("opsgate")
    command = [str(opsgate), "serve", "--db", world.url, "--port", str(port), "--workers", "2"]
    server = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert server.poll() is None, server.communicate()
            try:
                if httpx.get(base + "/login", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "the workers did not answer within 60 s"
            time.sleep(0.1)
        yield base, server
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="counts the workers in /proc")
def test_two_workers_serve_one_login(
    two_workers: tuple[str, subprocess.Popen[bytes]], tokens: dict[str, str]
) -> None:
    base, server = two_workers
    assert len([p for p in _children(server.pid) if b"spawn_main" in _cmdline(p)]) == 2
    with httpx.Client(base_url=base) as browser:
        form = browser.get("/login")
        done = browser.post(
            "/login", data={"token": tokens["approver"], "csrf": csrf_of(form.text)}
        )
        assert done.status_code == 303
        cookies = dict(browser.cookies)
    # each request on a connection of its own: the kernel hands them to either worker, and
    # every one knows the session (one key for all)
    for _ in range(12):
        with httpx.Client(base_url=base, cookies=cookies) as fresh:
            page = fresh.get("/runs")
            assert page.status_code == 200 and "approver-ann" in page.text
    with httpx.Client(base_url=base) as anonymous:
        assert anonymous.get("/runs").status_code == 401
    # a worker that dies is started again, on its socket: nothing is refused meanwhile
    workers = [pid for pid in _children(server.pid) if b"spawn_main" in _cmdline(pid)]
    os.kill(workers[0], signal.SIGKILL)
    for _ in range(12):
        with httpx.Client(base_url=base, cookies=cookies, timeout=60) as fresh:
            assert fresh.get("/runs").status_code == 200
    deadline = time.monotonic() + 60
    while len([p for p in _children(server.pid) if b"spawn_main" in _cmdline(p)]) < 2:
        assert time.monotonic() < deadline, "the dead worker was not started again"
        time.sleep(0.1)


def test_workers_share_one_session_key(world: World) -> None:
    handed = {"url": world.url, "router": None, "policy": None, "tools": None, "key": "ab" * 32}
    one, two = serving.worker_app(handed), serving.worker_app(handed)
    cookie = one.state.console.keys.issue("t1")
    session = two.state.console.keys.read(cookie)
    assert session is not None and session.token_id == "t1"
    assert two.state.console.keys.csrf(session.nonce) == one.state.console.keys.csrf(session.nonce)
    assert Console(world.url).keys.read(cookie) is None  # another key: refused
    with pytest.raises(ConfigError, match="session key"):
        serving.worker_app({**handed, "key": "not hex"})


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_serve_hands_the_workers_what_it_checked(
    monkeypatch: pytest.MonkeyPatch, world: World
) -> None:
    ran: dict[str, Any] = {}

    def supervise(sockets: list[socket.socket], handed: dict[str, Any]) -> None:
        ran.update(sockets=sockets, handed=handed, environ=dict(os.environ))
        ran["names"] = {s.getsockname() for s in sockets}

    monkeypatch.setattr(serving, "_supervise", supervise)
    port = _free_port()
    command = ["serve", "--db", world.url, "--workers", "3", "--port", str(port)]
    result = CliRunner().invoke(app, command)
    assert result.exit_code == 0, result.output
    assert len(ran["sockets"]) == 3 and ran["names"] == {("127.0.0.1", port)}  # one each
    assert all(s.fileno() == -1 for s in ran["sockets"])  # closed when serving ends
    assert ran["handed"]["url"] == world.url and len(bytes.fromhex(ran["handed"]["key"])) == 32
    assert ran["handed"]["key"] not in str(ran["environ"])  # not in the workers' environment
    assert "3 worker processes" in result.output
    for bad in ("0", "65"):
        refused = CliRunner().invoke(app, ["serve", "--db", world.url, "--workers", bad])
        assert refused.exit_code == 2


def test_a_port_in_use_is_a_clear_error(world: World) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        result = CliRunner().invoke(
            app, ["serve", "--db", world.url, "--workers", "2", "--port", port]
        )
    assert result.exit_code != 0 and "cannot listen" in result.output
    assert "Traceback" not in result.output


def test_security_headers_everywhere(client: TestClient, tokens: dict[str, str]) -> None:
    bearer = {"Authorization": f"Bearer {tokens['viewer']}"}
    for path, status in (("/runs", 200), ("/login", 200), ("/nope", 404), ("/api/runs", 200)):
        response = client.get(path, headers=bearer)
        assert response.status_code == status, path
        assert "default-src 'none'" in response.headers["content-security-policy"], path
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["x-frame-options"] == "DENY"
        assert response.headers["referrer-policy"] == "no-referrer"
        assert response.headers["cache-control"] == "no-store", path
    static = client.get("/static/console.css")
    assert static.status_code == 200 and static.headers["x-frame-options"] == "DENY"
    assert "no-store" not in static.headers.get("cache-control", "")


def test_the_kept_cost_page_names_who_asks_and_follows_the_ledger(
    client: TestClient, tokens: dict[str, str], world: World
) -> None:
    login(client, tokens["viewer"])
    first = client.get("/cost")
    assert first.status_code == 200 and "viewer-ann" in first.text and "$0.003100" in first.text
    admin = client.get("/cost", headers={"Authorization": f"Bearer {tokens['admin']}"})
    assert "admin-ann" in admin.text and "viewer-ann" not in admin.text  # the body is kept
    store = open_store(world.url, migrate=False)
    try:
        with store.engine.begin() as conn:
            conn.execute(
                insert(cost_entries).values(
                    run_id="r-late",
                    workflow="wf",
                    at=time.time(),
                    kind="model",
                    role="act",
                    model="small",
                    tool=None,
                    input_tokens=1,
                    output_tokens=1,
                    cached_input_tokens=0,
                    cost_usd=1.0,
                    estimate=False,
                    latency_s=0.1,
                    cache_hit=False,
                    attempts=1,
                    ok=True,
                    purpose="production",
                )
            )
    finally:
        store.close()
    assert "$1.003100" in client.get("/cost").text


def test_the_kept_inbox_follows_the_queue(world: World) -> None:
    console = Console(world.url, signing_key=world.key)
    try:
        first = pending_page(console)
        again = pending_page(console)
        assert again.requests[0].record is first.requests[0].record  # kept
        time.sleep(0.01)
        assert again.requests[0].expires_in < first.requests[0].expires_in  # counted afresh
        store = console.store()
        now = time.time()
        row = {
            "request_id": "late-1",
            "run_id": world.pending,
            "call_id": "c-late",
            "workflow": "wf",
            "invoker": "ann",
            "agent_id": "agent",
            "tool": "pay",
            "args": "{}",
            "decision": "{}",
            "status": "pending",
            "requested_at": now,
            "expires_at": now + 3600,
            "run_state": "{}",
        }
        with store.engine.begin() as conn:
            conn.execute(insert(approvals).values(**row))
        added, _ = inbox(console)
        assert added.total == first.total + 1
        assert [a.record.request_id for a in added.requests][-1] == "late-1"
        with store.engine.begin() as conn:  # past its expiry: the next read marks it so
            conn.execute(
                update(approvals)
                .where(approvals.c.request_id == "late-1")
                .values(expires_at=now - 1)
            )
        gone, history = inbox(console)
        assert gone.total == first.total
        assert history[0].record.request_id == "late-1" and history[0].record.status == "expired"
    finally:
        console.close()


def test_the_kept_inbox_cards_are_each_askers_own(
    client: TestClient, tokens: dict[str, str], world: World
) -> None:
    csrf = login(client, tokens["approver"])
    mine = client.get("/approvals").text
    assert 'value="approve"' in mine and f'name="csrf" value="{csrf}"' in mine
    viewer = client.get("/approvals", headers={"Authorization": f"Bearer {tokens['viewer']}"})
    assert f"req-{world.request_id}" in viewer.text  # within the same second: kept cards...
    assert 'name="decision"' not in viewer.text and csrf not in viewer.text  # ...not theirs
    admin = client.get("/approvals", headers={"Authorization": f"Bearer {tokens['admin']}"})
    assert 'value="approve"' in admin.text and csrf not in admin.text


def test_the_cost_page_on_each_backend(db_url: str, tmp_path: Path) -> None:
    """The breakdowns' queries run on PostgreSQL too (it has no ``max(boolean)``)."""
    world = build_world(tmp_path, url=db_url)
    store = open_store(world.url, migrate=False)
    try:
        viewer, _ = create_token(store, name="v", role=Role.VIEWER, created_by="test")
    finally:
        store.close()
    app_ = create_app(Console(world.url, signing_key=world.key))
    with TestClient(app_, base_url="http://127.0.0.1") as client:
        page = client.get("/cost", headers={"Authorization": f"Bearer {viewer}"})
        assert (
            page.status_code == 200 and "$0.003100" in page.text and "Per model role" in page.text
        )
