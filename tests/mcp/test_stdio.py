"""The proxy's own stdio transport (pipes read and written on the event loop), and the
keep-alive of HTTP connections to an upstream. No upstream process: these are fast."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx2
import mcp_types
import pytest
from mcp.server.lowlevel import Server

from mcp import ClientSession
from opsgate.mcp._keepalive import KeepAliveTransport
from opsgate.mcp._stdio import native_stdio, serve_fds


def echo_server() -> Server[Any]:
    async def list_tools(ctx: Any, params: Any) -> mcp_types.ListToolsResult:
        schema = {"type": "object", "properties": {"text": {"type": "string"}}}
        return mcp_types.ListToolsResult(tools=[mcp_types.Tool(name="echo", input_schema=schema)])

    async def call_tool(ctx: Any, params: mcp_types.CallToolRequestParams) -> Any:
        text = str((params.arguments or {}).get("text", ""))
        return mcp_types.CallToolResult(content=[mcp_types.TextContent(type="text", text=text)])

    server: Server[Any] = Server("echo", on_list_tools=list_tools, on_call_tool=call_tool)
    server.middleware = []
    return server


@contextlib.asynccontextmanager
async def over_pipes() -> AsyncIterator[tuple[ClientSession, int]]:
    """A client session talking to the echo server through two OS pipes, both ends served
    by `serve_fds`; also the fd the client writes to (to send raw lines)."""
    to_server_r, to_server_w = os.pipe()
    to_client_r, to_client_w = os.pipe()
    raw = os.dup(to_server_w)
    server = echo_server()
    try:
        async with (
            serve_fds(to_server_r, to_client_w) as (server_read, server_write),
            serve_fds(to_client_r, to_server_w) as (client_read, client_write),
            anyio.create_task_group() as tasks,
        ):
            options = server.create_initialization_options()
            tasks.start_soon(server.run, server_read, server_write, options)
            async with ClientSession(client_read, client_write) as client:
                await client.initialize()
                yield client, raw
            tasks.cancel_scope.cancel()
    finally:
        os.close(raw)


async def test_a_session_over_pipes_calls_tools_concurrently() -> None:
    async with over_pipes() as (client, _):
        assert [t.name for t in (await client.list_tools()).tools] == ["echo"]
        results = await asyncio.gather(
            *(client.call_tool("echo", {"text": f"n{i}"}) for i in range(20))
        )
    assert [r.content[0].text for r in results] == [f"n{i}" for i in range(20)]  # type: ignore[union-attr]


async def test_a_line_that_is_not_json_rpc_does_not_end_the_session() -> None:
    async with over_pipes() as (client, raw):
        os.write(raw, b"this is not json\n\n" + "\udcff".encode("utf-8", "surrogatepass") + b"\n")
        result = await client.call_tool("echo", {"text": "still here"})
    assert result.content[0].text == "still here"  # type: ignore[union-attr]


async def test_a_big_message_passes_whole() -> None:
    big = "x" * 3_000_000  # far beyond a pipe's buffer: written and read in many pieces
    async with over_pipes() as (client, _):
        result = await client.call_tool("echo", {"text": big})
    assert result.content[0].text == big  # type: ignore[union-attr]


async def test_end_of_input_ends_the_session_and_closes_the_descriptors() -> None:
    read_fd, write_fd = os.pipe()
    out_r, out_w = os.pipe()
    async with serve_fds(read_fd, out_w) as (incoming, _outgoing):
        os.close(write_fd)  # the client went away
        with pytest.raises(anyio.EndOfStream):
            await incoming.receive()
    await asyncio.sleep(0)
    for fd in (read_fd, out_w):
        with pytest.raises(OSError):
            os.fstat(fd)
    os.close(out_r)


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


# -- keep-alive ---------------------------------------------------------------------------


@contextlib.contextmanager
def sse_server(*, stall: bool = False) -> Iterator[tuple[str, list[int]]]:
    """An HTTP/1.1 server answering every POST with a short SSE body (chunked, as an MCP
    server answers a call; with ``stall``, a body that never ends, as a notification stream
    does); counts the connections it accepted."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    accepted: list[int] = []

    def serve(conn: socket.socket) -> None:
        with conn:
            buffer = b""
            while True:
                while b"\r\n\r\n" not in buffer:
                    data = conn.recv(65536)
                    if not data:
                        return
                    buffer += data
                head, _, buffer = buffer.partition(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                while len(buffer) < length:
                    buffer += conn.recv(65536)
                buffer = buffer[length:]
                event = b'event: message\ndata: {"ok": true}\n\n'
                conn.sendall(
                    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
                    b"transfer-encoding: chunked\r\n\r\n"
                    + f"{len(event):x}\r\n".encode()
                    + event
                    + (b"\r\n" if stall else b"\r\n0\r\n\r\n")
                )
                if stall:
                    time.sleep(5)
                    return

    def accept() -> None:
        with contextlib.suppress(OSError):
            while True:
                conn, _ = listener.accept()
                accepted.append(1)
                threading.Thread(target=serve, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{port}/mcp", accepted
    finally:
        listener.close()


async def read_first_event(client: httpx2.AsyncClient, url: str) -> None:
    """What the SDK does with a call's SSE answer: read up to the event, then close."""
    async with client.stream("POST", url, json={"x": 1}) as response:
        async for line in response.aiter_lines():
            if line.startswith("data:"):
                break
        await response.aclose()


async def test_a_response_closed_after_its_event_leaves_the_connection_reusable() -> None:
    with sse_server() as (url, accepted):
        transport = KeepAliveTransport()
        async with httpx2.AsyncClient(transport=transport) as client:
            for _ in range(5):
                await read_first_event(client, url)
        assert len(accepted) == 1 and transport.drained == 5
        async with httpx2.AsyncClient() as client:  # without it: one connection a call
            for _ in range(3):
                await read_first_event(client, url)
        assert len(accepted) == 1 + 3


async def test_a_body_that_does_not_end_is_closed_after_the_bound() -> None:
    with sse_server(stall=True) as (url, accepted):
        transport = KeepAliveTransport()
        started = time.monotonic()
        async with httpx2.AsyncClient(transport=transport) as client:
            for _ in range(2):
                await read_first_event(client, url)
        assert time.monotonic() - started < 4  # never waits for the body's end
        assert transport.drained == 0 and len(accepted) == 2  # closed, as without it
