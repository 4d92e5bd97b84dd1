"""The Overview: success rate, cost per success against the budget, spend today, pending."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient
from typer.testing import CliRunner

from opsgate.cli.main import app
from opsgate.models import load_router_config
from opsgate.server import Console, Role, create_app, create_token
from opsgate.store import open_store
from tests.server.world import World

ROUTER = """
version: 1
models:
  m: {provider: embedded, model: qwen2.5-coder-0.5b-instruct-q4_k_m,
      price: {input_per_1m: 0.02, output_per_1m: 0.06, estimate: true}}
roles:
  route: {model: m}
  extract: {model: m}
  plan: {model: m}
  act: {model: m}
  summarize: {model: m}
  judge: {model: m}
budgets:
  wf: {max_cost_per_task: 0.001, daily_spend: 50}
  idle: {max_cost_per_task: 0.25}
"""


def test_overview_per_workflow(world: World, tmp_path: Path) -> None:
    router = tmp_path / "router.yaml"
    router.write_text(ROUTER)
    console = Console(world.url, signing_key=world.key, router=load_router_config(router))
    with open_store(world.url, migrate=False) as store:
        token = create_token(store, name="v", role=Role.VIEWER, created_by="t")[0]
    with TestClient(create_app(console)) as client:
        bearer = {"Authorization": f"Bearer {token}"}
        body = client.get("/api/overview", headers=bearer).json()
        rows = {w["workflow"]: w for w in body["workflows"]}
        wf = rows["wf"]
        assert wf["runs"] == 4 and wf["ended_runs"] == 2 and wf["success_rate"] == 0.5
        assert abs(wf["cost_per_success"] - 0.0031) < 1e-9
        assert wf["over_cost_budget"] is True and wf["max_cost_per_task"] == 0.001
        assert abs(wf["spend_today"] - 0.0031) < 1e-9 and wf["over_daily_budget"] is False
        assert wf["pending_approvals"] == 1
        assert rows["idle"]["runs"] == 0 and rows["idle"]["over_cost_budget"] is None
        page = client.get("/", headers=bearer)
        assert page.status_code == 200 and "50.0%" in page.text and "over" in page.text
        assert client.get("/?days=0", headers=bearer).status_code == 400


def test_overview_without_a_router_file(client: TestClient, tokens: dict[str, str]) -> None:
    page = client.get("/", headers={"Authorization": f"Bearer {tokens['viewer']}"})
    assert page.status_code == 200 and "no budgets" in page.text and "50.0%" in page.text


def test_serve_refuses_a_bad_router_file(tmp_path: Path, world: World) -> None:
    bad = tmp_path / "router.yaml"
    bad.write_text("models: 3\n")
    result = CliRunner().invoke(app, ["serve", "--router", str(bad), "--db", world.url])
    assert result.exit_code == 2 and "router.yaml" in result.output


def test_the_cost_page(client: TestClient, tokens: dict[str, str]) -> None:
    bearer = {"Authorization": f"Bearer {tokens['viewer']}"}
    body = client.get("/api/cost", params={"days": 7}, headers=bearer).json()
    assert len(body["days"]) == 7 and abs(body["total_usd"] - 0.0031) < 1e-9
    assert [w["workflow"] for w in body["workflows"]] == ["wf"]
    assert body["models"][0]["model"] == "small" and body["models"][0]["calls"] == 1
    page = client.get("/cost", headers=bearer)
    assert page.status_code == 200 and "$0.003100" in page.text and "Per model" in page.text
    one = client.get("/api/cost", params={"workflow": "nope"}, headers=bearer).json()
    assert one["workflows"] == [] and one["total_usd"] == 0
    assert client.get("/cost?days=0", headers=bearer).status_code == 400
