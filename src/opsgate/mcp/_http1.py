"""Keep-alive HTTP/1.1 POSTs to one origin, parsed by httptools: the proxy's hot path to a
streamable-HTTP upstream.

Why not httpx here: at 16 concurrent calls, httpx spends more CPU than the call itself on
its connection pool (every request checks every pooled connection, each check asking anyio
for the socket's attributes, a ``getpeername`` each) and on reading a small answer through
its byte, text and line iterators; measured through the proxy, ~1.5 ms of CPU per call of
the ~3.7 ms the proxy spent. A POST and its answer are all the proxy needs on the hot path:
a request written in one go, the answer parsed by httptools (llhttp, what uvicorn uses) as
it arrives. An SSE answer is split into events as they come, so the call returns at its
answer even if the server keeps the stream open (the connection is then not reused).
Everything else (the notification stream, ending the session, a URL behind an HTTP proxy)
stays with httpx.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import cast
from urllib.parse import urlsplit

import httptools

__all__ = ["Http1Error", "Http1Pool", "Reply"]

#: After the answer's event, how long the rest of its stream may take to end (so the
#: connection is reused); past it, the connection is closed.
_FINISH_S = 0.25
#: Idle connections kept to the origin.
_KEEP = 64


class Http1Error(Exception):
    """The connection failed, or the answer is not HTTP/1.1 within the bounds."""


@dataclass
class Reply:
    """A response: its status, headers (names lower-cased) and body (or, for an event
    stream, the events read up to the one the caller waited for)."""

    status: int = 0
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    events: list[bytes] = field(default_factory=list)


#: Told each SSE event's data as it arrives; True once it is the one awaited.
EventSink = Callable[[bytes], bool]


class _Connection(asyncio.Protocol):
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.transport: asyncio.Transport | None = None
        self.lost: Exception | None = None
        self._parser = httptools.HttpResponseParser(self)
        self._reply = Reply()
        self._header = b""
        self._body: list[bytes] = []
        self._size = 0
        self._sink: EventSink | None = None
        self._pending = b""
        self._event: list[bytes] = []
        self._keep_alive = False
        self.answered: asyncio.Future[Reply] | None = None  # the answer (or its event)
        self.finished: asyncio.Future[None] | None = None  # the whole message read

    # -- asyncio ---------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(Http1Error(f"not an HTTP/1.1 answer ({type(exc).__name__})"))

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(Http1Error("the server closed the connection"))

    # -- httptools -------------------------------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        self._reply.headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_headers_complete(self) -> None:
        self._reply.status = self._parser.get_status_code()
        kind = self._reply.headers.get("content-type", "").split(";")[0].strip().lower()
        if kind != "text/event-stream":
            self._sink = None

    def on_body(self, body: bytes) -> None:
        self._size += len(body)
        if self._size > self.limit:
            self._fail(Http1Error("an answer over the size limit"))
            return
        if self._sink is None:
            self._body.append(body)
            return
        self._pending += body
        while True:
            line, sep, rest = self._pending.partition(b"\n")
            if not sep:
                return
            self._pending = rest
            line = line.rstrip(b"\r")
            if line.startswith(b"data:"):
                data = line[5:]
                self._event.append(data[1:] if data.startswith(b" ") else data)
            elif not line and self._event:
                event, self._event = b"\n".join(self._event), []
                self._reply.events.append(event)
                if self._sink(event) and self.answered is not None and not self.answered.done():
                    self.answered.set_result(self._reply)

    def on_message_complete(self) -> None:
        self._keep_alive = self._parser.should_keep_alive()  # reset once the parser moves on
        if self._sink is not None and self._event:  # a last event without its blank line
            self._reply.events.append(b"\n".join(self._event))
        self._reply.body = b"".join(self._body)
        if self.answered is not None and not self.answered.done():
            self.answered.set_result(self._reply)
        if self.finished is not None and not self.finished.done():
            self.finished.set_result(None)

    # -- use -------------------------------------------------------------------------------

    def start(self, sink: EventSink | None) -> None:
        loop = asyncio.get_running_loop()
        self._reply, self._body, self._size = Reply(), [], 0
        self._sink, self._pending, self._event = sink, b"", []
        self._keep_alive = False
        self.answered, self.finished = loop.create_future(), loop.create_future()

    @property
    def reusable(self) -> bool:
        return (
            self.lost is None
            and self.finished is not None
            and self.finished.done()
            and self._keep_alive
        )

    def _fail(self, exc: Exception) -> None:
        if self.lost is None:
            self.lost = exc
        for future in (self.answered, self.finished):
            if future is not None and not future.done():
                future.set_exception(exc)
                future.exception()  # retrieved: nobody may be waiting for `finished`
        if self.transport is not None:
            self.transport.close()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


class Http1Pool:
    """POSTs to ``url``'s origin over kept-alive HTTP/1.1 connections (TLS for https).

    Args:
        headers: Sent with every request.
        limit: The largest answer body read.
    """

    def __init__(
        self,
        url: str,
        *,
        headers: dict[str, str] | None = None,
        connect_timeout_s: float = 30.0,
        limit: int = 64 * 1024 * 1024,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {url!r}")
        self.host = parts.hostname
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.ssl: ssl.SSLContext | None = (
            ssl.create_default_context() if parts.scheme == "https" else None
        )
        self.path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        default_port = self.port == (443 if parts.scheme == "https" else 80)
        authority = parts.hostname if default_port else f"{parts.hostname}:{self.port}"
        if ":" in parts.hostname:  # an IPv6 literal
            authority = f"[{parts.hostname}]" + ("" if default_port else f":{self.port}")
        fixed = {"host": authority, **{k.lower(): v for k, v in (headers or {}).items()}}
        self._head = "".join(f"{k}: {v}\r\n" for k, v in fixed.items()).encode("latin-1")
        self.connect_timeout_s = connect_timeout_s
        self.limit = limit
        self._idle: list[_Connection] = []
        self._closed = False
        self.opened = 0
        """Connections opened so far (for tests: kept-alive ones are reused)."""

    async def post(
        self, body: bytes, headers: dict[str, str], *, events: EventSink | None = None
    ) -> Reply:
        """POST ``body``; the reply once its message is read, or, for an event stream with
        ``events``, once ``events`` says an event is the awaited one.

        Raises:
            Http1Error: the connection failed or the answer is not HTTP/1.1.
        """
        connection = await self._connection()
        extra = "".join(f"{k}: {v}\r\n" for k, v in headers.items()).encode("latin-1")
        request = b"".join(
            (
                b"POST ",
                self.path.encode("latin-1"),
                b" HTTP/1.1\r\n",
                self._head,
                extra,
                b"content-length: %d\r\n\r\n" % len(body),
                body,
            )
        )
        connection.start(events)
        assert connection.transport is not None and connection.answered is not None
        connection.transport.write(request)
        try:
            reply = await asyncio.shield(connection.answered)
        except BaseException:
            connection.close()  # cancelled or failed mid-answer: the connection is spent
            raise
        self._release(connection)
        return reply

    def _release(self, connection: _Connection) -> None:
        if connection.reusable:
            self._keep(connection)
            return
        finished = connection.finished
        if finished is None or connection.lost is not None:
            connection.close()
            return
        # the answer came before the end of its stream: keep the connection if it ends soon
        task = asyncio.get_running_loop().create_task(self._finish(connection, finished))
        task.add_done_callback(lambda t: t.cancelled() or t.exception())

    async def _finish(self, connection: _Connection, finished: asyncio.Future[None]) -> None:
        try:
            await asyncio.wait_for(asyncio.shield(finished), _FINISH_S)
        except BaseException:
            connection.close()
            return
        if connection.reusable:
            self._keep(connection)
        else:
            connection.close()

    def _keep(self, connection: _Connection) -> None:
        if self._closed or len(self._idle) >= _KEEP:
            connection.close()
        else:
            self._idle.append(connection)

    async def _connection(self) -> _Connection:
        if self._closed:
            raise Http1Error("the pool is closed")
        while self._idle:
            connection = self._idle.pop()
            transport = connection.transport
            if connection.lost is None and transport is not None and not transport.is_closing():
                return connection
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self.connect_timeout_s):
                _, protocol = await loop.create_connection(
                    lambda: _Connection(self.limit),
                    self.host,
                    self.port,
                    ssl=self.ssl,
                    server_hostname=self.host if self.ssl else None,
                )
        except (OSError, TimeoutError) as exc:
            raise Http1Error(f"cannot connect ({type(exc).__name__})") from None
        self.opened += 1
        return protocol

    async def aclose(self) -> None:
        """Close every kept connection."""
        self._closed = True
        idle, self._idle = self._idle, []
        for connection in idle:
            with contextlib.suppress(Exception):
                connection.close()
