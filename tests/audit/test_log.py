"""The audit trail on both backends: appends, verification, tamper detection, proofs."""

from __future__ import annotations

import hashlib
import threading
import time
from typing import Any

import pytest
from sqlalchemy import Engine, text

from opsgate.audit import AuditLog, Signer, verify_consistency, verify_inclusion_document
from opsgate.errors import AuditIntegrityError
from opsgate.recorder import Event, EventType
from opsgate.store import Store, open_store


def _events(n: int, run_id: str = "r1", start: int = 0) -> list[Event]:
    return [
        Event(EventType.STEP, run_id, start + i, time.time(), {"step": start + i}) for i in range(n)
    ]


@pytest.fixture
def store(db_url: str) -> Any:
    s = open_store(db_url)
    yield s
    s.close()


@pytest.fixture
def log(store: Store) -> AuditLog:
    return AuditLog(store, Signer.generate())


def _unguard(engine: Engine) -> None:
    """What an attacker with database access does first: remove the append-only guards."""
    with engine.begin() as conn:
        if engine.dialect.name == "sqlite":
            for name in ("no_update", "no_delete"):
                conn.execute(text(f"DROP TRIGGER audit_events_{name}"))
        else:
            conn.execute(text("ALTER TABLE audit_events DISABLE TRIGGER USER"))


def test_append_and_verify(log: AuditLog) -> None:
    assert log.append(_events(3)) == [0, 1, 2]
    assert log.append(_events(2, "r2")) == [3, 4]
    cp = log.checkpoint()
    assert cp is not None and cp.tree_size == 5
    assert log.checkpoint() is None
    report = log.verify()
    assert (report.events, report.checkpoints) == (5, 1)
    assert [r.seq for r in log.records("r2")] == [3, 4]
    assert log.records("r2")[0].data == {"step": 0}


def test_body_is_canonical_and_versioned(log: AuditLog, store: Store) -> None:
    log.append([Event(EventType.DECISION, "r", 0, 1.5, {"b": 1, "a": [2, 1]})])
    with store.engine.connect() as conn:
        body = bytes(conn.execute(text("SELECT body FROM audit_events")).scalar_one())
    assert body == (
        b'{"at":1.5,"data":{"a":[2,1],"b":1},"run_id":"r","seq":0,"type":"decision","v":1}'
    )


def test_database_rejects_update_and_delete(log: AuditLog, store: Store) -> None:
    log.append(_events(2))
    for statement in ("UPDATE audit_events SET type = 'x'", "DELETE FROM audit_events"):
        with pytest.raises(Exception, match="append-only"), store.engine.begin() as conn:
            conn.execute(text(statement))
    assert log.size() == 2


def test_edited_event_is_named(log: AuditLog, store: Store) -> None:
    log.append(_events(5))
    _unguard(store.engine)
    with store.engine.begin() as conn:
        conn.execute(
            text("UPDATE audit_events SET body = :b WHERE seq = 2"), {"b": b'{"forged":true}'}
        )
    with pytest.raises(AuditIntegrityError) as info:
        log.verify()
    assert info.value.seq == 2 and "edited" in str(info.value)


def test_deleted_event_is_named(log: AuditLog, store: Store) -> None:
    log.append(_events(5))
    _unguard(store.engine)
    with store.engine.begin() as conn:
        conn.execute(text("DELETE FROM audit_events WHERE seq = 1"))
    with pytest.raises(AuditIntegrityError) as info:
        log.verify()
    assert info.value.seq == 1 and "missing" in str(info.value)


def test_reordered_events_are_named(log: AuditLog, store: Store) -> None:
    log.append(_events(5))
    _unguard(store.engine)
    with store.engine.begin() as conn:
        rows = dict(conn.execute(text("SELECT seq, body FROM audit_events")).all())
        conn.execute(text("UPDATE audit_events SET body = :b WHERE seq = 3"), {"b": rows[1]})
        conn.execute(text("UPDATE audit_events SET body = :b WHERE seq = 1"), {"b": rows[3]})
    with pytest.raises(AuditIntegrityError) as info:
        log.verify()
    assert info.value.seq == 1


def test_inserted_event_is_named(log: AuditLog, store: Store) -> None:
    log.append(_events(3))
    _unguard(store.engine)
    with store.engine.begin() as conn:
        conn.execute(text("UPDATE audit_events SET seq = seq + 100 WHERE seq >= 1"))
        conn.execute(text("UPDATE audit_events SET seq = seq - 99 WHERE seq >= 100"))
        conn.execute(
            text("INSERT INTO audit_events VALUES (1, 'r1', 'step', 0, :b, :h)"),
            {"b": b"{}", "h": bytes(32)},
        )
    with pytest.raises(AuditIntegrityError) as info:
        log.verify()
    assert info.value.seq == 1


def test_truncation_after_a_checkpoint_is_detected(log: AuditLog, store: Store) -> None:
    log.append(_events(6))
    log.checkpoint()
    _unguard(store.engine)
    with store.engine.begin() as conn:
        conn.execute(text("DELETE FROM audit_events WHERE seq >= 4"))
    with pytest.raises(AuditIntegrityError) as info:
        log.verify()
    assert info.value.seq == 4 and "truncated" in str(info.value)


def test_recomputed_chain_is_caught_by_the_signed_checkpoint(log: AuditLog, store: Store) -> None:
    log.append(_events(4))
    log.checkpoint()
    log.append(_events(4, start=4))
    log.checkpoint()
    _unguard(store.engine)
    # an attacker edits event 5 and recomputes every chain hash after it
    with store.engine.begin() as conn:
        rows = conn.execute(text("SELECT seq, body FROM audit_events ORDER BY seq")).all()
        chain = bytes(32)
        for seq, body in rows:
            body = b'{"forged":1}' if seq == 5 else bytes(body)
            leaf = hashlib.sha256(b"\x00" + body).digest()
            chain = hashlib.sha256(chain + leaf).digest()
            conn.execute(
                text("UPDATE audit_events SET body = :b, chain_hash = :h WHERE seq = :s"),
                {"b": body, "h": chain, "s": seq},
            )
    with pytest.raises(AuditIntegrityError) as info:
        log.verify()
    assert info.value.seq == 4 and "rewritten" in str(info.value)


def test_checkpoint_signed_by_another_key_is_refused(log: AuditLog) -> None:
    log.append(_events(2))
    log.checkpoint()
    stranger = Signer.generate()
    with pytest.raises(AuditIntegrityError, match="unknown key"):
        log.verify({stranger.key_id: stranger.public_key})
    assert log.verify({log.signer.key_id: log.signer.public_key}).events == 2  # type: ignore[union-attr]


def test_inclusion_proof_verifies_with_the_public_key_alone(log: AuditLog) -> None:
    log.append(_events(7))
    log.checkpoint()
    assert log.signer is not None
    pem = log.signer.public_pem()
    for seq in range(7):
        proof = log.inclusion(seq)
        assert proof["public_key"] == pem
        assert verify_inclusion_document(proof, pem)
    proof = log.inclusion(3)
    assert not verify_inclusion_document({**proof, "body": proof["body"] + " "}, pem)
    assert not verify_inclusion_document(proof, Signer.generate().public_pem())
    with pytest.raises(AuditIntegrityError, match="not covered by a checkpoint"):
        log.append(_events(1, start=7))
        log.inclusion(7)


def test_proving_an_event_that_does_not_exist_says_so(log: AuditLog) -> None:
    with pytest.raises(AuditIntegrityError, match="no event 0: the log is empty"):
        log.inclusion(0)
    log.append(_events(3))
    log.checkpoint()
    with pytest.raises(AuditIntegrityError, match=r"no event 99999: the log holds 3 event\(s\)"):
        log.inclusion(99999)  # it used to say "not covered by a checkpoint yet"
    with pytest.raises(AuditIntegrityError, match="sequence numbers start at 0"):
        log.inclusion(-1)


def test_consistency_between_checkpoints(log: AuditLog) -> None:
    log.append(_events(3))
    old = log.checkpoint()
    log.append(_events(6, start=3))
    new = log.checkpoint()
    assert old is not None and new is not None
    proof = log.consistency(old.tree_size, new.tree_size)
    assert verify_consistency(old.tree_size, new.tree_size, old.root_hash, new.root_hash, proof)
    assert not verify_consistency(old.tree_size, new.tree_size, new.root_hash, new.root_hash, proof)


def test_runs_table_follows_the_run(log: AuditLog, store: Store) -> None:
    log.append(
        [
            Event(
                EventType.RUN_STARTED,
                "run-1",
                0,
                10.0,
                {
                    "workflow": "wf",
                    "invoker": "alice",
                    "agent_id": "bot",
                    "policy_version": "v1+abc",
                },
            ),
            Event(EventType.APPROVAL_REQUESTED, "run-1", 1, 11.0, {"tool": "pay"}),
        ]
    )
    with store.engine.connect() as conn:
        assert conn.execute(text("SELECT status FROM runs")).scalar_one() == "awaiting_approval"
    log.append(
        [
            Event(
                EventType.RUN_ENDED,
                "run-1",
                2,
                12.0,
                {
                    "status": "escalated",
                    "reason": "cap_exceeded",
                    "tool_calls": 3,
                    "cost_usd": 0.5,
                    "elapsed_s": 2.0,
                },
            )
        ]
    )
    with store.engine.connect() as conn:
        row = conn.execute(
            text("SELECT invoker, status, reason, tool_calls, ended_at FROM runs")
        ).one()
    assert tuple(row) == ("alice", "escalated", "cap_exceeded", 3, 12.0)

    # an approval answered after the run ended does not bring it back (found by the soak)
    log.append([Event(EventType.APPROVAL_GRANTED, "run-1", 3, 13.0, {"tool": "pay"})])
    with store.engine.connect() as conn:
        assert conn.execute(text("SELECT status FROM runs")).scalar_one() == "escalated"


def test_secrets_and_pii_are_stored_as_salted_hashes(log: AuditLog, store: Store) -> None:
    log.append(
        [
            Event(
                EventType.TOOL_RESULT,
                "r",
                0,
                1.0,
                {"result": "mail ana.ruiz@example.com, key sk-proj-abcdefghijklmnop1234"},
            )
        ]
    )
    with store.engine.connect() as conn:
        body = bytes(conn.execute(text("SELECT body FROM audit_events")).scalar_one())
    assert b"ana.ruiz@example.com" not in body and b"sk-proj-abcdefghijklmnop1234" not in body
    proof = log.redactor.fingerprint("ana.ruiz@example.com")
    assert proof is not None and proof.encode() in body
    assert log.verify().events == 1


def test_a_checkpoint_raced_by_another_writer_is_skipped_not_doubled(
    log: AuditLog, store: Store
) -> None:
    """The events are read and hashed outside the write lock: when another writer signs
    that far meanwhile (here: between the hashing and the insert), this one inserts nothing
    and the log still verifies."""
    log.append(_events(5))
    other = AuditLog(store, Signer.generate())
    sign = log.signer.sign  # type: ignore[union-attr]
    raced: list[object] = []

    def sign_after_the_other(statement: bytes) -> bytes:
        raced.append(other.checkpoint())  # the other writer gets there first
        return sign(statement)

    log.signer.sign = sign_after_the_other  # type: ignore[method-assign, union-attr]
    assert log.checkpoint() is None
    assert raced and raced[0] is not None
    assert [cp.tree_size for cp in log.checkpoints()] == [5]
    log.signer.sign = sign  # type: ignore[method-assign, union-attr]
    log.append(_events(3, start=5))
    assert log.checkpoint() is not None  # later events: signed as usual
    assert log.verify().checkpoints == 2  # both keys are recorded in the store


def test_appends_go_on_while_a_checkpoint_hashes(log: AuditLog) -> None:
    """Appends made while a checkpoint reads and hashes the log are neither blocked nor
    lost: the checkpoint covers the size it read, the next one the rest."""
    log.append(_events(50))
    import opsgate.audit._log as log_module

    leaf_hash = log_module.leaf_hash
    appended: list[list[int]] = []
    started: list[bool] = []

    def hash_and_append(body: bytes) -> bytes:
        if not started:  # mid-hashing: another thread appends (the write lock is free)
            started.append(True)
            other = threading.Thread(
                target=lambda: appended.append(log.append(_events(2, start=50)))
            )
            other.start()
            other.join(5)
            assert not other.is_alive(), "the append waited for the checkpoint"
        return leaf_hash(body)

    log_module.leaf_hash = hash_and_append  # type: ignore[assignment]
    try:
        first = log.checkpoint()
    finally:
        log_module.leaf_hash = leaf_hash  # type: ignore[assignment]
    assert appended == [[50, 51]]
    assert first is not None and first.tree_size == 50
    second = log.checkpoint()
    assert second is not None and second.tree_size == 52
    assert log.verify().events == 52
