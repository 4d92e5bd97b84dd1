"""`opsgate runs list` and `opsgate cost`, through the real CLI, on a temporary SQLite store."""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from opsgate.cli.main import app
from opsgate.store import Store, cost_entries, open_store, runs

runner = CliRunner()
HOSTILE = "mallory [/] \x1b[2J [red]x[/red]"


def _run(
    run_id: str,
    started_at: float,
    *,
    workflow: str = "refunds",
    invoker: str = "alice",
    agent: str = "bot",
    policy: str = "p1",
    status: str = "completed",
) -> dict[str, Any]:
    return {
        "run_id": run_id,
        "workflow": workflow,
        "invoker": invoker,
        "agent_id": agent,
        "policy_version": policy,
        "status": status,
        "reason": "",
        "cost_usd": 0.0,
        "tool_calls": 1,
        "started_at": started_at,
        "ended_at": started_at + 2.0,
        "elapsed_s": 2.0,
    }


def _entry(
    run_id: str, workflow: str, at: float, cost: float, model: str = "small"
) -> dict[str, Any]:
    return {
        "run_id": run_id,
        "workflow": workflow,
        "at": at,
        "kind": "model",
        "role": "act",
        "model": model,
        "tool": None,
        "input_tokens": 100,
        "output_tokens": 10,
        "cached_input_tokens": 0,
        "cost_usd": cost,
        "estimate": False,
        "latency_s": 0.5,
        "cache_hit": False,
        "attempts": 1,
        "ok": True,
    }


@pytest.fixture
def db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setenv("COLUMNS", "250")
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    store: Store = open_store(url)
    now = time.time()
    rows = [
        _run("run-a", now - 10 * 86_400, workflow="refunds", status="completed"),
        _run("run-b", now - 3600 * 5, workflow="refunds", status="escalated", invoker="bob"),
        _run("run-c", now - 3600 * 4, workflow="triage", status="failed", agent="other"),
        _run("run-d", now - 3600 * 3, workflow="triage", status="completed", policy="p2"),
        _run("run-e", now - 3600 * 2, workflow="refunds", status="completed", invoker=HOSTILE),
    ]
    entries = [
        _entry("run-a", "refunds", now - 10 * 86_400, 5.0),
        _entry("run-b", "refunds", now - 3600 * 5, 0.25, model="big"),
        _entry("run-c", "triage", now - 3600 * 4, 0.1),
        _entry("run-d", "triage", now - 3600 * 3, 0.3),
        _entry("run-e", "refunds", now - 3600 * 2, 0.75, model="evil [/] \x1b[2J"),
    ]
    with store.engine.begin() as conn:
        conn.execute(runs.insert(), rows)
        conn.execute(cost_entries.insert(), entries)
    store.close()
    yield url


def _ids(output: str) -> list[str]:
    table = "\n".join(line for line in output.splitlines() if not line.startswith("more:"))
    return re.findall(r"run-[a-e]", table)


def _invoke(*args: str) -> str:
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result.output


def test_runs_newest_first_and_filters(db: str) -> None:
    assert _ids(_invoke("runs", "list", "--db", db)) == [
        "run-e",
        "run-d",
        "run-c",
        "run-b",
        "run-a",
    ]
    assert _ids(_invoke("runs", "list", "--db", db, "--since", "7d")) == [
        "run-e",
        "run-d",
        "run-c",
        "run-b",
    ]
    assert _ids(_invoke("runs", "list", "--db", db, "--workflow", "triage")) == ["run-d", "run-c"]
    assert _ids(_invoke("runs", "list", "--db", db, "--status", "failed")) == ["run-c"]
    assert _ids(_invoke("runs", "list", "--db", db, "--escalated")) == ["run-b"]
    assert _ids(_invoke("runs", "list", "--db", db, "--invoker", "bob")) == ["run-b"]
    assert _ids(_invoke("runs", "list", "--db", db, "--agent", "other")) == ["run-c"]
    assert _ids(_invoke("runs", "list", "--db", db, "--policy-version", "p2")) == ["run-d"]
    out = _invoke("runs", "list", "--db", db, "--workflow", "nope")
    assert "no runs match" in out


def test_runs_keyset_pagination(db: str) -> None:
    seen: list[str] = []
    args = ["runs", "list", "--db", db, "--limit", "2"]
    before: list[str] = []
    for _ in range(5):
        out = _invoke(*args, *before)
        seen += _ids(out)
        match = re.search(r"more: --before (\S+)", out)
        if match is None:
            break
        before = ["--before", match.group(1)]
    assert seen == ["run-e", "run-d", "run-c", "run-b", "run-a"]
    # a bare start time is a cursor too: runs that started strictly before it
    started = before[1].split(":")[0]  # run-b's, the last of the second page
    assert _ids(_invoke("runs", "list", "--db", db, "--before", started)) == ["run-a"]
    result = runner.invoke(app, ["runs", "list", "--db", db, "--before", "yesterday"])
    assert result.exit_code == 2 and "--before takes" in result.output


def test_hostile_text_is_shown_inert(db: str) -> None:
    out = _invoke("runs", "list", "--db", db, "--limit", "1")
    assert "\x1b" not in out
    assert "␛[2J" in out and "[/]" in out and "[red]x[/red]" in out
    out = _invoke("cost", "--db", db, "--by", "model")
    assert "\x1b" not in out and "␛[2J" in out and "evil [/]" in out


def test_cost_by_workflow(db: str) -> None:
    out = _invoke("cost", "--db", db)
    lines = {line.split("│")[1].strip(): line for line in out.splitlines() if "│" in line}
    # refunds in the last 7 days: 0.25 + 0.75 spent, 2 runs, 1 success -> $1.00 per success
    assert re.search(r"\$1\.0000\s*│\s*2\s*│\s*1\s*│\s*50\.0%\s*│\s*\$1\.0000", lines["refunds"])
    assert re.search(r"\$0\.4000\s*│\s*2\s*│\s*1\s*│\s*50\.0%\s*│\s*\$0\.4000", lines["triage"])
    assert re.search(r"\$1\.4000\s*│\s*4\s*│\s*2\s*│\s*│\s*\$0\.7000", lines["total"])
    out = _invoke("cost", "--db", db, "--since", "30d")
    assert "$6.4000" in out  # run-a's spend, ten days back, is in a 30-day window


def test_cost_by_day_and_model(db: str) -> None:
    out = _invoke("cost", "--db", db, "--by", "day", "--since", "2d")
    assert "cost by UTC day" in out
    assert "$5.0000" not in out  # run-a's spend is ten days back
    out = _invoke("cost", "--db", db, "--by", "model")
    assert "big" in out and "$0.2500" in out and "small" in out
    out = _invoke("cost", "--db", db, "--by", "model", "--since", "1m")
    assert "nothing recorded in the window (--since 1m)" in out
    result = runner.invoke(app, ["cost", "--db", db, "--by", "planet"])
    assert result.exit_code == 2


@pytest.mark.parametrize("args", [["runs", "list"], ["cost"], ["cost", "--by", "day"]])
def test_nothing_recorded_yet(args: list[str], tmp_path: Path) -> None:
    home = Path(os.environ["OPSGATE_HOME"])
    before = sorted(home.rglob("*")) if home.exists() else []
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert len(result.output.strip().splitlines()) == 1
    after = sorted(home.rglob("*")) if home.exists() else []
    assert after == before and not (home / "opsgate.db").exists()
    missing = tmp_path / "none.db"
    result = runner.invoke(app, [*args, "--db", f"sqlite:///{missing}"])
    assert result.exit_code == 0 and not missing.exists()
