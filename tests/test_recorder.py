"""`InMemoryRecorder`: kept in order, bounded when asked, cleared on demand."""

from __future__ import annotations

import pytest

from opsgate.recorder import Event, EventType, InMemoryRecorder


def _event(i: int) -> Event:
    return Event(EventType.STEP, "run", i, float(i), {"step": i})


def test_a_bounded_recorder_keeps_the_newest_and_counts_what_it_let_go() -> None:
    recorder = InMemoryRecorder(max_events=3)
    for i in range(5):
        recorder.record(_event(i))
    assert [e.seq for e in recorder.events] == [2, 3, 4]
    assert recorder.dropped == 2 and len(recorder) == 3


def test_an_unbounded_recorder_keeps_everything_and_clears_on_demand() -> None:
    recorder = InMemoryRecorder()
    for i in range(1000):
        recorder.record(_event(i))
    assert len(recorder) == 1000 and recorder.dropped == 0
    recorder.clear()
    assert recorder.events == [] and len(recorder) == 0


def test_a_bound_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        InMemoryRecorder(max_events=0)
