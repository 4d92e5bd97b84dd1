"""The approvals fatigue view: per workflow and per tool over a window, requests, approved,
denied, expired, the approval rate over the decided ones and the median time to decide;
on the approvals page and in the API, with a bad window a 400."""

from __future__ import annotations

import time
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event, insert

from opsgate.server import Console
from opsgate.server._approvals import fatigue
from opsgate.store import approvals, open_store
from tests.server.conftest import login
from tests.server.world import HOSTILE, World

_DAY = 86400.0


def _seed(world: World) -> float:
    """Requests of two workflows (the world's own pending `pay` is of ``wf``)."""
    now = time.time()
    rows = [
        # (workflow, tool, status, requested seconds ago, took seconds)
        ("billing", "refund", "approved", 3600, 60),
        ("billing", "refund", "approved", 3600, 120),
        ("billing", "refund", "denied", 3600, 600),
        ("billing", "refund", "expired", 3 * _DAY, 86400),
        ("billing", "void", "approved", 3600, 30),
        (HOSTILE, "void", "denied", 7200, 10),
        ("billing", "refund", "approved", 40 * _DAY, 5),  # outside 30 days
    ]
    with open_store(world.url, migrate=False) as store, store.engine.begin() as conn:
        for i, (workflow, tool, status, ago, took) in enumerate(rows):
            at = now - ago
            conn.execute(
                insert(approvals).values(
                    request_id=f"fat{i}",
                    run_id=f"run-fat{i}",
                    call_id=f"c{i}",
                    workflow=workflow,
                    invoker="ann",
                    agent_id="agent",
                    tool=tool,
                    args="{}",
                    decision="{}",
                    status=status,
                    requested_at=at,
                    expires_at=at + _DAY,
                    decided_at=at + took,
                    run_state="{}",
                )
            )
    return now


def test_fatigue_per_workflow_and_per_tool(world: World) -> None:
    _seed(world)
    console = Console(world.url, signing_key=world.key)
    view = fatigue(console, 30)
    billing = next(r for r in view.workflows if r.name == "billing")
    assert (billing.requests, billing.approved, billing.denied, billing.expired) == (5, 3, 1, 1)
    assert billing.approval_rate == pytest.approx(3 / 4)
    assert billing.median_decide_s == pytest.approx(90.0, abs=0.01)  # of 30, 60, 120, 600
    refund = next(r for r in view.tools if r.name == "refund")
    assert (refund.requests, refund.approved, refund.denied, refund.expired) == (4, 2, 1, 1)
    assert refund.median_decide_s == pytest.approx(120.0, abs=0.01)  # of 60, 120, 600
    pay = next(r for r in view.tools if r.name == "pay")  # the world's pending request
    assert (pay.pending, pay.approval_rate, pay.median_decide_s) == (1, None, None)
    assert view.workflows[0].name == "billing"  # busiest first
    one_day = fatigue(console, 1)
    assert next(r for r in one_day.workflows if r.name == "billing").requests == 4


def test_fatigue_on_the_approvals_page_escaped(
    client: TestClient, tokens: dict[str, str], world: World
) -> None:
    _seed(world)
    login(client, tokens["viewer"])
    page = client.get("/approvals").text
    assert 'id="fatigue"' in page
    assert "<td>billing</td>" in page and "75.0%" in page and "0h 1m 30s" in page
    assert HOSTILE not in page and "&lt;script&gt;" in page
    assert client.get("/approvals?days=0").status_code == 400


def test_fatigue_api(client: TestClient, tokens: dict[str, str], world: World) -> None:
    _seed(world)
    bearer = {"Authorization": f"Bearer {tokens['viewer']}"}
    data = client.get("/api/approvals/fatigue", headers=bearer).json()
    assert data["days"] == 30
    billing = next(r for r in data["workflows"] if r["name"] == "billing")
    assert billing["approval_rate"] == pytest.approx(0.75)
    assert {r["name"] for r in data["tools"]} >= {"refund", "void", "pay"}
    in_a_week = client.get("/api/approvals/fatigue?days=7", headers=bearer).json()
    assert next(r for r in in_a_week["workflows"] if r["name"] == "billing")["requests"] == 5
    for bad in ("0", "366", "x"):
        response = client.get(f"/api/approvals/fatigue?days={bad}", headers=bearer)
        assert response.status_code == 400, bad
    assert client.get("/api/approvals/fatigue").status_code == 401


def test_the_fatigue_query_reads_the_window_through_an_index(world: World) -> None:
    console = Console(world.url, signing_key=world.key)
    engine = console.store().engine
    seen: list[tuple[str, Any]] = []

    def keep(conn: Any, cursor: Any, sql: str, params: Any, context: Any, many: bool) -> None:
        if "decided_at - approvals.requested_at" in sql:
            seen.append((sql, params))

    event.listen(engine, "before_cursor_execute", keep)
    try:
        fatigue(console, 30)
    finally:
        event.remove(engine, "before_cursor_execute", keep)
    ((sql, params),) = seen
    with engine.connect() as conn:
        raw = conn.connection.dbapi_connection
        assert raw is not None
        plan = " | ".join(str(r[3]) for r in raw.execute("EXPLAIN QUERY PLAN " + sql, params))
    assert "USING INDEX ix_approvals_status" in plan, plan
