"""Stopping a live run from the console: `request_stop` as the token's name; 409 for a run
that has ended, 404 for none."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy import select

from opsgate.audit import AuditLog, AuditRecorder, Signer
from opsgate.gateway import Gateway, OutcomeStatus, StoreStopSource
from opsgate.policy import CompiledPolicy
from opsgate.server import Console, Role, create_app, create_token
from opsgate.store import open_store, run_stops
from tests.conftest import BELT
from tests.server.conftest import login
from tests.server.world import World


def _stops(world: World) -> list[tuple[str, str, str]]:
    with open_store(world.url, migrate=False) as store, store.engine.connect() as conn:
        rows = conn.execute(select(run_stops.c.run_id, run_stops.c.actor, run_stops.c.reason))
        return [tuple(r) for r in rows]


def test_an_approver_stops_a_live_run(
    client: TestClient, tokens: dict[str, str], world: World
) -> None:
    csrf = login(client, tokens["approver"])
    page = client.get(f"/runs/{world.live}").text
    assert "Stop this run" in page
    done = client.post(
        f"/runs/{world.live}/stop",
        data={"reason": "runaway loop", "csrf": csrf},
        follow_redirects=False,
    )
    assert done.status_code == 303
    assert "Stop requested" in client.get(done.headers["location"]).text
    assert _stops(world) == [(world.live, "approver-ann", "runaway loop")]
    again = client.post(f"/runs/{world.live}/stop", data={"csrf": csrf}, follow_redirects=False)
    assert again.status_code == 303 and again.headers["location"].endswith("already_requested")


def test_the_api_stops_a_run_waiting_for_approval(
    client: TestClient, tokens: dict[str, str], world: World
) -> None:
    bearer = {"Authorization": f"Bearer {tokens['admin']}"}
    response = client.post(f"/api/runs/{world.pending}/stop", json={"reason": "x"}, headers=bearer)
    assert response.status_code == 202 and response.json()["actor"] == "admin-ann"


def test_a_finished_run_cannot_be_stopped(
    client: TestClient, tokens: dict[str, str], world: World
) -> None:
    bearer = {"Authorization": f"Bearer {tokens['approver']}"}
    for run_id in (world.denied, world.escalated):
        response = client.post(f"/api/runs/{run_id}/stop", json={}, headers=bearer)
        assert response.status_code == 409 and "already ended" in response.json()["error"]
    assert client.post("/api/runs/nope/stop", json={}, headers=bearer).status_code == 404
    login(client, tokens["approver"])
    assert "Stop this run" not in client.get(f"/runs/{world.denied}").text
    assert _stops(world) == []


def test_a_viewer_sees_no_stop_button(
    client: TestClient, tokens: dict[str, str], world: World
) -> None:
    login(client, tokens["viewer"])
    assert "Stop this run" not in client.get(f"/runs/{world.live}").text


async def test_the_gateway_honours_a_console_stop(
    tmp_path: Path, make_policy: Callable[..., CompiledPolicy]
) -> None:
    """End to end: the button, then the gateway ends the run before its next call."""
    url = f"sqlite:///{tmp_path / 'opsgate.db'}"
    store = open_store(url)
    key = tmp_path / "key.pem"
    audit = AuditRecorder(AuditLog(store, Signer.from_file(key)))
    stops = StoreStopSource(store, poll_s=0.02)
    gateway = Gateway(BELT, make_policy(), recorder=audit, stops=stops)
    try:
        run = gateway.start_run("wf", invoker="a", agent_id="b", request="ORD-1")
        await gateway.call(run, "lookup", {"order_id": "ORD-1"})
        with open_store(url, migrate=False) as s:
            token = create_token(s, name="oncall", role=Role.APPROVER, created_by="t")[0]
        with TestClient(create_app(Console(url, signing_key=key))) as client:
            response = client.post(
                f"/api/runs/{run.run_id}/stop",
                json={"reason": "wrong customer"},
                headers={"Authorization": f"Bearer {token}"},
            )
            assert response.status_code == 202
            for _ in range(200):
                await asyncio.sleep(0.02)
                if stops.requested(run.run_id) is not None:
                    break
            outcome = await gateway.call(run, "lookup", {"order_id": "ORD-2"})
            assert outcome.status is not OutcomeStatus.OK  # the call did not run
            audit.flush()
            page = client.get(
                f"/api/runs/{run.run_id}", headers={"Authorization": f"Bearer {token}"}
            ).json()
        assert page["run"]["status"] == "escalated" and page["run"]["reason"] == "interrupted"
        escalation = next(i for i in page["timeline"] if i["type"] == "escalated")
        assert ["actor", "oncall"] in escalation["fields"]
    finally:
        gateway.close()
        stops.close()
        audit.close()
        store.close()
