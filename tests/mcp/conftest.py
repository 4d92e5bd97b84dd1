"""Fixtures of the MCP proxy tests: the test servers, a policy over their tools, and a
proxy connected to a real MCP `ClientSession` (in process, or as `opsgate mcp-proxy`)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import anyio
import mcp_types
import pytest
from mcp.shared.memory import create_client_server_memory_streams
from mcp.shared.message import SessionMessage

from mcp import ClientSession
from opsgate.gateway import Approver
from opsgate.mcp import (
    Identity,
    LockFile,
    McpProxy,
    ProxyConfig,
    ToolSpec,
    Upstream,
    UpstreamSpec,
    resolve_upstreams,
)
from opsgate.mcp._line_server import LineServer
from opsgate.mcp._stdio import line_pipes
from opsgate.policy import content_version, parse_policy
from opsgate.recorder import InMemoryRecorder, Recorder

SERVERS = Path(__file__).parent / "servers"
PYTHON = sys.executable

POLICY = """
version: "mcp-t1"
defaults:
  caps: {max_tool_calls: 40, max_identical_calls: 5, max_retries: 1, max_cost_usd: 10,
         max_wall_seconds: 120, max_steps: 20}
  tool_timeout_seconds: 10
workflows:
  support:
    stage: autonomous_in_scope
    tools:
      get_ticket: {}
      get_order: {output: trusted}
      draft_reply: {}
      refund: {approval: never}
      big: {}
      crash: {}
      hang: {timeout_seconds: 0.5}
      fail: {}
      pid: {}
      search: {}
      mutate: {}
      broken: {}
      fine: {}
    provenance:
      targets: {refund: [order_id, amount]}
  careful:
    stage: write_with_approval
    tools:
      get_order: {output: trusted}
      refund: {}
  readonly:
    stage: read_only
    tools: {get_ticket: {}, get_order: {}, refund: {}}
  policy_says:
    stage: read_only
    tools: {get_ticket: {scope: write}, get_order: {}, draft_reply: {scope: read}}
  trusting:
    stage: read_only
    tools: {get_order: {}}
    provenance: {trusted_resources: ["kb://refund-*"], untrusted_resources: ["kb://*-draft"]}
  distrusting:
    stage: read_only
    tools: {get_order: {}}
    provenance: {untrusted_resources: ["kb://*"]}
  feeds:
    stage: read_only
    tools:
      {touch: {}, grow: {}, subscribed: {}, crash: {}, ask_model: {}, ask_person: {}, count: {},
       roots: {}, log: {}}
  multi:
    stage: autonomous_in_scope
    tools:
      shop__get_ticket: {}
      shop__get_order: {output: trusted}
      shop__refund: {approval: never}
      bad__fine: {}
      bad__broken: {}
      bad__malformed: {}
      junk__anything: {}
    provenance:
      targets: {shop__refund: [order_id, amount]}
"""

SHOP_TOOLS = {
    "draft_reply": ToolSpec(scope="draft", impact="low"),
    "refund": ToolSpec(scope="write", impact="high"),
}


def shop_spec(**extra: Any) -> UpstreamSpec:
    return UpstreamSpec(command=[PYTHON, str(SERVERS / "shop.py")], tools=SHOP_TOOLS, **extra)


def server_spec(name: str) -> UpstreamSpec:
    return UpstreamSpec(command=[PYTHON, str(SERVERS / f"{name}.py")])


@pytest.fixture
def policy_file(tmp_path: Path) -> Path:
    path = tmp_path / "policy.yaml"
    path.write_text(POLICY)
    return path


def make_proxy(
    specs: dict[str, UpstreamSpec],
    *,
    workflow: str = "support",
    recorder: Recorder | None = None,
    approver: Approver | None = None,
    lock: LockFile | None = None,
    lock_path: Path | None = None,
    env: dict[str, str] | None = None,
    shadow: str | None = None,
    **config: Any,
) -> McpProxy:
    """A proxy over ``specs`` (not namespaced unless asked), pinned at start by default."""
    document, source = parse_policy("test-policy", text=POLICY)
    config.setdefault("namespace", False)
    config.setdefault("connect_timeout_seconds", 10)
    settings = ProxyConfig(**config)
    proxy: McpProxy | None = None

    async def changed(name: str) -> None:
        assert proxy is not None
        await proxy.tools_changed(name)

    targets = resolve_upstreams(specs, SERVERS)  # as `opsgate mcp-proxy` resolves them
    upstreams = {
        name: Upstream(
            dataclasses.replace(target, env=dict(env or {})),
            on_tools_changed=changed,
            connect_timeout_s=settings.connect_timeout_seconds,
        )
        for name, target in targets.items()
    }
    proxy = McpProxy(
        document=document,
        version=content_version(document),
        source=source,
        workflow=workflow,
        config=settings,
        upstreams=upstreams,
        specs=specs,
        identity=Identity("maria", "bot-1"),
        recorder=recorder if recorder is not None else InMemoryRecorder(),
        approver=approver,
        lock=lock,
        lock_path=lock_path,
        shadow=None
        if shadow is None
        else (lambda d: (d[0], content_version(d[0]), d[1]))(parse_policy("shadow", text=shadow)),
    )
    return proxy


@contextlib.asynccontextmanager
async def client_streams(read_fd: int, write_fd: int) -> AsyncIterator[Any]:
    """The SDK client's streams over two pipe ends (both owned): one JSON-RPC message a
    line, parsed and written as the SDK's stdio client does."""
    send_in, incoming = anyio.create_memory_object_stream[Any](0)
    outgoing, receive_out = anyio.create_memory_object_stream[SessionMessage](0)
    async with line_pipes(read_fd, write_fd) as (reader, writer):

        async def read() -> None:
            # the session may stop listening first (a notification after its end)
            with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError):
                await read_lines()

        async def read_lines() -> None:
            async with send_in:
                while line := await reader.readline():
                    try:
                        message = mcp_types.jsonrpc_message_adapter.validate_json(line)
                    except Exception as exc:
                        await send_in.send(exc)
                        continue
                    await send_in.send(SessionMessage(message))

        async def write() -> None:
            async with receive_out:
                async for item in receive_out:
                    data = item.message.model_dump_json(by_alias=True, exclude_unset=True)
                    writer.write(data.encode() + b"\n")
                    await writer.drain()

        async with anyio.create_task_group() as group:
            group.start_soon(read)
            group.start_soon(write)
            yield incoming, outgoing
            group.cancel_scope.cancel()


@contextlib.asynccontextmanager
async def connected(
    proxy: McpProxy,
    on_message: Callable[[Any], Any] | None = None,
    *,
    sdk: bool = False,
    **client: Any,
) -> AsyncIterator[ClientSession]:
    """A real MCP client session talking to ``proxy``: over two OS pipes to the proxy's
    stdio server (`LineServer`, what `opsgate mcp-proxy` serves), or with ``sdk`` over
    in-memory streams to the SDK's server (what serves a file or a terminal); ``client``:
    the `ClientSession`'s other arguments (its sampling and elicitation callbacks)."""
    if not sdk:
        async with _over_pipes(proxy, on_message, client) as session:
            yield session
        return
    await proxy.start()
    server = proxy.server()
    try:
        async with (
            create_client_server_memory_streams() as (client_streams, server_streams),
            anyio.create_task_group() as group,
        ):
            options = proxy.initialization_options(server)
            group.start_soon(server.run, server_streams[0], server_streams[1], options)
            async with ClientSession(
                client_streams[0], client_streams[1], message_handler=on_message, **client
            ) as session:
                await session.initialize()
                yield session
            group.cancel_scope.cancel()
    finally:
        await proxy.close()


def text(result: mcp_types.CallToolResult) -> str:
    return "\n".join(b.text for b in result.content if isinstance(b, mcp_types.TextContent))


@contextlib.asynccontextmanager
async def _over_pipes(
    proxy: McpProxy, on_message: Callable[[Any], Any] | None, client: dict[str, Any]
) -> AsyncIterator[ClientSession]:
    to_server_r, to_server_w = os.pipe()
    to_client_r, to_client_w = os.pipe()
    await proxy.start()
    try:
        async with line_pipes(to_server_r, to_client_w) as (reader, writer):
            serving = asyncio.create_task(LineServer(proxy, reader, writer).serve())
            try:
                async with (
                    client_streams(to_client_r, to_server_w) as (read, write),
                    ClientSession(read, write, message_handler=on_message, **client) as session,
                ):
                    await session.initialize()
                    yield session
            finally:
                serving.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await serving
    finally:
        await proxy.close()


@contextlib.asynccontextmanager
async def serve_asgi(app: Any) -> AsyncIterator[int]:
    """Serve an ASGI app with uvicorn on 127.0.0.1, on a port the kernel picks (yielded)."""
    import socket

    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = int(sock.getsockname()[1])
    config = uvicorn.Config(
        app, log_level="critical", lifespan="on", access_log=False, timeout_graceful_shutdown=1
    )
    server = uvicorn.Server(config)
    server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            assert not task.done(), "the test server stopped before it started"
            await asyncio.sleep(0.01)
        yield port
    finally:
        server.should_exit = True
        with contextlib.suppress(BaseException):
            await asyncio.wait_for(task, 10)
        sock.close()
