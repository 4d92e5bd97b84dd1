"""A client for any server speaking OpenAI's chat-completions API.

One client covers OpenAI, vLLM, Ollama (``http://localhost:11434/v1``), llama.cpp's
``llama-server``, LM Studio and the hosted gateways that mimic them: they all accept
``POST {base_url}/chat/completions`` with the same body and answer with the same shape.

What it adds to a plain HTTP call, because an agent run depends on it:

- **Retries that respect the provider.** 429, 500, 502, 503, 504, broken connections,
  timeouts and unreadable bodies are retried with exponential back-off and full jitter
  (AWS's "full jitter": a uniform wait in ``[0, min(cap, base * 2**retry)]``, so that many
  workers throttled together do not come back together). A ``Retry-After`` (seconds,
  fractional seconds, or an HTTP date) or ``retry-after-ms`` header is obeyed exactly;
  one asking for longer than ``backoff_max_s`` ends the call at once, since waiting that
  long inside a run is worse than failing it and letting the run's policy decide.
- **Counted attempts.** Retries are capped by ``min(max_retries, retry_budget)``, where the
  budget is what the run's retry cap still allows, and every attempt is counted: a
  response says how many attempts it took and how long each one lasted, and so does the
  error raised when they all failed (`attempt_latencies`).
- **A key that stays secret.** It is read from an environment variable (a missing one is a
  `ConfigError` naming the variable), sent only in the ``Authorization`` header, and
  scrubbed from every message this module builds; errors are raised outside the ``except``
  blocks, so no httpx exception (whose request holds the headers) hangs off them.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import math
import os
import random
import time
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC
from typing import Any, Literal

import httpx
import orjson

from opsgate._jsondata import dumps
from opsgate.errors import (
    ConfigError,
    ModelError,
    ModelRateLimited,
    ModelRequestError,
    ModelServerError,
    ModelTimeout,
)
from opsgate.models._types import Message, ModelResponse, ModelSettings, ToolCall, Usage
from opsgate.redaction import Redactor

__all__ = ["OpenAICompatibleClient", "parse_retry_after"]

_log = logging.getLogger("opsgate.models")

RETRYABLE_STATUS = frozenset({429, 500, 502, 503, 504})
_SNIPPET_LEN = 300  # of a provider's error body, in an exception message
_KEY_MARKER = "[redacted:api_key]"
# Traces and logs have no salt: markers without a hash (see `opsgate.redaction`).
_REDACTOR = Redactor()

_FailureKind = Literal["timeout", "connection", "rate_limited", "server", "malformed"]


@dataclass(frozen=True, slots=True)
class _Failure:
    """One failed attempt, as plain strings: no exception object survives the attempt."""

    kind: _FailureKind
    detail: str
    status: int | None = None
    retry_after: float | None = None


class _Malformed(Exception):
    """A 2xx body that is not a chat completion."""


class OpenAICompatibleClient:
    """A model behind an OpenAI-compatible ``/chat/completions`` endpoint.

    Example::

        client = OpenAICompatibleClient(
            "https://api.openai.com/v1", "gpt-4o-mini", api_key_env="OPENAI_API_KEY"
        )
        local = OpenAICompatibleClient("http://localhost:11434/v1", "qwen2.5:7b",
                                       provider="ollama")
        response = await client.complete([Message.user("hi")], tools=belt.openai_tools())

    Args:
        base_url: The API root, ``/v1`` included (``https://api.openai.com/v1``).
        model: The model id sent in every request.
        api_key_env: Name of the environment variable holding the key (read once, here).
        api_key: The key itself (tests, or a vault); prefer ``api_key_env``.
        provider: A label for records and cost tables (``openai``, ``vllm``, ``ollama``...).
        timeout_s: Per-attempt timeout, for the whole attempt (connect to last byte).
        max_retries: Retries after the first attempt, at most (a run's budget may lower it).
        backoff_base_s: First back-off window; it doubles with each retry.
        backoff_max_s: Longest wait between attempts, whether from back-off or asked for by
            ``Retry-After``.
        transport: An httpx transport to send through (a test transport, or one with
            custom TLS or proxies); None for httpx's default.

    Raises:
        ConfigError: the environment variable is not set or empty, the key has whitespace
            or control characters, both ``api_key`` and ``api_key_env`` are given, or an
            argument is out of range.
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key_env: str | None = None,
        api_key: str | None = None,
        provider: str = "openai",
        timeout_s: float = 60.0,
        max_retries: int = 3,
        backoff_base_s: float = 0.5,
        backoff_max_s: float = 20.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        try:
            parsed = httpx.URL(base_url)
        except httpx.InvalidURL:
            parsed = None
        if parsed is None or parsed.scheme not in ("http", "https") or not parsed.host:
            raise ConfigError(
                f"model base_url must be an http(s) URL such as https://api.openai.com/v1, "
                f"not {_display_url(base_url)}"
            )
        if not model:
            raise ConfigError("model id must not be empty")
        if timeout_s <= 0:
            raise ConfigError("timeout_s must be > 0")
        if max_retries < 0:
            raise ConfigError("max_retries must be >= 0")
        if backoff_base_s < 0 or backoff_max_s < 0:
            raise ConfigError("backoff_base_s and backoff_max_s must be >= 0")
        self._model = model
        self._provider = provider
        self._base_url = base_url.rstrip("/")
        self._url = f"{self._base_url}/chat/completions"
        self._where = _display_url(self._base_url)
        self._timeout_s = float(timeout_s)
        self._max_retries = max_retries
        self._backoff_base_s = float(backoff_base_s)
        self._backoff_max_s = float(backoff_max_s)
        self._transport = transport
        self._rng = random.Random()
        # The key lives only here and in the headers; `__repr__` shows neither.
        self._api_key = _resolve_key(api_key, api_key_env)
        self._headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self._api_key:
            self._headers["Authorization"] = f"Bearer {self._api_key}"
        self._http: httpx.AsyncClient | None = None
        self._http_loop: weakref.ref[asyncio.AbstractEventLoop] | None = None

    # -- identity ---------------------------------------------------------------------------

    @property
    def name(self) -> str:
        """The model id."""
        return self._model

    @property
    def provider(self) -> str:
        """The provider label."""
        return self._provider

    @property
    def base_url(self) -> str:
        """The API root (``.../v1``)."""
        return self._base_url

    @property
    def max_retries(self) -> int:
        """Retries allowed per call, before any run budget."""
        return self._max_retries

    def __repr__(self) -> str:
        return (
            f"OpenAICompatibleClient(base_url={self._where!r}, model={self._model!r}, "
            f"provider={self._provider!r}, key={'set' if self._api_key else 'none'})"
        )

    # -- calls ------------------------------------------------------------------------------

    async def complete(
        self,
        messages: Sequence[Message],
        tools: Sequence[Mapping[str, Any]] | None = None,
        settings: ModelSettings | None = None,
        *,
        retry_budget: int | None = None,
    ) -> ModelResponse:
        """Ask the model for its next turn (see `ModelClient.complete`).

        Raises:
            ModelTimeout: the last attempt timed out.
            ModelRateLimited: 429 on every attempt allowed, or a ``Retry-After`` longer
                than ``backoff_max_s``.
            ModelServerError: 5xx, a broken connection or an unreadable body on every
                attempt allowed.
            ModelRequestError: a 4xx other than 429 (not retried: it would fail again).
        """
        settings = settings or ModelSettings()
        # a lone surrogate in a message (a ticket decoded with surrogateescape) goes as U+FFFD
        payload = dumps(build_request_body(self._model, messages, tools, settings))
        return await self._send(self._client(), payload, settings, retry_budget)

    def complete_sync(
        self,
        messages: Sequence[Message],
        tools: Sequence[Mapping[str, Any]] | None = None,
        settings: ModelSettings | None = None,
        *,
        retry_budget: int | None = None,
    ) -> ModelResponse:
        """`complete` for code without an event loop (scripts, notebooks, sync tools).

        Each call runs its own event loop and its own connection pool, closed at the end.

        Raises:
            RuntimeError: called from inside a running event loop (await `complete`).
        """
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            pass
        else:
            raise RuntimeError("complete_sync() inside an event loop: await complete() instead")
        settings = settings or ModelSettings()
        # a lone surrogate in a message (a ticket decoded with surrogateescape) goes as U+FFFD
        payload = dumps(build_request_body(self._model, messages, tools, settings))

        async def once() -> ModelResponse:
            http = self._new_http()
            try:
                return await self._send(http, payload, settings, retry_budget)
            finally:
                # A transport the caller handed in is theirs to close; ours is closed here.
                if self._transport is None:
                    await http.aclose()

        return asyncio.run(once())

    async def aclose(self) -> None:
        """Close the connection pool (a later call opens a new one)."""
        if self._http is not None:
            http, self._http, self._http_loop = self._http, None, None
            await http.aclose()

    async def __aenter__(self) -> OpenAICompatibleClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    # -- internals --------------------------------------------------------------------------

    def _new_http(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            transport=self._transport,
            timeout=self._timeout_s,
            follow_redirects=False,
            # an eval at --concurrency 32 keeps every connection alive (httpx keeps 20)
            limits=httpx.Limits(max_connections=None, max_keepalive_connections=128),
        )

    def _client(self) -> httpx.AsyncClient:
        # An httpx pool belongs to the event loop that opened its connections: keep one per
        # loop, so that tests and `asyncio.run` callers each get a working one.
        loop = asyncio.get_running_loop()
        owner = self._http_loop() if self._http_loop is not None else None
        if self._http is None or self._http.is_closed or owner is not loop:
            self._http = self._new_http()
            self._http_loop = weakref.ref(loop)
        return self._http

    async def _send(
        self,
        http: httpx.AsyncClient,
        payload: bytes,
        settings: ModelSettings,
        retry_budget: int | None,
    ) -> ModelResponse:
        timeout_s = settings.timeout_s or self._timeout_s
        allowed = self._max_retries
        if retry_budget is not None:
            allowed = max(0, min(allowed, retry_budget))
        started = time.perf_counter()
        latencies: list[float] = []
        while True:
            failure, outcome = await self._attempt(http, payload, timeout_s, latencies)
            if outcome is not None:
                text, calls, usage, finish, model = outcome
                return ModelResponse(
                    text=text,
                    tool_calls=calls,
                    usage=usage,
                    finish_reason=finish,
                    model=model,
                    latency_s=time.perf_counter() - started,
                    attempts=len(latencies),
                    attempt_latencies=tuple(latencies),
                )
            assert failure is not None
            retries_done = len(latencies) - 1
            if retries_done >= allowed:
                raise self._error(failure, latencies, allowed)
            if failure.retry_after is not None:
                if failure.retry_after > self._backoff_max_s:
                    raise self._error(
                        failure,
                        latencies,
                        allowed,
                        note=f"the server asked to wait {failure.retry_after:g}s, more than "
                        f"backoff_max_s={self._backoff_max_s:g}",
                    )
                delay = failure.retry_after
            else:
                delay = backoff_delay(
                    retries_done, self._backoff_base_s, self._backoff_max_s, self._rng
                )
            _log.debug(
                "%s model %s: %s; retry %d/%d in %.3fs",
                self._provider,
                self._model,
                failure.detail if failure.status is None else f"HTTP {failure.status}",
                retries_done + 1,
                allowed,
                delay,
            )
            await asyncio.sleep(delay)

    async def _attempt(
        self,
        http: httpx.AsyncClient,
        payload: bytes,
        timeout_s: float,
        latencies: list[float],
    ) -> tuple[_Failure | None, _Parsed | None]:
        """One HTTP attempt: a failure to retry or a parsed answer; raises on a 4xx."""
        t0 = time.perf_counter()
        response: httpx.Response | None = None
        failure: _Failure | None = None
        try:
            # httpx's timeout bounds each read, not the whole answer: a server that trickles
            # a byte at a time would never time out. The outer deadline bounds the attempt.
            async with asyncio.timeout(timeout_s):
                response = await http.post(
                    self._url, content=payload, headers=self._headers, timeout=timeout_s
                )
        except (httpx.TimeoutException, TimeoutError):
            failure = _Failure("timeout", f"no answer within {timeout_s:g}s")
        except httpx.RequestError as exc:
            failure = _Failure("connection", f"{type(exc).__name__}: {exc}")
        latencies.append(time.perf_counter() - t0)
        if failure is not None or response is None:
            return failure, None
        status = response.status_code
        if 200 <= status < 300:
            try:
                return None, parse_completion(response.content, self._model)
            except _Malformed as exc:
                return _Failure("malformed", str(exc), status), None
        detail = _error_snippet(response.content)
        if status in RETRYABLE_STATUS:
            kind: _FailureKind = "rate_limited" if status == 429 else "server"
            return _Failure(kind, detail, status, parse_retry_after(response.headers)), None
        if status >= 500:  # 501, 505...: permanent, another attempt would fail the same way
            raise self._error(_Failure("server", detail, status), latencies, 0, final=True)
        raise self._request_error(status, detail, latencies)

    def _scrub(self, text: str) -> str:
        if self._api_key:
            text = text.replace(self._api_key, _KEY_MARKER)
        return _REDACTOR.redact_text(text)

    def _error(
        self,
        failure: _Failure,
        latencies: list[float],
        allowed: int,
        *,
        note: str = "",
        final: bool = False,
    ) -> ModelError:
        attempts = len(latencies)
        what = {"timeout": "timed out", "connection": "connection failed"}.get(
            failure.kind, f"HTTP {failure.status}"
        )
        if failure.kind == "malformed":
            what = f"unreadable response (HTTP {failure.status})"
        why = note or (
            "not retryable"
            if final
            else f"after {attempts} attempt{'s' if attempts != 1 else ''} "
            f"({allowed} retr{'ies' if allowed != 1 else 'y'} allowed)"
        )
        message = self._scrub(
            f"{self._provider} model `{self._model}` at {self._where}: {what}: "
            f"{failure.detail} [{why}]"
        )
        cls: type[ModelError]
        if failure.kind == "timeout":
            cls = ModelTimeout
        elif failure.kind == "rate_limited":
            cls = ModelRateLimited
        else:
            cls = ModelServerError
        error = cls(message, model=self._model, attempts=attempts)
        # ModelError has no field for them yet; `attempt_latencies(error)` reads them.
        setattr(error, "attempt_latencies", tuple(latencies))  # noqa: B010
        return error

    def _request_error(self, status: int, detail: str, latencies: list[float]) -> ModelError:
        hint = {
            401: " (check the API key)",
            403: " (the key may lack access to this model)",
            404: " (check base_url, which must end in /v1, and the model id)",
        }.get(status, "")
        message = self._scrub(
            f"{self._provider} model `{self._model}` at {self._where}: HTTP {status}{hint}: "
            f"{detail}"
        )
        error = ModelRequestError(message, model=self._model, attempts=len(latencies))
        setattr(error, "attempt_latencies", tuple(latencies))  # noqa: B010
        return error


# -- request -------------------------------------------------------------------------------


def build_request_body(
    model: str,
    messages: Sequence[Message],
    tools: Sequence[Mapping[str, Any]] | None,
    settings: ModelSettings,
) -> dict[str, Any]:
    """The JSON body of a chat-completions request."""
    body: dict[str, Any] = {
        "model": model,
        "messages": [message_to_openai(m) for m in messages],
        "temperature": settings.temperature,
    }
    if settings.max_tokens is not None:
        body["max_tokens"] = settings.max_tokens
    if tools:
        body["tools"] = [dict(t) for t in tools]
        # Sent only with tools: some servers refuse a tool_choice without them.
        body["tool_choice"] = settings.tool_choice
    if settings.json_schema is not None:
        schema = dict(settings.json_schema)
        # A top-level "schema" key is no JSON Schema keyword: it marks the full wrapper.
        if "schema" in schema and "name" in schema:
            wrapper = schema
        else:
            wrapper = {"name": "output", "schema": schema, "strict": True}
        body["response_format"] = {"type": "json_schema", "json_schema": wrapper}
    return body


def message_to_openai(message: Message) -> dict[str, Any]:
    """One message in the chat-completions format."""
    if message.role == "tool":
        return {
            "role": "tool",
            "tool_call_id": message.tool_call_id,
            "content": message.content or "",
        }
    out: dict[str, Any] = {"role": message.role, "content": message.content}
    if message.role != "assistant" and message.content is None:
        out["content"] = ""  # only an assistant turn may have null content
    if message.tool_calls:
        out["tool_calls"] = [
            {
                "id": call.id,
                "type": "function",
                "function": {"name": call.name, "arguments": call.arguments},
            }
            for call in message.tool_calls
        ]
    return out


# -- response ------------------------------------------------------------------------------

_Parsed = tuple[str | None, tuple[ToolCall, ...], Usage, str, str]


def parse_completion(body: bytes, fallback_model: str) -> _Parsed:
    """Text, tool calls, usage, finish reason and model of a chat-completion body.

    Lenient where servers differ harmlessly (arguments sent as an object, missing ids or
    usage, content as a list of parts) and strict where the body is not a completion.

    Raises:
        _Malformed: not JSON, not an object, or without ``choices[0].message``.
    """
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise _Malformed(f"body is not JSON ({exc}): {_short(body)}") from None
    if not isinstance(data, dict):
        raise _Malformed(f"body is not a JSON object: {_short(body)}")
    choices = data.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise _Malformed(f"body has no choices: {_short(body)}")
    choice = choices[0]
    message = choice.get("message")
    if not isinstance(message, dict):
        raise _Malformed("choices[0] has no message")
    raw_calls = message.get("tool_calls") or []
    if not isinstance(raw_calls, list):
        raise _Malformed("choices[0].message.tool_calls is not a list")
    calls = tuple(_tool_call(i, c) for i, c in enumerate(raw_calls))
    finish = choice.get("finish_reason")
    model = data.get("model")
    return (
        _content_text(message.get("content")),
        calls,
        _usage(data.get("usage")),
        finish if isinstance(finish, str) and finish else "unknown",
        model if isinstance(model, str) and model else fallback_model,
    )


def _tool_call(index: int, raw: Any) -> ToolCall:
    if not isinstance(raw, dict) or not isinstance(raw.get("function"), dict):
        raise _Malformed(f"tool call {index} has no function")
    function = raw["function"]
    name = function.get("name")
    arguments = function.get("arguments")
    if arguments is None:
        text = "{}"  # servers omit them for a tool without parameters
    elif isinstance(arguments, str):
        text = arguments
    else:  # some servers send the object itself; keep it as the JSON text it stands for
        try:
            text = orjson.dumps(arguments).decode()
        except TypeError as exc:  # nested deeper than JSON is written (orjson: 254 levels)
            raise _Malformed(
                f"tool call {index} has arguments that are not JSON data: {exc}"
            ) from None
    call_id = raw.get("id")
    return ToolCall(
        id=call_id if isinstance(call_id, str) and call_id else f"call_{index}",
        name=name if isinstance(name, str) else "",
        arguments=text,
    )


def _content_text(content: Any) -> str | None:
    if isinstance(content, str):
        return content or None
    if isinstance(content, list):  # content parts: [{"type": "text", "text": ...}]
        parts = [p.get("text") for p in content if isinstance(p, dict)]
        joined = "".join(p for p in parts if isinstance(p, str))
        return joined or None
    return None


def _usage(raw: Any) -> Usage:
    if not isinstance(raw, dict):
        return Usage()
    details = raw.get("prompt_tokens_details")
    cached = details.get("cached_tokens") if isinstance(details, dict) else None
    return Usage(
        input_tokens=_count(raw.get("prompt_tokens")),
        output_tokens=_count(raw.get("completion_tokens")),
        cached_input_tokens=_count(cached),
    )


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def _error_snippet(body: bytes) -> str:
    """The provider's own error message when it sent one, else the start of the body."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return _short(body) or "(empty body)"
    if isinstance(data, dict):
        error = data.get("error")
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            return str(error["message"])[:_SNIPPET_LEN]
        for key in ("error", "message", "detail"):
            if isinstance(data.get(key), str):
                return str(data[key])[:_SNIPPET_LEN]
    return _short(body)


def _short(body: bytes) -> str:
    text = body[:_SNIPPET_LEN].decode("utf-8", "replace")
    return text + ("..." if len(body) > _SNIPPET_LEN else "")


# -- retry timing --------------------------------------------------------------------------


def backoff_delay(retry: int, base_s: float, max_s: float, rng: random.Random) -> float:
    """Full-jitter back-off before retry number ``retry + 1`` (``retry`` counts from 0)."""
    window = min(max_s, base_s * (2.0 ** min(retry, 62)))
    return rng.uniform(0.0, window)


def parse_retry_after(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """Seconds a server asked to wait, from ``retry-after-ms`` or ``Retry-After``.

    ``Retry-After`` may be seconds (fractions accepted: some servers and the test server
    send them) or an HTTP date; a date in the past means 0. Anything unreadable is None
    (back-off applies). ``headers`` should be case-insensitive (httpx's are).
    """
    ms = headers.get("retry-after-ms")
    if ms is not None:
        seconds = _seconds(ms)
        if seconds is not None:
            return seconds / 1000.0
    value = headers.get("retry-after")
    if value is None:
        return None
    seconds = _seconds(value)
    if seconds is not None:
        return seconds
    try:
        when = email.utils.parsedate_to_datetime(value.strip())
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def _seconds(value: str) -> float | None:
    try:
        seconds = float(value.strip())
    except ValueError:
        return None
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


# -- configuration -------------------------------------------------------------------------


def _resolve_key(api_key: str | None, api_key_env: str | None) -> str | None:
    if api_key is not None and api_key_env is not None:
        raise ConfigError("give the model client api_key or api_key_env, not both")
    if api_key_env is not None:
        api_key = os.environ.get(api_key_env)
        if not api_key:
            raise ConfigError(
                f"environment variable {api_key_env} (the model's API key) is not set or empty"
            )
        source = f"environment variable {api_key_env}"
    else:
        source = "api_key"
    if api_key is not None and (
        not api_key or any(c.isspace() or not c.isprintable() for c in api_key)
    ):
        # An HTTP library's error for a bad header would quote the value: refuse it here.
        raise ConfigError(f"the API key in {source} is empty or has whitespace or control chars")
    return api_key


def _display_url(base_url: str) -> str:
    """The base URL without credentials or query (some gateways put keys in either)."""
    try:
        url = httpx.URL(base_url)
    except httpx.InvalidURL:
        return "<invalid url>"
    port = f":{url.port}" if url.port else ""
    return f"{url.scheme}://{url.host}{port}{url.path}".rstrip("/")
