"""The progress relay on its own (`opsgate.mcp._progress`): what a client hears only goes
forward, across its call's attempts too, and is bounded; a client without a channel for it
gets no token sent upstream. (`test_relay` runs it end to end through the proxy.)

And fuzzed: what an upstream sends as a call's progress, params of any shape, tokens of every
type, numbers that are not numbers, messages of every kind. The invariant: `relay` never
raises; the client hears only notifications for the token its call was given, under its own
token, with finite numbers that only increase; every message it hears was recorded first,
cut to the bound; and the record never holds more messages than the cap allows."""

from __future__ import annotations

import asyncio
import math
from collections import Counter
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from tests.fuzz._hostile import EDGE_SCALARS, json_values

from opsgate.mcp._progress import (
    MAX_MESSAGES,
    MAX_NOTIFICATIONS,
    MESSAGE_CHARS,
    ClientProgress,
    ProgressNotes,
    ProgressRelay,
)


class Client(ProgressNotes):
    """A client session: what it heard (token, progress, total, message)."""

    def __init__(self) -> None:
        self.heard: list[tuple[Any, Any, Any, Any]] = []

    def _send_progress(self, token: str | int, params: dict[str, Any]) -> None:
        self.heard.append((token, params["progress"], params.get("total"), params.get("message")))


values = st.one_of(json_values, st.sampled_from(EDGE_SCALARS))
params = st.one_of(
    values,
    st.fixed_dictionaries(
        {},
        optional={
            "progressToken": st.one_of(st.just("GIVEN"), values),
            "progress": values,
            "total": values,
            "message": st.one_of(st.text(max_size=50), st.just("x" * 5000), values),
        },
    ),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(params, max_size=MAX_MESSAGES + 8))
def test_whatever_the_upstream_sends_the_client_hears_only_its_own_bounded_progress(
    sent: list[Any],
) -> None:
    counts: Counter[str] = Counter()
    relay, client, recorded = ProgressRelay(counts), Client(), []

    async def go() -> None:
        with relay.call("up", ClientProgress(7), client, recorded.append) as meta:
            assert meta is not None
            given_token = meta["progressToken"]
            for one in sent:
                if isinstance(one, dict) and one.get("progressToken") == "GIVEN":
                    one = {**one, "progressToken": given_token}
                await relay.relay("up", one)
                await relay.relay("other", one)  # another upstream's: never relayed
        await relay.relay("up", {"progressToken": given_token, "progress": 1})  # call over

    asyncio.run(go())
    told = [progress for _, progress, _, _ in client.heard]
    assert told == sorted(set(told)) and len(told) <= MAX_NOTIFICATIONS  # only forward
    for token, progress, total, message in client.heard:
        assert token == 7
        assert isinstance(progress, (int, float)) and math.isfinite(progress)
        assert total is None or math.isfinite(total)
        assert message is None or (message in recorded and len(message) <= MESSAGE_CHARS)
    assert len(recorded) <= MAX_MESSAGES
    assert counts["progress_relayed"] == len(client.heard)


async def test_progress_only_goes_forward_across_a_calls_attempts() -> None:
    counts: Counter[str] = Counter()
    relay, channel, mine = ProgressRelay(counts), Client(), ClientProgress("t")
    for _attempt in range(2):  # the gateway retried: the upstream counts from 1 again
        with relay.call("up", mine, channel, lambda message: None) as meta:
            assert meta is not None
            own = meta["progressToken"]
            for progress in (1, 2, 2, 1.5, 3):
                await relay.relay("up", {"progressToken": own, "progress": progress})
    assert [p for _, p, _, _ in channel.heard] == [1, 2, 3]
    assert counts["progress_dropped"] == 7


async def test_a_call_relays_at_most_so_many_notifications() -> None:
    counts: Counter[str] = Counter()
    relay, channel = ProgressRelay(counts), Client()
    with relay.call("up", ClientProgress(1), channel, lambda message: None) as meta:
        assert meta is not None
        for step in range(MAX_NOTIFICATIONS + 10):
            await relay.relay("up", {"progressToken": meta["progressToken"], "progress": step})
    assert len(channel.heard) == MAX_NOTIFICATIONS
    assert counts["progress_dropped"] == 10


async def test_without_a_channel_the_upstream_is_not_asked_for_progress() -> None:
    relay = ProgressRelay(Counter())
    with relay.call("up", ClientProgress(1), object(), lambda message: None) as meta:
        assert meta is None
