"""`opsgate policy replay` on a recorded store: tables, JSON, exit codes, bad input, and
hostile stored text printed as text."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from opsgate.audit import AuditLog, Signer
from opsgate.cli.main import app
from opsgate.recorder import Event, EventType
from opsgate.store import Store, open_store
from tests.replay._record import LIVE, LOOSER, STRICTER, Recorded, record_runs

# not a terminal: any ESC in the output came from the data
runner = CliRunner(
    env={"COLUMNS": "200", "NO_COLOR": "1", "TTY_COMPATIBLE": "0", "FORCE_COLOR": None}
)
HOSTILE = "[/] [bold red]pwned \x1b[2J\x1b]0;title\x07\u202e"


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str, Recorded]]:
    """A recorded store and the policy files: live, stricter, looser."""
    folder = tmp_path_factory.mktemp("replay-cli")
    url = f"sqlite:///{folder / 'opsgate.db'}"
    store = open_store(url)
    try:
        done = asyncio.run(record_runs(store))
    finally:
        store.close()
    for name, text in (("live", LIVE), ("stricter", STRICTER), ("looser", LOOSER)):
        (folder / f"{name}.yaml").write_text(text)
    yield folder, url, done


def _replay(world: tuple[Path, str, Recorded], name: str, *extra: str) -> Result:
    folder, url, _ = world
    args = [str(folder / f"{name}.yaml"), "--tools", "tests.conftest", "--db", url, "--since", "1h"]
    return runner.invoke(app, ["policy", "replay", *args, *extra])


def _clean(result: Result, code: int) -> str:
    output = result.output
    assert result.exit_code == code, (result.exit_code, result.exception, output[-2000:])
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "Traceback" not in output and "MarkupError" not in output
    assert "\x1b" not in output and "\u202e" not in output
    return output


def test_the_live_policy_changes_nothing_but_a_masked_value(
    world: tuple[Path, str, Recorded],
) -> None:
    output = _clean(_replay(world, "live", "--fail-on-deny"), 0)
    assert "1 changed" in output and "newly denied that ran: 0 (+1 on masked values)" in output
    assert "send *" in output and "masked" in output
    assert "replay follows the record" in output


def test_a_stricter_policy_fails_on_deny(world: tuple[Path, str, Recorded]) -> None:
    output = _clean(_replay(world, "stricter"), 0)  # without --fail-on-deny: a report
    assert "newly denied: 3" in output and "arg_constraint" in output
    assert "must be at most 50, not 80" in output
    output = _clean(_replay(world, "stricter", "--fail-on-deny"), 1)
    assert "newly denied that ran: 1" in output


def test_a_looser_policy_lists_what_it_would_allow(world: tuple[Path, str, Recorded]) -> None:
    output = _clean(_replay(world, "looser", "--fail-on-deny"), 0)
    assert "newly allowed: 2" in output


def test_json_lists_every_change(world: tuple[Path, str, Recorded]) -> None:
    _, _, done = world
    result = _replay(world, "stricter", "--json", "--fail-on-deny")
    document = json.loads(_clean(result, 1))
    assert document["summary"]["newly_denied_that_ran"] == 1
    ran = [c for c in document["changes"] if c["ran"] and not c["masked"]]
    assert [(c["run_id"], c["tool"], c["before"]["effect"], c["after"]["effect"]) for c in ran] == [
        (done.runs["approvals"], "pay", "needs_approval", "deny")
    ]


def test_a_window_with_no_calls_says_so(world: tuple[Path, str, Recorded], tmp_path: Path) -> None:
    folder, _, _ = world
    empty = f"sqlite:///{tmp_path / 'empty.db'}"
    open_store(empty).close()
    for db in (empty, f"sqlite:///{tmp_path / 'none.db'}"):  # migrated and empty; no file
        args = [str(folder / "live.yaml"), "--tools", "tests.conftest", "--db", db]
        result = runner.invoke(app, ["policy", "replay", *args, "--fail-on-deny"])
        assert "no recorded calls" in _clean(result, 0)
    assert not (tmp_path / "none.db").exists()  # a read never makes a database


@pytest.mark.parametrize(
    ("extra", "said"),
    [
        (["--workflow", "nope"], "no workflow `nope`"),
        (["--since", "last tuesday"], "--since takes 7d"),
        (["--since", "0d"], "more than zero"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    world: tuple[Path, str, Recorded], extra: list[str], said: str
) -> None:
    result = _replay(world, "live", *extra)
    assert result.exit_code == 2 and said in result.output
    assert "Traceback" not in result.output


def test_a_policy_that_does_not_load_is_exit_2(
    world: tuple[Path, str, Recorded], tmp_path: Path
) -> None:
    _, url, _ = world
    broken = tmp_path / "broken.yaml"
    broken.write_text(LIVE.replace("max: 200", "max: [200"))
    unknown_tool = tmp_path / "unknown.yaml"
    unknown_tool.write_text(LIVE.replace("      slow:", "      refund: {}\n      slow:"))
    for path in (broken, unknown_tool, tmp_path / "missing.yaml"):
        result = runner.invoke(
            app, ["policy", "replay", str(path), "--tools", "tests.conftest", "--db", url]
        )
        assert result.exit_code == 2, result.output
        assert result.output.startswith("error:") and "Traceback" not in result.output


def _hostile_run(store: Store) -> str:
    """A run whose stored events carry markup and terminal controls where text goes."""
    run_id = uuid.uuid4().hex
    call = {"call_id": HOSTILE, "tool": HOSTILE}
    events = [
        (EventType.RUN_STARTED, {"workflow": "wf", "invoker": HOSTILE, "agent_id": "bot",
                                 "policy_version": HOSTILE, "request": HOSTILE}),
        (EventType.CONTEXT_READ, {"source": HOSTILE, "trust": "untrusted", "text": HOSTILE}),
        (EventType.TOOL_CALL_PROPOSED, {**call, "args": {"to": HOSTILE}}),
        (EventType.DECISION, {**call, "effect": "allow", "reason": HOSTILE, "rule": HOSTILE,
                              "message": HOSTILE}),
        (EventType.TOOL_RESULT, {**call, "result": {"body": HOSTILE}, "trust": HOSTILE}),
        (EventType.RUN_ENDED, {"status": "completed", "reason": HOSTILE}),
    ]  # fmt: skip
    log = AuditLog(store, Signer.generate())
    try:
        log.append([Event(t, run_id, n, time.time(), d) for n, (t, d) in enumerate(events)])
    finally:
        log.close()
    return run_id


def test_hostile_stored_text_is_printed_as_text(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'hostile.db'}"
    store = open_store(url)
    try:
        _hostile_run(store)
    finally:
        store.close()
    policy = tmp_path / "live.yaml"
    policy.write_text(LIVE)
    args = ["policy", "replay", str(policy), "--tools", "tests.conftest", "--db", url]
    output = _clean(runner.invoke(app, [*args, "--fail-on-deny"]), 1)
    assert "tool_not_allowed" in output and "[/] [bold red]pwned" in output
    assert "\u241b[2J" in output  # ESC shown as a symbol: inert
    document = json.loads(_clean(runner.invoke(app, [*args, "--json"]), 0))
    (change,) = document["changes"]
    assert change["tool"] == HOSTILE and change["before"]["reason"] == HOSTILE


@pytest.mark.parametrize(
    "extra",
    [
        ["--since", "99999999d"],
        ["--since", "-1d"],
        ["--since", "\x1b[2J[/]"],
        ["--workflow", HOSTILE],
        ["--db", "nonsense"],
        ["--db", "sqlite:////no/such/folder/x.db"],
        ["--db", "postgresql://fuzz@127.0.0.1:1/none"],
        ["--tools", ".x"],
        ["--tools", HOSTILE],
    ],
)
def test_odd_options_end_as_a_command_line_should(
    world: tuple[Path, str, Recorded], extra: list[str]
) -> None:
    for command in (["policy", "replay", str(world[0] / "live.yaml")], ["policy", "shadow-report"]):
        if extra[0] == "--tools" and command[1] == "shadow-report":
            continue
        result = runner.invoke(app, [*command, "--db", world[1], *extra])
        assert result.exit_code in (0, 2), (command, extra, result.output)
        assert result.exception is None or isinstance(result.exception, SystemExit)
        assert "Traceback" not in result.output and "\x1b" not in result.output
