"""The proxy's stdio server: MCP's JSON-RPC, one message a line, read and answered on the
event loop.

Why not the SDK's `Server` here: per call it validates the whole message into pydantic
models, passes it through memory streams, a task group, its dispatcher and runner, and
builds a context: ~0.4 ms of CPU, as much as the gate itself, and over stdio (one client,
calls one after another) most of what the proxy adds to a call. This server speaks the
handshake era of the protocol (``initialize`` with the SDK's handshake versions; what
clients, the SDK's own included, speak over stdio) for what the proxy serves: ping, tools,
resources, prompts, request cancellation and ``notifications/tools/list_changed``. Each
request's params are still checked with the SDK's model for that method, and the handlers
are the same ones the SDK server calls over HTTP (`opsgate.mcp._handlers`). Anything else is
answered as the SDK answers it: an unknown method is ``-32601``, bad params ``-32602``, a
line that is not JSON ``-32700``.

Requests run concurrently (a slow tool does not hold a ping); answers are written as they
are ready.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import mcp_types
import orjson
from mcp_types.methods import serialize_server_result
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS, LATEST_HANDSHAKE_VERSION
from pydantic import BaseModel, ValidationError

from opsgate.mcp._handlers import Handlers
from opsgate.mcp._text import one_line

if TYPE_CHECKING:
    from opsgate.mcp._proxy import McpProxy

__all__ = ["LineServer"]

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603

NAME = "opsgate-mcp-proxy"
VERSION = "0.1.0"
INSTRUCTIONS = "Tools pass opsgate's policy gate; a refused call says why."
#: What the proxy can do: tools that may change (pins, restarts), resources and prompts.
CAPABILITIES: dict[str, Any] = {
    "prompts": {"listChanged": False},
    "resources": {"listChanged": False, "subscribe": False},
    "tools": {"listChanged": True},
}

Handler = Callable[[Any, Any], Awaitable[BaseModel]]


@dataclass(frozen=True, slots=True)
class _Context:
    """What a handler reads of its request: no HTTP request (stdio is one session), and
    the channel for notifications."""

    session: LineServer
    request: None = None


class LineServer:
    """Serves `proxy` to one client over a reader and a writer (stdin and stdout)."""

    def __init__(
        self, proxy: McpProxy, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.proxy = proxy
        self.reader = reader
        self.writer = writer
        handlers = Handlers(proxy)
        self._context = _Context(self)
        self._methods: dict[str, tuple[Handler, type[BaseModel] | None, bool]] = {
            # method: (handler, its params' model, whether params may be left out)
            "tools/call": (handlers.call_tool, mcp_types.CallToolRequestParams, False),
            "tools/list": (handlers.list_tools, mcp_types.PaginatedRequestParams, True),
            "resources/list": (handlers.list_resources, mcp_types.PaginatedRequestParams, True),
            "resources/templates/list": (
                handlers.list_resource_templates,
                mcp_types.PaginatedRequestParams,
                True,
            ),
            "resources/read": (handlers.read_resource, mcp_types.ReadResourceRequestParams, False),
            "prompts/list": (handlers.list_prompts, mcp_types.PaginatedRequestParams, True),
            "prompts/get": (handlers.get_prompt, mcp_types.GetPromptRequestParams, False),
        }
        self._running: dict[Any, asyncio.Task[None]] = {}
        self.version = LATEST_HANDSHAKE_VERSION
        """The protocol version agreed at ``initialize``: results are shaped for it."""
        self.bad_lines = 0

    async def serve(self) -> None:
        """Answer requests until the client closes its end; then wait for those in flight."""
        try:
            while True:
                try:
                    line = await self.reader.readline()
                except ValueError:  # longer than the reader's limit: what was read is dropped
                    self._fail_line(None, INVALID_REQUEST, "message too long")
                    continue
                if not line:
                    break
                if line.strip():
                    self._dispatch(line)
            if self._running:
                await asyncio.gather(*self._running.values(), return_exceptions=True)
        finally:
            for task in list(self._running.values()):
                task.cancel()

    async def send_tool_list_changed(self) -> None:
        """Tell the client the tools it may call changed (pins, a restarted upstream)."""
        self._write({"jsonrpc": "2.0", "method": "notifications/tools/list_changed"})

    # -- reading -------------------------------------------------------------------------

    def _dispatch(self, line: bytes) -> None:
        try:
            message = orjson.loads(line)
        except orjson.JSONDecodeError:
            self._fail_line(None, PARSE_ERROR, "Parse error")
            return
        if not isinstance(message, dict) or message.get("jsonrpc") != "2.0":
            ident = message.get("id") if isinstance(message, dict) else None
            self._fail_line(ident, INVALID_REQUEST, "Invalid Request")
            return
        method = message.get("method")
        if not isinstance(method, str):
            return  # a response: the proxy sends the client no requests
        if "id" not in message:
            self._notified(method, message.get("params"))
            return
        ident = message["id"]
        if not isinstance(ident, (str, int)) or isinstance(ident, bool):
            self._fail_line(None, INVALID_REQUEST, "Invalid Request")
            return
        if ident in self._running:
            self._error(ident, INVALID_REQUEST, "a request with this id is in flight")
            return
        task = asyncio.get_running_loop().create_task(
            self._answer(ident, method, message.get("params"))
        )
        self._running[ident] = task
        task.add_done_callback(lambda _: self._running.pop(ident, None))

    def _notified(self, method: str, params: Any) -> None:
        if method == "notifications/cancelled" and isinstance(params, dict):
            task = self._running.get(params.get("requestId"))
            if task is not None:
                task.cancel()  # as the SDK does: the cancelled request gets no answer
        # notifications/initialized, roots/list_changed, progress: nothing to do

    async def _answer(self, ident: str | int, method: str, params: Any) -> None:
        try:
            result = await self._result(method, params)
        except _Refused as refused:
            self._error(ident, refused.code, refused.message, refused.data)
            return
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug: the request fails, the server goes on
            self.proxy.counts["internal_error"] += 1
            self.proxy.say(f"internal error on `{method}`: {type(exc).__name__}: {one_line(exc)}")
            self._error(ident, INTERNAL_ERROR, f"internal error ({type(exc).__name__})")
            return
        self._write({"jsonrpc": "2.0", "id": ident, "result": result})
        with contextlib.suppress(ConnectionError):
            await self.writer.drain()  # a client that does not read holds its own answers

    async def _result(self, method: str, params: Any) -> dict[str, Any]:
        if method == "initialize":
            return self._initialize(params)
        if method == "ping":
            return {}
        found = self._methods.get(method)
        if found is None:
            raise _Refused(METHOD_NOT_FOUND, "Method not found", method)
        handler, model, optional = found
        if params is None and optional:
            parsed = None
        else:
            try:
                parsed = model.model_validate(params, by_name=False) if model else params
            except ValidationError as exc:
                raise _Refused(INVALID_PARAMS, "Invalid request parameters", _first(exc)) from None
        answer = await handler(self._context, parsed)
        dumped = answer.model_dump(by_alias=True, mode="json", exclude_none=True)
        # as the SDK does: only what the agreed version's schema has (no 2026-era fields)
        return serialize_server_result(method, self.version, dumped)

    def _initialize(self, params: Any) -> dict[str, Any]:
        asked = params.get("protocolVersion") if isinstance(params, dict) else None
        if not isinstance(asked, str):
            raise _Refused(INVALID_PARAMS, "Invalid request parameters", "protocolVersion")
        version = asked if asked in HANDSHAKE_PROTOCOL_VERSIONS else LATEST_HANDSHAKE_VERSION
        self.version = version
        return {
            "protocolVersion": version,
            "capabilities": CAPABILITIES,
            "serverInfo": {"name": NAME, "version": VERSION},
            "instructions": INSTRUCTIONS,
        }

    # -- writing -------------------------------------------------------------------------

    def _error(self, ident: Any, code: int, message: str, data: Any = None) -> None:
        error: dict[str, Any] = {"code": code, "message": message}
        if data is not None:
            error["data"] = data
        self._write({"jsonrpc": "2.0", "id": ident, "error": error})

    def _fail_line(self, ident: Any, code: int, message: str) -> None:
        self.bad_lines += 1
        self._error(ident, code, message)

    def _write(self, message: dict[str, Any]) -> None:
        if self.writer.is_closing():
            return  # the client went away: nobody reads the answer
        with contextlib.suppress(ConnectionError):
            self.writer.write(orjson.dumps(message) + b"\n")


class _Refused(Exception):
    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.code, self.message, self.data = code, message, data


def _first(exc: ValidationError) -> str:
    """The first problem of a params check, in a line (never the client's values)."""
    errors = exc.errors(include_input=False, include_url=False)
    if not errors:
        return ""
    where = ".".join(str(part) for part in errors[0].get("loc", ()))
    return f"{where}: {errors[0].get('msg', '')}" if where else str(errors[0].get("msg", ""))
