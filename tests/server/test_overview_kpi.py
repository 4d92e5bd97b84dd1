"""One KPI per workflow on the Overview: the policy's ``kpi`` key, this window's value
against the previous window's (the trend) and the target; workflows without one say so,
and without a policy the column says how to give one. In the page and in `/api/overview`."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import insert

from opsgate.policy import load_policy
from opsgate.server import Console, create_app
from opsgate.store import approvals, open_store, runs
from tests.conftest import BASE_POLICY, BELT
from tests.server.conftest import login
from tests.server.world import World

_DAY = 86400.0
LIVE = BASE_POLICY % {"stage": "autonomous_in_scope"}


def _policy(kpi: str | None) -> str:
    if kpi is None:
        return LIVE
    return LIVE.replace(
        "    stage: autonomous_in_scope\n", f"    stage: autonomous_in_scope\n    kpi: {kpi}\n"
    )


def _client(world: World, kpi: str | None) -> Iterator[TestClient]:
    policy = load_policy("console-test", BELT, text=_policy(kpi))
    app = create_app(Console(world.url, signing_key=world.key, policy=policy))
    with TestClient(app, base_url="http://127.0.0.1") as c:
        yield c


@pytest.fixture
def kpi_client(world: World, request: pytest.FixtureRequest) -> Iterator[TestClient]:
    yield from _client(world, request.param)


def _seed_previous_week(world: World) -> None:
    """``wf`` 8-10 days ago: four runs, all completed, and two approved requests."""
    now = time.time()
    with open_store(world.url, migrate=False) as store, store.engine.begin() as conn:
        for i in range(4):
            at = now - (8 + i * 0.5) * _DAY
            conn.execute(
                insert(runs).values(
                    run_id=f"old{i}",
                    workflow="wf",
                    invoker="ann",
                    agent_id="bot-1",
                    policy_version="v",
                    status="completed",
                    reason="",
                    cost_usd=0.0,
                    tool_calls=0,
                    started_at=at,
                    ended_at=at + 1,
                )
            )
            if i < 2:
                conn.execute(
                    insert(approvals).values(
                        request_id=f"oldq{i}",
                        run_id=f"old{i}",
                        call_id="c",
                        workflow="wf",
                        invoker="ann",
                        agent_id="bot-1",
                        tool="pay",
                        args="{}",
                        decision="{}",
                        status="approved",
                        requested_at=at,
                        expires_at=at + _DAY,
                        decided_at=at + 5,
                        run_state="{}",
                    )
                )


@pytest.mark.parametrize("kpi_client", ["{metric: success_rate, target: 0.9}"], indirect=True)
def test_the_kpi_with_its_trend_and_target(
    kpi_client: TestClient, tokens: dict[str, str], world: World
) -> None:
    _seed_previous_week(world)
    bearer = {"Authorization": f"Bearer {tokens['viewer']}"}
    data = kpi_client.get("/api/overview?days=7", headers=bearer).json()
    (kpi,) = data["kpis"]
    # this week: the world's runs, of which `denied` completed and `escalated` escalated
    assert kpi["workflow"] == "wf" and kpi["metric"] == "success_rate"
    assert kpi["current"] == pytest.approx(0.5) and kpi["previous"] == pytest.approx(1.0)
    assert (kpi["trend"], kpi["met"], kpi["target"]) == ("down", False, 0.9)
    login(kpi_client, tokens["viewer"])
    page = kpi_client.get("/?days=7").text
    assert 'success rate: <span class="fail">50.0%</span>' in page
    assert "↓" in page and "previous 100.0%; target ≥ 90.0%" in page and "missed" in page


@pytest.mark.parametrize(
    ("kpi_client", "current", "previous", "trend", "met"),
    [
        ("{metric: escalation_rate, target: 0.6}", 0.5, 0.0, "up", True),
        ("{metric: approval_rate, target: 0.5}", None, 1.0, "", None),
        ("{metric: cost_per_successful_task, target: 1}", 0.0031, 0.0, "up", True),
    ],
    indirect=["kpi_client"],
)
def test_each_metric(
    kpi_client: TestClient,
    tokens: dict[str, str],
    world: World,
    current: float | None,
    previous: float | None,
    trend: str,
    met: bool | None,
) -> None:
    _seed_previous_week(world)
    bearer = {"Authorization": f"Bearer {tokens['viewer']}"}
    (kpi,) = kpi_client.get("/api/overview?days=7", headers=bearer).json()["kpis"]
    assert kpi["current"] == (None if current is None else pytest.approx(current))
    assert kpi["previous"] == (None if previous is None else pytest.approx(previous))
    assert (kpi["trend"], kpi["met"]) == (trend, met)


@pytest.mark.parametrize("kpi_client", [None], indirect=True)
def test_a_workflow_without_a_kpi_says_so(kpi_client: TestClient, tokens: dict[str, str]) -> None:
    bearer = {"Authorization": f"Bearer {tokens['viewer']}"}
    assert kpi_client.get("/api/overview", headers=bearer).json()["kpis"] == []
    login(kpi_client, tokens["viewer"])
    assert "no KPI set in the policy" in kpi_client.get("/").text


def test_without_a_policy_the_column_says_so(client: TestClient, tokens: dict[str, str]) -> None:
    bearer = {"Authorization": f"Bearer {tokens['viewer']}"}
    assert client.get("/api/overview", headers=bearer).json()["kpis"] is None
    login(client, tokens["viewer"])
    page = client.get("/").text
    assert "no policy given" in page and "opsgate serve --policy" in page
