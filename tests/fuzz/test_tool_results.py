"""Fuzzing what tools hand back to the gateway (issue #11): values that are not JSON (objects,
bytes, sets, iterators), a structure that holds itself, a 10 MB string, lone surrogates,
integers past 64 bits, nesting past every limit, and exceptions of every kind (one whose
message cannot even be printed).

The invariant: `Gateway.call` returns an outcome, never raises; the call leaves its proposal,
its decision and exactly one result or error event; an error is counted; what the model
is handed back is JSON text; a write that ran is recorded as one; and the audit trail, on a
real SQLite store, holds every event and verifies."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import decimal
import enum
import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from opsgate.contracts import Toolbelt, tool
from opsgate.errors import ToolTransientError
from opsgate.gateway import Gateway, MappingSecretStore, OutcomeStatus
from opsgate.policy import load_policy
from opsgate.recorder import EventType, InMemoryRecorder
from tests.fuzz._audited import AuditedStore
from tests.fuzz._hostile import (
    EDGE_SCALARS,
    Made,
    json_values,
    made,
    makers,
    nested_dict,
    nested_list,
    scaled,
)

#: What the next call of a tool below returns (or raises): set by each example.
_NEXT: list[Any] = []


def _hand_back() -> Any:
    value = _NEXT.pop(0)
    if isinstance(value, BaseException):
        raise value
    return value


@tool(scope="read")
def produce(key: str) -> Any:
    """Return what the test prepared (a sync tool, run in the gateway's threads)."""
    return _hand_back()


@tool(scope="read")
async def produce_async(key: str) -> Any:
    """Return what the test prepared (an async tool, run on the event loop)."""
    return _hand_back()


@tool(scope="write", secrets=["STORE_KEY"])
def store(key: str) -> Any:
    """Store something and return what the test prepared (a write)."""
    return _hand_back()


BELT = Toolbelt([produce, produce_async, store])
SECRETS = MappingSecretStore({"STORE_KEY": "sk-store-0123456789"})
POLICY = load_policy(
    "fuzz-tools.yaml",
    BELT,
    text="""
version: fuzz
defaults:
  caps: {max_tool_calls: 50, max_identical_calls: 50, max_retries: 3, max_cost_usd: 1,
         max_wall_seconds: 120, max_steps: 20}
  tool_timeout_seconds: 30
workflows:
  wf:
    stage: autonomous_in_scope
    tools:
      produce: {}
      produce_async: {}
      store: {approval: never, repeatable: true}
    provenance: {free_text: {store: [key]}}  # the write may follow what the reads said
""",
)


class Unprintable(Exception):
    """An exception whose message cannot be made: `str()` itself raises."""

    def __str__(self) -> str:
        raise RuntimeError("no message for you")


class Colour(enum.Enum):
    RED = "red"


class Model(BaseModel):
    text: str
    number: int


@dataclasses.dataclass
class Record:
    name: str
    tags: list[str]


def _cycle_dict() -> dict[str, Any]:
    value: dict[str, Any] = {"a": 1}
    value["self"] = value
    return value


def _cycle_list() -> list[Any]:
    value: list[Any] = [1]
    value.append(value)
    return value


def _countdown() -> Iterator[int]:
    yield from range(3)


def _recurse(n: int) -> int:
    return _recurse(n + 1) + 1


def _recursion_error() -> RecursionError:
    try:
        _recurse(0)
    except RecursionError as exc:
        return exc
    raise AssertionError("unreachable")


#: Results made fresh per example (some cannot be shared: an iterator is used up).
_MAKERS = {
    "object": object,
    "set": lambda: {1, 2, 3},
    "frozenset": lambda: frozenset({"a"}),
    "complex": lambda: complex(1, 2),
    "decimal": lambda: decimal.Decimal("1e1000"),
    "datetime": lambda: datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC),
    "bytes": lambda: b"plain bytes",
    "bad utf-8": lambda: b"\xff\xfe\x00",
    "bytearray": lambda: bytearray(b"abc"),
    "memoryview": lambda: memoryview(b"abc"),
    "generator": _countdown,
    "endless iterator": itertools.count,
    "map": lambda: map(str, [1, 2]),
    "lambda": lambda: lambda: None,
    "class": lambda: Model,
    "module": lambda: itertools,
    "enum": lambda: Colour.RED,
    "pydantic": lambda: Model(text="\ud800", number=2**70),
    "dataclass": lambda: Record("r", ["\u202e"]),
    "path": lambda: Path("/etc/passwd"),
    "cycle dict": _cycle_dict,
    "cycle list": _cycle_list,
    "10 MB string": lambda: "x" * 10_000_000,
    "10 MB bytes": lambda: b"y" * 10_000_000,
    "deep list": lambda: nested_list(10_000),
    "deep dict": lambda: nested_dict(300),
    "254 deep": lambda: nested_list(254),  # as deep as orjson writes
    "255 deep": lambda: nested_list(255),
    "big int": lambda: 2**100,
    "surrogate": lambda: "a\ud800b",
    "surrogate key": lambda: {"\udfff": 1},
    "int keys": lambda: {1: "one", None: "none"},
    "tuple keys": lambda: {(1, 2): "pair"},
    "nan": lambda: float("nan"),
    "raises ValueError": lambda: ValueError("bad value \ud800"),
    "raises KeyError": lambda: KeyError("missing"),
    "raises huge": lambda: RuntimeError("e" * 1_000_000),
    "raises unprintable": lambda: Unprintable(),
    "raises RecursionError": _recursion_error,
    "raises transient": lambda: ToolTransientError("try again"),
    "raises MemoryError": lambda: MemoryError(),
}

#: What a tool may return: any JSON-like value, an edge case, or one of the makers above.
results: st.SearchStrategy[Any] = st.one_of(
    json_values,
    st.sampled_from(EDGE_SCALARS),
    makers(_MAKERS),
)


@pytest.fixture(scope="module")
def audited(tmp_path_factory: pytest.TempPathFactory) -> AuditedStore:
    return AuditedStore.create(tmp_path_factory.mktemp("fuzz-tools-audit"))


# What fuzzing found, each once a traceback out of `Gateway.call`, a lost audit event or a hang:
@example(calls=[("produce", "a\ud800b")])  # a result with a lone surrogate: an event lost
@example(calls=[("produce", 2**100)])  # an int past 64 bits: `for_model()` raised
@example(calls=[("produce_async", Made("unprintable", Unprintable))])  # `str(exc)` raised
@example(calls=[("produce", ValueError("bad value \ud800"))])  # an error no record held
@example(calls=[("store", Made("endless", itertools.count))])  # serialised for ever: a hang
# up to three tool calls (10 MB results among them) through a SQLite trail, verified
@settings(max_examples=scaled(0.25), suppress_health_check=[HealthCheck.too_slow])
@given(
    calls=st.lists(
        st.tuples(st.sampled_from(["produce", "produce_async", "store"]), results),
        min_size=1,
        max_size=3,
    )
)
def test_any_tool_result_is_a_recorded_outcome(
    audited: AuditedStore, calls: list[tuple[str, Any]]
) -> None:
    """Tools are other people's code: whatever they return or raise is recorded and counted."""
    with audited.recording() as (recorder, memory):
        # a known secret: every event is scrubbed of it (a walk of the whole data)
        gateway = Gateway(BELT, POLICY, recorder=recorder, secrets=SECRETS)

        async def main() -> None:
            run = gateway.start_run("wf", invoker="fuzz", agent_id="bot", request="go")
            for name, value in calls:
                if not run.active:  # retries of a transient error ran out: escalated
                    break
                _NEXT[:] = [made(value) for _ in range(4)]  # a transient error: 3 retries
                outcome = await gateway.call(run, name, {"key": "k"})
                _check_outcome(outcome, name, memory)
            gateway.finish(run)

        try:
            asyncio.run(main())
        finally:
            gateway.close()


def _check_outcome(outcome: Any, name: str, memory: InMemoryRecorder) -> None:
    assert outcome.status in (OutcomeStatus.OK, OutcomeStatus.ERROR, OutcomeStatus.ESCALATED)
    orjson.loads(outcome.for_model())  # what the model reads back is JSON text
    events = [e for e in memory.events if e.data.get("call_id") == outcome.call_id]
    kinds = [e.type for e in events]
    assert kinds[:2] == [EventType.TOOL_CALL_PROPOSED, EventType.DECISION]
    ended = [k for k in kinds if k in (EventType.TOOL_RESULT, EventType.TOOL_ERROR)]
    assert len(ended) == 1, kinds  # exactly one result or error
    if outcome.ok:
        assert ended == [EventType.TOOL_RESULT]
        orjson.dumps(outcome.result)
        assert (EventType.WRITE_PERFORMED in kinds) == (name == "store")
    else:
        assert ended == [EventType.TOOL_ERROR] and outcome.message
        assert EventType.WRITE_PERFORMED not in kinds
