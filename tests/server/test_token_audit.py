"""Creating and revoking a console token, in the console or with `opsgate tokens`, is an
audit event naming the actor, the token's name and role; never the token or its hash."""

from __future__ import annotations

import getpass
import re
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from opsgate.audit import AuditLog
from opsgate.cli.main import app
from opsgate.errors import StoreError
from opsgate.recorder import Event
from opsgate.server import Role, create_token, hash_token, list_tokens
from opsgate.store import open_store
from tests.server.conftest import login
from tests.server.world import World


def _token_events(url: str) -> list[Any]:
    with open_store(url, migrate=False) as store:
        return [r for r in AuditLog(store).records() if r.type.startswith("token_")]


def _trail(url: str) -> str:
    with open_store(url, migrate=False) as store:
        return "\n".join(str(r.data) for r in AuditLog(store).records())


def test_the_console_audits_token_changes(
    client: TestClient, tokens: dict[str, str], world: World
) -> None:
    admin = {"Authorization": f"Bearer {tokens['admin']}"}
    made = client.post("/api/tokens", headers=admin, json={"name": "ci-bot", "role": "viewer"})
    assert made.status_code == 201
    created = made.json()
    client.post(f"/api/tokens/{created['token_id']}/revoke", headers=admin)
    csrf = login(client, tokens["admin"])
    client.post("/tokens", data={"csrf": csrf, "name": "oncall", "role": "approver"})
    client.post("/tokens/oncall/revoke", data={"csrf": csrf})
    events = _token_events(world.url)
    assert [(e.type, e.data["name"], e.data["role"], e.data["actor"]) for e in events] == [
        ("token_created", "ci-bot", "viewer", "admin-ann"),
        ("token_revoked", "ci-bot", "viewer", "admin-ann"),
        ("token_created", "oncall", "approver", "admin-ann"),
        ("token_revoked", "oncall", "approver", "admin-ann"),
    ]
    assert events[0].data["token_id"] == created["token_id"]
    assert events[0].run_id == events[1].run_id == f"token-{created['token_id']}"
    trail = _trail(world.url)
    assert created["token"] not in trail and hash_token(created["token"]) not in trail


def test_the_cli_audits_token_changes(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'opsgate.db'}"
    runner = CliRunner()
    made = runner.invoke(
        app, ["tokens", "create", "--name", "oncall", "--role", "admin", "--db", db]
    )
    assert made.exit_code == 0, made.output
    token = re.search(r"ogt_[A-Za-z0-9_-]{43}", made.output)
    assert token is not None
    assert runner.invoke(app, ["tokens", "revoke", "oncall", "--db", db]).exit_code == 0
    events = _token_events(db)
    actor = f"cli:{getpass.getuser()}"
    assert [(e.type, e.data["name"], e.data["role"], e.data["actor"]) for e in events] == [
        ("token_created", "oncall", "admin", actor),
        ("token_revoked", "oncall", "admin", actor),
    ]
    trail = _trail(db)
    assert token.group(0) not in trail and hash_token(token.group(0)) not in trail
    verified = runner.invoke(app, ["audit", "verify", "--db", db])
    assert verified.exit_code == 0, verified.output  # the chain holds the new events


class _Refusing:
    def record(self, event: Event) -> None:
        raise StoreError("the database is full")


def test_a_creation_that_cannot_be_audited_leaves_no_token(tmp_path: Path) -> None:
    with open_store(f"sqlite:///{tmp_path / 'opsgate.db'}") as store:
        with pytest.raises(StoreError, match="full"):
            create_token(store, name="x", role=Role.VIEWER, created_by="t", recorder=_Refusing())
        assert list_tokens(store, include_revoked=True) == []


def test_who_created_a_token_stays_readable_in_the_trail() -> None:
    """An actor is an identity: kept (credentials masked), unlike content, which is redacted
    in full; an e-mail-shaped admin name must not become `[redacted:email]`."""
    from opsgate.recorder import EventType
    from opsgate.redaction import Redactor

    data = {"actor": "maria@example.com", "name": "oncall@example.com", "role": "approver"}
    kept = Redactor().redact_event(EventType.TOKEN_CREATED, data)
    assert kept["actor"] == "maria@example.com" and kept["name"] == "oncall@example.com"
    content = Redactor().redact_event(EventType.TOKEN_CREATED, {"note": "maria@example.com"})
    assert content["note"] == "[redacted:email]"
