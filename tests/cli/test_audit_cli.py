"""`opsgate audit` and the demo's audit trail, through the real CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from typer.testing import CliRunner

from opsgate.audit import verify_inclusion_document
from opsgate.cli.main import app

runner = CliRunner()


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("OPSGATE_HOME", str(tmp_path / "og"))
    monkeypatch.delenv("OPSGATE_DATABASE_URL", raising=False)
    monkeypatch.delenv("OPSGATE_AUDIT_SIGNING_KEY", raising=False)
    monkeypatch.setenv("COLUMNS", "200")
    result = runner.invoke(app, ["demo", "--no-model"])
    assert result.exit_code == 0, result.output
    assert "signed checkpoints, verified" in result.output
    return tmp_path / "og"


def test_verify_ok_then_tampered(home: Path) -> None:
    result = runner.invoke(app, ["audit", "verify"])
    assert result.exit_code == 0 and "events" in result.output
    engine = create_engine(f"sqlite:///{home / 'opsgate.db'}")
    with engine.begin() as conn:
        conn.execute(text("DROP TRIGGER audit_events_no_update"))
        conn.execute(text("UPDATE audit_events SET body = CAST('{}' AS BLOB) WHERE seq = 7"))
    engine.dispose()
    result = runner.invoke(app, ["audit", "verify"])
    assert result.exit_code == 1
    assert "FAILED at event 7" in result.output


def test_verify_with_an_out_of_band_public_key(home: Path, tmp_path: Path) -> None:
    from opsgate.audit import Signer

    pem = Signer.from_file(home / "audit-signing.key", create=False).public_pem()
    (tmp_path / "pub.pem").write_text(pem)
    assert (
        runner.invoke(app, ["audit", "verify", "--public-key", str(tmp_path / "pub.pem")]).exit_code
        == 0
    )
    (tmp_path / "other.pem").write_text(Signer.generate().public_pem())
    result = runner.invoke(app, ["audit", "verify", "--public-key", str(tmp_path / "other.pem")])
    assert result.exit_code == 1 and "unknown key" in result.output


def test_prove_prints_a_document_that_verifies(home: Path) -> None:
    result = runner.invoke(app, ["audit", "prove", "5"])
    assert result.exit_code == 0, result.output
    document = json.loads(result.output)
    assert verify_inclusion_document(document, document["public_key"])
    result = runner.invoke(app, ["audit", "prove", "99999"])
    assert result.exit_code == 2 and "no event 99999: the log holds" in result.output


def test_show_tells_the_story_of_a_run(home: Path) -> None:
    engine = create_engine(f"sqlite:///{home / 'opsgate.db'}")
    with engine.connect() as conn:
        run_id = conn.execute(
            text("SELECT run_id FROM runs WHERE status = 'escalated'")
        ).scalar_one()
    engine.dispose()
    result = runner.invoke(app, ["audit", "show", run_id[:10]])
    assert result.exit_code == 0, result.output
    for needle in (
        "invoked by support-desk:maria",
        "read request (trusted)",
        "cap_exceeded",
        "escalated",
    ):
        assert needle in result.output
    assert runner.invoke(app, ["audit", "show", "zzzz"]).exit_code == 2


def test_checkpoint_command(home: Path) -> None:
    result = runner.invoke(app, ["audit", "checkpoint"])
    assert result.exit_code == 0 and "nothing new" in result.output


def test_audit_on_a_missing_or_foreign_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bad = tmp_path / "x.db"
    bad.write_bytes(b"garbage" * 500)
    result = runner.invoke(app, ["audit", "verify", "--db", f"sqlite:///{bad}"])
    assert result.exit_code == 2 and "not a usable SQLite database" in result.output
    assert "Traceback" not in result.output
