"""Keeping HTTP connections to an upstream alive between calls.

A streamable-HTTP MCP server answers a call with a short SSE stream; the SDK's client stops
reading at the answer's event and closes the response while the server's end of the stream
is still on its way, and a connection closed mid-body cannot go back to the pool: every
call to the upstream paid a new TCP connection (connect, accept, close, on both sides).
`KeepAliveTransport` reads what is left of a body when it is closed, within a bound in time
and size, so the connection returns to the pool; past the bound (a stream that stays open,
such as the server's notification stream) it closes the connection as before.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import anyio
import httpx2

__all__ = ["KeepAliveTransport"]

#: How long, and how much, a closed response is read on so its connection can be reused.
DRAIN_S = 0.25
DRAIN_BYTES = 1024 * 1024


class KeepAliveTransport(httpx2.AsyncBaseTransport):
    """An `httpx2.AsyncHTTPTransport` whose responses drain their rest when closed."""

    def __init__(self, inner: httpx2.AsyncBaseTransport | None = None) -> None:
        self.inner = inner or httpx2.AsyncHTTPTransport()
        self.drained = 0
        """Responses read to their end on close (their connection reusable), for tests."""

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        response = await self.inner.handle_async_request(request)
        stream = response.stream
        if isinstance(stream, httpx2.AsyncByteStream):
            response.stream = _Draining(stream, self)
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()


class _Draining(httpx2.AsyncByteStream):
    def __init__(self, inner: httpx2.AsyncByteStream, owner: KeepAliveTransport) -> None:
        self._inner = inner
        self._owner = owner
        self._ended = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for part in self._inner:
            yield part
        self._ended = True

    async def aclose(self) -> None:
        try:
            if not self._ended:
                with contextlib.suppress(Exception):  # then it is closed, as without this
                    await self._drain()
        finally:  # cancelled too (an aborted call): the connection is closed, never leaked
            await self._inner.aclose()

    async def _drain(self) -> None:
        left = DRAIN_BYTES
        with anyio.move_on_after(DRAIN_S):
            async for part in self._inner:
                left -= len(part)
                if left < 0:
                    return
            self._ended = True
            self._owner.drained += 1
