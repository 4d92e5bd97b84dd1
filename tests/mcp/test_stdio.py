"""The proxy's own stdio server (`LineServer`, on pipes read and written by the event
loop)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from tests.mcp.conftest import connected, make_proxy, shop_spec, text

from opsgate.mcp._line_server import LineServer
from opsgate.mcp._stdio import line_pipes, native_stdio
from opsgate.recorder import EventType, InMemoryRecorder


class RawClient:
    """Lines written to the server and its answers read back, as a client sees them."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    async def send(self, *lines: bytes | dict[str, Any]) -> None:
        for line in lines:
            data = line if isinstance(line, bytes) else orjson.dumps(line)
            self.writer.write(data + b"\n")
        await self.writer.drain()

    async def answer(self) -> dict[str, Any]:
        line = await asyncio.wait_for(self.reader.readline(), 10)
        assert line, "the server closed its output"
        message = orjson.loads(line)
        assert isinstance(message, dict)
        return message

    async def answers(self, n: int) -> dict[Any, dict[str, Any]]:
        """The next ``n`` answers by request id (they come as they are ready)."""
        got = [await self.answer() for _ in range(n)]
        return {m.get("id"): m for m in got}

    async def request(self, ident: int, method: str, params: Any = None) -> dict[str, Any]:
        message: dict[str, Any] = {"jsonrpc": "2.0", "id": ident, "method": method}
        if params is not None:
            message["params"] = params
        await self.send(message)
        return await self.answer()


def initialize(ident: int = 1, version: str = "2025-06-18") -> dict[str, Any]:
    params = {"protocolVersion": version, "capabilities": {}, "clientInfo": {"name": "t"}}
    return {"jsonrpc": "2.0", "id": ident, "method": "initialize", "params": params}


@contextlib.asynccontextmanager
async def raw_session(
    recorder: InMemoryRecorder | None = None,
) -> AsyncIterator[tuple[RawClient, LineServer, asyncio.Task[None]]]:
    """The proxy (over the test shop) served by `LineServer` on two OS pipes, and a client
    writing raw lines to it."""
    proxy = make_proxy({"shop": shop_spec()}, recorder=recorder)
    to_server_r, to_server_w = os.pipe()
    to_client_r, to_client_w = os.pipe()
    await proxy.start()
    try:
        async with (
            line_pipes(to_server_r, to_client_w) as (reader, writer),
            line_pipes(to_client_r, to_server_w) as (client_reader, client_writer),
        ):
            server = LineServer(proxy, reader, writer)
            serving = asyncio.create_task(server.serve())
            try:
                yield RawClient(client_reader, client_writer), server, serving
            finally:
                serving.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await serving
    finally:
        await proxy.close()


@pytest.mark.parametrize("sdk", [False, True], ids=["line-server", "sdk-server"])
async def test_a_session_calls_tools_concurrently(sdk: bool) -> None:
    proxy = make_proxy({"shop": shop_spec()})
    async with connected(proxy, sdk=sdk) as client:
        assert "get_ticket" in [t.name for t in (await client.list_tools()).tools]
        results = await asyncio.gather(
            *(client.call_tool("get_order", {"order_id": f"A-{i}"}) for i in range(20))
        )
    assert all(not r.is_error for r in results)
    assert [r.structured_content for r in results] == [
        {"order_id": f"A-{i}", "total": 40.0, "status": "delivered"} for i in range(20)
    ]


async def test_lines_that_are_not_json_rpc_get_errors_and_the_session_goes_on() -> None:
    async with raw_session() as (client, server, _):
        await client.send(initialize())
        assert (await client.answer())["result"]["serverInfo"]["name"] == "opsgate-mcp-proxy"
        bad = "\udcff".encode("utf-8", "surrogatepass")
        await client.send(b"this is not json", b"", bad, b"[1, 2]", b'{"id": 7, "method": "ping"}')
        errors = [(await client.answer())["error"]["code"] for _ in range(4)]
        assert sorted(errors) == [-32700, -32700, -32600, -32600]
        assert server.bad_lines == 4
        answer = await client.request(
            2, "tools/call", {"name": "get_ticket", "arguments": {"ticket_id": "T-1"}}
        )
        assert answer["id"] == 2 and answer["result"]["isError"] is False


async def test_unknown_methods_and_bad_params_are_json_rpc_errors() -> None:
    async with raw_session() as (client, _, _):
        await client.send(initialize())
        await client.answer()
        unknown = await client.request(2, "logging/setLevel", {"level": "info"})
        assert unknown["error"]["code"] == -32601 and unknown["error"]["data"] == "logging/setLevel"
        no_name = await client.request(3, "tools/call", {"arguments": {}})
        assert no_name["error"]["code"] == -32602 and "name" in no_name["error"]["data"]
        not_a_dict = await client.request(4, "resources/read", ["kb://x"])
        assert not_a_dict["error"]["code"] == -32602
        assert (await client.request(5, "ping"))["result"] == {}


async def test_the_agreed_version_shapes_every_answer() -> None:
    async with raw_session() as (client, _, _):
        await client.send(initialize(version="2024-11-05"))
        assert (await client.answer())["result"]["protocolVersion"] == "2024-11-05"
        listed = (await client.request(2, "tools/list"))["result"]
        assert "tools" in listed and "ttlMs" not in listed and "resultType" not in listed
    async with raw_session() as (client, _, _):
        await client.send(initialize(version="1999-01-01"))  # unknown: our latest instead
        assert (await client.answer())["result"]["protocolVersion"] == "2025-11-25"


async def test_a_refused_call_is_a_tool_error_the_model_reads() -> None:
    recorder = InMemoryRecorder()
    async with raw_session(recorder) as (client, _, _):
        await client.send(initialize())
        await client.answer()
        refused = await client.request(2, "tools/call", {"name": "get_order", "arguments": {}})
    result = refused["result"]
    assert (
        result["isError"] is True and "opsgate refused `get_order`" in result["content"][0]["text"]
    )
    decisions = [e.data for e in recorder.events if e.type == EventType.DECISION]
    assert decisions and decisions[-1]["tool"] == "get_order"


async def test_a_cancelled_request_gets_no_answer_and_the_next_one_does() -> None:
    async with raw_session() as (client, _, _):
        await client.send(initialize())
        await client.answer()
        await client.send(
            {"jsonrpc": "2.0", "id": 2, "method": "tools/call",
             "params": {"name": "hang", "arguments": {"seconds": 0.4}}},
            {"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 2}},
        )  # fmt: skip
        answer = await client.request(3, "ping")
        assert answer["id"] == 3
        await asyncio.sleep(0.6)
        await client.send({"jsonrpc": "2.0", "id": 4, "method": "ping"})
        assert (await client.answer())["id"] == 4  # nothing came for 2


async def test_a_big_message_passes_whole() -> None:
    big = "x" * 3_000_000  # far beyond a pipe's buffer: written and read in many pieces
    proxy = make_proxy({"shop": shop_spec()}, max_result_bytes=10_000_000)
    async with connected(proxy) as client:
        result = await client.call_tool("draft_reply", {"text": big})
    assert text(result) == "draft saved (3000000 chars)"


async def test_end_of_input_ends_the_session_and_closes_the_descriptors() -> None:
    async with raw_session() as (client, _, serving):
        await client.send(initialize())
        await client.answer()
        client.writer.close()  # the client went away
        await asyncio.wait_for(serving, 10)


def test_only_pipes_and_sockets_not_shared_with_stderr_are_served_natively(
    tmp_path: Path,
) -> None:
    read_fd, write_fd = os.pipe()
    left, right = socket.socketpair()
    regular = os.open(tmp_path / "file", os.O_RDWR | os.O_CREAT)
    terminal, other_end = os.openpty()
    shared = os.dup(write_fd)
    try:
        assert native_stdio(read_fd, write_fd, err_fd=regular)
        assert native_stdio(left.fileno(), right.fileno(), err_fd=regular)
        assert not native_stdio(regular, write_fd, err_fd=regular)  # `< requests.jsonl`
        assert not native_stdio(terminal, write_fd, err_fd=regular)
        assert not native_stdio(read_fd, 987654)  # not open
        # `2>&1`: non-blocking stdout would make stderr non-blocking too
        assert not native_stdio(read_fd, write_fd, err_fd=shared)
    finally:
        for fd in (read_fd, write_fd, regular, terminal, other_end, shared):
            os.close(fd)
        left.close()
        right.close()
