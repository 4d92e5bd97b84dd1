"""One upstream MCP server, as a client the proxy can always ask: connected on demand,
restarted after it dies, every failure a typed `UpstreamError` the gateway records.

Upstreams are spoken to by opsgate's own clients, `opsgate.mcp._rpc.StdioClient` (a child
process) and `opsgate.mcp._rpc_http.HttpClient` (streamable HTTP): the SDK's session costs
more per call than the round trip (see their modules).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import threading
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, TextIO

import mcp_types

from opsgate.mcp._rpc import ConnectionClosed, RpcError, StdioClient
from opsgate.mcp._rpc_http import HttpClient

__all__ = ["Upstream", "UpstreamAsked", "UpstreamError", "UpstreamNotified", "UpstreamTarget"]


class UpstreamError(Exception):
    """The upstream failed a request; ``kind`` says how (the audited error type)."""

    def __init__(self, kind: str, message: str) -> None:
        self.kind = kind
        super().__init__(message)


@dataclass(frozen=True)
class UpstreamTarget:
    """Where an upstream is: a command (stdio) or a URL (streamable HTTP), resolved."""

    name: str
    command: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    cwd: str | None = None
    url: str | None = None
    headers: dict[str, str] = field(default_factory=dict, repr=False)
    client_requests: tuple[str, ...] = ()
    """What it may ask the proxy's client for (``sampling``, ``elicitation``): announced
    at the handshake; the proxy still decides each request."""
    roots: tuple[str, ...] = ()
    """The ``file://`` roots it is told of (``roots/list``, answered here); none: the
    proxy announces no roots."""

    @property
    def shown(self) -> str:
        """What it is, for messages (never the headers: they hold credentials)."""
        return self.url or " ".join(self.command[:1])


ToolsChanged = Callable[[str], Coroutine[Any, Any, None]]
#: Awaited with the upstream's name, a notification's method and its params.
UpstreamNotified = Callable[[str, str, Any], Coroutine[Any, Any, None]]
#: Answers the upstream's request (its name, method, params); refuses with `RpcError`.
UpstreamAsked = Callable[[str, str, Any], Coroutine[Any, Any, Any]]
#: What a request is sent through: a child's stdio, or streamable HTTP.
Link = StdioClient | HttpClient


class Upstream:
    """A client of one upstream server.

    Args:
        on_tools_changed: Awaited with the upstream's name when it says its tools changed.
        connect_timeout_s: How long starting and the MCP handshake may take.
    """

    def __init__(
        self,
        target: UpstreamTarget,
        *,
        on_tools_changed: ToolsChanged | None = None,
        connect_timeout_s: float = 15.0,
        errlog: TextIO | None = None,
    ) -> None:
        self.target = target
        self.name = target.name
        self.counts: Counter[str] = Counter()
        """Failures by kind, and ``restarts``: what `opsgate` reports and audits."""
        self._on_tools_changed = on_tools_changed
        self._connect_timeout_s = connect_timeout_s
        self._errlog = errlog
        self._relay: _StderrRelay | None = None
        self._client: Link | None = None
        self._lock = asyncio.Lock()
        self._connected_once = False
        self._pending: set[asyncio.Task[None]] = set()
        self._on_notified: UpstreamNotified | None = None
        self._on_asked: UpstreamAsked | None = None
        self._subscribed: set[str] = set()
        """Resource URIs subscribed to: subscribed again on a new connection."""

    # -- connection ----------------------------------------------------------------------

    async def session(self) -> Link:
        """The live link, (re)connecting first when there is none.

        Raises:
            UpstreamError: ``UpstreamUnavailable`` when it cannot start or shake hands.
        """
        client = self._client
        if client is not None and client.alive:
            return client
        async with self._lock:
            if self._client is not None and self._client.alive:
                return self._client
            await self._drop()
            restarted = self._connected_once
            if restarted:
                self.counts["restarts"] += 1
            client = self._client = self._new_client()
            try:
                async with asyncio.timeout(self._connect_timeout_s):
                    await client.start()
            except TimeoutError:
                raise await self._no_handshake() from None
            except Exception as exc:  # cannot start, died, not MCP, refused the handshake
                await self._drop(wait_s=0.0)
                self.counts["UpstreamUnavailable"] += 1
                raise UpstreamError(
                    "UpstreamUnavailable", f"upstream `{self.name}` cannot start: {_text(exc)}"
                ) from None
            self._connected_once = True
            if restarted and self._on_tools_changed is not None:  # it may list other tools now
                self._later(self._on_tools_changed(self.name))
            if self._subscribed:  # a subscription lives and dies with its connection
                await self._subscribe_again(client, sorted(self._subscribed))
            return client

    def listen(self, on_notified: UpstreamNotified, on_asked: UpstreamAsked | None = None) -> None:
        """Hear the upstream's other notifications (resources and prompts changed, a
        subscribed resource updated; its tool changes go to ``on_tools_changed``), and
        answer its requests with ``on_asked`` (sampling, elicitation)."""
        self._on_notified = on_notified
        self._on_asked = on_asked

    async def _asked(self, method: str, params: Any) -> Any:
        if method == "roots/list" and self.target.roots:  # the config's, never the client's
            self.counts["roots_listed"] += 1
            return {"roots": [{"uri": root} for root in self.target.roots]}
        if self._on_asked is None:
            raise RpcError(-32601, f"the proxy does not serve {method}")
        return await self._on_asked(self.name, method, params)

    def _new_client(self) -> Link:
        client = self._new_link()
        client.capabilities = {kind: {} for kind in self.target.client_requests}
        if self.target.roots:
            client.capabilities["roots"] = {"listChanged": False}
        client.on_request = self._asked
        return client

    def _new_link(self) -> Link:
        target = self.target
        if target.url is not None:
            return HttpClient(
                target.url,
                headers=target.headers,
                on_notification=self._on_notification,
                on_bad_message=self._on_bad_line,
            )
        return StdioClient(
            target.command,
            env=target.env,
            cwd=target.cwd,
            errlog=self._child_errlog(),
            on_notification=self._on_notification,
            on_bad_line=self._on_bad_line,
        )

    async def _no_handshake(self) -> UpstreamError:
        """Drop an upstream that did not shake hands in time (nothing to close politely),
        counted; the error to raise."""
        await self._drop(wait_s=0.0)
        self.counts["UpstreamUnavailable"] += 1
        return UpstreamError(
            "UpstreamUnavailable",
            f"upstream `{self.name}` did not complete the MCP handshake within "
            f"{self._connect_timeout_s:g}s",
        )

    def _on_bad_line(self) -> None:
        self.counts["UpstreamProtocolError"] += 1

    async def _on_notification(self, method: str, params: Any) -> None:
        if method == "notifications/tools/list_changed":
            if self._on_tools_changed is not None:
                await self._on_tools_changed(self.name)
        elif self._on_notified is not None:
            await self._on_notified(self.name, method, params)

    async def _subscribe_again(self, client: Link, uris: list[str]) -> None:
        for uri in uris:
            try:
                await client.subscribe_resource(uri)
            except Exception:  # its subscribers hear no more updates: counted, reported
                self.counts["ResubscribeFailed"] += 1

    def _child_errlog(self) -> TextIO:
        if self._errlog is None:  # the child's stderr, shown escaped and named
            self._relay = self._relay or _StderrRelay(self.name, _stderr())
            self._errlog = self._relay.writer
        return self._errlog

    def _later(self, work: Coroutine[Any, Any, None]) -> None:
        """Run ``work`` in its own task, kept until done (a failure there is its own)."""
        task = asyncio.get_running_loop().create_task(work)
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _drop(self, wait_s: float = 5.0) -> None:
        """Close the link (a child is given ``wait_s`` to exit; 0 kills it at once)."""
        client, self._client = self._client, None
        if client is None:
            return
        if wait_s > 0:
            await client.close()
        else:  # it never shook hands: stop it without the grace period
            await client.kill()

    async def close(self) -> None:
        """Disconnect (the child process is stopped)."""
        async with self._lock:
            await self._drop()
        if self._relay is not None:
            self._relay.close()
            self._relay = None
            self._errlog = None

    # -- requests ------------------------------------------------------------------------

    async def request(self, what: str, send: Callable[[Link], Awaitable[Any]]) -> Any:
        """Send one request; failures become `UpstreamError` and a dead link is dropped so
        the next request restarts the server."""
        link = await self.session()
        try:
            return await send(link)
        except ConnectionClosed:
            if link.stopped:  # closed by us: not a crash
                raise UpstreamError(
                    "UpstreamUnavailable", f"upstream `{self.name}` was stopped during {what}"
                ) from None
            await self._crashed()
            raise UpstreamError(
                "UpstreamCrashed", f"upstream `{self.name}` went away during {what}"
            ) from None
        except RpcError as exc:
            self.counts["UpstreamProtocolError"] += 1
            raise UpstreamError(
                "UpstreamProtocolError",
                f"upstream `{self.name}` answered {what} with error {exc.code}: "
                f"{_text(exc.message)}",
            ) from None
        except (TimeoutError, asyncio.CancelledError):
            raise
        except Exception as exc:  # broken pipe, a result that is no MCP result, a bug there
            if not link.alive:
                await self._crashed()
                raise UpstreamError(
                    "UpstreamCrashed", f"upstream `{self.name}` went away during {what}"
                ) from None
            self.counts["MalformedResult"] += 1
            raise UpstreamError(
                "MalformedResult",
                f"upstream `{self.name}` answered {what} with something that is not a valid "
                f"MCP result ({type(exc).__name__})",
            ) from None

    async def _crashed(self) -> None:
        self.counts["UpstreamCrashed"] += 1
        async with self._lock:
            await self._drop()

    async def list_tools(self) -> list[mcp_types.Tool]:
        """Every tool it lists (all pages)."""
        tools: list[mcp_types.Tool] = []
        cursor: str | None = None
        for _ in range(100):  # a server paging forever is not listing tools
            page = await self.request("tools/list", _lister(cursor))
            tools.extend(page.tools)
            cursor = page.next_cursor
            if not cursor:
                break
        return tools

    async def call_tool(
        self, name: str, arguments: dict[str, Any], meta: dict[str, Any] | None = None
    ) -> mcp_types.CallToolResult:
        """Call one tool (the gateway's timeout cancels it); ``meta``: its ``_meta``."""
        result = await self.request(
            f"tools/call `{name}`", lambda s: s.call_tool(name, arguments, meta)
        )
        if not isinstance(result, mcp_types.CallToolResult):
            self.counts["MalformedResult"] += 1
            raise UpstreamError(
                "MalformedResult", f"upstream `{self.name}` returned no tool result"
            )
        return result

    async def subscribe(self, uri: str) -> None:
        """Subscribe to one resource's updates (kept across restarts)."""
        await self.request("resources/subscribe", lambda s: s.subscribe_resource(uri))
        self._subscribed.add(uri)

    async def unsubscribe(self, uri: str) -> None:
        """Stop a subscription (nothing to say to an upstream that is not connected)."""
        self._subscribed.discard(uri)
        if self._client is not None and self._client.alive:
            await self.request("resources/unsubscribe", lambda s: s.unsubscribe_resource(uri))


def _lister(cursor: str | None) -> Callable[[Link], Awaitable[Any]]:
    params = mcp_types.PaginatedRequestParams(cursor=cursor) if cursor else None

    def send(session: Link) -> Awaitable[Any]:
        return session.list_tools(params=params)

    return send


class _StderrRelay:
    """A pipe for a child's stderr, relayed line by line to ours: each line bounded, its
    control characters made visible, and prefixed with the upstream's name (what an upstream
    writes is hostile; an operator's terminal obeys escape sequences)."""

    def __init__(self, name: str, out: TextIO) -> None:
        read_fd, write_fd = os.pipe()
        self.writer: TextIO = os.fdopen(write_fd, "w")
        self._reader = os.fdopen(read_fd, "rb")
        self._thread = threading.Thread(
            target=self._relay, args=(name, out), name=f"mcp-stderr-{name}", daemon=True
        )
        self._thread.start()

    def _relay(self, name: str, out: TextIO) -> None:
        with contextlib.suppress(Exception):
            for raw in self._reader:
                line = raw[:2000].decode("utf-8", "replace").rstrip("\r\n")
                shown = "".join(
                    c if c.isprintable() or c == "\t" else f"<U+{ord(c):04X}>" for c in line
                )
                print(f"upstream {name}: {shown}", file=out, flush=True)

    def close(self) -> None:
        """Close our end: the relay ends once the children's ends are closed too."""
        with contextlib.suppress(OSError):
            self.writer.close()


def _stderr() -> TextIO:
    """Where a child's stderr goes: ours, when it is a real file (not a test's capture)."""
    for stream in (sys.stderr, sys.__stderr__):
        try:
            if stream is not None:
                stream.fileno()
                return stream
        except (OSError, ValueError, AttributeError):
            continue
    return open(os.devnull, "w")


def _text(value: Any, limit: int = 300) -> str:
    """Text from outside, bounded and on one line, for messages."""
    try:
        text = str(value)
    except Exception:
        text = f"<{type(value).__name__}>"
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."
