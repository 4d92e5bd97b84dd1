"""The progress relay on its own (`opsgate.mcp._progress`): what a client hears only goes
forward, across its call's attempts too, and is bounded; a client without a channel for it
gets no token sent upstream. (`test_relay` runs it end to end through the proxy.)"""

from __future__ import annotations

from collections import Counter

from tests.fuzz.test_progress_relay import Client

from opsgate.mcp._progress import MAX_NOTIFICATIONS, ClientProgress, ProgressRelay


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
