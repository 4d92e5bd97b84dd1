"""The router's layers, each alone (scripted clients, a recording meter) and composed: the
constrained tool calls, the cache off the event loop, the meter, the fallback; and the
router's one way to the gateway, `Gateway.meter(run)`."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from opsgate.errors import BudgetExceeded, ModelError, ModelTimeout
from opsgate.gateway import Gateway
from opsgate.models import (
    ROLES,
    ConstrainedToolClient,
    FallbackClient,
    Message,
    MeteredClient,
    ModelCall,
    ModelMeter,
    ModelResponse,
    ModelRouter,
    ModelSettings,
    Price,
    ResponseCache,
    ToolCall,
    Usage,
    load_router_config,
)
from opsgate.recorder import EventType, InMemoryRecorder
from opsgate.store import open_store
from tests.conftest import BASE_POLICY, BELT

SRC = Path(__file__).resolve().parents[2] / "src" / "opsgate"
ASK = [Message.system("Be brief."), Message.user("Where is order ORD-1?")]
TOOLS = BELT.openai_tools(["lookup"])


class Scripted:
    """A model client answering from a script; each entry a response or an error."""

    def __init__(self, *script: ModelResponse | ModelError, name: str = "m-1") -> None:
        self.script = list(script)
        self.requests: list[tuple[list[Message], Any, ModelSettings | None, int | None]] = []
        self._name = name

    @property
    def name(self) -> str:
        return self._name

    @property
    def provider(self) -> str:
        return "scripted"

    async def complete(
        self,
        messages: Sequence[Message],
        tools: Sequence[Mapping[str, Any]] | None = None,
        settings: ModelSettings | None = None,
        *,
        retry_budget: int | None = None,
    ) -> ModelResponse:
        self.requests.append((list(messages), tools, settings, retry_budget))
        answer = self.script.pop(0)
        if isinstance(answer, ModelError):
            raise answer
        return answer


def _text(text: str, model: str = "m-1-2026") -> ModelResponse:
    return ModelResponse(text, (), Usage(1000, 100), "stop", model, 0.25, 1, (0.25,))


class Meter:
    """A payer with a budget, a retry cap and a list of what it was told."""

    def __init__(self, *, max_cost_usd: float | None = None, retries: int | None = None) -> None:
        self.calls: list[ModelCall] = []
        self._max = max_cost_usd
        self._retries = retries

    @property
    def workflow(self) -> str:
        return "wf"

    @property
    def purpose(self) -> str:
        return "production"

    @property
    def spent_usd(self) -> float:
        return sum(c.cost_usd for c in self.calls)

    @property
    def max_cost_usd(self) -> float | None:
        return self._max

    def retry_budget(self) -> int | None:
        return self._retries

    def record(self, call: ModelCall) -> None:
        self.calls.append(call)


PRICE = Price(input_per_1m=1.0, output_per_1m=2.0)


def _metered(inner: Scripted, meter: Meter, budget: float | None = None) -> MeteredClient:
    return MeteredClient(inner, meter, role="act", model="small", price=PRICE, budget_usd=budget)


# -- each layer alone -----------------------------------------------------------------------


async def test_the_meter_is_told_of_each_call_with_its_price_and_model_ids() -> None:
    meter = Meter()
    assert isinstance(meter, ModelMeter)
    response = await _metered(Scripted(_text("hi")), meter).complete(
        ASK, None, ModelSettings(temperature=0.2, max_tokens=64)
    )
    assert response.text == "hi"
    (call,) = meter.calls
    assert (call.temperature, call.max_tokens) == (0.2, 64)
    assert call.role == "act" and call.model == "small" and call.provider == "scripted"
    assert call.request_model == "m-1" and call.response_model == "m-1-2026"
    assert call.cost_usd == pytest.approx((1000 * 1.0 + 100 * 2.0) / 1e6)
    assert call.finish_reason == "stop" and call.error_type is None
    assert call.messages == tuple(ASK) and call.response is response


async def test_a_failed_call_is_recorded_then_raised() -> None:
    meter = Meter()
    error = ModelTimeout("too slow", model="m-1", attempts=3)
    with pytest.raises(ModelTimeout):
        await _metered(Scripted(error), meter).complete(ASK)
    (call,) = meter.calls
    assert call.error_type == "ModelTimeout" and call.attempts == 3
    assert call.cost_usd == 0.0 and call.response is None


async def test_a_call_past_the_budget_is_refused_before_the_model_is_asked() -> None:
    inner = Scripted(_text("never"))
    with pytest.raises(BudgetExceeded) as refused:
        # 512 output tokens at $2/1M alone is ~$0.001
        await _metered(inner, Meter(), budget=0.0005).complete(ASK)
    assert inner.requests == [] and refused.value.budget_usd == 0.0005
    # the payer's own cap holds too, the lower of the two
    with pytest.raises(BudgetExceeded):
        await _metered(inner, Meter(max_cost_usd=0.0005), budget=5.0).complete(ASK)
    assert inner.requests == []


async def test_retries_are_capped_by_what_the_meter_allows() -> None:
    inner = Scripted(_text("a"), _text("b"), _text("c"))
    await _metered(inner, Meter(retries=1)).complete(ASK, retry_budget=4)
    await _metered(inner, Meter(retries=5)).complete(ASK, retry_budget=2)
    await _metered(inner, Meter()).complete(ASK)
    assert [r[3] for r in inner.requests] == [1, 2, None]


async def test_a_cache_hit_costs_nothing() -> None:
    meter = Meter()
    hit = ModelResponse("x", (), Usage(), "stop", "m-1", 0.0, 0, (), cache_hit=True)
    await _metered(Scripted(hit), meter).complete(ASK)
    assert meter.calls[0].cost_usd == 0.0 and meter.calls[0].cache_hit


async def test_fallback_asks_the_next_model_only_when_one_fails() -> None:
    bad = Scripted(ModelError("down", model="a", attempts=1), name="a")
    good = Scripted(_text("from b"), name="b")
    response, name = await FallbackClient([("first", bad), ("second", good)]).answer(ASK)
    assert (response.text, name) == ("from b", "second")
    both_bad = FallbackClient(
        [("a", Scripted(ModelError("1", model="a"))), ("b", Scripted(ModelError("2", model="b")))]
    )
    with pytest.raises(ModelError, match="2"):
        await both_bad.complete(ASK)
    with pytest.raises(ValueError):
        FallbackClient([])


async def test_fallback_stops_on_anything_but_a_model_failure() -> None:
    never = Scripted(_text("never"), name="b")
    chain = FallbackClient(
        [("a", _metered(Scripted(_text("x")), Meter(), budget=0.0)), ("b", never)]
    )
    with pytest.raises(BudgetExceeded):
        await chain.complete(ASK)
    assert never.requests == []


async def test_constrained_calls_ask_for_json_and_give_back_a_tool_call() -> None:
    inner = Scripted(_text('{"name": "lookup", "arguments": {"order_id": "ORD-1"}}'))
    response = await ConstrainedToolClient(inner).complete(ASK, TOOLS, ModelSettings())
    (call,) = response.tool_calls
    assert (call.name, call.arguments) == ("lookup", '{"order_id":"ORD-1"}')
    sent, tools, settings, _ = inner.requests[0]
    assert tools is None and settings is not None and settings.json_schema is not None
    assert "lookup" in (sent[-1].content or "")
    # without tools, the request passes through untouched
    plain = Scripted(_text("hello"))
    await ConstrainedToolClient(plain).complete(ASK)
    assert plain.requests[0][0] == ASK and plain.requests[0][2] is None


class ThreadNoting(ResponseCache):
    """A cache that notes the thread each database access ran on."""

    threads: list[int]

    def get(self, key: str) -> ModelResponse | None:
        self.threads.append(threading.get_ident())
        return super().get(key)

    def put(self, key: str, model: str, response: ModelResponse) -> None:
        self.threads.append(threading.get_ident())
        super().put(key, model, response)


# -- composed by the router ------------------------------------------------------------------


def _router(tmp_path: Path, *, cache: ResponseCache | None = None, mode: str = "native") -> Any:
    roles = ", ".join(f"{r}: {{model: small, fallbacks: [big]}}" for r in ROLES)
    text = (
        "version: 1\nmodels:\n"
        f"  small: {{provider: openai_compatible, base_url: 'http://127.0.0.1:9/v1', "
        f"model: m-1, tool_calling: {mode}, price: {{input_per_1m: 1.0, output_per_1m: 2.0}}}}\n"
        "  big: {provider: openai_compatible, base_url: 'http://127.0.0.1:9/v1', model: m-2,"
        " price: {input_per_1m: 10.0, output_per_1m: 20.0}}\n"
        f"roles: {{{roles}}}\nbudgets: {{wf: {{max_cost_per_task: 1.0}}}}\n"
    )
    small = Scripted(*[_text(f"small {i}") for i in range(4)], name="m-1")
    big = Scripted(*[_text(f"big {i}") for i in range(4)], name="m-2")
    config = load_router_config("router.yaml", text=text)
    return ModelRouter(config, clients={"small": small, "big": big}, cache=cache), small, big


async def test_the_router_caches_off_the_event_loop_and_meters_the_hit(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'o.db'}")
    cache = ThreadNoting(store)
    cache.threads = []
    router, small, _ = _router(tmp_path, cache=cache)
    meter = Meter()
    loop_thread = threading.get_ident()
    first, _ = await router.complete("route", ASK, None, ModelSettings(), meter=meter)
    again, name = await router.complete("route", ASK, None, ModelSettings(), meter=meter)
    assert (first.text, again.text, name) == ("small 0", "small 0", "small")
    assert len(small.requests) == 1 and again.cache_hit
    assert cache.threads and loop_thread not in cache.threads
    assert [c.cache_hit for c in meter.calls] == [False, True]
    assert meter.calls[1].cost_usd == 0.0
    # an acting role is never cached
    await router.complete("act", ASK, None, ModelSettings(), meter=meter)
    assert len(small.requests) == 2


async def test_the_router_falls_back_and_records_each_model_asked(tmp_path: Path) -> None:
    router, small, _ = _router(tmp_path)
    small.script.insert(0, ModelError("503", model="m-1", attempts=2))
    meter = Meter()
    response, name = await router.complete("act", ASK, meter=meter)
    assert (response.text, name) == ("big 0", "big")
    assert [(c.model, c.error_type) for c in meter.calls] == [
        ("small", "ModelError"),
        ("big", None),
    ]
    # an explicit model goes first
    _, name = await router.complete("act", ASK, meter=meter, model="big")
    assert name == "big"


async def test_the_router_constrains_tool_calls_for_a_json_schema_model(tmp_path: Path) -> None:
    router, small, _ = _router(tmp_path, mode="json_schema")
    small.script.insert(0, _text('{"name": "lookup", "arguments": {"order_id": "ORD-1"}}'))
    response, _ = await router.complete("act", ASK, TOOLS)
    assert response.tool_calls[0].name == "lookup"
    assert small.requests[0][1] is None  # asked as constrained JSON, not native tools


def test_the_models_package_never_imports_the_gateway() -> None:
    for path in (SRC / "models").glob("*.py"):
        assert "opsgate.gateway" not in path.read_text(), path.name


# -- the gateway's meter ---------------------------------------------------------------------


async def test_the_gateways_meter_charges_the_run_and_records_the_call() -> None:
    from opsgate.policy import load_policy

    recorder = InMemoryRecorder()
    policy = load_policy("p", BELT, text=BASE_POLICY % {"stage": "autonomous_in_scope"})
    gateway = Gateway(BELT, policy, recorder=recorder)
    run = gateway.start_run("wf", invoker="ana", agent_id="bot", request="where is ORD-1?")
    meter = gateway.meter(run)
    assert (meter.workflow, meter.max_cost_usd, meter.retry_budget()) == ("wf", 10.0, 2)
    reply = ModelResponse(
        None,
        (ToolCall("c1", "lookup", '{"order_id": "ORD-1"}'),),
        Usage(10, 5),
        "tool_calls",
        "m-1-2026",
        0.1,
        2,
        (0.05, 0.05),
    )
    await _metered(Scripted(reply), meter).complete(ASK, TOOLS)  # type: ignore[arg-type]
    assert run.cost_usd > 0 and run.model_calls == 1 and run.retries == 1
    assert meter.spent_usd == run.cost_usd and meter.retry_budget() == 1
    (event,) = recorder.of_type(EventType.MODEL_CALL)
    assert event.data["request_model"] == "m-1" and event.data["response_model"] == "m-1-2026"
    assert event.data["finish_reason"] == "tool_calls"
    assert "messages" not in event.data  # the prompt is for the traces only
    debug = event.debug_content()
    assert debug is not None
    assert debug["input"][1] == {
        "role": "user",
        "parts": [{"type": "text", "content": "Where is order ORD-1?"}],
    }
    assert debug["output"][0]["parts"][0]["name"] == "lookup"
    gateway.close()


async def test_secrets_are_scrubbed_from_the_prompt_the_traces_get() -> None:
    from opsgate.gateway import MappingSecretStore
    from opsgate.policy import load_policy

    recorder = InMemoryRecorder()
    policy = load_policy("p", BELT, text=BASE_POLICY % {"stage": "autonomous_in_scope"})
    gateway = Gateway(
        BELT, policy, recorder=recorder, secrets=MappingSecretStore({"PAY_KEY": "sk-very-secret"})
    )
    run = gateway.start_run("wf", invoker="ana", agent_id="bot", request="hi")
    leaked = [Message.user("the key is sk-very-secret")]
    await _metered(Scripted(_text("ok sk-very-secret")), gateway.meter(run)).complete(leaked)  # type: ignore[arg-type]
    (event,) = recorder.of_type(EventType.MODEL_CALL)
    assert "sk-very-secret" not in repr(event.debug_content())
    gateway.close()


def test_the_scripted_double_is_a_model_client() -> None:
    from opsgate.models import ModelClient

    assert isinstance(Scripted(), ModelClient)
    assert asyncio.iscoroutinefunction(Scripted.complete)
