"""The proxy's stdio server: MCP's JSON-RPC, one message a line, read and answered on the
event loop.

Why not the SDK's `Server` here: per call it validates the whole message into pydantic
models, passes it through memory streams, a task group, its dispatcher and runner, and
builds a context: ~0.4 ms of CPU, as much as the gate itself, and over stdio (one client,
calls one after another) most of what the proxy adds to a call. This server speaks the
handshake era of the protocol (``initialize`` with the SDK's handshake versions; what
clients, the SDK's own included, speak over stdio) for what the proxy serves
(`opsgate.mcp._answers`): ping, tools, resources (subscriptions too), prompts, request
cancellation and the notifications of changed tools, resources and prompts; a line that is
not JSON is ``-32700``.

Requests run concurrently (a slow tool does not hold a ping); answers are written as they
are ready.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson
from mcp_types.version import LATEST_HANDSHAKE_VERSION

from opsgate.mcp._answers import (
    INVALID_REQUEST,
    PARSE_ERROR,
    Answers,
    Refused,
    error_message,
)
from opsgate.mcp._asks import ClientAsks
from opsgate.mcp._progress import ProgressNotes

if TYPE_CHECKING:
    from opsgate.mcp._proxy import McpProxy

__all__ = ["LineServer"]


@dataclass(frozen=True, slots=True)
class _Context:
    """What a handler reads of its request: no HTTP request (stdio is one session), and
    the channel for notifications."""

    session: LineServer
    request: None = None


class LineServer(ProgressNotes):
    """Serves `proxy` to one client over a reader and a writer (stdin and stdout)."""

    def __init__(
        self, proxy: McpProxy, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.proxy = proxy
        self.reader = reader
        self.writer = writer
        self._answers = Answers(proxy)
        self._context = _Context(self)
        self._running: dict[Any, asyncio.Task[None]] = {}
        self.version = LATEST_HANDSHAKE_VERSION
        """The protocol version agreed at ``initialize``: results are shaped for it."""
        self.bad_lines = 0
        self.asks = ClientAsks()
        """The proxy's requests to the client (an upstream's, relayed) and what it can do."""

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
            self.asks.fail_all("the client closed")
            if self._running:
                await asyncio.gather(*self._running.values(), return_exceptions=True)
        finally:
            self.asks.fail_all("the client closed")
            for task in list(self._running.values()):
                task.cancel()

    async def ask(self, method: str, params: Any) -> Any:
        """Send the client a request (a relayed sampling or elicitation); its result."""
        return await self.asks.ask(self._write, method, params)

    async def send_tool_list_changed(self) -> None:
        """Tell the client the tools it may call changed (pins, a restarted upstream)."""
        self._note("notifications/tools/list_changed")

    async def send_resource_list_changed(self) -> None:
        self._note("notifications/resources/list_changed")

    async def send_prompt_list_changed(self) -> None:
        self._note("notifications/prompts/list_changed")

    async def send_resource_updated(self, uri: str) -> None:
        self._note("notifications/resources/updated", {"uri": uri})

    def _send_progress(self, token: str | int, params: dict[str, Any]) -> None:
        self._note("notifications/progress", params)

    def _note(self, method: str, params: dict[str, Any] | None = None) -> None:
        note: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
        if params is not None:
            note["params"] = params
        self._write(note)

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
            self.asks.answered(message)  # an answer to a relayed request (or nothing)
            return
        if "id" not in message:
            self._notified(method, message.get("params"))
            return
        ident = message["id"]
        if not isinstance(ident, (str, int)) or isinstance(ident, bool):
            self._fail_line(None, INVALID_REQUEST, "Invalid Request")
            return
        if ident in self._running:
            self._write(
                error_message(ident, INVALID_REQUEST, "a request with this id is in flight")
            )
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
        if method == "initialize":
            self.asks.take_capabilities(params)
            try:
                self.version = self._answers.agreed_version(params)
            except Refused as refused:
                self._write(error_message(ident, refused.code, refused.message, refused.data))
                return
            self._write({"jsonrpc": "2.0", "id": ident,
                         "result": self._answers.initialized(self.version)})  # fmt: skip
            return
        self._write(await self._answers.answer(self._context, self.version, ident, method, params))
        with contextlib.suppress(ConnectionError):
            await self.writer.drain()  # a client that does not read holds its own answers

    # -- writing -------------------------------------------------------------------------

    def _fail_line(self, ident: Any, code: int, message: str) -> None:
        self.bad_lines += 1
        self._write(error_message(ident, code, message))

    def _write(self, message: dict[str, Any]) -> None:
        if self.writer.is_closing():
            return  # the client went away: nobody reads the answer
        with contextlib.suppress(ConnectionError):
            self.writer.write(orjson.dumps(message) + b"\n")
