"""Fixtures of the console tests: one recorded world (built once, copied per test), an app
over it, tokens of each role, and logging a browser-like client in."""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from opsgate.server import Console, Role, create_app, create_token
from opsgate.store import open_store
from tests.server.world import World, build_world


@pytest.fixture(scope="session")
def world_template(tmp_path_factory: pytest.TempPathFactory) -> World:
    return build_world(tmp_path_factory.mktemp("console-world"))


@pytest.fixture
def world(world_template: World, tmp_path: Path) -> World:
    """A private copy of the recorded world (tests write decisions, stops, tokens)."""
    source = Path(world_template.url.removeprefix("sqlite:///")).parent
    target = tmp_path / "world"
    shutil.copytree(source, target)
    return replace(world_template, url=f"sqlite:///{target / 'opsgate.db'}", key=target / "key.pem")


@pytest.fixture
def tokens(world: World) -> dict[str, str]:
    """One token per role, named after it."""
    store = open_store(world.url, migrate=False)
    try:
        return {
            role.label: create_token(store, name=f"{role.label}-ann", role=role, created_by="test")[
                0
            ]
            for role in Role
        }
    finally:
        store.close()


@pytest.fixture
def client(world: World) -> Iterator[TestClient]:
    app = create_app(Console(world.url, signing_key=world.key))
    with TestClient(app, base_url="http://127.0.0.1") as c:
        yield c


CSRF = re.compile(r'name="csrf" value="([0-9a-f]+)"')


def csrf_of(html: str) -> str:
    found = CSRF.search(html)
    assert found, "no CSRF field on the page"
    return found.group(1)


def login(client: TestClient, token: str) -> str:
    """Log ``client`` in with ``token``; returns the session's CSRF token."""
    form = client.get("/login")
    response = client.post(
        "/login", data={"token": token, "csrf": csrf_of(form.text)}, follow_redirects=False
    )
    assert response.status_code == 303, response.text
    return csrf_of(client.get("/runs").text)
