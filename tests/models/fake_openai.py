"""A scripted OpenAI chat-completions server on loopback, for tests.

A real HTTP server (stdlib ``ThreadingHTTPServer`` in a background thread), so the client
under test runs its whole stack: httpx, sockets, status codes, headers, timeouts, broken
connections. Each request to ``POST /v1/chat/completions`` takes the next reply of the
script; every request is recorded (path, headers, body, arrival time)::

    with FakeOpenAI([error_reply(429, headers={"Retry-After": "0.1"}),
                     tool_reply(("lookup", '{"order_id": "A1"}'))]) as server:
        client = OpenAICompatibleClient(server.base_url, "fake-model")
        ...
        assert server.requests[1].at - server.requests[0].at >= 0.1

A script entry is a `Reply` or a function of the `RecordedRequest` returning one (to answer
from what was sent). When the script runs out the server answers 500 ``script exhausted``,
so a test that sends more than it planned fails loudly. ``GET /v1/models`` lists the model.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

import orjson

__all__ = [
    "FakeOpenAI",
    "RecordedRequest",
    "Reply",
    "ScriptEntry",
    "completion",
    "error_reply",
    "text_reply",
    "tool_reply",
]

MODEL = "fake-model"
_ids = itertools.count(1)


@dataclass(frozen=True)
class Reply:
    """One scripted answer.

    Attributes:
        status: HTTP status.
        json: The body, as JSON data (ignored when ``body`` is given).
        body: The raw body bytes (for truncated or non-JSON bodies).
        headers: Extra response headers (``Retry-After``...).
        delay_s: Wait this long before answering (a slow model; a timeout).
        cut_after: Announce the full ``Content-Length`` but send only this many bytes of the
            body, then close the connection (a connection dropped mid-answer).
    """

    status: int = 200
    json: Any = None
    body: bytes | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    delay_s: float = 0.0
    cut_after: int | None = None

    def payload(self) -> bytes:
        """The bytes of the body."""
        return self.body if self.body is not None else orjson.dumps(self.json)


@dataclass(frozen=True)
class RecordedRequest:
    """A request the server received.

    Attributes:
        method: ``GET`` or ``POST``.
        path: The request path (``/v1/chat/completions``).
        headers: Headers, names in lower case.
        body: The raw body.
        at: ``time.monotonic()`` when the request was read.
    """

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    at: float

    @property
    def json(self) -> Any:
        """The body parsed as JSON."""
        return orjson.loads(self.body)


ScriptEntry = Reply | Callable[[RecordedRequest], Reply]


def completion(
    content: str | None = None,
    tool_calls: Iterable[tuple[str, str | Mapping[str, Any]]] = (),
    *,
    finish_reason: str | None = None,
    model: str = MODEL,
    prompt_tokens: int = 12,
    completion_tokens: int = 5,
    cached_tokens: int | None = None,
) -> dict[str, Any]:
    """A chat-completion body, as OpenAI sends it.

    Args:
        content: The assistant's text.
        tool_calls: ``(name, arguments)`` pairs; arguments as JSON text (sent as is, so it
            may be invalid) or as a mapping (encoded).
        finish_reason: Defaults to ``tool_calls`` when there are calls, else ``stop``.
        model: The model named in the answer.
        prompt_tokens: Usage.
        completion_tokens: Usage.
        cached_tokens: ``prompt_tokens_details.cached_tokens``, when not None.
    """
    calls = [
        {
            "id": f"call_{next(_ids)}",
            "type": "function",
            "function": {
                "name": name,
                "arguments": args if isinstance(args, str) else orjson.dumps(args).decode(),
            },
        }
        for name, args in tool_calls
    ]
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if calls:
        message["tool_calls"] = calls
    usage: dict[str, Any] = {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }
    if cached_tokens is not None:
        usage["prompt_tokens_details"] = {"cached_tokens": cached_tokens}
    return {
        "id": f"chatcmpl-{next(_ids)}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": message,
                "finish_reason": finish_reason or ("tool_calls" if calls else "stop"),
            }
        ],
        "usage": usage,
    }


def text_reply(text: str, **kwargs: Any) -> Reply:
    """A 200 answer with text only (``completion`` keyword arguments accepted)."""
    delay_s = kwargs.pop("delay_s", 0.0)
    return Reply(json=completion(text, **kwargs), delay_s=delay_s)


def tool_reply(*calls: tuple[str, str | Mapping[str, Any]], **kwargs: Any) -> Reply:
    """A 200 answer with tool calls, each ``(name, arguments)``."""
    delay_s = kwargs.pop("delay_s", 0.0)
    return Reply(json=completion(kwargs.pop("content", None), calls, **kwargs), delay_s=delay_s)


def error_reply(
    status: int,
    message: str = "scripted error",
    *,
    headers: Mapping[str, str] | None = None,
    delay_s: float = 0.0,
) -> Reply:
    """An error answer with OpenAI's error body."""
    kind = "rate_limit_exceeded" if status == 429 else "server_error" if status >= 500 else "bad"
    return Reply(
        status=status,
        json={"error": {"message": message, "type": kind, "code": None}},
        headers=dict(headers or {}),
        delay_s=delay_s,
    )


class FakeOpenAI:
    """The scripted server; a context manager (``start`` / ``stop`` by hand also work).

    Args:
        script: Replies, in the order requests will take them (more with `add`).
        model: The model ``GET /v1/models`` lists.
    """

    def __init__(self, script: Iterable[ScriptEntry] = (), *, model: str = MODEL) -> None:
        self.model = model
        self._script: deque[ScriptEntry] = deque(script)
        self._requests: list[RecordedRequest] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- script and record -----------------------------------------------------------------

    def add(self, *replies: ScriptEntry) -> None:
        """Append replies to the script."""
        with self._lock:
            self._script.extend(replies)

    @property
    def requests(self) -> list[RecordedRequest]:
        """The chat-completion requests received so far, in order."""
        with self._lock:
            return [r for r in self._requests if r.path.endswith("/chat/completions")]

    @property
    def remaining(self) -> int:
        """Replies of the script not yet used."""
        with self._lock:
            return len(self._script)

    def _next(self, request: RecordedRequest) -> Reply:
        with self._lock:
            self._requests.append(request)
            entry = self._script.popleft() if self._script else None
        if entry is None:
            return error_reply(500, "fake_openai: script exhausted")
        return entry if isinstance(entry, Reply) else entry(request)

    # -- life cycle ------------------------------------------------------------------------

    @property
    def port(self) -> int:
        """The port the server listens on (started servers only)."""
        if self._server is None:
            raise RuntimeError("FakeOpenAI is not started")
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT/v1``: what a client takes as its base URL."""
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> FakeOpenAI:
        """Listen on a free loopback port and serve in a background thread."""
        if self._server is not None:
            return self
        self._stopping.clear()
        self._server = _Server(("127.0.0.1", 0), _Handler, self)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.02},
            name="fake-openai",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving; slow replies still waiting are abandoned at once."""
        if self._server is None:
            return
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = self._thread = None

    def __enter__(self) -> FakeOpenAI:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # a client's idle connection must not hold up `stop`

    def __init__(
        self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler], fake: FakeOpenAI
    ) -> None:
        self.fake = fake
        super().__init__(address, handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that timed out has closed its socket: writing to it fails, as expected.
        pass


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # quiet test output
        pass

    def _record(self) -> RecordedRequest:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        return RecordedRequest(
            method=self.command,
            path=self.path,
            headers={k.lower(): v for k, v in self.headers.items()},
            body=body,
            at=time.monotonic(),
        )

    def do_POST(self) -> None:
        request = self._record()
        fake = self.server.fake
        if request.path.rstrip("/") != "/v1/chat/completions":
            with fake._lock:
                fake._requests.append(request)
            self._send(error_reply(404, f"no route {request.path}"))
            return
        reply = fake._next(request)
        if reply.delay_s and fake._stopping.wait(reply.delay_s):
            return  # stopping: drop the connection unanswered
        self._send(reply)

    def do_GET(self) -> None:
        request = self._record()
        fake = self.server.fake
        with fake._lock:
            fake._requests.append(request)
        if request.path.rstrip("/") == "/v1/models":
            data = {"object": "list", "data": [{"id": fake.model, "object": "model"}]}
            self._send(Reply(json=data))
        else:
            self._send(error_reply(404, f"no route {request.path}"))

    def _send(self, reply: Reply) -> None:
        payload = reply.payload()
        self.close_connection = True
        try:
            self.send_response(reply.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.send_header("Connection", "close")
            for name, value in reply.headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(payload if reply.cut_after is None else payload[: reply.cut_after])
            self.wfile.flush()
        except OSError:
            pass  # the client gave up (timed out) before the answer
