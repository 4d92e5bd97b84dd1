"""Retention: traces expire; old audit segments are archived (verifiably) and dropped,
and the remaining log still verifies, proves and rejects tampering."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, insert, select, text
from typer.testing import CliRunner

from opsgate.audit import AuditLog, Signer, verify_archive, verify_inclusion_document
from opsgate.cli.main import app
from opsgate.errors import AuditIntegrityError
from opsgate.recorder import Event, EventType
from opsgate.retention import apply_retention
from opsgate.store import Store, open_store, spans

DAY = 86400.0
NOW = 1_800_000_000.0


def _events(n: int, start: int, at: float) -> list[Event]:
    return [Event(EventType.STEP, "r", start + i, at + i, {"i": start + i}) for i in range(n)]


@pytest.fixture
def store(db_url: str) -> Any:
    s = open_store(db_url)
    yield s
    s.close()


def _fill(store: Store) -> AuditLog:
    log = AuditLog(store, Signer.generate())
    log.append(_events(5, 0, NOW - 400 * DAY))
    log.checkpoint()  # at 5: 400 days old
    log.append(_events(4, 5, NOW - 380 * DAY))
    log.checkpoint()  # at 9: 380 days old
    log.append(_events(3, 9, NOW - 10 * DAY))
    log.checkpoint()  # at 12: recent
    return log


def test_old_segments_are_archived_and_the_log_still_verifies(store: Store, tmp_path: Path) -> None:
    log = _fill(store)
    with store.engine.begin() as conn:
        conn.execute(
            insert(spans),
            [
                {
                    "span_id": f"{i:016x}",
                    "trace_id": "0" * 32,
                    "run_id": "r",
                    "name": "x",
                    "kind": "INTERNAL",
                    "start_ns": int((NOW - d * DAY) * 1e9),
                    "end_ns": 0,
                    "status": "OK",
                    "attributes": "{}",
                    "events": "[]",
                }
                for i, d in enumerate((40, 31, 2))
            ],
        )
    report = apply_retention(store, traces_days=30, audit_days=365, archive_dir=tmp_path, now=NOW)
    assert report.spans_deleted == 2
    [segment] = report.segments
    assert (segment.from_seq, segment.to_seq) == (0, 9)
    document = json.loads(segment.path.read_text())
    assert verify_archive(document) == 9
    assert log.size() == 3 and log.retention_mark() == 9
    assert log.verify().events == 12
    # proofs still work: archived leaves come back from the archive file
    proof = log.inclusion(10)
    assert verify_inclusion_document(proof, proof["public_key"])
    assert verify_inclusion_document(log.inclusion(2), proof["public_key"])
    # a second pass finds nothing more to archive
    again = apply_retention(store, traces_days=30, audit_days=365, archive_dir=tmp_path, now=NOW)
    assert again.segments == [] and again.spans_deleted == 0
    with store.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(spans)).scalar() == 1


def test_retained_events_cannot_be_deleted_and_marks_cannot_be_edited(
    store: Store, tmp_path: Path
) -> None:
    _fill(store)
    apply_retention(store, audit_days=365, archive_dir=tmp_path, now=NOW)
    with pytest.raises(Exception, match="append-only"), store.engine.begin() as conn:
        conn.execute(text("DELETE FROM audit_events WHERE seq = 10"))
    with pytest.raises(Exception, match="append-only"), store.engine.begin() as conn:
        conn.execute(text("UPDATE audit_retention SET upto = 12"))


def test_tampered_archive_is_detected(store: Store, tmp_path: Path) -> None:
    _fill(store)
    [segment] = apply_retention(store, audit_days=365, archive_dir=tmp_path, now=NOW).segments
    document = json.loads(segment.path.read_text())
    document["events"][3] = document["events"][3].replace('"i":3', '"i":33')
    with pytest.raises(AuditIntegrityError, match="do not match the signed checkpoint"):
        verify_archive(document)
    stranger = Signer.generate()
    with pytest.raises(AuditIntegrityError, match="does not verify"):
        verify_archive(json.loads(segment.path.read_text()), {stranger.key_id: stranger.public_key})
    (tmp_path / "bad.json").write_text(json.dumps(document))
    result = CliRunner().invoke(app, ["audit", "verify-archive", str(tmp_path / "bad.json")])
    assert result.exit_code == 1 and "FAILED" in result.output
    result = CliRunner().invoke(app, ["audit", "verify-archive", str(segment.path)])
    assert result.exit_code == 0 and "9 events" in result.output


def test_cli_retention(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'r.db'}"
    store = open_store(url)
    log = AuditLog(store, Signer.generate())
    log.append(_events(3, 0, 1000.0))  # 1970: very old
    log.checkpoint()
    store.close()
    runner = CliRunner()
    result = runner.invoke(app, ["retention", "apply", "--db", url, "--dry-run"])
    assert result.exit_code == 0 and "would delete 0 spans" in result.output
    result = runner.invoke(
        app, ["retention", "apply", "--db", url, "--archive-dir", str(tmp_path / "arch")]
    )
    assert result.exit_code == 0, result.output
    assert "archived events 0..2" in result.output
    assert runner.invoke(app, ["audit", "verify", "--db", url]).exit_code == 0
    result = runner.invoke(app, ["retention", "apply", "--db", url, "--audit-days", "-1"])
    assert result.exit_code == 2 and "positive" in result.output


def test_cli_retention_on_a_fresh_install_has_nothing_to_do(tmp_path: Path) -> None:
    """A cron job set up before anything was recorded: exit 0, and no database made."""
    path = tmp_path / "none.db"
    result = CliRunner().invoke(app, ["retention", "apply", "--db", f"sqlite:///{path}"])
    assert result.exit_code == 0, result.output
    assert "nothing recorded yet" in result.output and not path.exists()
