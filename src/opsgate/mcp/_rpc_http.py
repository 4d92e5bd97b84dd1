"""A small MCP client of a streamable-HTTP server.

Why not the SDK's `streamable_http_client` + `ClientSession` here: each call crosses anyio
memory streams, a task group, pydantic models on the way out and in, the SDK's own request
bookkeeping and its SSE reader, and it leaves each answer's stream unread at its end (the
connection cannot go back to the pool); measured through the proxy at concurrency 16, that
client was ~40% of the proxy's CPU per call. This one speaks the transport as the
specification says: each request a POST whose answer is JSON or an SSE stream (on
`opsgate.mcp._http1`'s kept-alive connections; through httpx when an HTTP proxy is set),
the session id and protocol version headers after the handshake, ``notifications/*``
with 202, and the server's notification stream on a GET (when it offers one) for
``notifications/tools/list_changed``. A session the server no longer knows (404) or a
connection that fails is `ConnectionClosed`: the upstream reconnects.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator, Callable
from typing import Any
from urllib.parse import urlsplit
from urllib.request import getproxies, proxy_bypass

import httpx2
import orjson

from opsgate.mcp._http1 import EventSink, Http1Error, Http1Pool, Reply
from opsgate.mcp._rpc import ConnectionClosed, McpRequests, Notified, RpcError, answer_of

__all__ = ["HttpClient"]

_ACCEPT = "application/json, text/event-stream"
#: How long the notification stream waits before it is opened again after it ended.
_RELISTEN_S = 1.0
#: The longest SSE event or JSON answer read (an answer over it is a protocol error).
MAX_ANSWER = 64 * 1024 * 1024
_NOT_JSON = object()  # an SSE event whose data is not JSON


class HttpClient(McpRequests):
    """One MCP session with a streamable-HTTP server; `start` shakes hands.

    Args:
        headers: Sent with every request (credentials, from the config's secrets).
        on_notification: Awaited (in a task of its own) with each server notification.
        on_bad_message: Called for each message that is not JSON-RPC (not MCP).
    """

    def __init__(
        self,
        url: str,
        *,
        headers: dict[str, str] | None = None,
        on_notification: Notified | None = None,
        on_bad_message: Callable[[], None] | None = None,
        timeout_s: float = 300.0,
    ) -> None:
        super().__init__()
        self.url = url
        self._http = httpx2.AsyncClient(
            headers={**(headers or {}), "accept": _ACCEPT},
            timeout=httpx2.Timeout(30.0, read=timeout_s),
            limits=httpx2.Limits(max_connections=None, max_keepalive_connections=64),
        )
        # the hot path (POSTs) on own keep-alive connections, unless an HTTP proxy is set
        # for this URL (httpx honours the environment's proxy settings; Http1Pool does not)
        self._pool = (
            None
            if _proxied(url)
            else Http1Pool(url, headers={**(headers or {}), "accept": _ACCEPT}, limit=MAX_ANSWER)
        )
        self._on_notification = on_notification
        self._on_bad = on_bad_message or (lambda: None)
        self._ids = itertools.count(1)
        self._session_headers: dict[str, str] = {}
        self._closed: BaseException | None = None
        self._stopping = False
        self._started = False

    @property
    def stopped(self) -> bool:
        """Closed by `close` (not by the server going away)."""
        return self._stopping

    @property
    def alive(self) -> bool:
        """Started and neither closed nor lost (a connection failure, an expired session)."""
        return self._started and self._closed is None

    async def start(self) -> Any:
        """Shake hands; then listen for the server's notifications when it offers a stream.

        Raises:
            ConnectionClosed / RpcError / ValueError: the handshake failed.
        """
        result = await self.shake_hands()
        self._started = True
        self._spawn(self._listen())
        return result

    async def close(self) -> None:
        """End the session (a DELETE, as the transport asks), stop listening, disconnect."""
        self._stopping = True
        ended = self._closed is None and "mcp-session-id" in self._session_headers
        self._fail(ConnectionClosed("the client closed"))
        for task in list(self._tasks):
            task.cancel()
        if ended:
            with contextlib.suppress(Exception):  # the server may be gone already
                await self._http.delete(self.url, headers=self._session_headers, timeout=2.0)
        if self._pool is not None:
            await self._pool.aclose()
        await self._http.aclose()

    async def kill(self) -> None:
        """Nothing to kill over HTTP: close."""
        await self.close()

    # -- requests ------------------------------------------------------------------------

    async def send(self, method: str, params: dict[str, Any] | None = None) -> Any:
        """One request; its ``result``. A cancelled request is cancelled at the server too.

        Raises:
            RpcError: the server answered with an error (or an HTTP error status).
            ConnectionClosed: the connection failed, or the session is gone.
        """
        if self._closed is not None:
            raise ConnectionClosed(str(self._closed))
        request_id = next(self._ids)
        message: dict[str, Any] = {"jsonrpc": "2.0", "id": request_id, "method": method}
        if params is not None:
            message["params"] = params
        try:
            return await self._post(message, request_id)
        except asyncio.CancelledError:
            if self._closed is None:
                cancel = {"requestId": request_id, "reason": "cancelled by the proxy"}
                self._spawn(self._post_quietly("notifications/cancelled", cancel))
            raise

    async def notify(self, method: str, params: dict[str, Any] | None = None) -> None:
        """One notification (the server answers 202, nothing else)."""
        message: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
        if params is not None:
            message["params"] = params
        await self._post(message, None)

    async def _post_quietly(self, method: str, params: dict[str, Any]) -> None:
        with contextlib.suppress(Exception):
            await self.notify(method, params)

    async def _post(self, message: dict[str, Any], request_id: int | None) -> Any:
        body = orjson.dumps(message)
        headers = {"content-type": "application/json", **self._session_headers}
        messages: list[Any] = []
        notified: list[asyncio.Task[None]] = []

        def answered(data: bytes) -> bool:  # each event of an SSE answer, as it arrives
            try:
                parsed = orjson.loads(data)
            except orjson.JSONDecodeError:
                parsed = _NOT_JSON
            if isinstance(parsed, dict) and "method" in parsed and "id" in parsed:
                self._spawn(self._reply(parsed))  # the server waits for it mid-call
                return False
            if isinstance(parsed, dict) and "method" in parsed:  # handed on as it comes
                task = self._notified(parsed)  # (a call's progress: while it runs)
                if task is not None:
                    notified.append(task)
                return False
            messages.append(parsed)
            return (
                isinstance(parsed, dict)
                and "method" not in parsed
                and (parsed.get("id") == request_id)
            )

        sink = answered if request_id is not None else None
        try:
            if self._pool is not None:
                reply = await self._pool.post(body, headers, events=sink)
            else:
                reply = await self._post_httpx(body, headers, sink)
            if notified:  # what the server said on the way is heard before its answer
                await asyncio.gather(*notified, return_exceptions=True)
        except (Http1Error, httpx2.TransportError) as exc:
            why = exc if isinstance(exc, Http1Error) else type(exc).__name__
            self._fail(ConnectionClosed(f"the connection failed: {why}"))
            raise ConnectionClosed(f"the connection failed: {why}") from None
        self._check_status(reply.status)
        if request_id is None:
            return None  # 202: nothing to wait for
        kind = reply.headers.get("content-type", "").split(";")[0].strip().lower()
        if kind == "text/event-stream":
            result = self._from_events(messages, request_id)
        elif kind == "application/json":
            result = self._answer(_parsed(reply.body), request_id)
        else:
            raise RpcError(-32600, f"an answer of type `{kind or 'none'}`")
        if message.get("method") == "initialize":
            self._keep_session(reply.headers, result)
        return result

    async def _post_httpx(
        self, body: bytes, headers: dict[str, str], sink: EventSink | None
    ) -> Reply:
        """The same POST through httpx (a URL behind an HTTP proxy)."""
        async with self._http.stream("POST", self.url, content=body, headers=headers) as answer:
            reply = Reply(answer.status_code, {k.lower(): v for k, v in answer.headers.items()})
            kind = reply.headers.get("content-type", "").split(";")[0].strip().lower()
            if sink is not None and kind == "text/event-stream":
                async for data in _events(answer):
                    reply.events.append(data)
                    if sink(data):
                        break  # the answer: the rest of the stream is not waited for
                return reply
            chunks, size = [], 0
            async for chunk in answer.aiter_bytes():
                size += len(chunk)
                if size > MAX_ANSWER:
                    raise RpcError(-32600, "an answer over the size limit")
                chunks.append(chunk)
            reply.body = b"".join(chunks)
            return reply

    def _check_status(self, status: int) -> None:
        if status in (200, 202):
            return
        if status == 404 and "mcp-session-id" in self._session_headers:
            self._fail(ConnectionClosed("the server ended the session"))
            raise ConnectionClosed("the server ended the session")
        raise RpcError(-32603, f"HTTP {status}")

    def _keep_session(self, headers: dict[str, str], result: Any) -> None:
        """The session id and the agreed version, named by every later request."""
        session = headers.get("mcp-session-id")
        if session:
            self._session_headers["mcp-session-id"] = session
        version = result.get("protocolVersion") if isinstance(result, dict) else None
        if isinstance(version, str):
            self._session_headers["mcp-protocol-version"] = version

    def _from_events(self, messages: list[Any], request_id: int) -> Any:
        """The answer to ``request_id`` among the call's SSE events (the server's requests
        and notifications on the way were answered and handed on as they came)."""
        for message in messages:
            if message is _NOT_JSON:
                raise RpcError(-32700, "an answer that is not JSON")
            if isinstance(message, dict) and message.get("id") == request_id:
                return self._answer(message, request_id)
        raise ConnectionClosed("the server ended the call's stream without an answer")

    def _answer(self, message: Any, request_id: int) -> Any:
        ours = isinstance(message, dict) and message.get("jsonrpc") == "2.0"
        if (
            ours
            and message.get("id") == request_id
            and ("result" in message or isinstance(message.get("error"), dict))
        ):
            return answer_of(message)
        self._on_bad()
        raise RpcError(-32600, "an answer that is not JSON-RPC for this request")

    async def _reply(self, message: dict[str, Any]) -> None:
        answer = await self.answer_request(message)
        headers = {"content-type": "application/json", **self._session_headers}
        with contextlib.suppress(Exception):
            await self._http.post(self.url, content=orjson.dumps(answer), headers=headers)

    # -- the server's notification stream -------------------------------------------------

    async def _listen(self) -> None:
        """The GET stream of server notifications, opened again when it ends; a server
        that offers none (405, any refusal) is not asked again."""
        while self._closed is None:
            headers = {"accept": "text/event-stream", **self._session_headers}
            try:
                async with self._http.stream(
                    "GET", self.url, headers=headers, timeout=httpx2.Timeout(30.0, read=None)
                ) as reply:
                    if reply.status_code != 200:
                        return
                    async for data in _events(reply):
                        message = _parsed(data)
                        if isinstance(message, dict) and "method" in message:
                            if "id" in message:
                                self._spawn(self._reply(message))
                            else:
                                self._notified(message)
            except (httpx2.TransportError, RpcError):
                pass  # the stream broke: listen again below
            await asyncio.sleep(_RELISTEN_S)

    def _notified(self, message: dict[str, Any]) -> asyncio.Task[None] | None:
        method = message.get("method")
        if self._on_notification is not None and isinstance(method, str):
            return self._spawn(self._on_notification(method, message.get("params")))
        return None

    def _fail(self, why: BaseException) -> None:
        if self._closed is None:
            self._closed = why


async def _events(reply: httpx2.Response) -> AsyncIterator[bytes]:
    """The data of each SSE event of ``reply`` (lines ``data:`` joined; comments, ids and
    retry hints skipped), each bounded by `MAX_ANSWER`."""
    data: list[bytes] = []
    size = 0
    async for line in reply.aiter_lines():
        if not line:
            if data:
                yield b"\n".join(data)
                data, size = [], 0
            continue
        if line.startswith("data:"):
            value = line[5:].removeprefix(" ").encode()
            size += len(value)
            if size > MAX_ANSWER:
                raise RpcError(-32600, "an event over the size limit")
            data.append(value)
    if data:
        yield b"\n".join(data)


def _parsed(data: bytes) -> Any:
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        raise RpcError(-32700, "an answer that is not JSON") from None


def _proxied(url: str) -> bool:
    """Whether the environment routes ``url`` through an HTTP proxy (as httpx reads it)."""
    host = urlsplit(url).hostname or ""
    proxies = getproxies()
    scheme = urlsplit(url).scheme
    return bool(proxies.get(scheme) or proxies.get("all")) and not proxy_bypass(host)
