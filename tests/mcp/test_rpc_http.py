"""opsgate's own streamable-HTTP MCP client (`HttpClient`): against the test shop served by
the SDK over HTTP, and against a raw ASGI server for what a real server rarely does."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import AsyncIterator, Callable
from typing import Any

import mcp_types
import orjson
import pytest
from tests.mcp.conftest import PYTHON, SERVERS, serve_asgi

from opsgate.mcp import ConnectionClosed, RpcError
from opsgate.mcp._rpc_http import HttpClient

Scope = dict[str, Any]


@contextlib.asynccontextmanager
async def shop_over_http() -> AsyncIterator[str]:
    """The test shop served by the SDK's streamable-HTTP server; its URL."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    child = await asyncio.create_subprocess_exec(
        PYTHON, str(SERVERS / "shop.py"), "http", str(port), stderr=asyncio.subprocess.DEVNULL
    )
    try:
        for _ in range(150):
            try:
                socket.create_connection(("127.0.0.1", port), 0.2).close()
                break
            except OSError:
                await asyncio.sleep(0.1)
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        child.terminate()
        await asyncio.wait_for(child.wait(), 10)


async def test_it_shakes_hands_lists_and_calls_a_real_server() -> None:
    async with shop_over_http() as url:
        client = HttpClient(url)
        try:
            info = await client.start()
            assert info.server_info.name == "shop" and client.alive
            tools = (await client.list_tools()).tools
            assert {"get_ticket", "get_order", "refund"} <= {t.name for t in tools}
            orders = await asyncio.gather(
                *(client.call_tool("get_order", {"order_id": f"A-{i}"}) for i in range(12))
            )
            assert [o.structured_content["order_id"] for o in orders] == [  # type: ignore[index]
                f"A-{i}" for i in range(12)
            ]
            failed = await client.call_tool("fail", {})
            assert failed.is_error
            policy = await client.read_resource("kb://refund-policy")
            assert "ACC-999" in policy.contents[0].text  # type: ignore[union-attr]
        finally:
            await client.close()
        assert client.stopped and not client.alive
        with pytest.raises(ConnectionClosed):
            await client.list_tools()


class RawServer:
    """An ASGI MCP endpoint whose answers the test chooses, by JSON-RPC method."""

    def __init__(self) -> None:
        self.answers: dict[str, Callable[[dict[str, Any]], tuple[int, str, bytes]]] = {}
        self.seen: list[tuple[str, dict[str, str], Any]] = []
        self.stall = False
        self.connections: set[tuple[Any, ...]] = set()  # the POSTs' client (address, port)

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                kind = (await receive())["type"]
                await send({"type": kind + ".complete"})
                if kind == "lifespan.shutdown":
                    return
        body = b""
        while True:
            event = await receive()
            body += event.get("body", b"")
            if not event.get("more_body"):
                break
        headers = {k.decode(): v.decode() for k, v in scope["headers"]}
        message = orjson.loads(body) if body else {}
        self.seen.append((scope["method"], headers, message))
        if scope["method"] == "POST":
            self.connections.add(tuple(scope["client"]))
        if scope["method"] != "POST":
            status, kind, data = 405, "text/plain", b""
        elif "id" not in message:
            status, kind, data = 202, "application/json", b""
        else:
            answer = self.answers.get(message["method"], _json_result)
            status, kind, data = answer(message)
        response_headers = [(b"content-type", kind.encode()), (b"mcp-session-id", b"s-1")]
        await send({"type": "http.response.start", "status": status, "headers": response_headers})
        stall = self.stall and "id" in message and message.get("method") != "initialize"
        await send({"type": "http.response.body", "body": data, "more_body": stall})
        if stall:  # a stream left open after the answer
            await asyncio.sleep(5)
            await send({"type": "http.response.body", "body": b""})


def _json_result(message: dict[str, Any]) -> tuple[int, str, bytes]:
    result: dict[str, Any] = {}
    if message["method"] == "initialize":
        result = {
            "protocolVersion": "2025-06-18",
            "capabilities": {"tools": {}},
            "serverInfo": {"name": "raw", "version": "1"},
        }
    return 200, "application/json", orjson.dumps({"jsonrpc": "2.0", "id": message["id"],
                                                  "result": result})  # fmt: skip


@contextlib.asynccontextmanager
async def raw(server: RawServer, **kwargs: Any) -> AsyncIterator[HttpClient]:
    async with serve_asgi(server) as port:
        client = HttpClient(f"http://127.0.0.1:{port}/mcp", headers={"x-key": "k"}, **kwargs)
        try:
            await client.start()
            yield client
        finally:
            await client.close()


async def test_the_session_and_version_go_with_every_later_request() -> None:
    server = RawServer()
    async with raw(server) as client:
        await client.send("ping")
    (_, first, _), (_, initialized, note), (_, ping, _) = server.seen[:3]
    assert "mcp-session-id" not in first and first["x-key"] == "k"
    assert note == {"jsonrpc": "2.0", "method": "notifications/initialized"}
    for headers in (initialized, ping):
        assert headers["mcp-session-id"] == "s-1"
        assert headers["mcp-protocol-version"] == "2025-06-18"
    assert server.seen[-1][0] == "DELETE"  # the session is ended at close


async def test_an_sse_answer_passes_its_notifications_on() -> None:
    server = RawServer()

    def sse(message: dict[str, Any]) -> tuple[int, str, bytes]:
        note = {"jsonrpc": "2.0", "method": "notifications/tools/list_changed"}
        answer = {"jsonrpc": "2.0", "id": message["id"], "result": {"tools": []}}
        events = b"".join(
            b"event: message\ndata: " + orjson.dumps(m) + b"\n\n" for m in (note, answer)
        )
        return 200, "text/event-stream", b": a comment\n\n" + events

    server.answers["tools/list"] = sse
    heard: list[str] = []

    async def notified(method: str, params: Any) -> None:
        heard.append(method)

    async with raw(server, on_notification=notified) as client:
        assert (await client.list_tools()).tools == []
        # heard before the answer returns (a call's progress is relayed while it runs)
        assert heard == ["notifications/tools/list_changed"]


async def test_calls_answered_with_streams_keep_one_connection() -> None:
    server = RawServer()

    def sse(message: dict[str, Any]) -> tuple[int, str, bytes]:
        answer = {"jsonrpc": "2.0", "id": message["id"], "result": {"tools": []}}
        return 200, "text/event-stream", b"event: message\ndata: " + orjson.dumps(answer) + b"\n\n"

    server.answers["tools/list"] = sse
    async with raw(server) as client:
        for _ in range(5):
            await client.list_tools()
    posts = [s for s in server.seen if s[0] == "POST"]
    assert len(posts) == 7 and len(server.connections) == 1  # each stream read to its end


@pytest.mark.parametrize(
    ("answer", "error"),
    [
        ((500, "text/plain", b"boom"), RpcError),
        ((200, "text/html", b"<html>"), RpcError),
        ((200, "application/json", b"not json"), RpcError),
        ((200, "application/json", b'{"jsonrpc": "2.0", "id": 999, "result": {}}'), RpcError),
        ((200, "text/event-stream", b""), ConnectionClosed),
    ],
    ids=["http-500", "not-json-rpc-type", "not-json", "another-id", "stream-without-answer"],
)
async def test_answers_that_are_not_mcp_are_errors_and_counted(
    answer: tuple[int, str, bytes], error: type[Exception]
) -> None:
    server = RawServer()
    server.answers["tools/list"] = lambda _: answer
    bad: list[int] = []
    async with raw(server, on_bad_message=lambda: bad.append(1)) as client:
        with pytest.raises(error):
            await client.list_tools()
        assert client.alive  # one bad answer does not end the session
    assert bad == ([1] if answer[2].startswith(b'{"jsonrpc"') else [])


@pytest.mark.parametrize(
    ("answer", "code", "counted"),
    [
        ({"error": {"code": -32000, "message": "no such list"}}, -32000, False),
        ({"error": {"code": "x", "message": "odd code"}}, -32603, False),
        ({}, -32600, True),  # neither result nor error
    ],
    ids=["its-error", "its-error-odd-code", "neither"],
)
async def test_a_json_rpc_error_answer_is_the_servers_error(
    answer: dict[str, Any], code: int, counted: bool
) -> None:
    server = RawServer()
    server.answers["tools/list"] = lambda m: (
        200,
        "application/json",
        json.dumps({"jsonrpc": "2.0", "id": m["id"], **answer}).encode(),
    )
    bad: list[int] = []
    async with raw(server, on_bad_message=lambda: bad.append(1)) as client:
        with pytest.raises(RpcError) as refused:
            await client.list_tools()
    assert refused.value.code == code
    assert bad == ([1] if counted else [])


async def test_a_session_the_server_forgot_is_closed_for_a_new_one() -> None:
    server = RawServer()
    server.answers["tools/list"] = lambda _: (404, "text/plain", b"")
    async with raw(server) as client:
        with pytest.raises(ConnectionClosed):
            await client.list_tools()
        assert not client.alive and not client.stopped  # lost, not closed: reconnect


async def test_a_server_that_is_gone_is_connection_closed() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    client = HttpClient(f"http://127.0.0.1:{port}/mcp")
    with pytest.raises(ConnectionClosed):
        await client.start()
    await client.close()


async def test_a_tool_result_is_checked_as_mcp() -> None:
    server = RawServer()

    def odd(message: dict[str, Any]) -> tuple[int, str, bytes]:
        data = {"jsonrpc": "2.0", "id": message["id"], "result": {"content": "not a list"}}
        return 200, "application/json", orjson.dumps(data)

    server.answers["tools/call"] = odd
    async with raw(server) as client:
        with pytest.raises(ValueError):
            await client.call_tool("x", {})
    assert mcp_types.CallToolResult  # the model the result is checked against


def sse_answer(message: dict[str, Any]) -> tuple[int, str, bytes]:
    answer = {"jsonrpc": "2.0", "id": message["id"], "result": {"tools": []}}
    return 200, "text/event-stream", b"event: message\ndata: " + orjson.dumps(answer) + b"\n\n"


async def test_a_stream_left_open_after_the_answer_returns_at_the_answer() -> None:
    server = RawServer()
    server.answers["tools/list"] = sse_answer
    server.stall = True
    async with raw(server) as client:
        for _ in range(2):
            async with asyncio.timeout(2):  # not the five seconds the stream stays open
                assert (await client.list_tools()).tools == []
        assert client.alive
    # the handshake's connection carried the first call, whose stream stayed open: the
    # second call needed a new one
    assert len(server.connections) == 2


async def test_an_answer_over_the_size_limit_ends_the_connection_not_the_proxy(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import opsgate.mcp._rpc_http as rpc_http

    monkeypatch.setattr(rpc_http, "MAX_ANSWER", 64 * 1024)
    server = RawServer()
    big = {"tools": [], "padding": "x" * 100_000}
    server.answers["tools/list"] = lambda m: (
        200, "application/json", orjson.dumps({"jsonrpc": "2.0", "id": m["id"], "result": big})
    )  # fmt: skip
    async with raw(server) as client:
        with pytest.raises(ConnectionClosed):
            await client.list_tools()


async def test_a_url_behind_an_http_proxy_goes_through_httpx(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HTTP_PROXY", "http://proxy.invalid:3128")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    assert HttpClient("http://upstream.example/mcp")._pool is None
    monkeypatch.setenv("NO_PROXY", "upstream.example")
    assert HttpClient("http://upstream.example/mcp")._pool is not None


async def test_the_httpx_path_speaks_alike() -> None:
    server = RawServer()
    server.answers["tools/list"] = sse_answer
    async with serve_asgi(server) as port:
        client = HttpClient(f"http://127.0.0.1:{port}/mcp")
        client._pool = None  # as behind a proxy
        try:
            await client.start()
            assert (await client.list_tools()).tools == []
            await client.send("ping")
        finally:
            await client.close()


def test_it_works_on_uvloop_too() -> None:
    """An embedding application may run uvloop (whose transports are not asyncio's)."""
    uvloop = pytest.importorskip("uvloop")

    async def go() -> list[Any]:
        server = RawServer()
        server.answers["tools/list"] = sse_answer
        async with raw(server) as client:
            return [(await client.list_tools()).tools for _ in range(3)]

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        assert runner.run(go()) == [[], [], []]


async def test_a_request_the_server_sends_in_mid_call_is_answered() -> None:
    asked: list[tuple[str, str]] = []

    async def on_request(method: str, params: Any) -> Any:
        asked.append((method, params["message"]))
        return {"action": "accept", "content": {"answer": "yes"}}

    async with shop_over_http() as url:
        client = HttpClient(url)
        client.capabilities = {"elicitation": {}}
        client.on_request = on_request
        try:
            await client.start()
            result = await client.call_tool("confirm", {"question": "Ship it?"})
            assert [b.text for b in result.content] == ["accept: yes"]  # type: ignore[union-attr]
            assert asked == [("elicitation/create", "Ship it?")]
        finally:
            await client.close()
