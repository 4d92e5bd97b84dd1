"""The proxy's streamable-HTTP server: an ASGI app at ``/mcp`` (behind `BearerAuth`).

Why not the SDK's `streamable_http_app` here: per call it runs Starlette's middleware and
routing, its session manager, a memory-stream transport per session and the SDK server's
dispatcher and runner; measured through the proxy at concurrency 16, about as much CPU as
the gate and the upstream call together. This app speaks the transport as the
specification (2025-06-18 and 2025-11-25) says, for what the proxy serves
(`opsgate.mcp._answers`):

- ``POST`` a JSON-RPC request: the answer as ``application/json``, or, for a request with
  a progress token from a client that accepts it, as ``text/event-stream``: the request's
  progress, then its answer; a notification or a response: ``202``. ``initialize``
  starts a session, named in ``mcp-session-id``; later requests without one are ``400``,
  with an unknown one ``404`` (the client starts again).
- ``GET`` (``text/event-stream``): the session's notification stream
  (tools, resources and prompts changed, a subscribed resource updated), one per session.
- ``DELETE``: the session (and its run) ends; so does a session nobody used for an hour
  (when another starts), and the least recently used past 10,000.
- The ``Host`` header, and ``Origin`` when sent, must name the address served when it is a
  loopback one (DNS rebinding), as the SDK checks them.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson

from opsgate.mcp._answers import (
    INVALID_REQUEST,
    PARSE_ERROR,
    Answers,
    Refused,
    error_message,
)
from opsgate.mcp._asks import ClientAsks
from opsgate.mcp._progress import ProgressNotes
from opsgate.mcp._rpc import RpcError

if TYPE_CHECKING:
    from opsgate.mcp._proxy import McpProxy

__all__ = ["McpHttpApp"]

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

PATH = "/mcp"
#: The largest request body read.
MAX_BODY = 64 * 1024 * 1024
#: Sessions kept (the least recently used ends first past it).
MAX_SESSIONS = 10_000
#: A session nobody used for this long ends (its run with it).
IDLE_S = 3600.0
#: How often idle sessions are looked for at most (a quarter of `IDLE_S` when shorter).
SWEEP_S = 60.0
#: Notifications kept for a session nobody listens to.
_QUEUED = 100
_LOOPBACK = ("127.0.0.1", "localhost", "::1", "[::1]")


@dataclass
class _HttpRequest:
    """What the proxy reads of an HTTP request (`McpProxy._who`): its scope (the identity
    the bearer check put there) and headers."""

    scope: Scope
    headers: dict[str, str]


@dataclass
class _Session(ProgressNotes):
    version: str
    notes: asyncio.Queue[bytes] = field(default_factory=lambda: asyncio.Queue(_QUEUED))
    listening: bool = False
    used: float = field(default_factory=time.monotonic)
    asks: ClientAsks = field(default_factory=ClientAsks)
    progress: dict[str | int, asyncio.Queue[bytes]] = field(default_factory=dict)
    """Progress token → the stream of the POST whose request it is (`_answer_streaming`)."""

    async def ask(self, method: str, params: Any) -> Any:
        """Send the client a request on its GET stream (a relayed sampling or elicitation);
        the client POSTs the answer.

        Raises:
            RpcError: no stream is open to send it on, or the client answered an error.
        """
        if not self.listening:
            raise RpcError(-32603, "the client has no stream open for the proxy's requests")

        def send(message: dict[str, Any]) -> None:
            try:
                self.notes.put_nowait(orjson.dumps(message))
            except asyncio.QueueFull:
                raise RpcError(-32603, "the client does not read its stream") from None

        return await self.asks.ask(send, method, params)

    async def send_tool_list_changed(self) -> None:
        """Queued for the session's GET stream, as every notification."""
        self._queue("notifications/tools/list_changed")

    async def send_resource_list_changed(self) -> None:
        self._queue("notifications/resources/list_changed")

    async def send_prompt_list_changed(self) -> None:
        self._queue("notifications/prompts/list_changed")

    async def send_resource_updated(self, uri: str) -> None:
        self._queue("notifications/resources/updated", {"uri": uri})

    def _send_progress(self, token: str | int, params: dict[str, Any]) -> None:
        """On the stream of the POST whose request it is (only there: MCP keeps the GET
        stream for what no request is waiting on)."""
        stream = self.progress.get(token)
        if stream is not None:
            stream.put_nowait(_note("notifications/progress", params))

    def _queue(self, method: str, params: dict[str, Any] | None = None) -> None:
        """Dropped when nobody listens and the queue is full (the client lists again)."""
        with contextlib.suppress(asyncio.QueueFull):
            self.notes.put_nowait(_note(method, params))


def _note(method: str, params: dict[str, Any] | None = None) -> bytes:
    note: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
    if params is not None:
        note["params"] = params
    return orjson.dumps(note)


@dataclass(frozen=True, slots=True)
class _Context:
    session: _Session
    request: _HttpRequest


class McpHttpApp:
    """The ASGI app; ``host`` is the address served (for the Host and Origin checks)."""

    def __init__(self, proxy: McpProxy, host: str, *, idle_s: float = IDLE_S) -> None:
        self.proxy = proxy
        self.idle_s = idle_s
        self.answers = Answers(proxy)
        self.sessions: OrderedDict[str, _Session] = OrderedDict()
        self.loopback = host in _LOOPBACK

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        if scope.get("path") != PATH:
            await _plain(send, 404, b"Not Found")
            return
        refused = self._forged(headers)
        if refused is not None:
            await _plain(send, *refused)
            return
        method = scope.get("method")
        if method == "POST":
            await self._post(scope, headers, receive, send)
        elif method == "GET":
            await self._listen(headers, receive, send)
        elif method == "DELETE":
            await self._end(headers, send)
        else:
            await _plain(send, 405, b"Method Not Allowed", ((b"allow", b"GET, POST, DELETE"),))

    def _forged(self, headers: dict[str, str]) -> tuple[int, bytes] | None:
        """A Host or Origin that a DNS-rebinding page would send (loopback servers only)."""
        if not self.loopback:
            return None
        host = headers.get("host", "")
        if _hostname(host) not in _LOOPBACK:
            return 421, b"Invalid Host header"
        origin = headers.get("origin")
        if origin is not None:
            _, _, rest = origin.partition("://")
            if _hostname(rest) not in _LOOPBACK:
                return 403, b"Invalid Origin header"
        return None

    # -- POST ------------------------------------------------------------------------------

    async def _post(
        self, scope: Scope, headers: dict[str, str], receive: Receive, send: Send
    ) -> None:
        body = await _body(receive)
        if body is None:
            await _plain(send, 413, b"Payload Too Large")
            return
        try:
            message = orjson.loads(body)
        except orjson.JSONDecodeError:
            await _json(send, 400, error_message(None, PARSE_ERROR, "Parse error"))
            return
        if not isinstance(message, dict) or message.get("jsonrpc") != "2.0":
            await _json(send, 400, error_message(None, INVALID_REQUEST, "Invalid Request"))
            return
        method = message.get("method")
        if method == "initialize" and "id" in message:
            await self._initialize(message, send)
            return
        key = headers.get("mcp-session-id", "")
        session = self.sessions.get(key)
        if session is None:
            if not key:
                answer = error_message(None, INVALID_REQUEST, "Bad Request: no session id")
                await _json(send, 400, answer)
            else:
                await _json(send, 404, error_message(None, -32001, "Session not found"))
            return
        self.sessions.move_to_end(key)
        session.used = time.monotonic()
        if not isinstance(method, str) or "id" not in message:
            if not isinstance(method, str):
                session.asks.answered(message)  # an answer to a relayed request (or nothing)
            await _plain(send, 202, b"")  # a notification or a response: nothing to answer
            return
        context = _Context(session, _HttpRequest(scope, headers))
        ident, params = message["id"], message.get("params")
        asked, token = _progress_token(params)
        if (
            token is not None
            and token not in session.progress
            and "text/event-stream" in headers.get("accept", "")
        ):
            answering = self.answers.answer(context, session.version, ident, method, params)
            await _answer_streaming(session, token, answering, send)
            return
        if asked:  # no stream of its own to hear it on: the upstream is asked for none
            params = _without_progress(params)
        answer = await self.answers.answer(context, session.version, ident, method, params)
        await _json(send, 200, answer)

    async def _initialize(self, message: dict[str, Any], send: Send) -> None:
        ident = message["id"]
        try:
            version = self.answers.agreed_version(message.get("params"))
        except Refused as refused:
            await _json(
                send, 200, error_message(ident, refused.code, refused.message, refused.data)
            )
            return
        key = secrets.token_hex(16)
        self._end_idle()
        session = self.sessions[key] = _Session(version)
        session.asks.take_capabilities(message.get("params"))
        while len(self.sessions) > MAX_SESSIONS:
            old, dropped = self.sessions.popitem(last=False)
            dropped.asks.fail_all("the session ended")
            self.proxy.end_session("http:" + old)
        answer = {"jsonrpc": "2.0", "id": ident, "result": self.answers.initialized(version)}
        await _json(send, 200, answer, ((b"mcp-session-id", key.encode()),))

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        """Acknowledge start-up and shut-down; between them, end idle sessions."""
        sweeper: asyncio.Future[None] | None = None
        try:
            while True:
                kind = (await receive())["type"]
                if kind == "lifespan.startup" and sweeper is None:
                    sweeper = asyncio.ensure_future(self._sweep())
                elif kind == "lifespan.shutdown" and sweeper is not None:
                    sweeper.cancel()
                await send({"type": kind + ".complete"})
                if kind == "lifespan.shutdown":
                    return
        finally:
            if sweeper is not None:
                sweeper.cancel()

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(min(self.idle_s / 4, SWEEP_S))
            self._end_idle()

    def _end_idle(self) -> None:
        """End the sessions (least recently used first) nobody used for `idle_s`: a client
        that went away without DELETE leaves no run open for ever. Called when a session
        starts, and by the sweep every `SWEEP_S` at most."""
        now = time.monotonic()
        for key, session in list(self.sessions.items()):
            if now - session.used < self.idle_s:
                return  # least recently used first: the rest are newer
            if session.listening:
                continue  # its client is still there, on the notification stream
            del self.sessions[key]
            session.asks.fail_all("the session ended")
            self.proxy.end_session("http:" + key)

    # -- GET, DELETE -------------------------------------------------------------------------

    async def _listen(self, headers: dict[str, str], receive: Receive, send: Send) -> None:
        key = headers.get("mcp-session-id", "")
        session = self.sessions.get(key)
        if session is None:
            await _plain(send, 404 if key else 400, b"no such session")
            return
        if session.listening:
            await _plain(send, 409, b"the session's stream is already open")
            return
        session.listening = True
        try:
            start = {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"text/event-stream"),
                    (b"cache-control", b"no-cache"),
                    (b"mcp-session-id", key.encode()),
                ],
            }
            await send(start)
            await send({"type": "http.response.body", "body": b": open\n\n", "more_body": True})
            gone = asyncio.ensure_future(_disconnected(receive))
            try:
                while key in self.sessions:
                    note = asyncio.ensure_future(session.notes.get())
                    await asyncio.wait({note, gone}, return_when=asyncio.FIRST_COMPLETED)
                    if gone.done():
                        note.cancel()
                        return
                    event = b"event: message\ndata: " + note.result() + b"\n\n"
                    await send({"type": "http.response.body", "body": event, "more_body": True})
            finally:
                gone.cancel()
            await send({"type": "http.response.body", "body": b""})
        finally:
            session.listening = False

    async def _end(self, headers: dict[str, str], send: Send) -> None:
        key = headers.get("mcp-session-id", "")
        ended = self.sessions.pop(key, None)
        if ended is None:
            await _plain(send, 404 if key else 400, b"no such session")
            return
        ended.asks.fail_all("the session ended")
        self.proxy.end_session("http:" + key)
        await _plain(send, 200, b"")


def _progress_token(params: Any) -> tuple[bool, str | int | None]:
    """Whether a request's params ask for progress, and the token when it is one (a
    string or an integer)."""
    meta = params.get("_meta") if isinstance(params, dict) else None
    if not isinstance(meta, dict) or "progressToken" not in meta:
        return False, None
    token = meta["progressToken"]
    return True, token if isinstance(token, (str, int)) and not isinstance(token, bool) else None


def _without_progress(params: Any) -> Any:
    meta = {k: v for k, v in params["_meta"].items() if k != "progressToken"}
    return {**params, "_meta": meta}


#: Streamed requests still running after their POST ended (a client gone, a cancelled task).
_UNFINISHED: set[asyncio.Future[dict[str, Any]]] = set()


async def _answer_streaming(
    session: _Session,
    token: str | int,
    answering: Awaitable[dict[str, Any]],
    send: Send,
) -> None:
    """Answer a POST as an event stream: the request's progress as it comes, then its
    answer. The request runs to its end even when the client is gone (it is recorded)."""
    stream: asyncio.Queue[bytes] = asyncio.Queue()  # bounded by the relay (a call's cap)
    session.progress[token] = stream
    answer = asyncio.ensure_future(answering)
    _UNFINISHED.add(answer)
    answer.add_done_callback(_UNFINISHED.discard)
    got: asyncio.Future[bytes] | None = None
    open_ = True

    async def event(data: bytes) -> None:
        nonlocal open_
        if open_:
            chunk = b"event: message\ndata: " + data + b"\n\n"
            try:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            except Exception:  # the client went away: the request still ends, recorded
                open_ = False

    try:
        start = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]
        await send({"type": "http.response.start", "status": 200, "headers": start})
        while not answer.done():
            got = asyncio.ensure_future(stream.get())
            await asyncio.wait({got, answer}, return_when=asyncio.FIRST_COMPLETED)
            if got.done():
                await event(got.result())
            else:
                got.cancel()
        while not stream.empty():
            await event(stream.get_nowait())
        await event(orjson.dumps(answer.result()))
        if open_:
            await send({"type": "http.response.body", "body": b""})
    finally:
        if got is not None:
            got.cancel()
        if session.progress.get(token) is stream:
            del session.progress[token]
        if not answer.done():
            await asyncio.shield(answer)  # a failed start: the request still runs to its end


async def _body(receive: Receive) -> bytes | None:
    chunks, size = [], 0
    while True:
        event = await receive()
        chunk = event.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY:
            return None
        chunks.append(chunk)
        if not event.get("more_body"):
            return b"".join(chunks)


async def _disconnected(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


async def _json(
    send: Send, status: int, message: dict[str, Any], extra: tuple[tuple[bytes, bytes], ...] = ()
) -> None:
    body = orjson.dumps(message)
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": status, "headers": [*headers, *extra]})
    await send({"type": "http.response.body", "body": body})


async def _plain(
    send: Send, status: int, text: bytes, extra: tuple[tuple[bytes, bytes], ...] = ()
) -> None:
    headers = [(b"content-type", b"text/plain"), (b"content-length", b"%d" % len(text))]
    await send({"type": "http.response.start", "status": status, "headers": [*headers, *extra]})
    await send({"type": "http.response.body", "body": text})


def _hostname(authority: str) -> str:
    """The host of ``host[:port]`` (IPv6 literals keep their brackets)."""
    if authority.startswith("["):
        return authority[: authority.find("]") + 1]
    return authority.rsplit(":", 1)[0] if authority.count(":") == 1 else authority
