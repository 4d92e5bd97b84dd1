"""Charts: uPlot is vendored and pinned by hash (served from /static, nothing from elsewhere);
the chart pages embed their data as JSON numbers only, hidden until console.js draws them,
so without JavaScript the page is its tables."""

from __future__ import annotations

import hashlib
import json
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

import opsgate.server
from tests.server.conftest import login
from tests.server.world import World

STATIC = Path(opsgate.server.__file__).with_name("static")
#: uPlot 1.6.32 from the npm registry (https://registry.npmjs.org/uplot/-/uplot-1.6.32.tgz,
#: sha512 KIMVnG68zvu5XXUbC4LQEPnhwOxBuLyW1AHtpm6IKTXImkbLgkMy+jabjLgSLMasNuGGzQm/ep3tOkyTxpiQIw==
#: as the registry lists it): dist/uPlot.iife.min.js, dist/uPlot.min.css and LICENSE (MIT).
UPLOT_SHA256 = {
    "uPlot.iife.min.js": "19c8d4c6ad88929a79f4ae49d6f7161566dfd0ba3d15cc495e974f787eb78f1f",
    "uPlot.min.css": "df630c6a8d6f8eeaff264b50f73ce5b114f646ffd9a0bb74f049b0a00135fa04",
    "uPlot.LICENSE": "8f989229699b4fe2f1a0432d0e9edc338a8a911e250e2d1b01ecd770a5f5b1bd",
}
KINDS = {"spend", "per_success", "success"}


@pytest.mark.parametrize("name", sorted(UPLOT_SHA256))
def test_uplot_is_the_pinned_file(name: str) -> None:
    assert hashlib.sha256((STATIC / name).read_bytes()).hexdigest() == UPLOT_SHA256[name]


def test_uplot_is_mit_and_served_here(client: TestClient) -> None:
    assert (STATIC / "uPlot.LICENSE").read_text().startswith("The MIT License")
    for name in ("uPlot.iife.min.js", "uPlot.min.css"):
        assert client.get(f"/static/{name}").status_code == 200


class _Charts(HTMLParser):
    """The page's chart figures (their attributes) and every script and stylesheet URL."""

    def __init__(self) -> None:
        super().__init__()
        self.figures: list[dict[str, str | None]] = []
        self.sources: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "figure" and "data-chart" in found:
            self.figures.append(found)
        if tag == "script":
            assert "src" in found, "an inline script"
            self.sources.append(str(found["src"]))
        if tag == "link":
            self.sources.append(str(found["href"]))


def _charts(html: str) -> tuple[list[dict[str, Any]], list[dict[str, str | None]], list[str]]:
    parser = _Charts()
    parser.feed(html)
    data = [json.loads(str(f["data-chart"])) for f in parser.figures]
    return data, parser.figures, parser.sources


def _numbers_only(chart: dict[str, Any]) -> None:
    assert chart["kind"] in KINDS
    assert all(isinstance(x, float | int) for x in chart["x"])
    assert chart["x"] == sorted(chart["x"])  # uPlot wants its x ascending
    for series in chart["series"]:
        assert len(series) == len(chart["x"])
        assert all(v is None or isinstance(v, float | int) for v in series)


@pytest.mark.parametrize("path", ["/", "/cost", "/cost?workflow=wf&days=90", "/evals"])
def test_chart_pages_embed_numbers_hidden_until_drawn(
    client: TestClient, tokens: dict[str, str], path: str
) -> None:
    login(client, tokens["viewer"])
    page = client.get(path)
    assert page.status_code == 200
    charts, figures, sources = _charts(page.text)
    assert charts, "no chart"
    for chart in charts:
        _numbers_only(chart)
    assert all("hidden" in f for f in figures)  # shown by console.js once drawn
    assert "/static/uPlot.iife.min.js" in sources and "/static/uPlot.min.css" in sources
    assert all(s.startswith("/static/") for s in sources)  # nothing from elsewhere
    assert "<table" in page.text  # the tables stay: the page reads without JavaScript


def test_the_cost_charts_hold_the_ledger_and_the_budget(
    client: TestClient, tokens: dict[str, str]
) -> None:
    admin = {"Authorization": f"Bearer {tokens['admin']}"}
    api = client.get("/api/cost", params={"days": 7, "workflow": "wf"}, headers=admin).json()
    login(client, tokens["viewer"])
    (spend, per_success), _, _ = _charts(client.get("/cost?workflow=wf").text)
    assert spend["series"] == [[d["cost_usd"] for d in api["days"]]]  # no budget: one series
    assert per_success["step_days"] == 1 and per_success["series"][0][-1] == 0.0031
    assert per_success["series"][0][:-1] == [None] * 6  # no success on the other days
    client.post("/api/budgets", headers=admin, json={"workflow": "wf", "daily_spend": 2})
    (spend, _), _, _ = _charts(client.get("/cost?workflow=wf").text)
    assert spend["series"][1] == [2.0] * 7  # the daily budget in force, against the spend
    (weekly, per_week), _, _ = _charts(client.get("/cost?workflow=wf&days=90").text)
    assert len(weekly["x"]) == 90 and per_week["step_days"] == 7 and len(per_week["x"]) == 13


def test_the_evals_chart_holds_each_report_with_its_interval(
    client: TestClient, tokens: dict[str, str], world: World
) -> None:
    rows = client.get("/api/evals", headers={"Authorization": f"Bearer {tokens['viewer']}"}).json()[
        "suites"
    ][0]["reports"][::-1]
    login(client, tokens["viewer"])
    (chart,), _, _ = _charts(client.get("/evals").text)
    assert chart == {
        "kind": "success",
        "x": [r["started_at"] for r in rows],
        "series": [
            [r["success_rate"] for r in rows],
            [r["success_low"] for r in rows],
            [r["success_high"] for r in rows],
        ],
    }


def test_pages_without_charts_load_no_chart_library(
    client: TestClient, tokens: dict[str, str]
) -> None:
    login(client, tokens["viewer"])
    _, _, sources = _charts(client.get("/approvals").text)
    assert sources == ["/static/console.css", "/static/htmx.min.js", "/static/console.js"]
