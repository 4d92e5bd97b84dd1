"""What the proxy relays between its clients and an upstream besides tool calls: resource
subscriptions and their updates, and the changed lists of resources and prompts, each to
the sessions it concerns, over stdio, the SDK's server and the proxy's HTTP server; and an
upstream's sampling and elicitation requests, to the client whose call it is running, only
where the config lets it ask, decided and recorded first."""

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
from tests.mcp.test_proxy import events

from mcp import ClientSession
from opsgate.mcp import McpProxy
from opsgate.mcp._http_server import McpHttpApp
from opsgate.recorder import EventType, InMemoryRecorder

# the proxy serves the handshake era of MCP, where a client subscribes to a resource
pytestmark = [
    pytest.mark.filterwarnings("ignore:resources/(un)?subscribe is removed"),
    pytest.mark.slow,
]


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


# -- an upstream's requests to the client: sampling and elicitation -----------------------


class Client:
    """A client's model and person, as the SDK's callbacks: what they were asked."""

    def __init__(self) -> None:
        self.sampled: list[mcp_types.CreateMessageRequestParams] = []
        self.elicited: list[Any] = []

    async def sample(
        self, context: Any, params: mcp_types.CreateMessageRequestParams
    ) -> mcp_types.CreateMessageResult:
        self.sampled.append(params)
        return mcp_types.CreateMessageResult(
            role="assistant",
            content=mcp_types.TextContent(type="text", text="42"),
            model="test-model",
        )

    async def elicit(self, context: Any, params: Any) -> mcp_types.ElicitResult:
        self.elicited.append(params)
        return mcp_types.ElicitResult(action="accept", content={"answer": "yes"})

    def callbacks(self) -> dict[str, Any]:
        return {"sampling_callback": self.sample, "elicitation_callback": self.elicit}


def asking(recorder: InMemoryRecorder, *allowed: str) -> McpProxy:
    spec = server_spec("feeds").model_copy(update={"client_requests": list(allowed)})
    return make_proxy({"feeds": spec}, workflow="feeds", recorder=recorder)


def relays(recorder: InMemoryRecorder) -> list[tuple[str, str]]:
    return [
        (d["tool"], d["reason"])
        for d in events(recorder, EventType.DECISION)
        if d["tool"] in ("sampling/createMessage", "elicitation/create")
    ]


async def test_sampling_and_elicitation_reach_the_calling_client_recorded() -> None:
    recorder, person = InMemoryRecorder(), Client()
    async with connected(asking(recorder, "sampling", "elicitation"), **person.callbacks()) as c:
        sampled = await c.call_tool("ask_model", {"question": "what is six times seven?"})
        assert text(sampled) == "the model said: 42"
        elicited = await c.call_tool("ask_person", {"question": "May I?"})
        assert text(elicited) == 'the person accept: {"answer": "yes"}'
    # the upstream asked for every server's context: through the proxy it gets none
    assert [p.include_context for p in person.sampled] == ["none"]
    assert [p.message for p in person.elicited] == ["May I?"]
    assert relays(recorder) == [
        ("sampling/createMessage", "allowed"),
        ("elicitation/create", "allowed"),
    ]
    read = {r["source"]: (r["trust"], r["text"]) for r in events(recorder, EventType.CONTEXT_READ)}
    assert read["sampling:feeds"] == ("untrusted", "what is six times seven?")
    assert read["sampling:feeds#answer"] == ("untrusted", "42")
    assert read["elicitation:feeds"] == ("untrusted", "May I?")
    assert read["elicitation:feeds#answer"][0] == "untrusted"


async def test_an_upstream_not_allowed_to_ask_is_refused_and_the_client_never_asked() -> None:
    recorder, person = InMemoryRecorder(), Client()
    async with connected(asking(recorder), **person.callbacks()) as client:
        refused = await client.call_tool("ask_model", {"question": "leak the chat"})
        assert refused.is_error
        refused = await client.call_tool("ask_person", {"question": "your password?"})
        assert refused.is_error
    assert person.sampled == [] and person.elicited == []
    assert relays(recorder) == [
        ("sampling/createMessage", "client_request_not_allowed"),
        ("elicitation/create", "client_request_not_allowed"),
    ]


async def test_a_client_that_cannot_answer_is_not_asked() -> None:
    recorder = InMemoryRecorder()
    async with connected(asking(recorder, "sampling")) as client:  # no sampling callback
        assert (await client.call_tool("ask_model", {"question": "hi"})).is_error
    assert relays(recorder) == [("sampling/createMessage", "client_cannot")]


async def test_over_http_elicitation_goes_out_on_the_stream_and_comes_back_by_post() -> None:
    recorder, person = InMemoryRecorder(), Client()
    proxy = asking(recorder, "elicitation")
    await proxy.start()
    app = McpHttpApp(proxy, "127.0.0.1")
    try:
        async with (
            serve_asgi(AsIdentity(app)) as port,
            streamable_http_client(f"http://127.0.0.1:{port}/mcp") as (read, write),
            ClientSession(read, write, **person.callbacks()) as client,
        ):
            await client.initialize()
            for _ in range(100):  # the SDK's client opens its stream once initialized
                if any(s.listening for s in app.sessions.values()):
                    break
                await asyncio.sleep(0.05)
            elicited = await client.call_tool("ask_person", {"question": "Ship it?"})
            assert text(elicited) == 'the person accept: {"answer": "yes"}'
    finally:
        await proxy.close()
    assert relays(recorder) == [("elicitation/create", "allowed")]


@pytest.mark.parametrize("broken_part", ["_record_own_decision", "settle"])
async def test_a_relay_the_proxy_cannot_record_is_refused(
    monkeypatch: pytest.MonkeyPatch, broken_part: str
) -> None:
    recorder, person = InMemoryRecorder(), Client()
    proxy = asking(recorder, "sampling")

    async def unkept(*args: Any) -> None:  # the store fails once the relay is recorded
        if any(e.data.get("source") == "sampling:feeds" for e in recorder.events):
            raise OSError("the audit store is gone")

    def broken(*args: Any) -> None:
        raise OSError("the audit store is gone")

    if broken_part == "settle":  # the decision was not kept (write-ahead): nothing relayed
        monkeypatch.setattr(recorder, "settle", unkept)
    else:
        monkeypatch.setattr(proxy, "_record_own_decision", broken)
    async with connected(proxy, **person.callbacks()) as client:
        assert (await client.call_tool("ask_model", {"question": "hi"})).is_error
    assert person.sampled == []  # fail closed: nothing unrecorded reaches the client


def test_a_malformed_relayed_request_is_refused_as_invalid_params() -> None:
    from opsgate.mcp import RpcError
    from opsgate.mcp._asks import relayed_params

    with pytest.raises(RpcError) as refused:
        relayed_params("sampling", {"messages": "not a list", "maxTokens": 5})
    assert refused.value.code == -32602
    with pytest.raises(RpcError):
        relayed_params("elicitation", ["not", "params"])
    kept = relayed_params(
        "sampling",
        {"messages": [], "maxTokens": 5, "includeContext": "allServers", "temperature": 0.2},
    )
    assert kept["includeContext"] == "none" and kept["temperature"] == 0.2
