"""`opsgate serve`: loopback by default, a warning elsewhere; htmx is vendored, pinned."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

import opsgate.server._serve as serving  # tests this module
from opsgate.cli.main import app
from opsgate.server import DEFAULT_HOST, DEFAULT_PORT, is_loopback
from tests.server.world import World

STATIC = Path(serving.__file__).with_name("static")
#: htmx.org 2.0.11 from the npm registry (dist/htmx.min.js of its tarball, whose sha512
#: integrity npm checked): 0BSD, see htmx.LICENSE beside it
HTMX_SHA256 = "d6fdc75f204e6bdefa99b69bf1e6d4ac69b8a364f77929f45c13476b4000f717"


def test_htmx_is_the_pinned_file() -> None:
    assert hashlib.sha256((STATIC / "htmx.min.js").read_bytes()).hexdigest() == HTMX_SHA256
    assert (STATIC / "htmx.LICENSE").read_text().startswith("Zero-Clause BSD")


def test_pages_load_nothing_from_elsewhere(
    client: TestClient, tokens: dict[str, str], world: World
) -> None:
    bearer = {"Authorization": f"Bearer {tokens['admin']}"}
    for path in ("/login", "/runs", f"/runs/{world.denied}", "/approvals", "/tokens"):
        page = client.get(path, headers=bearer).text
        assert 'src="http' not in page and 'href="http' not in page, path
    assert client.get("/static/htmx.min.js").status_code == 200


def test_loopback() -> None:
    assert (DEFAULT_HOST, DEFAULT_PORT) == ("127.0.0.1", 8700)
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("10.1.2.3")
    assert not is_loopback("example.com")


@pytest.mark.parametrize(("host", "warned"), [("127.0.0.1", False), ("0.0.0.0", True)])
def test_serve_warns_when_bound_elsewhere(
    monkeypatch: pytest.MonkeyPatch, host: str, warned: bool, world: World
) -> None:
    ran: dict[str, Any] = {}
    monkeypatch.setattr(serving.uvicorn, "run", lambda app, **kw: ran.update(kw))
    result = CliRunner().invoke(app, ["serve", "--host", host, "--port", "8765", "--db", world.url])
    assert result.exit_code == 0, result.output
    assert ran["host"] == host and ran["port"] == 8765
    assert ("reachable from other machines" in result.output) is warned
