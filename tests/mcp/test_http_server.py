"""The proxy's own streamable-HTTP server (`McpHttpApp`), served by uvicorn on loopback in
front of the test shop: sessions, notifications, the end of a session, forged hosts, and
a session used by another identity. (`test_transports` runs it as `opsgate mcp-proxy
--http` behind real bearer tokens, with the SDK's client.)"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx2
import pytest
from mcp.client.streamable_http import streamable_http_client
from tests.mcp.conftest import make_proxy, serve_asgi, shop_spec, text

from mcp import ClientSession
from opsgate.mcp import Identity
from opsgate.mcp._http_server import McpHttpApp
from opsgate.mcp._proxy import IDENTITY_SCOPE_KEY
from opsgate.recorder import EventType, InMemoryRecorder

INIT = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t"}},
}


class AsIdentity:
    """What `BearerAuth` does once a token checks out: the identity named by the
    ``x-who`` header (a test's stand-in for two tokens) goes with the request."""

    def __init__(self, app: McpHttpApp) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            who = dict(scope["headers"]).get(b"x-who", b"ana").decode()
            scope[IDENTITY_SCOPE_KEY] = Identity(who, "bot")
        await self.app(scope, receive, send)


@contextlib.asynccontextmanager
async def served(
    recorder: InMemoryRecorder | None = None, idle_s: float = 3600.0
) -> AsyncIterator[tuple[str, McpHttpApp, Any]]:
    proxy = make_proxy({"shop": shop_spec()}, recorder=recorder)
    await proxy.start()
    app = McpHttpApp(proxy, "127.0.0.1", idle_s=idle_s)
    try:
        async with serve_asgi(AsIdentity(app)) as port:
            yield f"http://127.0.0.1:{port}/mcp", app, proxy
    finally:
        await proxy.close()


async def started(http: httpx2.AsyncClient, url: str) -> dict[str, str]:
    reply = await http.post(url, json=INIT)
    assert reply.status_code == 200 and reply.json()["result"]["protocolVersion"] == "2025-06-18"
    return {"mcp-session-id": reply.headers["mcp-session-id"]}


async def test_the_sdk_client_calls_tools_through_it() -> None:
    async with (
        served() as (url, _, _),
        streamable_http_client(url) as (read, write),
        ClientSession(read, write) as client,
    ):
        await client.initialize()
        assert "get_ticket" in [t.name for t in (await client.list_tools()).tools]
        calls = [client.call_tool("get_order", {"order_id": f"A-{i}"}) for i in range(8)]
        results = await asyncio.gather(*calls)
        assert [r.structured_content["order_id"] for r in results] == [  # type: ignore[index]
            f"A-{i}" for i in range(8)
        ]
        attack = await client.call_tool("refund", {"order_id": "ORD-666", "amount": 999})
        assert attack.is_error and "opsgate" in text(attack)


async def test_requests_need_a_session_the_server_knows() -> None:
    ping = {"jsonrpc": "2.0", "id": 2, "method": "ping"}
    async with served() as (url, _, _), httpx2.AsyncClient() as http:
        assert (await http.post(url, json=ping)).status_code == 400
        unknown = await http.post(url, json=ping, headers={"mcp-session-id": "nope"})
        assert unknown.status_code == 404
        session = await started(http, url)
        assert (await http.post(url, json=ping, headers=session)).json()["result"] == {}
        note = {"jsonrpc": "2.0", "method": "notifications/initialized"}
        assert (await http.post(url, json=note, headers=session)).status_code == 202
        bad = await http.post(url, content=b"{not json", headers=session)
        assert bad.status_code == 400 and bad.json()["error"]["code"] == -32700
        assert (await http.put(url, headers=session)).status_code == 405
        assert (await http.post(url + "/other", json=ping)).status_code == 404


async def test_a_session_ends_with_delete_and_its_run_with_it() -> None:
    recorder = InMemoryRecorder()
    async with served(recorder) as (url, app, _), httpx2.AsyncClient() as http:
        session = await started(http, url)
        call = {"jsonrpc": "2.0", "id": 2, "method": "tools/call",
                "params": {"name": "get_ticket", "arguments": {"ticket_id": "T-1"}}}  # fmt: skip
        assert (await http.post(url, json=call, headers=session)).json()["result"][
            "isError"
        ] is False
        assert (await http.delete(url, headers=session)).status_code == 200
        assert not app.sessions
        again = await http.post(url, json=call, headers=session)
        assert again.status_code == 404  # the client must start a new session
    ended = [e for e in recorder.events if e.type == EventType.RUN_ENDED]
    assert len(ended) == 1


async def test_a_session_left_idle_ends_when_another_starts() -> None:
    recorder = InMemoryRecorder()
    async with served(recorder) as (url, app, _), httpx2.AsyncClient() as http:
        app.idle_s = 0.2
        first = await started(http, url)
        call = {"jsonrpc": "2.0", "id": 2, "method": "tools/list"}
        assert (await http.post(url, json=call, headers=first)).status_code == 200
        await asyncio.sleep(0.3)
        second = await started(http, url)
        assert list(app.sessions) == [second["mcp-session-id"]]
        assert (await http.post(url, json=call, headers=first)).status_code == 404
    assert len([e for e in recorder.events if e.type == EventType.RUN_ENDED]) == 1


async def test_a_session_left_idle_ends_on_its_own() -> None:
    recorder = InMemoryRecorder()
    async with served(recorder, idle_s=0.2) as (url, app, _), httpx2.AsyncClient() as http:
        first = await started(http, url)
        call = {"jsonrpc": "2.0", "id": 2, "method": "tools/list"}
        assert (await http.post(url, json=call, headers=first)).status_code == 200
        for _ in range(100):  # the sweep runs every idle_s / 4
            if not app.sessions:
                break
            await asyncio.sleep(0.05)
        assert not app.sessions  # no other session started: the sweep ended it
        assert (await http.post(url, json=call, headers=first)).status_code == 404
        ended = [e for e in recorder.events if e.type == EventType.RUN_ENDED]
        assert len(ended) == 1


async def test_a_listening_session_stays_and_does_not_shield_an_idle_one() -> None:
    async with (
        served(idle_s=0.2) as (url, app, _),
        httpx2.AsyncClient(timeout=10) as http,
    ):
        listening = await started(http, url)  # the least recently used: swept first
        idle = await started(http, url)
        headers = {**listening, "accept": "text/event-stream"}
        async with http.stream("GET", url, headers=headers) as stream:
            assert stream.status_code == 200
            for _ in range(100):
                if idle["mcp-session-id"] not in app.sessions:
                    break
                await asyncio.sleep(0.05)
            assert list(app.sessions) == [listening["mcp-session-id"]]


async def test_the_notification_stream_carries_tools_list_changed() -> None:
    async with served() as (url, _, proxy), httpx2.AsyncClient(timeout=10) as http:
        session = await started(http, url)
        call = {"jsonrpc": "2.0", "id": 2, "method": "tools/list"}
        assert (await http.post(url, json=call, headers=session)).status_code == 200
        headers = {**session, "accept": "text/event-stream"}
        async with http.stream("GET", url, headers=headers) as stream:
            assert stream.status_code == 200
            second = await http.get(url, headers=headers)
            assert second.status_code == 409  # one stream a session
            await proxy.tools_changed("shop")
            async for line in stream.aiter_lines():
                if line.startswith("data:"):
                    assert "notifications/tools/list_changed" in line
                    break


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({"host": "evil.example"}, 421),
        ({"origin": "http://evil.example"}, 403),
        ({"origin": "http://localhost:3000"}, 200),
    ],
)
async def test_a_rebinding_page_is_refused(headers: dict[str, str], status: int) -> None:
    async with served() as (url, _, _), httpx2.AsyncClient() as http:
        assert (await http.post(url, json=INIT, headers=headers)).status_code == status


async def test_a_session_used_by_another_identity_runs_nothing() -> None:
    recorder = InMemoryRecorder()
    async with served(recorder) as (url, _, _), httpx2.AsyncClient() as http:
        session = await started(http, url)
        call = {"jsonrpc": "2.0", "id": 2, "method": "tools/call",
                "params": {"name": "get_ticket", "arguments": {"ticket_id": "T-1"}}}  # fmt: skip
        assert (await http.post(url, json=call, headers=session)).json()["result"][
            "isError"
        ] is False
        stolen = await http.post(url, json=call, headers={**session, "x-who": "mallory"})
        result = stolen.json()["result"]
        assert result["isError"] is True and "another identity" in result["content"][0]["text"]
    executed = [e for e in recorder.events if e.type == EventType.TOOL_RESULT]
    assert len(executed) == 1
