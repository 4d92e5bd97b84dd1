"""A suite's world as an MCP server on loopback, for agents opsgate did not build.

An external agent reaches the world only through the opsgate MCP proxy, which is an MCP
client of its upstreams; so the task's world (the very object the state checks read after
the run) is served in this process as the proxy's one upstream. The server runs each
suite tool's own function with the world as its dependencies and the trial's secrets: what
a tool does is exactly what it does for an opsgate agent. It decides nothing (the proxy in
front of it does), so it answers only a one-off bearer key only the proxy holds.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import os
import secrets as token_source
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, MutableMapping
from typing import Any

import mcp_types
import orjson
import uvicorn
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel import Server

from opsgate.contracts import Toolbelt, ToolContract
from opsgate.gateway import LocalToolExecutor, ToolRequest

__all__ = ["WorldServer", "serve_loopback"]

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


class _QuietServer(uvicorn.Server):
    """uvicorn without its signal handlers: many of these run at once inside one command,
    and Ctrl-C must stay the command's (not be swallowed by whichever server started last)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Any:
        yield


@contextlib.asynccontextmanager
async def serve_loopback(app: Any) -> AsyncIterator[int]:
    """Serve an ASGI app on 127.0.0.1 on a port the kernel picks; yields the port."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = int(sock.getsockname()[1])
    config = uvicorn.Config(
        app, log_level="error", lifespan="on", access_log=False, timeout_graceful_shutdown=2
    )
    server = _QuietServer(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            if task.done():  # it could not start: say why, not "never started"
                task.result()
                raise RuntimeError("the loopback server stopped before it started")
            await asyncio.sleep(0.01)
        yield port
    finally:
        server.should_exit = True
        with contextlib.suppress(Exception):
            await asyncio.wait_for(asyncio.shield(task), 10)
        if not task.done():
            server.force_exit = True
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
        sock.close()


class _KeyOnly:
    """ASGI middleware: the one-off key or 401 (nothing but the proxy reaches the world)."""

    def __init__(self, app: Any, key: str) -> None:
        self.app = app
        self.expected = f"Bearer {key}".encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            headers = dict(scope.get("headers") or [])
            if not hmac.compare_digest(headers.get(b"authorization", b""), self.expected):
                await send({"type": "http.response.start", "status": 401, "headers": []})
                await send({"type": "http.response.body", "body": b""})
                return
        await self.app(scope, receive, send)


class WorldServer:
    """The suite's tools over one task's world, as a low-level MCP server.

    Args:
        toolbelt: The suite's contracts (their own functions run).
        world: The task's world, given to each tool as its dependencies.
        secrets: The trial's secret values by name (each tool gets those it declares).
        workflow: The suite's workflow (what a tool's context says it runs in).
    """

    def __init__(
        self, toolbelt: Toolbelt, world: Any, secrets: Mapping[str, str], workflow: str
    ) -> None:
        self.toolbelt = toolbelt
        self.world = world
        self.secrets = dict(secrets)
        self.workflow = workflow
        self.key = token_source.token_urlsafe(24)
        self._executor = LocalToolExecutor(max_threads=4)

    def tools(self) -> list[mcp_types.Tool]:
        """Every contract as an MCP tool: its schema, and its scope and impact as hints."""
        return [
            mcp_types.Tool(
                name=c.name,
                description=c.description,
                input_schema=c.parameters_schema,
                annotations=mcp_types.ToolAnnotations(
                    read_only_hint=c.scope == "read",
                    destructive_hint=c.impact == "high",
                ),
            )
            for c in self.toolbelt
        ]

    async def call(self, name: str, arguments: Mapping[str, Any]) -> mcp_types.CallToolResult:
        """Run one tool on the world; a failure is a tool error that says why."""
        contract = self.toolbelt.find(name)
        if contract is None:
            return _error(f"no tool `{name}`")
        try:
            validated = contract.validate_args(dict(arguments))
        except Exception as exc:  # the proxy checked the schema; the contract may say more
            return _error(f"`{name}`: {exc}")
        done = await self._executor.execute(
            self._request(contract, dict(validated.__dict__)), _never
        )
        if not done.ok:
            return _error(done.error or f"`{name}` failed")
        return _result(done.result)

    def _request(self, contract: ToolContract, args: dict[str, Any]) -> ToolRequest:
        return ToolRequest(
            contract,
            args,
            run_id="agent-eval-world",
            workflow=self.workflow,
            call_id=os.urandom(8).hex(),
            deps=self.world,
            secrets={n: self.secrets[n] for n in contract.secrets if n in self.secrets},
            timeout_s=600.0,  # the proxy's gateway holds the policy's timeout per call
        )

    def app(self) -> Any:
        """The ASGI app: streamable HTTP at ``/mcp``, behind the one-off key."""

        async def list_tools(
            ctx: ServerRequestContext[Any, Any], params: mcp_types.PaginatedRequestParams | None
        ) -> mcp_types.ListToolsResult:
            return mcp_types.ListToolsResult(tools=self.tools())

        async def call_tool(
            ctx: ServerRequestContext[Any, Any], params: mcp_types.CallToolRequestParams
        ) -> mcp_types.CallToolResult:
            return await self.call(params.name, params.arguments or {})

        server: Server[Any] = Server(
            "agent-eval-world", version="0.1.0", on_list_tools=list_tools, on_call_tool=call_tool
        )
        server.middleware = []
        http = server.streamable_http_app(
            host="127.0.0.1", stateless_http=False, json_response=True
        )
        return _KeyOnly(http, self.key)

    def close(self) -> None:
        """Release the tool threads."""
        self._executor.close()


async def _never(attempt: int, kind: str, text: str) -> bool:
    """No retry here: the proxy's gateway retries (and counts) what it may."""
    return False


def _result(data: Any) -> mcp_types.CallToolResult:
    """JSON data as text, and as structured content (its values are what provenance reads)."""
    structured = data if isinstance(data, dict) else {"result": data}
    return mcp_types.CallToolResult.model_validate(
        {
            "content": [{"type": "text", "text": orjson.dumps(data).decode()}],
            "structuredContent": structured,
        }
    )


def _error(text: str) -> mcp_types.CallToolResult:
    return mcp_types.CallToolResult.model_validate(
        {"content": [{"type": "text", "text": text}], "isError": True}
    )
