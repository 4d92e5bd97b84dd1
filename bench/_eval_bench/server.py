"""A loopback OpenAI-compatible model server for benchmarks: stdlib asyncio, keep-alive.

It runs in a child process (``python server.py`` prints its port, and exits when its stdin
closes), so that its work does not share a GIL with what it measures. It serves many
connections at once: an answer that waits does not hold up the others.

``POST [/delay/<ms>]/v1/chat/completions`` answers, after ``<ms>`` milliseconds (0 without
the prefix), by what the request carries, so that every client gets the same script:

- tools offered and no tool result in the messages yet: one call of the first tool, with
  ``{"order_id": <the ORD-nnnn of the last user message>}``;
- otherwise the final text ``Order ORD-nnnn: looked up, it has shipped.``

``GET /v1/models`` lists the model. ``GET /stats`` tells what was served since the last
``POST /reset``: completions, the first arrival and the last answer (``time.monotonic()``,
one clock for every process of the machine), and the most answers in flight at once.
Requests with ``"stream": true`` get a 400: no benchmarked client streams.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

MODEL = "bench-model"
ORDER = re.compile(r"ORD-\d{4}")
DEFAULT_ORDER = "ORD-0000"
_DELAY = re.compile(r"^/delay/(\d+)(/.*)$")


def order_of(messages: list[dict[str, Any]]) -> str:
    """The order id named in the last user message (text or content parts)."""
    for message in reversed(messages):
        if message.get("role") != "user":
            continue
        content = message.get("content")
        if isinstance(content, list):
            content = " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
        found = ORDER.search(str(content or ""))
        return found.group(0) if found else DEFAULT_ORDER
    return DEFAULT_ORDER


def completion(payload: dict[str, Any], serial: int) -> dict[str, Any]:
    """The scripted chat completion for a request body."""
    messages = payload.get("messages") or []
    tools = payload.get("tools") or []
    order = order_of(messages)
    answered = any(m.get("role") == "tool" for m in messages)
    message: dict[str, Any] = {"role": "assistant", "content": None}
    if tools and not answered:
        name = tools[0]["function"]["name"]
        message["tool_calls"] = [
            {
                "id": f"call_{serial}",
                "type": "function",
                "function": {"name": name, "arguments": json.dumps({"order_id": order})},
            }
        ]
        finish, out_tokens = "tool_calls", 12
    else:
        message["content"] = f"Order {order}: looked up, it has shipped."
        finish, out_tokens = "stop", 11
    prompt_tokens = max(1, len(json.dumps(messages)) // 4)
    return {
        "id": f"chatcmpl-{serial}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": str(payload.get("model") or MODEL),
        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": out_tokens,
            "total_tokens": prompt_tokens + out_tokens,
        },
    }


@dataclass
class Stats:
    """What was served since the last reset."""

    completions: int = 0
    first_at: float | None = None
    last_done_at: float | None = None
    in_flight: int = 0
    max_in_flight: int = 0
    errors: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "completions": self.completions,
            "first_at": self.first_at,
            "last_done_at": self.last_done_at,
            "max_in_flight": self.max_in_flight,
            "errors": self.errors[:5],
        }


def _response(status: int, body: bytes, close: bool) -> bytes:
    reason = {200: "OK", 400: "Bad Request", 404: "Not Found"}.get(status, "Error")
    head = (
        f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n" + ("Connection: close\r\n" if close else "") + "\r\n"
    )
    return head.encode() + body


def _error(message: str) -> bytes:
    return json.dumps({"error": {"message": message, "type": "invalid_request_error"}}).encode()


class Server:
    """The asyncio server (in the child process)."""

    def __init__(self) -> None:
        self.stats = Stats()
        self.serial = 0

    async def _answer(self, method: str, path: str, body: bytes) -> tuple[int, bytes]:
        delayed = _DELAY.match(path)
        delay_s = int(delayed.group(1)) / 1000 if delayed else 0.0
        route = (delayed.group(2) if delayed else path).split("?")[0].rstrip("/")
        if method == "GET" and route == "/stats":
            return 200, json.dumps(self.stats.as_dict()).encode()
        if method == "POST" and route == "/reset":
            self.stats = Stats()
            return 200, b"{}"
        if method == "GET" and route == "/v1/models":
            return 200, json.dumps({"object": "list", "data": [{"id": MODEL}]}).encode()
        if method != "POST" or route != "/v1/chat/completions":
            return 404, _error(f"no route {method} {path}")
        stats = self.stats
        now = time.monotonic()
        if stats.first_at is None:
            stats.first_at = now
        stats.in_flight += 1
        stats.max_in_flight = max(stats.max_in_flight, stats.in_flight)
        try:
            try:
                payload = json.loads(body)
            except ValueError:
                stats.errors.append("invalid JSON body")
                return 400, _error("the body is not JSON")
            if payload.get("stream"):
                stats.errors.append("a streaming request")
                return 400, _error("this bench server does not stream")
            self.serial += 1
            answer = json.dumps(completion(payload, self.serial)).encode()
            if delay_s:
                await asyncio.sleep(delay_s)
            stats.completions += 1
            stats.last_done_at = time.monotonic()
            return 200, answer
        finally:
            stats.in_flight -= 1

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """One connection: requests one after another (keep-alive) until it closes."""
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, path, version = lines[0].split(" ", 2)
                headers = {}
                for line in lines[1:]:
                    name, _, value = line.partition(":")
                    headers[name.strip().lower()] = value.strip()
                length = int(headers.get("content-length") or 0)
                body = await reader.readexactly(length) if length else b""
                close = headers.get("connection", "").lower() == "close" or version == "HTTP/1.0"
                status, answer = await self._answer(method, path, body)
                writer.write(_response(status, answer, close))
                await writer.drain()
                if close:
                    break
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            pass
        except ValueError:  # a request line that does not parse
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def serve(self) -> None:
        """Listen on 127.0.0.1, print the port, serve until stdin closes."""
        server = await asyncio.start_server(self.handle, "127.0.0.1", 0, backlog=512)
        print(server.sockets[0].getsockname()[1], flush=True)
        loop = asyncio.get_running_loop()
        eof = loop.run_in_executor(None, sys.stdin.buffer.read)  # the parent closed it, or died
        async with server:
            await eof
        os._exit(0)


class LoopbackModel:
    """The server in a child process, from the parent's side; a context manager."""

    def __init__(self) -> None:
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0

    def start(self) -> LoopbackModel:
        """Start the child and wait for its port."""
        self.proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve())],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().strip()
        if not line.isdigit():
            self.stop()
            raise RuntimeError("the loopback model server did not start")
        self.port = int(line)
        return self

    def base_url(self, delay_ms: int = 0) -> str:
        """The OpenAI base URL (``.../v1``) answering after ``delay_ms``."""
        prefix = f"/delay/{delay_ms}" if delay_ms else ""
        return f"http://127.0.0.1:{self.port}{prefix}/v1"

    def _call(self, method: str, path: str) -> dict[str, Any]:
        request = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", method=method)
        with urllib.request.urlopen(request, timeout=10) as response:
            data: dict[str, Any] = json.loads(response.read())
            return data

    def reset(self) -> None:
        """Forget what was served."""
        self._call("POST", "/reset")

    def stats(self) -> dict[str, Any]:
        """What was served since the last reset (see `Stats`)."""
        return self._call("GET", "/stats")

    def stop(self) -> None:
        """Close the child's stdin (it exits), kill it if it lingers."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.stdin is not None:
            with contextlib.suppress(OSError):
                proc.stdin.close()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()

    def __enter__(self) -> LoopbackModel:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


if __name__ == "__main__":
    asyncio.run(Server().serve())
