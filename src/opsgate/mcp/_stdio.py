"""The client-facing stdio pipes, read and written on the event loop.

The SDK's `stdio_server` reads each line and writes each answer through worker threads
(``anyio.wrap_file``): three thread hand-offs per call, each a wake-up that contends for the
GIL with the audit and tracing threads. When stdin and stdout are pipes or sockets (what
an MCP client gives a server it starts), the proxy reads and writes them with asyncio's pipe
transports instead (`opsgate.mcp._line_server`); otherwise (a file, a terminal, stdout
shared with stderr, another platform) the SDK's transport and server serve.

While serving, fd 0 reads the null device and fd 1 writes to stderr (as the SDK does), so a
handler or a child that touches them cannot corrupt the wire; both come back at the end,
blocking again.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import stat
import sys
from collections.abc import AsyncIterator

__all__ = ["claimed_stdio", "line_pipes", "native_stdio"]

#: The longest line read (a client's message); a longer one is refused, not a hang.
MAX_LINE = 64 * 1024 * 1024
#: How long the last answers may take to be written at the end.
_CLOSE_S = 5.0


def native_stdio(read_fd: int = 0, write_fd: int = 1, err_fd: int = 2) -> bool:
    """Whether both descriptors can be served by the event loop: pipes or sockets, the
    output not shared with stderr (the loop makes its pipe non-blocking, which a shared
    stderr would then be too). A terminal is left to the SDK for the same reason."""
    if sys.platform == "win32":
        return False
    try:
        read, write = os.fstat(read_fd), os.fstat(write_fd)
    except OSError:
        return False
    if not (_selectable(read.st_mode) and _selectable(write.st_mode)):
        return False
    try:
        err = os.fstat(err_fd)
    except OSError:
        return True
    return (err.st_dev, err.st_ino) != (write.st_dev, write.st_ino)


def _selectable(mode: int) -> bool:
    return stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)


@contextlib.asynccontextmanager
async def claimed_stdio(read_fd: int, write_fd: int) -> AsyncIterator[tuple[int, int]]:
    """Private duplicates of the wire, while ``read_fd`` reads nothing and ``write_fd``
    writes to stderr; the wire is put back (and made blocking again) on exit."""
    keep_in, keep_out = os.dup(read_fd), os.dup(write_fd)
    wire_in, wire_out = os.dup(read_fd), os.dup(write_fd)
    null = os.open(os.devnull, os.O_RDWR)
    try:
        os.dup2(null, read_fd)
        try:
            os.dup2(2, write_fd)
        except OSError:  # no stderr: stray output goes nowhere
            os.dup2(null, write_fd)
    finally:
        os.close(null)
    try:
        yield wire_in, wire_out
    finally:
        for keep, fd in ((keep_in, read_fd), (keep_out, write_fd)):
            with contextlib.suppress(OSError):
                os.set_blocking(keep, True)  # the flag is the pipe's, shared by every dup
                os.dup2(keep, fd)
            with contextlib.suppress(OSError):
                os.close(keep)


@contextlib.asynccontextmanager
async def line_pipes(
    read_fd: int, write_fd: int
) -> AsyncIterator[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    """A reader of ``read_fd`` and a writer to ``write_fd`` (both owned: closed at the
    end) on the running event loop; what was written is flushed (for up to ``_CLOSE_S``)
    before they close."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=MAX_LINE)
    source = os.fdopen(read_fd, "rb", buffering=0)
    sink = os.fdopen(write_fd, "wb", buffering=0)
    try:
        read_transport, _ = await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader), source
        )
    except BaseException:
        source.close()
        sink.close()
        raise
    try:
        write_transport, protocol = await loop.connect_write_pipe(
            lambda: asyncio.StreamReaderProtocol(asyncio.StreamReader()), sink
        )
    except BaseException:
        read_transport.close()
        sink.close()
        raise
    writer = asyncio.StreamWriter(write_transport, protocol, None, loop)
    try:
        yield reader, writer
    finally:
        with contextlib.suppress(Exception):  # a broken pipe, a client too slow to read
            await asyncio.wait_for(writer.drain(), _CLOSE_S)
        writer.close()
        read_transport.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(writer.wait_closed(), _CLOSE_S)
