"""`opsgate tokens create|list|revoke`: printed once, stored hashed, revocable."""

from __future__ import annotations

import re
from pathlib import Path

from fastapi.testclient import TestClient
from typer.testing import CliRunner

from opsgate.cli.main import app
from opsgate.server import Role, authenticate, hash_token, list_tokens
from opsgate.store import open_store
from tests.server.conftest import login

runner = CliRunner()


def test_create_list_revoke(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'opsgate.db'}"
    created = runner.invoke(
        app, ["tokens", "create", "--role", "approver", "--name", "oncall", "--db", db]
    )
    assert created.exit_code == 0, created.output
    token = re.search(r"ogt_[A-Za-z0-9_-]{43}", created.output)
    assert token and "shown only now" in created.output
    data = (tmp_path / "opsgate.db").read_bytes() + b"".join(
        p.read_bytes() for p in tmp_path.glob("opsgate.db-*")
    )
    assert token.group(0).encode() not in data  # only its hash is kept
    with open_store(db, migrate=False) as store:
        info = authenticate(store, token.group(0))
        assert info is not None and info.name == "oncall" and info.role is Role.APPROVER
        assert hash_token(token.group(0)) in data.decode("latin-1")
    again = runner.invoke(app, ["tokens", "create", "--name", "oncall", "--db", db])
    assert again.exit_code == 2 and "already named `oncall`" in again.output
    listed = runner.invoke(app, ["tokens", "list", "--db", db])
    assert listed.exit_code == 0 and "oncall" in listed.output and "approver" in listed.output
    assert token.group(0) not in listed.output
    revoked = runner.invoke(app, ["tokens", "revoke", "oncall", "--db", db])
    assert revoked.exit_code == 0 and "revoked" in revoked.output
    with open_store(db, migrate=False) as store:
        assert authenticate(store, token.group(0)) is None
        assert list_tokens(store) == [] and len(list_tokens(store, include_revoked=True)) == 1
    gone = runner.invoke(app, ["tokens", "revoke", "oncall", "--db", db])
    assert gone.exit_code == 2 and "no active token" in gone.output


def test_bad_input_is_one_line(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'opsgate.db'}"
    bad_role = runner.invoke(app, ["tokens", "create", "--role", "root", "--name", "x", "--db", db])
    assert bad_role.exit_code == 2 and "no role `root`" in bad_role.output
    bad_name = runner.invoke(app, ["tokens", "create", "--name", " ", "--db", db])
    assert bad_name.exit_code == 2 and "name" in bad_name.output
    empty = runner.invoke(app, ["tokens", "list", "--db", f"sqlite:///{tmp_path / 'none.db'}"])
    assert empty.exit_code == 0 and "nothing recorded yet" in empty.output


def test_an_admin_manages_tokens_in_the_console(client: TestClient, tokens: dict[str, str]) -> None:
    csrf = login(client, tokens["admin"])
    page = client.post(
        "/tokens", data={"name": "night <b>shift</b>", "role": "approver", "csrf": csrf}
    )
    assert page.status_code == 200 and "shown once" in page.text
    token = re.search(r"ogt_[A-Za-z0-9_-]{43}", page.text)
    assert token is not None and "night &lt;b&gt;shift&lt;/b&gt;" in page.text
    again = client.get("/tokens")
    assert token.group(0) not in again.text  # shown once
    me = client.get("/api/me", headers={"Authorization": f"Bearer {token.group(0)}"}).json()
    assert me == {"name": "night <b>shift</b>", "role": "approver"}
    token_id = next(
        t["token_id"]
        for t in client.get(
            "/api/tokens", headers={"Authorization": f"Bearer {tokens['admin']}"}
        ).json()["tokens"]
        if t["name"] == "night <b>shift</b>"
    )
    revoked = client.post(f"/tokens/{token_id}/revoke", data={"csrf": csrf}, follow_redirects=False)
    assert revoked.status_code == 303
    gone = client.get("/api/me", headers={"Authorization": f"Bearer {token.group(0)}"})
    assert gone.status_code == 401 and gone.headers["www-authenticate"] == "Bearer"
    taken = client.post("/tokens", data={"name": "viewer-ann", "role": "viewer", "csrf": csrf})
    assert taken.status_code == 400 and "already named" in taken.text


def test_the_token_api(client: TestClient, tokens: dict[str, str]) -> None:
    admin = {"Authorization": f"Bearer {tokens['admin']}"}
    made = client.post("/api/tokens", json={"name": "bot", "role": "viewer"}, headers=admin)
    assert made.status_code == 201 and made.json()["token"].startswith("ogt_")
    listed = client.get("/api/tokens", headers=admin).json()["tokens"]
    assert all("token" not in t and "token_sha256" not in t for t in listed)
    assert (
        client.post("/api/tokens", json={"name": "x", "role": "root"}, headers=admin).status_code
        == 400
    )
    revoked = client.post("/api/tokens/bot/revoke", headers=admin)
    assert revoked.status_code == 200 and revoked.json()["revoked_by"] == "admin-ann"
