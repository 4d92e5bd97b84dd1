"""The response cache: the same read-only question, at temperature 0, is answered once.

A call is cacheable when its sampling temperature is 0, its role only reads (``route``,
``extract``, ``summarize``, ``judge``) and it offers no tools: a cached answer there saves
money and changes nothing. Never for ``act`` or ``plan``, nor for a call offering tools
(a lane's step on the ``extract`` model): their answers drive what a run does next.

The key is the SHA-256 of the canonical JSON (sorted keys, no spaces) of the model id, the
messages, the tools offered and the settings that shape the answer (temperature,
``max_tokens``, JSON schema, tool choice; not the timeout). A hit is the stored response
marked ``cache_hit=True``, with no attempts, no latency and no usage: it consumed no
tokens, so whatever prices it prices it at zero.

The cache is an optimisation: a database error reading or writing it is counted
(``errors``) and the call goes to the model as if it had missed.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any

import orjson
from sqlalchemy import delete, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from opsgate.models._client import ModelClient
from opsgate.models._types import Message, ModelResponse, ModelSettings, ToolCall, Usage
from opsgate.models._wrapper import WrapperClient
from opsgate.store import Store, model_cache

__all__ = [
    "CACHEABLE_ROLES",
    "CachingClient",
    "ResponseCache",
    "decode_response",
    "encode_response",
]

_log = logging.getLogger("opsgate.models")

#: The roles whose answers may be cached: they read and classify, they do not act.
CACHEABLE_ROLES = frozenset({"route", "extract", "summarize", "judge"})

_KEY_VERSION = 1
_FORMAT_VERSION = 1


def _plain(value: Any) -> Any:
    """``value`` as JSON data (mappings to dicts, sequences to lists); TypeError otherwise."""
    if value is None or isinstance(value, str | bool | int | float):
        return value
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    raise TypeError(f"a {type(value).__name__} is not JSON data")


def _message(message: Message) -> dict[str, Any]:
    return {
        "role": message.role,
        "content": message.content,
        "tool_calls": [[c.id, c.name, c.arguments] for c in message.tool_calls],
        "tool_call_id": message.tool_call_id,
    }


def encode_response(response: ModelResponse) -> str:
    """``response`` as JSON text, every field kept (`decode_response` gives it back)."""
    return orjson.dumps(
        {
            "v": _FORMAT_VERSION,
            "text": response.text,
            "tool_calls": [
                {"id": c.id, "name": c.name, "arguments": c.arguments} for c in response.tool_calls
            ],
            "usage": {
                "input_tokens": response.usage.input_tokens,
                "output_tokens": response.usage.output_tokens,
                "cached_input_tokens": response.usage.cached_input_tokens,
            },
            "finish_reason": response.finish_reason,
            "model": response.model,
            "latency_s": response.latency_s,
            "attempts": response.attempts,
            "attempt_latencies": list(response.attempt_latencies),
            "cache_hit": response.cache_hit,
        }
    ).decode()


def _typed(value: Any, kind: type | tuple[type, ...], what: str) -> Any:
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise ValueError(f"cached response: `{what}` is not of the expected type")
    return value


def _tool_call(doc: Any) -> ToolCall:
    doc = _typed(doc, dict, "tool_calls[]")
    return ToolCall(
        _typed(doc.get("id"), str, "tool_calls.id"),
        _typed(doc.get("name"), str, "tool_calls.name"),
        _typed(doc.get("arguments"), str, "tool_calls.arguments"),
    )


def decode_response(text: str | bytes) -> ModelResponse:
    """The `ModelResponse` that `encode_response` wrote.

    Raises:
        ValueError: not such a document (corrupted, or written by another format).
    """
    try:
        doc = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"cached response is not JSON: {exc}") from None
    if not isinstance(doc, dict) or doc.get("v") != _FORMAT_VERSION:
        raise ValueError("cached response of an unknown format")
    calls = tuple(_tool_call(c) for c in _typed(doc.get("tool_calls"), list, "tool_calls"))
    usage = _typed(doc.get("usage"), dict, "usage")
    return ModelResponse(
        text=_typed(doc.get("text"), (str, type(None)), "text"),
        tool_calls=calls,
        usage=Usage(
            _typed(usage.get("input_tokens"), int, "usage.input_tokens"),
            _typed(usage.get("output_tokens"), int, "usage.output_tokens"),
            _typed(usage.get("cached_input_tokens"), int, "usage.cached_input_tokens"),
        ),
        finish_reason=_typed(doc.get("finish_reason"), str, "finish_reason"),
        model=_typed(doc.get("model"), str, "model"),
        latency_s=float(_typed(doc.get("latency_s"), (int, float), "latency_s")),
        attempts=_typed(doc.get("attempts"), int, "attempts"),
        attempt_latencies=tuple(
            float(_typed(x, (int, float), "attempt_latencies[]"))
            for x in _typed(doc.get("attempt_latencies"), list, "attempt_latencies")
        ),
        cache_hit=_typed(doc.get("cache_hit"), bool, "cache_hit"),
    )


class ResponseCache:
    """Model responses kept in the ``model_cache`` table.

    Args:
        store: The opsgate database (schema 0004 or later).
        ttl_s: Seconds an entry stays valid (None: until purged).
        clock: The time source (seconds since the epoch).

    Attributes:
        hits: Lookups answered by this cache object (each also bumps the row's ``hits``).
        misses: Lookups that found nothing valid.
        errors: Database or decoding errors (each one treated as a miss, or a skipped put).
        last_error: The last of those, as one line.
    """

    def __init__(
        self,
        store: Store,
        *,
        ttl_s: float | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if ttl_s is not None and ttl_s <= 0:
            raise ValueError("ttl_s must be > 0 (or None: no expiry)")
        self._engine = store.engine
        self.ttl_s = ttl_s
        self._clock = clock
        self.hits = 0
        self.misses = 0
        self.errors = 0
        self.last_error = ""
        self.hit_flush_every = 64
        self._pending_hits: dict[str, int] = {}
        self._hits_lock = threading.Lock()

    @staticmethod
    def key(
        model: str,
        messages: Sequence[Message],
        tools: Sequence[Mapping[str, Any]] | None,
        settings: ModelSettings | None,
    ) -> str:
        """The SHA-256 (hex) of the request's canonical JSON.

        No tools and an empty tool list are the same request; so are no settings and the
        default settings.

        Raises:
            TypeError: a tool definition or JSON schema that is not JSON data.
        """
        s = settings or ModelSettings()
        payload = {
            "v": _KEY_VERSION,
            "model": model,
            "messages": [_message(m) for m in messages],
            "tools": _plain(list(tools or ())),
            "settings": {
                "temperature": float(s.temperature),  # 0 and 0.0 ask the same
                "max_tokens": s.max_tokens,
                "json_schema": _plain(s.json_schema),
                "tool_choice": s.tool_choice,
            },
        }
        return hashlib.sha256(orjson.dumps(payload, option=orjson.OPT_SORT_KEYS)).hexdigest()

    @staticmethod
    def cacheable(
        settings: ModelSettings | None,
        role: str,
        tools: Sequence[Mapping[str, Any]] | None = None,
    ) -> bool:
        """Whether a call may be served from the cache: temperature 0, a read-only role,
        no tools offered (an answer that can be a tool call is an action)."""
        temperature = (settings or ModelSettings()).temperature
        return temperature == 0 and role in CACHEABLE_ROLES and not tools

    def get(self, key: str) -> ModelResponse | None:
        """The cached response for ``key`` (marked as a hit), or None."""
        try:
            with self._engine.connect() as conn:
                row = conn.execute(
                    select(model_cache.c.response, model_cache.c.created_at).where(
                        model_cache.c.key == key
                    )
                ).first()
            if row is None:
                self.misses += 1
                return None
            text, created_at = row
            if self.ttl_s is not None and self._clock() - float(created_at) > self.ttl_s:
                with self._engine.begin() as conn:
                    conn.execute(
                        delete(model_cache).where(
                            model_cache.c.key == key, model_cache.c.created_at == created_at
                        )
                    )
                self.misses += 1
                return None
            response = decode_response(text)
            self._count_hit(key)
        except Exception as exc:
            self._error("read", exc)
            self.misses += 1
            return None
        self.hits += 1
        return replace(
            response,
            cache_hit=True,
            attempts=0,
            latency_s=0.0,
            attempt_latencies=(),
            usage=Usage(),
        )

    def _count_hit(self, key: str) -> None:
        # A hit must not pay for a durable commit (an fsync) just to count itself: counts
        # are kept here and written in batches (and by `flush_hits`, `put`, `purge`).
        with self._hits_lock:
            self._pending_hits[key] = self._pending_hits.get(key, 0) + 1
            due = sum(self._pending_hits.values()) >= self.hit_flush_every
        if due:
            self.flush_hits()

    def flush_hits(self) -> None:
        """Write the hit counts kept in memory to the table."""
        with self._hits_lock:
            pending, self._pending_hits = self._pending_hits, {}
        if not pending:
            return
        try:
            with self._engine.begin() as conn:
                for key, count in pending.items():
                    conn.execute(
                        update(model_cache)
                        .where(model_cache.c.key == key)
                        .values(hits=model_cache.c.hits + count)
                    )
        except Exception as exc:
            self._error("count hits", exc)

    def put(self, key: str, model: str, response: ModelResponse) -> None:
        """Keep ``response`` under ``key`` (replacing what was there, hit count reset)."""
        with self._hits_lock:
            self._pending_hits.pop(key, None)
        values = {
            "key": key,
            "model": model[:256],
            "response": encode_response(replace(response, cache_hit=False)),
            "created_at": self._clock(),
            "hits": 0,
        }
        try:
            with self._engine.begin() as conn:
                if conn.dialect.name == "postgresql":
                    pg = pg_insert(model_cache).values(values)
                    conn.execute(
                        pg.on_conflict_do_update(
                            index_elements=[model_cache.c.key],
                            set_={c: pg.excluded[c] for c in values if c != "key"},
                        )
                    )
                else:
                    lite = sqlite_insert(model_cache).values(values)
                    conn.execute(
                        lite.on_conflict_do_update(
                            index_elements=[model_cache.c.key],
                            set_={c: lite.excluded[c] for c in values if c != "key"},
                        )
                    )
        except Exception as exc:
            self._error("write", exc)

    def purge(self, older_than_s: float | None = None) -> int:
        """Delete entries older than ``older_than_s`` (default: the TTL; with neither, all).

        Returns:
            How many entries were deleted.
        """
        age = self.ttl_s if older_than_s is None else older_than_s
        stmt = delete(model_cache)
        if age is not None:
            stmt = stmt.where(model_cache.c.created_at < self._clock() - age)
        with self._engine.begin() as conn:
            return int(conn.execute(stmt).rowcount)

    def _error(self, what: str, exc: BaseException) -> None:
        self.errors += 1
        self.last_error = f"{what}: {type(exc).__name__}: {exc}"
        _log.warning("response cache %s failed: %s", what, exc)


class CachingClient(WrapperClient):
    """A `ModelClient` that answers cacheable calls from a `ResponseCache`.

    Args:
        inner: The client that really asks the model.
        cache: The cache.
        role: The role this client plays (``route``, ``extract``, ...): only read-only
            roles at temperature 0 are cached; every other call goes straight through.
    """

    def __init__(self, inner: ModelClient, cache: ResponseCache, role: str) -> None:
        super().__init__(inner)
        self.cache = cache
        self.role = role

    async def complete(
        self,
        messages: Sequence[Message],
        tools: Sequence[Mapping[str, Any]] | None = None,
        settings: ModelSettings | None = None,
        *,
        retry_budget: int | None = None,
    ) -> ModelResponse:
        """A cached answer when there is one; else the inner client's, kept if cacheable."""
        key: str | None = None
        if self.cache.cacheable(settings, self.role, tools):
            try:
                key = self.cache.key(self.inner.name, messages, tools, settings)
            except (TypeError, ValueError):  # not JSON data: cannot be keyed, ask the model
                key = None
        if key is not None:
            hit = await asyncio.to_thread(self.cache.get, key)
            if hit is not None:
                return hit
        response = await self.inner.complete(messages, tools, settings, retry_budget=retry_budget)
        if key is not None:
            await asyncio.to_thread(self.cache.put, key, self.inner.name, response)
        return response
