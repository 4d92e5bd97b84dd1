"""A workflow's daily budget stops its production runs' model calls once today's spend
(the cost ledger) would pass it; the console's override applies before the file's; eval runs
and a router without the store are not held by production's day."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from sqlalchemy import insert

from opsgate.cost import StoreBudgets
from opsgate.errors import BudgetExceeded
from opsgate.models import Message, ModelRouter, load_router_config
from opsgate.store import Store, cost_entries, open_store, workflow_budgets
from tests.models.test_router import Meter, Scripted, _text

ROUTER = (
    "version: 1\nmodels:\n"
    "  m: {provider: openai_compatible, base_url: 'http://127.0.0.1:9/v1', model: x,"
    " price: {input_per_1m: 1.0, output_per_1m: 2.0}}\n"
    "roles: {route: {model: m}, extract: {model: m}, plan: {model: m}, act: {model: m},"
    " summarize: {model: m}, judge: {model: m}}\n"
    "budgets: {wf: {max_cost_per_task: 5.0, daily_spend: 1.0}}\n"
)
ASK = [Message.user("hello")]


class EvalMeter(Meter):
    @property
    def purpose(self) -> str:
        return "eval"


def _spend(store: Store, usd: float, *, purpose: str = "production", workflow: str = "wf") -> None:
    with store.engine.begin() as conn:
        conn.execute(
            insert(cost_entries).values(
                run_id="r1", workflow=workflow, at=time.time(), kind="model", role="act",
                model="m", tool=None, input_tokens=1, output_tokens=1, cached_input_tokens=0,
                cost_usd=usd, estimate=False, latency_s=0.1, cache_hit=False, attempts=1,
                ok=True, purpose=purpose,
            )
        )  # fmt: skip


def _router(store: Store | None) -> tuple[ModelRouter, Scripted]:
    model = Scripted(*[_text(f"answer {i}") for i in range(3)], name="x")
    budgets = None if store is None else StoreBudgets(store, ttl_s=0.0)
    config = load_router_config("router.yaml", text=ROUTER)
    return ModelRouter(config, clients={"m": model}, budgets=budgets), model


async def test_a_spent_day_stops_the_next_call_before_the_model_is_asked(tmp_path: Path) -> None:
    with open_store(f"sqlite:///{tmp_path / 'd.db'}") as store:
        router, model = _router(store)
        await router.complete("act", ASK, meter=Meter())  # $0 today: asked
        _spend(store, 0.9995)
        _spend(store, 50.0, purpose="eval")  # eval spend is not production's day
        _spend(store, 50.0, workflow="other")  # nor another workflow's
        with pytest.raises(BudgetExceeded) as stopped:
            await router.complete("act", ASK, meter=Meter())
        assert len(model.requests) == 1  # the second call never reached the model
        assert "past its daily budget of $1.0000 (spent $0.9995 today)" in str(stopped.value)
        assert "`wf`" in str(stopped.value)
        # an eval run is not held by production's day
        await router.complete("act", ASK, meter=EvalMeter())
        assert len(model.requests) == 2


async def test_the_console_override_of_the_daily_budget_applies_first(tmp_path: Path) -> None:
    with open_store(f"sqlite:///{tmp_path / 'd.db'}") as store:
        router, model = _router(store)
        _spend(store, 0.5)
        await router.complete("act", ASK, meter=Meter())  # under the file's $1
        with store.engine.begin() as conn:
            conn.execute(
                insert(workflow_budgets).values(
                    workflow="wf", max_cost_per_task=None, daily_spend=0.25,
                    set_at=time.time(), set_by="admin-ann",
                )
            )  # fmt: skip
        assert router.daily_budget_for("wf") == 0.25
        with pytest.raises(BudgetExceeded):
            await router.complete("act", ASK, meter=Meter())
        assert len(model.requests) == 1


async def test_without_the_ledger_the_day_is_not_checked(tmp_path: Path) -> None:
    router, model = _router(None)
    assert router.daily_budget_for("wf") == 1.0  # known, but today's spend is not
    await router.complete("act", ASK, meter=Meter())
    assert len(model.requests) == 1
