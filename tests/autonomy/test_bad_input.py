"""The issue's bad-input cases for expanding autonomy, at the command line: a clear one-line
error, exit 2, and nothing changed (no stage row, no audit event). Evidence made under another
policy version is a refusal instead (exit 1): tests/autonomy/test_promotion_evidence.py; a
replay window with no recorded calls says so with exit 0: tests/replay/test_cli.py."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from opsgate.cli.main import app
from opsgate.store import audit_events, open_store, workflow_stages
from tests.conftest import BASE_POLICY

runner = CliRunner(env={"COLUMNS": "200", "NO_COLOR": "1"})


@pytest.fixture
def world(tmp_path: Path) -> tuple[list[str], str]:
    """The policy at draft, and a database."""
    path = tmp_path / "p.yaml"
    path.write_text(BASE_POLICY % {"stage": "draft"})
    url = f"sqlite:///{tmp_path / 'o.db'}"
    open_store(url).close()
    return ["--policy", str(path), "--tools", "tests.conftest", "--db", url], url


def _unchanged(url: str) -> bool:
    with open_store(url) as store, store.engine.connect() as conn:
        stages = conn.execute(select(func.count()).select_from(workflow_stages)).scalar()
        events = conn.execute(select(func.count()).select_from(audit_events)).scalar()
    return stages == 0 and events == 0


@pytest.mark.parametrize(
    ("command", "said"),
    [
        (["autonomy", "promote", "nope", "--as", "lea"], "no workflow `nope`"),
        (["autonomy", "demote", "nope", "--to", "read_only", "--as", "l", "--reason", "r"],
         "no workflow `nope`"),
        (["preflight", "nope"], "no workflow `nope`"),
        (["autonomy", "promote", "wf", "--as", "lea", "--to", "write_with_aproval"],
         "unknown stage `write_with_aproval`"),
        (["autonomy", "demote", "wf", "--to", "read-only", "--as", "l", "--reason", "r"],
         "unknown stage `read-only`"),
        (["autonomy", "promote", "wf", "--as", "lea", "--to", "autonomous_in_scope"],
         "it goes to write_with_approval next, not autonomous_in_scope"),
        (["autonomy", "promote", "wf", "--as", " "], "names who makes it"),
    ],
)  # fmt: skip
def test_bad_input_is_exit_2_and_changes_nothing(
    world: tuple[list[str], str], command: list[str], said: str
) -> None:
    options, url = world
    out = runner.invoke(app, [*command, *options])
    assert out.exit_code == 2, out.output
    assert said in out.output and "Traceback" not in out.output
    assert _unchanged(url)


@pytest.mark.parametrize("window", ["0h", "-1d", "0d"])
def test_a_quota_with_a_zero_or_negative_window_is_refused(tmp_path: Path, window: str) -> None:
    text = (BASE_POLICY % {"stage": "draft"}).replace(
        "    provenance:\n",
        f"    quotas:\n      send: {{max: 5, per: {window!r}}}\n    provenance:\n",
    )
    path = tmp_path / "p.yaml"
    path.write_text(text)
    out = runner.invoke(app, ["policy", "check", str(path), "--tools", "tests.conftest"])
    assert out.exit_code == 2, out.output
    assert "quotas.send.per" in out.output and "Traceback" not in out.output
