"""The console in a real browser (Playwright driving Debian's chromium, headless) against a
real uvicorn server: log in, read a denied call, approve a request, a viewer refused, the
charts drawn from the store's data.

The README's screenshots come from here: ``OPSGATE_SCREENSHOTS=1 .venv/bin/pytest
tests/server/test_browser.py`` writes them to ``docs/screenshots/`` (by default, to a
temporary folder, so a test run leaves the repository as it was)."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn
from playwright.sync_api import Browser, Locator, Page, expect, sync_playwright

from opsgate.models import load_router_config
from opsgate.server import Console, create_app
from tests.server.world import World

pytestmark = pytest.mark.slow

CHROMIUM = "/usr/bin/chromium"
SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
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
def images(tmp_path: Path) -> Path:
    folder = SCREENSHOTS if os.environ.get("OPSGATE_SCREENSHOTS") == "1" else tmp_path / "img"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture
def base_url(world: World) -> Iterator[str]:
    port = _free_port()
    router = load_router_config("router.yaml", text=ROUTER)
    config = uvicorn.Config(
        create_app(Console(world.url, signing_key=world.key, router=router)),
        host="127.0.0.1",
        port=port,
        log_level="warning",
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "the console did not start"
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"no {CHROMIUM}: `make chromium` installs Debian's chromium")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True)
        yield b
        b.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    errors: list[str] = []
    p = context.new_page()
    p.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    yield p
    context.close()
    assert not [e for e in errors if "Content Security Policy" in e], errors


def _login(page: Page, base_url: str, token: str) -> None:
    page.goto(f"{base_url}/login")
    page.fill("input[name=token]", token)
    page.click("button[type=submit]")
    expect(page).to_have_url(f"{base_url}/")  # the Overview


def test_log_in_and_read_a_denied_call(
    page: Page, base_url: str, tokens: dict[str, str], world: World, images: Path
) -> None:
    page.goto(f"{base_url}/runs")
    assert "Log in" in page.content()
    _login(page, base_url, tokens["viewer"])
    expect(page.locator("table.overview")).to_contain_text("50.0%")
    page.screenshot(path=str(images / "console-overview.png"), full_page=True)
    page.click("header >> text=Runs")
    expect(page.locator("#run-rows tr")).to_have_count(4)
    page.screenshot(path=str(images / "console-runs.png"), full_page=True)
    page.click(f"a[href='/runs/{world.denied}']")
    denial = page.locator("li.ev-deny")
    expect(denial).to_contain_text("arg_constraint")
    expect(denial).to_contain_text("must be at most 200, not 500")
    expect(denial).to_contain_text("workflows.wf.tools.pay.constraints.amount.max")
    page.click("text=Check its events against the latest signed checkpoint")
    expect(page.locator("#verify-result")).to_contain_text("PASS")
    bar = page.locator(".bar").first
    assert bar.evaluate("e => e.style.width") != ""  # the waterfall laid out by console.js
    page.screenshot(path=str(images / "console-run.png"), full_page=True)


def test_approve_and_see_it_leave_the_inbox(
    page: Page, base_url: str, tokens: dict[str, str], world: World, images: Path
) -> None:
    _login(page, base_url, tokens["approver"])
    page.goto(f"{base_url}/approvals")
    request = page.locator(f"#req-{world.request_id}")
    expect(request).to_contain_text("pay")
    expect(request.locator(".countdown")).to_contain_text("expires in 23h")
    expect(page.locator("script")).to_have_count(2)  # htmx and console.js, no injected one
    request.locator("summary", has_text="The run so far").click()  # htmx loads the story
    expect(request.locator(".story-body")).to_contain_text("approval asked for pay")
    page.screenshot(path=str(images / "console-approvals.png"), full_page=True)
    request.locator("input[name=reason]").fill("photo checked")
    request.locator("button[value=approve]").click()
    expect(page).to_have_url(f"{base_url}/approvals")
    expect(page.locator(f"#req-{world.request_id}")).to_have_count(0)
    expect(page.locator("table.history")).to_contain_text("approver-ann")
    expect(page.locator("table.history")).to_contain_text("photo checked")


def test_a_viewer_gets_403_trying_to_approve(
    page: Page, base_url: str, tokens: dict[str, str], world: World
) -> None:
    _login(page, base_url, tokens["viewer"])
    page.goto(f"{base_url}/approvals")
    expect(page.locator(f"#req-{world.request_id} button")).to_have_count(0)
    csrf = page.locator("input[name=csrf]").first.get_attribute("value")
    response = page.request.post(
        f"{base_url}/approvals/{world.request_id}/decide",
        form={"decision": "approve", "csrf": csrf or ""},
        max_redirects=0,
    )
    assert response.status == 403 and "approver role" in response.text()


def _drawn(figure: Locator) -> None:
    """The chart's canvas exists and has a size: uPlot drew it (console.js un-hid it)."""
    canvas = figure.locator("canvas")
    expect(canvas).to_have_count(1)
    box = canvas.bounding_box()
    assert box is not None and box["width"] > 100 and box["height"] > 100, box


def test_charts_render_with_data_from_the_store(
    page: Page, base_url: str, tokens: dict[str, str], world: World, images: Path
) -> None:
    _login(page, base_url, tokens["viewer"])
    page.goto(f"{base_url}/cost?workflow=wf")
    spend = page.locator("figure.chart").first
    expect(spend).to_be_visible()
    _drawn(spend)
    _drawn(page.locator("figure.chart").nth(1))
    expect(spend.locator(".u-legend")).to_contain_text("daily budget")  # the router's 50
    expect(spend.locator(".u-legend")).to_contain_text("spend")
    page.screenshot(path=str(images / "console-cost.png"), full_page=True)
    page.goto(f"{base_url}/evals")
    _drawn(page.locator("section.suite figure.chart"))
    expect(page.locator("section.suite .u-legend")).to_contain_text("success rate")
    expect(page.locator("table.reports tbody tr")).to_have_count(3)
    page.screenshot(path=str(images / "console-evals.png"), full_page=True)
    page.goto(f"{base_url}/evals/reports/{world.reports[1]}")
    expect(page.locator("main")).to_contain_text("newly failing: refund")
    expect(page.locator("script")).to_have_count(2)  # no chart here: no chart library


def test_without_javascript_the_chart_pages_are_their_tables(
    browser: Browser, base_url: str, tokens: dict[str, str]
) -> None:
    context = browser.new_context(java_script_enabled=False)
    try:
        page = context.new_page()
        _login(page, base_url, tokens["viewer"])
        page.goto(f"{base_url}/cost?workflow=wf")
        expect(page.locator("figure.chart").first).to_be_hidden()
        expect(page.locator("table").first).to_be_visible()
    finally:
        context.close()
