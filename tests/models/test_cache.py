"""The response cache: keys, what may be cached, hits, misses, expiry, and the wrapper."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import select, text

from opsgate.models import Message, ModelClient, ModelResponse, ModelSettings, ToolCall, Usage
from opsgate.models._cache import (
    CACHEABLE_ROLES,
    CachingClient,
    ResponseCache,
    decode_response,
    encode_response,
)
from opsgate.store import Store, model_cache, open_store

ASK = [Message.system("Classify the ticket."), Message.user("My parcel is late.")]
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "lookup",
            "description": "Look up an order.",
            "parameters": {"type": "object", "properties": {"order_id": {"type": "string"}}},
        },
    }
]
RESPONSE = ModelResponse(
    text=None,
    tool_calls=(ToolCall("call_1", "lookup", '{"order_id": "ORD-7"}'),),
    usage=Usage(1200, 35, 1024),
    finish_reason="tool_calls",
    model="gpt-4o-mini-2024-07-18",
    latency_s=0.82,
    attempts=2,
    attempt_latencies=(0.3, 0.41),
)


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    s = open_store(db_url)
    yield s
    s.close()


class Clock:
    def __init__(self, now: float = 1_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


# -- keys and what is cacheable ------------------------------------------------------------


def test_key_is_the_sha256_of_the_request() -> None:
    key = ResponseCache.key("m", ASK, TOOLS, ModelSettings())
    assert len(key) == 64 and int(key, 16) >= 0
    assert key == ResponseCache.key("m", list(ASK), [dict(t) for t in TOOLS], ModelSettings())
    # what does not change the answer does not change the key
    assert ResponseCache.key("m", ASK, None, None) == ResponseCache.key("m", ASK, [], None)
    assert ResponseCache.key("m", ASK, None, None) == ResponseCache.key(
        "m", ASK, None, ModelSettings(temperature=0, timeout_s=5)
    )
    reordered = [{"function": t["function"], "type": t["type"]} for t in TOOLS]
    assert ResponseCache.key("m", ASK, TOOLS, None) == ResponseCache.key("m", ASK, reordered, None)
    # what does, does
    others = {
        ResponseCache.key("m2", ASK, TOOLS, None),
        ResponseCache.key("m", ASK[:1], TOOLS, None),
        ResponseCache.key("m", [*ASK[:1], Message.user("My parcel is late!")], TOOLS, None),
        ResponseCache.key("m", ASK, None, None),
        ResponseCache.key("m", ASK, TOOLS, ModelSettings(max_tokens=10)),
        ResponseCache.key("m", ASK, TOOLS, ModelSettings(tool_choice="required")),
        ResponseCache.key("m", ASK, TOOLS, ModelSettings(json_schema={"type": "object"})),
        ResponseCache.key("m", ASK, TOOLS, ModelSettings(temperature=0.5)),
        ResponseCache.key(
            "m", [*ASK, Message.assistant(None, [ToolCall("c1", "lookup", "{}")])], TOOLS, None
        ),
    }
    assert len(others) == 9
    assert ResponseCache.key("m", ASK, TOOLS, None) not in others


def test_key_refuses_what_is_not_json() -> None:
    with pytest.raises(TypeError):
        ResponseCache.key("m", ASK, [{"type": "function", "function": object()}], None)


@pytest.mark.parametrize("role", ["route", "extract", "summarize", "judge"])
def test_read_only_roles_at_temperature_zero_are_cacheable(role: str) -> None:
    assert ResponseCache.cacheable(None, role)
    assert ResponseCache.cacheable(ModelSettings(temperature=0.0), role)
    assert not ResponseCache.cacheable(ModelSettings(temperature=0.2), role)
    # a call offering tools answers with an action, whatever the role
    assert not ResponseCache.cacheable(None, role, TOOLS)


@pytest.mark.parametrize("role", ["act", "plan", "", "ACT", "other"])
def test_acting_roles_are_never_cacheable(role: str) -> None:
    assert not ResponseCache.cacheable(None, role)
    assert not ResponseCache.cacheable(ModelSettings(temperature=0), role)


def test_cacheable_roles() -> None:
    assert frozenset({"route", "extract", "summarize", "judge"}) == CACHEABLE_ROLES


# -- serialisation -------------------------------------------------------------------------

_text = st.text(max_size=40)
_calls = st.lists(st.builds(ToolCall, _text, _text, _text), max_size=3).map(tuple)
_count = st.integers(min_value=0, max_value=2**40)
_seconds = st.floats(min_value=0, max_value=1e6, allow_nan=False)


@given(
    st.builds(
        ModelResponse,
        text=st.none() | _text,
        tool_calls=_calls,
        usage=st.builds(Usage, _count, _count, _count),
        finish_reason=_text,
        model=_text,
        latency_s=_seconds,
        attempts=st.integers(min_value=0, max_value=20),
        attempt_latencies=st.lists(_seconds, max_size=4).map(tuple),
        cache_hit=st.booleans(),
    )
)
def test_responses_round_trip(response: ModelResponse) -> None:
    assert decode_response(encode_response(response)) == response


@pytest.mark.parametrize(
    "bad",
    [
        "not json",
        "[]",
        '{"v": 99}',
        encode_response(RESPONSE).replace('"attempts":2', '"attempts":"2"'),
        encode_response(RESPONSE).replace('"finish_reason":"tool_calls"', '"finish_reason":1'),
        encode_response(RESPONSE).replace('"cache_hit":false', '"cache_hit":0'),
        encode_response(RESPONSE).replace('"input_tokens":1200', '"input_tokens":true'),
        encode_response(RESPONSE).replace('"tool_calls":[{', '"tool_calls":[7,{'),
    ],
)
def test_decode_refuses_what_it_did_not_write(bad: str) -> None:
    with pytest.raises(ValueError):
        decode_response(bad)


# -- the store -----------------------------------------------------------------------------


def test_miss_then_hit(store: Store) -> None:
    cache = ResponseCache(store)
    key = cache.key("gpt-4o-mini", ASK, TOOLS, None)
    assert cache.get(key) is None
    cache.put(key, "gpt-4o-mini", RESPONSE)
    hit = cache.get(key)
    assert hit is not None
    assert hit.cache_hit is True
    assert (hit.attempts, hit.latency_s, hit.attempt_latencies) == (0, 0.0, ())
    assert hit.usage == Usage()  # a hit consumes no tokens
    assert (hit.text, hit.tool_calls, hit.finish_reason, hit.model) == (
        RESPONSE.text,
        RESPONSE.tool_calls,
        RESPONSE.finish_reason,
        RESPONSE.model,
    )
    assert cache.get(key) == hit
    assert (cache.hits, cache.misses, cache.errors) == (2, 1, 0)
    cache.flush_hits()  # hit counts are written in batches, not one fsync per hit
    with store.engine.connect() as conn:
        row = conn.execute(select(model_cache)).one()
    assert (row.key, row.model, row.hits) == (key, "gpt-4o-mini", 2)
    # the row keeps the response as it came, every field
    assert decode_response(row.response) == RESPONSE


def test_put_replaces(store: Store) -> None:
    cache = ResponseCache(store)
    cache.put("k" * 64, "m", RESPONSE)
    cache.get("k" * 64)
    newer = ModelResponse("route: billing", (), Usage(5, 2), "stop", "m", 0.1, 1, (0.1,))
    cache.put("k" * 64, "m", newer)
    hit = cache.get("k" * 64)
    assert hit is not None and hit.text == "route: billing" and hit.tool_calls == ()
    cache.flush_hits()
    with store.engine.connect() as conn:
        assert conn.execute(select(model_cache.c.hits)).scalar_one() == 1


def test_entries_expire(store: Store) -> None:
    clock = Clock()
    cache = ResponseCache(store, ttl_s=60, clock=clock)
    cache.put("a" * 64, "m", RESPONSE)
    clock.now += 60
    assert cache.get("a" * 64) is not None  # exactly at the TTL: still valid
    clock.now += 1
    assert cache.get("a" * 64) is None
    with store.engine.connect() as conn:  # the stale entry went
        assert conn.execute(select(model_cache)).all() == []
    assert (cache.hits, cache.misses) == (1, 1)
    with pytest.raises(ValueError):
        ResponseCache(store, ttl_s=0)


def test_purge(store: Store) -> None:
    clock = Clock()
    cache = ResponseCache(store, ttl_s=100, clock=clock)
    cache.put("a" * 64, "m", RESPONSE)
    clock.now += 50
    cache.put("b" * 64, "m", RESPONSE)
    clock.now += 60
    assert cache.purge() == 1  # `a` is 110 s old
    assert cache.get("b" * 64) is not None
    assert cache.purge(older_than_s=10) == 1
    assert ResponseCache(store).purge() == 0


def test_a_broken_store_is_a_miss_never_an_error(store: Store) -> None:
    cache = ResponseCache(store)
    with store.engine.begin() as conn:
        conn.execute(text("DROP TABLE model_cache"))
    cache.put("a" * 64, "m", RESPONSE)
    assert cache.get("a" * 64) is None
    assert (cache.errors, cache.misses) == (2, 1)
    assert "model_cache" in cache.last_error


def test_a_corrupted_entry_is_a_miss(store: Store) -> None:
    cache = ResponseCache(store)
    with store.engine.begin() as conn:
        conn.execute(
            model_cache.insert().values(
                key="c" * 64, model="m", response="{oops", created_at=1.0, hits=0
            )
        )
    assert cache.get("c" * 64) is None
    assert cache.errors == 1


# -- the wrapper -----------------------------------------------------------------------------


class CountingModel:
    """A tiny model client: answers with the number of the call (the cache is the test)."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    @property
    def name(self) -> str:
        return "tiny"

    @property
    def provider(self) -> str:
        return "test"

    async def complete(
        self,
        messages: Sequence[Message],
        tools: Sequence[Mapping[str, Any]] | None = None,
        settings: ModelSettings | None = None,
        *,
        retry_budget: int | None = None,
    ) -> ModelResponse:
        self.calls.append({"messages": list(messages), "retry_budget": retry_budget})
        n = len(self.calls)
        return ModelResponse(
            f"answer {n}",
            (ToolCall(f"c{n}", "lookup", '{"order_id": "ORD-1"}'),),
            Usage(100, 10),
            "tool_calls",
            "tiny-2025",
            0.5,
            1,
            (0.5,),
        )


async def test_caching_client_serves_repeats_from_the_cache(store: Store) -> None:
    inner = CountingModel()
    client = CachingClient(inner, ResponseCache(store), role="extract")
    assert isinstance(client, ModelClient)
    assert (client.name, client.provider) == ("tiny", "test")
    first = await client.complete(ASK, None, retry_budget=2)
    second = await client.complete(ASK, None, ModelSettings(temperature=0))
    assert len(inner.calls) == 1
    assert inner.calls[0]["retry_budget"] == 2
    assert (first.cache_hit, second.cache_hit) == (False, True)
    assert second.text == first.text == "answer 1"
    assert second.tool_calls == first.tool_calls
    assert (second.attempts, second.usage) == (0, Usage())
    # another question, another model call
    other = await client.complete([Message.user("Where is ORD-2?")], None)
    assert other.text == "answer 2" and len(inner.calls) == 2
    # the same cache behind another client of the same model answers too
    again = await CachingClient(inner, client.cache, role="judge").complete(ASK, None)
    assert again.cache_hit and len(inner.calls) == 2
    # the same question offering tools: an action, asked of the model every time
    acts = [await client.complete(ASK, TOOLS) for _ in range(2)]
    assert not any(a.cache_hit for a in acts) and len(inner.calls) == 4


@pytest.mark.parametrize(
    ("role", "settings"),
    [
        ("act", None),
        ("plan", ModelSettings(temperature=0)),
        ("extract", ModelSettings(temperature=0.7)),
        ("route", ModelSettings(temperature=1e-6)),
    ],
)
async def test_caching_client_passes_the_rest_through(
    store: Store, role: str, settings: ModelSettings | None
) -> None:
    inner = CountingModel()
    cache = ResponseCache(store)
    client = CachingClient(inner, cache, role=role)
    answers = [await client.complete(ASK, TOOLS, settings) for _ in range(3)]
    assert [a.text for a in answers] == ["answer 1", "answer 2", "answer 3"]
    assert not any(a.cache_hit for a in answers)
    assert (cache.hits, cache.misses) == (0, 0)
    with store.engine.connect() as conn:
        assert conn.execute(select(model_cache)).all() == []


async def test_caching_client_asks_the_model_when_the_request_cannot_be_keyed(
    store: Store,
) -> None:
    inner = CountingModel()
    client = CachingClient(inner, ResponseCache(store), role="route")
    odd = [{"type": "function", "function": {"name": "x", "parameters": {1, 2}}}]
    for _ in range(2):
        await client.complete(ASK, odd)
    assert len(inner.calls) == 2


async def test_caching_client_survives_a_broken_cache(store: Store) -> None:
    inner = CountingModel()
    cache = ResponseCache(store)
    client = CachingClient(inner, cache, role="summarize")
    with store.engine.begin() as conn:
        conn.execute(text("DROP TABLE model_cache"))
    assert (await client.complete(ASK)).text == "answer 1"
    assert (await client.complete(ASK)).text == "answer 2"
    assert cache.errors == 4  # two failed reads, two failed writes


def test_hit_counts_are_written_in_batches(store: Store) -> None:
    cache = ResponseCache(store)
    cache.hit_flush_every = 3
    cache.put("b" * 64, "m", RESPONSE)

    def stored() -> int:
        with store.engine.connect() as conn:
            return int(conn.execute(select(model_cache.c.hits)).scalar_one())

    cache.get("b" * 64)
    cache.get("b" * 64)
    assert stored() == 0  # no commit per hit
    cache.get("b" * 64)
    assert stored() == 3
