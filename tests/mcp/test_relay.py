"""What the proxy relays between its clients and an upstream besides tool calls: resource
subscriptions and their updates, and the changed lists of resources and prompts; each to
the sessions it concerns, over stdio, the SDK's server and the proxy's HTTP server."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import mcp_types
import pytest
from mcp.client.streamable_http import streamable_http_client
from tests.mcp.conftest import connected, make_proxy, serve_asgi, server_spec, text
from tests.mcp.test_http_server import AsIdentity

from mcp import ClientSession
from opsgate.mcp import McpProxy
from opsgate.mcp._http_server import McpHttpApp

# the proxy serves the handshake era of MCP, where a client subscribes to a resource
pytestmark = pytest.mark.filterwarnings("ignore:resources/(un)?subscribe is removed")


class Heard:
    """The notifications a client session received, awaitable by kind."""

    def __init__(self) -> None:
        self.messages: list[Any] = []
        self._arrived = asyncio.Condition()

    async def __call__(self, message: Any) -> None:
        async with self._arrived:
            self.messages.append(message)
            self._arrived.notify_all()

    def of(self, kind: type[Any]) -> list[Any]:
        return [m for m in self.messages if isinstance(m, kind)]

    async def wait_for(self, kind: type[Any], count: int = 1) -> list[Any]:
        async with self._arrived:
            await asyncio.wait_for(self._arrived.wait_for(lambda: len(self.of(kind)) >= count), 10)
        return self.of(kind)


def feeds() -> McpProxy:
    return make_proxy({"feeds": server_spec("feeds")}, workflow="feeds")


async def subscribed_upstream(client: ClientSession) -> list[str]:
    result = await client.call_tool("subscribed", {})
    assert not result.is_error, text(result)
    return list(json.loads(text(result)))


def updated(heard: Heard) -> list[str]:
    return [str(n.params.uri) for n in heard.of(mcp_types.ResourceUpdatedNotification)]


@pytest.mark.parametrize("sdk", [False, True], ids=["stdio", "sdk-server"])
async def test_a_subscription_reaches_the_upstream_and_its_updates_the_client(sdk: bool) -> None:

    heard = Heard()
    async with connected(feeds(), heard, sdk=sdk) as client:
        started = client.initialize_result
        assert started is not None and started.capabilities.resources is not None
        assert started.capabilities.resources.subscribe
        await client.list_resources()
        await client.subscribe_resource("feed://status")
        await client.subscribe_resource("feed://status")  # twice: one subscription
        assert await subscribed_upstream(client) == ["feed://status"]
        await client.call_tool("touch", {"uri": "feed://other"})  # nobody subscribed to it
        await client.call_tool("touch", {"uri": "feed://status"})
        await heard.wait_for(mcp_types.ResourceUpdatedNotification)
        assert updated(heard) == ["feed://status"]
        await client.unsubscribe_resource("feed://status")
        assert await subscribed_upstream(client) == []


async def test_changed_resource_and_prompt_lists_are_relayed() -> None:

    heard = Heard()
    async with connected(feeds(), heard) as client:
        await client.call_tool("grow", {})
        await heard.wait_for(mcp_types.ResourceListChangedNotification)
        await heard.wait_for(mcp_types.PromptListChangedNotification)


async def test_a_restarted_upstream_is_subscribed_again() -> None:

    heard = Heard()
    async with connected(feeds(), heard) as client:
        await client.subscribe_resource("feed://status")
        crashed = await client.call_tool("crash", {})
        assert crashed.is_error
        assert await subscribed_upstream(client) == ["feed://status"]  # a new process
        await client.call_tool("touch", {"uri": "feed://status"})
        await heard.wait_for(mcp_types.ResourceUpdatedNotification)


async def test_an_unknown_resource_cannot_be_subscribed_to_with_several_upstreams() -> None:

    specs = {"a": server_spec("feeds"), "b": server_spec("feeds")}
    proxy = make_proxy(specs, workflow="feeds", namespace=True)
    async with connected(proxy) as client:
        with pytest.raises(Exception, match="unknown resource; list the resources first"):
            await client.subscribe_resource("feed://nowhere")


@contextlib.asynccontextmanager
async def over_http(proxy: McpProxy) -> AsyncIterator[str]:
    await proxy.start()
    app = McpHttpApp(proxy, "127.0.0.1")
    try:
        async with serve_asgi(AsIdentity(app)) as port:
            yield f"http://127.0.0.1:{port}/mcp"
    finally:
        await proxy.close()


@contextlib.asynccontextmanager
async def http_client(url: str, heard: Heard) -> AsyncIterator[ClientSession]:
    async with (
        streamable_http_client(url) as (read, write),
        ClientSession(read, write, message_handler=heard) as client,
    ):
        await client.initialize()
        yield client


async def test_over_http_an_update_reaches_only_the_sessions_subscribed() -> None:
    heard_a, heard_b = Heard(), Heard()
    proxy = feeds()
    async with over_http(proxy) as url:
        async with http_client(url, heard_a) as a, http_client(url, heard_b) as b:
            await a.list_resources()
            await a.subscribe_resource("feed://status")
            await b.subscribe_resource("feed://other")
            await b.call_tool("touch", {"uri": "feed://status"})
            await heard_a.wait_for(mcp_types.ResourceUpdatedNotification)
            await b.call_tool("touch", {"uri": "feed://other"})
            await heard_b.wait_for(mcp_types.ResourceUpdatedNotification)
            assert updated(heard_a) == ["feed://status"]
            assert updated(heard_b) == ["feed://other"]
            assert await subscribed_upstream(b) == ["feed://other", "feed://status"]
        # both sessions ended (DELETE): their subscriptions end at the upstream too
        async with http_client(url, Heard()) as c:
            for _ in range(50):
                if await subscribed_upstream(c) == []:
                    break
                await asyncio.sleep(0.1)
            assert await subscribed_upstream(c) == []
