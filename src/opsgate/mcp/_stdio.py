"""The client-facing stdio transport, read and written on the event loop.

The SDK's `stdio_server` reads each line and writes each answer through worker threads
(``anyio.wrap_file``): three thread hand-offs per call, each a wake-up that contends for the
GIL with the audit and tracing threads. When stdin and stdout are pipes or sockets (what
an MCP client gives a server it starts), this transport reads and writes them with
asyncio's pipe transports instead; otherwise (a file, a terminal, stdout shared with
stderr, another platform) the SDK's transport serves. Messages are parsed and written
exactly as the SDK does.

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
from typing import Any

import anyio
import mcp_types
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from mcp.server.stdio import stdio_server
from mcp.shared.message import SessionMessage

__all__ = ["native_stdio", "stdio_transport"]

#: The longest line read (a client's message); a longer one is a parse error, not a hang.
MAX_LINE = 64 * 1024 * 1024
#: How long the last answers may take to be written at the end.
_CLOSE_S = 5.0

Streams = tuple[
    MemoryObjectReceiveStream[SessionMessage | Exception],
    MemoryObjectSendStream[SessionMessage],
]


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
async def stdio_transport() -> AsyncIterator[Any]:
    """The streams of this process's stdin and stdout: on the event loop where it can be
    done, through the SDK's threads otherwise."""
    if native_stdio():
        async with _claimed(0, 1) as (read_fd, write_fd), serve_fds(read_fd, write_fd) as streams:
            yield streams
    else:
        async with stdio_server() as streams:
            yield streams


@contextlib.asynccontextmanager
async def _claimed(read_fd: int, write_fd: int) -> AsyncIterator[tuple[int, int]]:
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
async def serve_fds(read_fd: int, write_fd: int) -> AsyncIterator[Streams]:
    """MCP messages read from ``read_fd`` and written to ``write_fd`` (both owned: closed
    at the end), one JSON-RPC message a line, on the running event loop."""
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
    incoming_send, incoming = anyio.create_memory_object_stream[SessionMessage | Exception](0)
    outgoing, outgoing_receive = anyio.create_memory_object_stream[SessionMessage](0)

    async def read_lines() -> None:
        async with incoming_send:
            while True:
                try:
                    line = await reader.readline()
                except ValueError as exc:  # longer than MAX_LINE: what was read is dropped
                    await incoming_send.send(exc)
                    continue
                if not line:
                    return  # end of input: the session ends
                if not line.strip():
                    continue
                try:
                    message = mcp_types.jsonrpc_message_adapter.validate_json(line, by_name=False)
                except Exception as exc:  # not JSON-RPC: the session answers it as such
                    await incoming_send.send(exc)
                    continue
                await incoming_send.send(SessionMessage(message))

    async def write_messages() -> None:
        async with outgoing_receive:  # closed here: a send after a broken pipe fails, never hangs
            async for item in outgoing_receive:
                data = item.message.model_dump_json(by_alias=True, exclude_unset=True)
                writer.write(data.encode() + b"\n")
                await writer.drain()

    reading = asyncio.create_task(read_lines())
    writing = asyncio.create_task(write_messages())
    try:
        yield incoming, outgoing
    finally:
        reading.cancel()
        outgoing.close()  # what the session sent before it ended is still written
        with contextlib.suppress(Exception):  # a broken pipe, a client too slow to read
            await asyncio.wait_for(asyncio.shield(writing), _CLOSE_S)
        writing.cancel()
        writer.close()
        read_transport.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(writer.wait_closed(), _CLOSE_S)
        await asyncio.gather(reading, writing, return_exceptions=True)
