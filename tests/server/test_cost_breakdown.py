"""The Cost page's breakdowns by model role, tool, agent and invoker (same window, workflow
and purpose filters as the page), and each workflow's week-over-week drift with its alerts;
in the page (escaped) and in `/api/cost`."""

from __future__ import annotations

import time

from fastapi.testclient import TestClient
from sqlalchemy import insert

from opsgate.store import cost_entries, open_store, runs
from tests.server.conftest import login
from tests.server.world import HOSTILE, World

_DAY = 86400.0


def _entry(run_id: str, workflow: str, at: float, cost: float, purpose: str) -> dict[str, object]:
    return {
        "run_id": run_id,
        "workflow": workflow,
        "at": at,
        "kind": "model",
        "role": "plan",
        "model": "big",
        "tool": None,
        "input_tokens": 10,
        "output_tokens": 5,
        "cached_input_tokens": 0,
        "cost_usd": cost,
        "estimate": False,
        "latency_s": 0.1,
        "cache_hit": False,
        "attempts": 1,
        "ok": True,
        "purpose": purpose,
    }


def _seed(world: World) -> None:
    """``billing``: last week two successes at $0.01; this week one success and one failure
    at $0.02 each (success rate 100% -> 50%, per success $0.01 -> $0.04); and one eval run."""
    now = time.time()
    plan = [
        ("b-old-1", now - 9 * _DAY, "completed", 0.01, "production"),
        ("b-old-2", now - 9 * _DAY, "completed", 0.01, "production"),
        ("b-new-1", now - 60, "completed", 0.02, "production"),
        ("b-new-2", now - 60, "failed", 0.02, "production"),
        ("b-eval", now - 60, "completed", 0.5, "eval"),
    ]
    with open_store(world.url, migrate=False) as store, store.engine.begin() as conn:
        for run_id, at, status, cost, purpose in plan:
            conn.execute(
                insert(runs).values(
                    run_id=run_id,
                    workflow="billing",
                    invoker="dora",
                    agent_id="bill-bot",
                    policy_version="v",
                    status=status,
                    reason="",
                    cost_usd=cost,
                    tool_calls=0,
                    started_at=at,
                    ended_at=at + 1,
                    purpose=purpose,
                )
            )
            conn.execute(
                insert(cost_entries).values(**_entry(run_id, "billing", at, cost, purpose))
            )


def _by(rows: list[dict[str, object]]) -> dict[object, dict[str, object]]:
    return {r["name"]: r for r in rows}


def test_the_api_breaks_cost_down_and_reports_drift(
    client: TestClient, tokens: dict[str, str], world: World
) -> None:
    _seed(world)
    bearer = {"Authorization": f"Bearer {tokens['viewer']}"}
    data = client.get("/api/cost?days=7", headers=bearer).json()
    roles = _by(data["by_role"])
    assert roles["act"]["cost_usd"] > 0 and roles["plan"]["entries"] == 2  # the old ones: out
    assert abs(roles["plan"]["cost_usd"] - 0.04) < 1e-9  # the eval run left out
    assert "lookup" in _by(data["by_tool"]) and "plan" not in _by(data["by_tool"])
    assert {"bot-1", "bill-bot"} <= set(_by(data["by_agent"]))
    assert {"alice", HOSTILE, "dora"} <= set(_by(data["by_invoker"]))
    drift = {d["workflow"]: d for d in data["drift"]}
    billing = drift["billing"]
    assert billing["previous"]["success_rate"] == 1.0 and billing["current"]["success_rate"] == 0.5
    assert round(billing["success_rate_change"], 6) == -50.0
    assert {a["metric"] for a in billing["alerts"]} == {"success_rate", "cost_per_success"}
    with_eval = client.get("/api/cost?days=7&include_eval=true", headers=bearer).json()
    assert abs(_by(with_eval["by_role"])["plan"]["cost_usd"] - 0.54) < 1e-9
    one = client.get("/api/cost?days=7&workflow=billing", headers=bearer).json()
    assert set(_by(one["by_invoker"])) == {"dora"} and set(_by(one["by_role"])) == {"plan"}
    assert [d["workflow"] for d in one["drift"]] == ["billing"]
    older = client.get("/api/cost?days=30&workflow=billing", headers=bearer).json()
    assert _by(older["by_role"])["plan"]["entries"] == 4


def test_the_cost_page_shows_breakdowns_and_drift_escaped(
    client: TestClient, tokens: dict[str, str], world: World
) -> None:
    _seed(world)
    login(client, tokens["viewer"])
    page = client.get("/cost?days=7").text
    for expected in ("Per model role", "Per tool", "Per agent", "Per invoker", "Week over week"):
        assert expected in page, expected
    assert "<td>bill-bot</td>" in page and "<td>lookup</td>" in page
    assert "100.0% → 50.0%" in page and "-50.0 points" in page
    assert "success rate fell from 100.0% to 50.0%" in page
    assert HOSTILE not in page and "&lt;script&gt;" in page
