"""Fail closed: a failure inside the proxy at any stage of a call denies it with a tool
error (never a protocol error), and nothing runs unchecked."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from tests.mcp.conftest import connected, make_proxy, shop_spec, text

from opsgate.contracts import ToolContract
from opsgate.mcp import McpProxy
from opsgate.recorder import Event, EventType, InMemoryRecorder


class Boom(RuntimeError):
    pass


def boom(*args: Any, **kwargs: Any) -> Any:
    raise Boom("injected")


class FailingRecorder(InMemoryRecorder):
    """The store failing on one kind of event."""

    def __init__(self, kind: EventType) -> None:
        super().__init__()
        self.kind = kind

    def record(self, event: Event) -> None:
        if event.type == self.kind:
            raise Boom(f"store down on {self.kind}")
        super().record(event)


def _run_start(proxy: McpProxy, patch: pytest.MonkeyPatch) -> None:
    patch.setattr(proxy.gateway, "start_run", boom)


def _catalog(proxy: McpProxy, patch: pytest.MonkeyPatch) -> None:
    patch.setattr(McpProxy, "catalog", property(boom))


def _validation(proxy: McpProxy, patch: pytest.MonkeyPatch) -> None:
    patch.setattr(ToolContract, "validate_args", boom)


def _decision(proxy: McpProxy, patch: pytest.MonkeyPatch) -> None:
    patch.setattr(proxy.gateway.policy, "decide", boom)


def _write_ahead(proxy: McpProxy, patch: pytest.MonkeyPatch) -> None:
    patch.setattr(proxy.gateway.recorder, "settle", boom)


STAGES: dict[str, Callable[[McpProxy, pytest.MonkeyPatch], None]] = {
    "run start": _run_start,
    "catalog": _catalog,
    "validation": _validation,
    "decision": _decision,
    "write-ahead commit": _write_ahead,
}


@pytest.mark.parametrize("stage", list(STAGES))
async def test_a_failure_inside_the_proxy_denies_the_call(
    stage: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    recorder = InMemoryRecorder()
    proxy = make_proxy({"shop": shop_spec()}, recorder=recorder)
    async with connected(proxy) as client:
        STAGES[stage](proxy, monkeypatch)
        result = await client.call_tool("get_order", {"order_id": "ORD-7"})
        monkeypatch.undo()
    assert result.is_error, stage
    assert "internal_error" in text(result) and "nothing ran" in text(result)
    assert not [e for e in recorder.events if e.type == EventType.TOOL_RESULT]
    assert proxy.counts["internal_error"] == 1


@pytest.mark.parametrize("kind", [EventType.TOOL_CALL_PROPOSED, EventType.DECISION])
async def test_a_store_that_refuses_an_event_denies_the_call(kind: EventType) -> None:
    recorder = FailingRecorder(kind)
    proxy = make_proxy({"shop": shop_spec()}, recorder=recorder)
    async with connected(proxy) as client:
        result = await client.call_tool("get_order", {"order_id": "ORD-7"})
    assert result.is_error and "internal_error" in text(result)
    assert not [e for e in recorder.events if e.type == EventType.TOOL_RESULT]


async def test_a_listing_that_fails_offers_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    proxy = make_proxy({"shop": shop_spec()})
    async with connected(proxy) as client:
        monkeypatch.setattr(proxy, "visible_tools", boom)
        assert (await client.list_tools()).tools == []


async def test_a_result_that_cannot_be_returned_says_the_call_ran(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import opsgate.mcp._proxy as proxy_module  # tests this module

    proxy = make_proxy({"shop": shop_spec()})
    async with connected(proxy) as client:
        monkeypatch.setattr(proxy_module, "from_data", boom)
        result = await client.call_tool("get_order", {"order_id": "ORD-7"})
    assert result.is_error and "ran, but opsgate could not return its result" in text(result)


async def test_an_upstream_runner_bug_is_a_counted_tool_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import opsgate.mcp._proxy as proxy_module  # tests this module

    recorder = InMemoryRecorder()
    proxy = make_proxy({"shop": shop_spec()}, recorder=recorder)
    async with connected(proxy) as client:
        monkeypatch.setattr(proxy_module, "as_data", boom)
        result = await client.call_tool("get_order", {"order_id": "ORD-7"})
    assert result.is_error and "Boom" in text(result)
    assert [e.data["error_type"] for e in recorder.events if e.type == EventType.TOOL_ERROR] == [
        "Boom"
    ]


async def test_a_catalog_that_cannot_be_rebuilt_refuses_every_call(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    proxy = make_proxy({"shop": shop_spec()})
    async with connected(proxy) as client:
        monkeypatch.setattr(proxy, "_build", boom)
        await proxy.tools_changed("shop")  # an upstream said its tools changed
        result = await client.call_tool("get_order", {"order_id": "ORD-7"})
        assert result.is_error and "could not be checked again" in text(result)
        assert (await client.list_tools()).tools == []
        monkeypatch.undo()
        await proxy.tools_changed("shop")
        assert not (await client.call_tool("get_order", {"order_id": "ORD-7"})).is_error
