"""opsgate's own stdio MCP client (`opsgate.mcp._rpc.StdioClient`) against servers written
with the SDK: the handshake, listing, calls (concurrent ones too), notifications, a call
cancelled, a server that dies and one that is not MCP."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import mcp_types
import pytest
from tests.mcp.conftest import PYTHON, SERVERS

from opsgate.mcp import ConnectionClosed, RpcError, StdioClient


@contextlib.asynccontextmanager
async def started(client: StdioClient) -> AsyncIterator[StdioClient]:
    try:
        await asyncio.wait_for(client.start(), 20)
        yield client
    finally:
        await client.close()


def shop(**kwargs: Any) -> StdioClient:
    return StdioClient((PYTHON, str(SERVERS / "shop.py")), **kwargs)


def texts(result: mcp_types.CallToolResult) -> str:
    return "\n".join(b.text for b in result.content if isinstance(b, mcp_types.TextContent))


async def test_it_shakes_hands_lists_and_calls() -> None:
    async with started(shop()) as client:
        assert client.server_info is not None and client.server_info.server_info.name == "shop"
        names = {t.name for t in (await client.list_tools()).tools}
        assert {"get_ticket", "get_order", "refund", "crash"} <= names
        result = await client.call_tool("get_order", {"order_id": "ORD-7"})
        assert not result.is_error
        assert result.structured_content == {
            "order_id": "ORD-7",
            "total": 40.0,
            "status": "delivered",
        }
        failed = await client.call_tool("fail", {})  # a tool error is a result, not a failure
        assert failed.is_error and "warehouse is on fire" in texts(failed)
        with pytest.raises(RpcError):
            await client.send("no/such/method", {})
        resources = await client.list_resources()
        assert [str(r.uri) for r in resources.resources] == ["kb://refund-policy"]


async def test_concurrent_calls_each_get_their_own_answer() -> None:
    async with started(shop()) as client:
        await client.list_tools()
        ids = [f"ORD-{i}" for i in range(24)]
        results = await asyncio.gather(
            *(client.call_tool("get_order", {"order_id": i}) for i in ids)
        )
        assert [r.structured_content and r.structured_content["order_id"] for r in results] == ids


async def test_a_cancelled_call_leaves_the_client_working() -> None:
    async with started(shop()) as client:
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(client.call_tool("hang", {"seconds": 5}), 0.3)
        again = await client.call_tool("get_order", {"order_id": "ORD-1"})
        assert not again.is_error and client.alive


async def test_tools_list_changed_reaches_the_callback(tmp_path: Path) -> None:
    seen: list[str] = []
    changed = asyncio.Event()

    async def notified(method: str, params: Any) -> None:
        seen.append(method)
        if method == "notifications/tools/list_changed":
            changed.set()

    command = (PYTHON, str(SERVERS / "drifting.py"), str(tmp_path / "state"))
    async with started(StdioClient(command, on_notification=notified)) as client:
        before = (await client.list_tools()).tools
        await client.call_tool("mutate", {})
        await asyncio.wait_for(changed.wait(), 10)
        after = (await client.list_tools()).tools
    assert "notifications/tools/list_changed" in seen
    assert before[0].description != after[0].description


async def test_a_server_that_dies_fails_its_calls_and_is_no_longer_alive() -> None:
    async with started(shop()) as client:
        await client.list_tools()
        waiting = asyncio.ensure_future(client.call_tool("hang", {"seconds": 5}))
        await asyncio.sleep(0.1)
        with pytest.raises(ConnectionClosed):
            await client.call_tool("crash", {})
        with pytest.raises(ConnectionClosed):  # the call in flight fails too, never hangs
            await asyncio.wait_for(waiting, 10)
        assert not client.alive and not client.stopped
        with pytest.raises(ConnectionClosed):
            await client.call_tool("get_order", {"order_id": "ORD-1"})


async def test_a_server_that_is_not_mcp_is_counted_and_never_shakes_hands() -> None:
    bad: list[int] = []
    client = StdioClient((PYTHON, str(SERVERS / "not_mcp.py")), on_bad_line=lambda: bad.append(1))
    try:
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(client.start(), 3)
    finally:
        await client.kill()
    assert len(bad) >= 1 and not client.alive


async def test_a_result_that_is_no_tool_result_is_refused() -> None:
    async with started(StdioClient((PYTHON, str(SERVERS / "raw.py")))) as client:
        await client.list_tools()
        with pytest.raises(ValueError):  # pydantic's ValidationError is a ValueError
            await client.call_tool("malformed", {})
        assert client.alive  # a bad answer is not a dead server


async def test_a_command_that_cannot_start_raises_os_error() -> None:
    client = StdioClient(("/nonexistent/opsgate-test-server",))
    with pytest.raises(OSError):
        await client.start()
    await client.close()
