"""A budget an admin sets in the console caps the runs of a router made with the store; one
that is cleared gives the file's back; an unreadable store leaves the file's in force."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import text

from opsgate.cost import StoreBudgets
from opsgate.models import ModelRouter, load_router_config
from opsgate.recorder import InMemoryRecorder
from opsgate.server._budgets import clear_budget, set_budget
from opsgate.store import open_store

ROUTER = (
    "version: 1\nmodels:\n"
    "  m: {provider: openai_compatible, base_url: 'http://127.0.0.1:9/v1', model: x,"
    " price: {input_per_1m: 1.0, output_per_1m: 1.0}}\n"
    "roles: {route: {model: m}, extract: {model: m}, plan: {model: m}, act: {model: m},"
    " summarize: {model: m}, judge: {model: m}}\n"
    "budgets: {support: {max_cost_per_task: 0.25}}\n"
)


def test_the_console_override_caps_runs_then_the_file_again(tmp_path: Path) -> None:
    config = load_router_config("router.yaml", text=ROUTER)
    with open_store(f"sqlite:///{tmp_path / 'o.db'}") as store:
        budgets = StoreBudgets(store, ttl_s=0.0)
        router = ModelRouter(config, budgets=budgets)
        assert router.budget_for("support") == 0.25  # the file's
        set_budget(
            store,
            InMemoryRecorder(),
            "support",
            max_cost_per_task=0.05,
            daily_spend=None,
            actor="admin-ann",
        )
        assert router.budget_for("support") == 0.05  # the console's, for the next run
        assert router.budget_for("other") is None
        clear_budget(store, InMemoryRecorder(), "support", actor="admin-ann")
        assert router.budget_for("support") == 0.25
        assert ModelRouter(config).budget_for("support") == 0.25  # no store: the file's


def test_a_store_that_cannot_be_read_keeps_the_last_known_override(tmp_path: Path) -> None:
    with open_store(f"sqlite:///{tmp_path / 'o.db'}") as store:
        budgets = StoreBudgets(store, ttl_s=0.0)
        assert budgets.max_cost_per_task("support") is None
        set_budget(
            store,
            InMemoryRecorder(),
            "support",
            max_cost_per_task=0.05,
            daily_spend=None,
            actor="admin-ann",
        )
        assert budgets.max_cost_per_task("support") == 0.05
        with store.engine.begin() as conn:
            conn.execute(text("DROP TABLE workflow_budgets"))  # reads now fail
        assert budgets.max_cost_per_task("support") == 0.05  # not silently uncapped
        assert budgets.max_cost_per_task("never-read") is None  # the file's applies
