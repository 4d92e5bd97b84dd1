"""Budgets: the budget in force (an admin's override, field by field, else the router file's)
on the Budgets, Overview, Cost and Autonomy views; setting and clearing are admin only and
audited with the token's name; bad amounts are a clear 400 that changes nothing."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from opsgate.audit import AuditLog
from opsgate.models import load_router_config
from opsgate.policy import load_policy
from opsgate.server import Console, create_app
from opsgate.store import open_store
from tests.conftest import BASE_POLICY, BELT
from tests.server.conftest import login
from tests.server.world import HOSTILE, World

ROUTER = """
version: 1
models:
  m: {provider: embedded, model: qwen2.5-coder-0.5b-instruct-q4_k_m,
      price: {input_per_1m: 0.02, output_per_1m: 0.06, estimate: true}}
roles: {route: {model: m}, extract: {model: m}, plan: {model: m}, act: {model: m},
        summarize: {model: m}, judge: {model: m}}
budgets:
  wf: {max_cost_per_task: 0.25, daily_spend: 50}
"""


@pytest.fixture
def routed(world: World) -> Iterator[TestClient]:
    """The console with the router file's budgets (``wf``: 0.25 a task, 50 a day)."""
    router = load_router_config("router.yaml", text=ROUTER)
    app = create_app(Console(world.url, signing_key=world.key, router=router))
    with TestClient(app, base_url="http://127.0.0.1") as c:
        yield c


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _events(world: World, *kinds: str) -> list[Any]:
    with open_store(world.url, migrate=False) as store:
        return [r for r in AuditLog(store).records() if r.type in kinds]


def _budget(client: TestClient, token: str, workflow: str) -> dict[str, Any]:
    found = client.get("/api/budgets", headers=_bearer(token)).json()["budgets"]
    return next(b for b in found if b["workflow"] == workflow)


def test_an_override_wins_field_by_field_and_is_audited(
    routed: TestClient, tokens: dict[str, str], world: World
) -> None:
    assert _budget(routed, tokens["viewer"], "wf") | {"set_at": None} == {
        "workflow": "wf",
        "max_cost_per_task": 0.25,
        "max_source": "router file",
        "daily_spend": 50.0,
        "daily_source": "router file",
        "file_max_cost_per_task": 0.25,
        "file_daily_spend": 50.0,
        "set_by": None,
        "set_at": None,
    }
    admin = _bearer(tokens["admin"])
    done = routed.post("/api/budgets", headers=admin, json={"workflow": "wf", "daily_spend": 0.001})
    assert done.status_code == 200, done.text
    now = _budget(routed, tokens["viewer"], "wf")
    assert (now["daily_spend"], now["daily_source"]) == (0.001, "console")
    assert (now["max_cost_per_task"], now["max_source"]) == (0.25, "router file")
    assert now["set_by"] == "admin-ann"
    (event,) = _events(world, "budget_set")
    assert event.data["actor"] == "admin-ann" and event.data["workflow"] == "wf"
    assert event.data["daily_spend"] == 0.001 and event.data["max_cost_per_task"] is None
    health = routed.get("/api/overview", headers=admin).json()["workflows"]
    wf = next(h for h in health if h["workflow"] == "wf")
    assert wf["daily_budget"] == 0.001 and wf["daily_budget_source"] == "console"
    assert wf["over_daily_budget"] is True  # today's 0.0031 is above the override
    assert wf["max_cost_per_task"] == 0.25 and wf["cost_budget_source"] == "router file"
    cleared = routed.post("/api/budgets/clear", headers=admin, json={"workflow": "wf"})
    assert cleared.json() == {"workflow": "wf", "cleared": True}
    assert _budget(routed, tokens["viewer"], "wf")["daily_source"] == "router file"
    (gone,) = _events(world, "budget_cleared")
    assert gone.data == {"actor": "admin-ann", "workflow": "wf"}
    again = routed.post("/api/budgets/clear", headers=admin, json={"workflow": "wf"})
    assert again.json()["cleared"] is False and len(_events(world, "budget_cleared")) == 1


def test_an_admin_uses_the_form_and_the_pages_show_the_source(
    routed: TestClient, tokens: dict[str, str], world: World
) -> None:
    csrf = login(routed, tokens["admin"])
    page = routed.post(
        "/budgets",
        data={"csrf": csrf, "workflow": "new-flow", "max_cost_per_task": "$0.5", "daily_spend": ""},
    )
    assert page.status_code == 200 and "budget of new-flow set" in page.text
    assert _budget(routed, tokens["viewer"], "new-flow")["max_cost_per_task"] == 0.5
    overview = routed.get("/").text
    assert "new-flow" in overview and 'title="set in the console">console</span>' in overview
    cost = routed.get("/cost", params={"workflow": "wf"}).text
    assert "$50.000000 a day (router file)" in cost
    routed.post("/budgets", data={"csrf": csrf, "workflow": "wf", "daily_spend": "7"})
    assert "$7.000000 a day (console)" in routed.get("/cost", params={"workflow": "wf"}).text
    cleared = routed.post("/budgets/clear", data={"csrf": csrf, "workflow": "wf"})
    assert "override of wf cleared" in cleared.text
    assert [e.data["actor"] for e in _events(world, "budget_set", "budget_cleared")] == [
        "admin-ann"
    ] * 3


def test_the_autonomy_preflight_reads_the_budget_in_force(
    world: World, tokens: dict[str, str]
) -> None:
    router = load_router_config("router.yaml", text=ROUTER)
    policy = load_policy("console-test", BELT, text=BASE_POLICY % {"stage": "draft"})
    console = Console(world.url, signing_key=world.key, router=router, policy=policy)
    with TestClient(create_app(console), base_url="http://127.0.0.1") as c:
        viewer = _bearer(tokens["viewer"])
        assert "budget $0.25" in c.get("/autonomy", headers=viewer).text  # the file's
        c.post(
            "/api/budgets",
            headers=_bearer(tokens["admin"]),
            json={"workflow": "wf", "max_cost_per_task": 0.001},
        )
        page = c.get("/autonomy", headers=viewer).text
    assert "budget $0.001: over budget" in page  # the override's, in force


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"workflow": "wf"}, "give a max cost per task, a daily spend or both"),
        ({"workflow": "wf", "daily_spend": -1}, "daily spend is a positive amount"),
        ({"workflow": "wf", "max_cost_per_task": 0}, "max cost per task is a positive amount"),
        ({"workflow": "wf", "daily_spend": 1e12}, "daily spend is a positive amount"),
        ({"workflow": " ", "daily_spend": 1}, "a workflow's name is printable text"),
        ({"workflow": "a\x00b", "daily_spend": 1}, "a workflow's name is printable text"),
        ({"workflow": "x" * 129, "daily_spend": 1}, "`workflow`"),
    ],
)
def test_bad_budgets_are_a_400_that_changes_nothing(
    routed: TestClient, tokens: dict[str, str], world: World, body: dict[str, Any], message: str
) -> None:
    refused = routed.post("/api/budgets", headers=_bearer(tokens["admin"]), json=body)
    assert refused.status_code == 400 and message in refused.json()["error"]
    assert _events(world, "budget_set") == []
    assert _budget(routed, tokens["viewer"], "wf")["set_by"] is None


def test_a_bad_amount_in_the_form_is_a_page_not_a_traceback(
    routed: TestClient, tokens: dict[str, str]
) -> None:
    csrf = login(routed, tokens["admin"])
    page = routed.post(
        "/budgets", data={"csrf": csrf, "workflow": HOSTILE, "daily_spend": "ten dollars"}
    )
    assert page.status_code == 400 and "not `ten dollars`" in page.text
    shown = routed.post("/budgets", data={"csrf": csrf, "workflow": HOSTILE, "daily_spend": "1"})
    assert shown.status_code == 200 and HOSTILE not in shown.text  # a hostile name, escaped
    assert "&lt;script&gt;" in routed.get("/budgets").text


def test_only_an_admin_changes_budgets(routed: TestClient, tokens: dict[str, str]) -> None:
    for role in ("viewer", "approver"):
        refused = routed.post(
            "/api/budgets", headers=_bearer(tokens[role]), json={"workflow": "wf", "daily_spend": 1}
        )
        assert refused.status_code == 403 and "admin role" in refused.json()["error"]
    login(routed, tokens["approver"])
    page = routed.get("/budgets").text  # readable by every role, without the forms
    assert "$0.250000" in page and 'action="/budgets"' not in page
