"""The console's batch of inclusion proofs: the same paths as `AuditLog.inclusion`, from one
read of the log; and verification still works one proof at a time when it cannot batch."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

import opsgate.server._detail as detail  # tests this module
from opsgate.audit import AuditLog, Signer
from opsgate.recorder import Event, EventType
from opsgate.server._proofs import batch_proofs, signature_ok  # tests this module
from opsgate.store import open_store
from tests.server.world import World


@pytest.mark.parametrize("size", [1, 2, 3, 7, 8, 37])
def test_batch_proofs_match_the_audit_logs(tmp_path: Path, size: int) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'o.db'}")
    log = AuditLog(store, Signer.generate())
    log.append(
        [Event(EventType.CONTEXT_READ, f"r{i % 3}", i, time.time(), {"i": i}) for i in range(size)]
    )
    checkpoint = log.checkpoint()
    assert checkpoint is not None
    proofs = batch_proofs(store, checkpoint.tree_size)
    assert proofs is not None and signature_ok(store, log.log_id, checkpoint)
    for seq in range(size):
        assert [h.hex() for h in proofs.proof(seq)] == log.inclusion(seq)["proof"]
    store.close()


def test_verification_falls_back_to_one_proof_at_a_time(
    client: TestClient, tokens: dict[str, str], world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(detail, "batch_proofs", lambda *_: None)
    bearer = {"Authorization": f"Bearer {tokens['viewer']}"}
    result = client.get(f"/api/runs/{world.denied}/verify", headers=bearer).json()
    assert result["passed"] and result["proved"] == 13
