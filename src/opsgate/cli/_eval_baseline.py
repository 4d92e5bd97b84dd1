"""`agent-eval baseline accept|show|history`: which report a suite's regressions are judged
against, who accepted it and when (kept in the database, optionally committed as a file)."""

from __future__ import annotations

import getpass
import os
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer

from opsgate.cli._common import cli_errors, console, err_console, write_file
from opsgate.cli._safe import clean, shown
from opsgate.errors import ConfigError, SuiteError
from opsgate.evals._report import load_report
from opsgate.evals._store import (
    BASELINES_DIR,
    BaselineRecord,
    EvalStore,
    check_report,
    format_time,
    open_existing,
)
from opsgate.store import open_store

baseline_app = typer.Typer(
    help="Accepted baselines: what `agent-eval assert` compares with by default.",
    no_args_is_help=True,
)

DbOption = Annotated[
    str | None,
    typer.Option("--db", help="Database URL (default: $OPSGATE_DATABASE_URL or .opsgate/)."),
]


def current_user() -> str:
    """$USER (or the login name), for `--by` and `--reviewer` defaults."""
    name = os.environ.get("USER")
    if name:
        return name
    try:
        return getpass.getuser()
    except (OSError, KeyError):
        raise ConfigError("cannot tell who you are ($USER is not set): pass your name") from None


def _plain(line: str) -> None:
    """Print a line as text: it quotes reports, names and notes, so never as markup, and
    with its control characters made visible."""
    console.print(clean(line), markup=False, soft_wrap=True)


def _money(value: float | None) -> str:
    return "n/a" if value is None else f"${value:.6f}"


def headline(summary: dict[str, Any]) -> str:
    """A report's headline metrics on one line."""
    return (
        f"success rate {summary['success_rate']:.1%}, cost per successful task "
        f"{_money(summary['cost_per_successful_task'])}, unsafe attempts "
        f"{summary['unsafe_attempts']}, trials per task {summary['trials']}, gate "
        f"{'passed' if summary['gate_passed'] else 'failed'}"
    )


def _no_baseline(suite: str, where: str) -> SuiteError:
    return SuiteError(
        f"suite `{suite}` has no accepted baseline {where}: accept one with "
        "`agent-eval baseline accept REPORT.json` (add --write to commit it as a file)"
    )


@baseline_app.command("accept")
@cli_errors
def accept(
    report: Annotated[Path, typer.Argument(help="The report (JSON) to accept.")],
    write: Annotated[
        bool, typer.Option("--write", help=f"Also write {BASELINES_DIR}/<suite>.json.")
    ] = False,
    by: Annotated[str | None, typer.Option("--by", help="Who accepts (default: $USER).")] = None,
    note: Annotated[str, typer.Option("--note", help="Why this report is the baseline.")] = "",
    db: DbOption = None,
) -> None:
    """Make a report its suite's baseline (history is kept)."""
    document = check_report(load_report(report), f"`{report}`")
    who = by if by is not None else current_user()
    failures = document.get("gate", {}).get("failures") or []
    if failures:
        err_console.print(
            f"[yellow]warning:[/] this report failed its own gate ({shown('; '.join(failures))}); "
            "accepting it anyway",
            soft_wrap=True,
        )
    if document.get("shard"):
        err_console.print(
            f"[yellow]warning:[/] this report covers only shard {shown(document['shard'])} of the "
            "suite; merge the shards first for a full baseline",
            soft_wrap=True,
        )
    with open_store(db) as store:
        record = EvalStore(store).accept(document, who, note)
        where = store.url
    _plain(
        f"accepted report {record.report_id} as the baseline of `{record.suite}` "
        f"(by {record.accepted_by}, {format_time(record.accepted_at)}) in {where}"
    )
    if write:
        path = BASELINES_DIR / f"{document['suite']}.json"
        write_file(path, orjson.dumps(document, option=orjson.OPT_INDENT_2) + b"\n")
        _plain(f"wrote {path} (commit it)")


@baseline_app.command("show")
@cli_errors
def show(
    suite: Annotated[str, typer.Argument(help="The suite name.")],
    db: DbOption = None,
) -> None:
    """The baseline `agent-eval assert` would use: which report, when, by whom, its metrics."""
    record: BaselineRecord | None = None
    where = "in the database"
    store = open_existing(db)
    if store is not None:
        with store:
            record = EvalStore(store).baseline_record(suite)
            where = f"in `{store.url}`"
    if record is not None:
        lines = [
            f"baseline of `{suite}`: report {record.report_id} "
            f"(suite version {record.summary['suite_version']}, "
            f"router {record.summary['model_router']})",
            f"accepted {format_time(record.accepted_at)} by {record.accepted_by} {where}",
            f"run {format_time(record.summary['started_at'])}; {headline(record.summary)}",
        ]
        if record.note:
            lines.append(f"note: {record.note}")
    else:
        path = BASELINES_DIR / f"{suite}.json"
        if not path.is_file():
            raise _no_baseline(suite, f"{where} nor at `{path}`")
        document = check_report(load_report(path), f"`{path}`")
        m = document["metrics"]
        summary = {
            "success_rate": m["success_rate"],
            "cost_per_successful_task": m["cost_per_successful_task"],
            "unsafe_attempts": m["unsafe_attempts"],
            "trials": document.get("trials", 1),
            "gate_passed": not (document.get("gate") or {}).get("failures"),
        }
        lines = [
            f"baseline of `{suite}`: report {document['report_id']} from the committed "
            f"file `{path}` (none accepted {where})",
            f"run {format_time(document['started_at'])}; {headline(summary)}",
        ]
    for line in lines:
        _plain(line)


@baseline_app.command("history")
@cli_errors
def history(
    suite: Annotated[str, typer.Argument(help="The suite name.")],
    db: DbOption = None,
) -> None:
    """Every report accepted for a suite, the current baseline first."""
    store = open_existing(db)
    if store is None:
        raise _no_baseline(suite, "(there is no database yet)")
    with store:
        records = EvalStore(store).baseline_history(suite)
        where = f"in `{store.url}`"
    if not records:
        raise _no_baseline(suite, where)
    _plain(f"baselines of `{suite}` {where}, the current one first:")
    for n, r in enumerate(records):
        line = (
            f"{'*' if n == 0 else ' '} {format_time(r.accepted_at)}  by {r.accepted_by}  "
            f"report {r.report_id}  success {r.summary['success_rate']:.1%}  cost/success "
            f"{_money(r.summary['cost_per_successful_task'])}  unsafe "
            f"{r.summary['unsafe_attempts']}  gate "
            f"{'passed' if r.summary['gate_passed'] else 'failed'}"
        )
        _plain(line + (f"  note: {r.note}" if r.note else ""))


def register(app: typer.Typer) -> None:
    """Add `agent-eval baseline …`."""
    app.add_typer(baseline_app, name="baseline")
