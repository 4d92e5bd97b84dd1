"""The Autonomy page: each workflow's stage (the store's, else the file's), its preflight
rows and its blast radius; without a policy, how to give one."""

from __future__ import annotations

from fastapi.testclient import TestClient

from opsgate.audit import AuditLog, AuditRecorder, Signer
from opsgate.autonomy import demote
from opsgate.policy import load_policy
from opsgate.server import Console, Role, create_app, create_token
from opsgate.store import open_store
from tests.conftest import BASE_POLICY, BELT
from tests.server.world import World


def _viewer(world: World) -> str:
    with open_store(world.url, migrate=False) as store:
        return create_token(store, name="v", role=Role.VIEWER, created_by="t")[0]


def test_the_page_shows_stage_preflight_and_blast_radius(world: World) -> None:
    policy = load_policy("console-test", BELT, text=BASE_POLICY % {"stage": "autonomous_in_scope"})
    with open_store(world.url, migrate=False) as store:
        recorder = AuditRecorder(AuditLog(store, Signer.generate()))
        demote(policy, "wf", store, recorder, to="draft", actor="lea", reason="<b>complaints</b>")
        recorder.close()
    token = _viewer(world)
    console = Console(world.url, signing_key=world.key, policy=policy)
    with TestClient(create_app(console)) as client:
        page = client.get("/autonomy", headers={"Authorization": f"Bearer {token}"})
    assert page.status_code == 200
    html = page.text
    assert (
        "stage <strong>draft</strong>" in html
        and "the policy file says autonomous_in_scope" in html
    )
    assert "by lea" in html and "&lt;b&gt;complaints&lt;/b&gt;" in html  # escaped
    assert "Preflight" in html and "no-go" in html and "caps are set" in html
    assert "Blast radius at draft" in html and "draft/low" in html
    assert "pay" not in html.split("Blast radius at draft")[1].split("Needs a person")[0]


def test_without_a_policy_the_page_says_how_to_give_one(client: TestClient, world: World) -> None:
    token = _viewer(world)
    page = client.get("/autonomy", headers={"Authorization": f"Bearer {token}"})
    assert page.status_code == 200 and "opsgate serve --policy" in page.text
    assert client.get("/autonomy").status_code == 401
