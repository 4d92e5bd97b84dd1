"""`agent-eval baseline accept|show|history`: which report a suite's regressions are judged
against, who accepted it and when (kept in the database, optionally committed as a file).

`show` and `history` agree: the baseline is the last report accepted in the database, else
the committed ``evals/baselines/<suite>.json`` (as `agent-eval assert` picks it). `accept`
refuses a report that covers only part of its suite (a smoke run, a tag, a shard) unless
``--force`` is given: later full runs would be gated on that part only."""

from __future__ import annotations

import getpass
import os
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer

from opsgate.cli._common import cli_errors, console, err_console, write_file
from opsgate.cli._safe import clean, shown
from opsgate.errors import ConfigError, OpsgateError, SuiteError
from opsgate.evals import (
    BASELINES_DIR,
    BaselineRecord,
    EvalStore,
    check_report,
    committed_baseline,
    covered_tasks,
    format_time,
    load_report,
    load_suite,
    no_verdict,
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


def suite_size(document: dict[str, Any]) -> int | None:
    """How many tasks the report's suite has: as the report says (``suite_tasks``), else as
    the suite of that name found here says (reports of older agent-evals), else None."""
    _, total = covered_tasks(document)
    if total is not None:
        return total
    try:
        suite = load_suite(str(document["suite"]))
    except (OpsgateError, OSError):
        return None
    return len(suite.tasks) if suite.suite == document["suite"] else None


def _summary_of(document: dict[str, Any]) -> dict[str, Any]:
    """The headline metrics of a report file, as the database keeps them."""
    m = document["metrics"]
    return {
        "success_rate": m["success_rate"],
        "cost_per_successful_task": m["cost_per_successful_task"],
        "unsafe_attempts": m["unsafe_attempts"],
        "trials": document.get("trials", 1),
        "gate_passed": not (document.get("gate") or {}).get("failures"),
    }


def _accepted(db: str | None, suite: str) -> tuple[list[BaselineRecord], str]:
    """Every acceptance of ``suite`` in the database (current first), and where that is."""
    store = open_existing(db)
    if store is None:
        return [], "in the database"
    with store:
        return EvalStore(store).baseline_history(suite), f"in `{store.url}`"


def _committed(suite: str) -> tuple[Path, dict[str, Any]] | None:
    found = committed_baseline(suite)
    if found is None:
        return None
    path, document = found
    return path, check_report(document, f"`{path}`")


def _shadowed(suite: str, current: str) -> str | None:
    """A note when a committed baseline file exists but the database's baseline wins."""
    path = BASELINES_DIR / f"{suite}.json"
    if not path.is_file():
        return None
    try:
        committed = load_report(path).get("report_id")
    except SuiteError as exc:
        return f"the committed file `{path}` is not used (and is not a valid report: {exc})"
    if committed == current:
        return None
    return (
        f"the committed file `{path}` (report {committed}) is not used while the database "
        "has an accepted baseline"
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
    force: Annotated[
        bool,
        typer.Option(
            "--force", help="Accept a report that covers only part of the suite (a subset run)."
        ),
    ] = False,
    db: DbOption = None,
) -> None:
    """Make a report its suite's baseline (history is kept).

    A report with a verdict on fewer tasks than its suite has (a run of a tag or of some
    tasks, a shard, tasks whose model was unavailable) is refused without ``--force``:
    `agent-eval assert` would then judge full runs on those tasks only.
    """
    document = check_report(load_report(report), f"`{report}`")
    missing = no_verdict(document)
    if missing is not None:
        raise SuiteError(f"`{report}` cannot be a baseline: {missing}")
    covered, _ = covered_tasks(document)
    total = suite_size(document)
    partial = ""
    if total is not None and covered < total:
        partial = f"a verdict on {covered} of the suite's {total} tasks"
    elif document.get("shard"):
        partial = f"only shard {document['shard']} of the suite"
    if partial and not force:
        raise SuiteError(
            f"`{report}` has {partial}: as the baseline, later full runs would be gated on "
            f"those {covered} tasks only. Accept a report of the whole suite (merge the "
            "shards first), or pass --force to accept this one anyway"
        )
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
    if partial:
        err_console.print(
            f"[yellow]warning:[/] accepting a baseline with {shown(partial)} (--force): "
            f"`agent-eval assert` will compare later runs on those {covered} tasks only",
            soft_wrap=True,
        )
    with open_store(db) as store:
        record = EvalStore(store).accept(document, who, note)
        where = store.url
    coverage = f"; {covered} of {total} tasks" if partial and total is not None else ""
    _plain(
        f"accepted report {record.report_id} as the baseline of `{record.suite}` "
        f"(by {record.accepted_by}, {format_time(record.accepted_at)}{coverage}) in {where}"
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
    records, where = _accepted(db, suite)
    record = records[0] if records else None
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
        shadowed = _shadowed(suite, record.report_id)
        if shadowed is not None:
            lines.append(shadowed)
    else:
        committed = _committed(suite)
        if committed is None:
            raise _no_baseline(suite, f"{where} nor at `{BASELINES_DIR / f'{suite}.json'}`")
        path, document = committed
        lines = [
            f"baseline of `{suite}`: report {document['report_id']} from the committed "
            f"file `{path}` (none accepted {where})",
            f"run {format_time(document['started_at'])}; {headline(_summary_of(document))}",
        ]
    for line in lines:
        _plain(line)


@baseline_app.command("history")
@cli_errors
def history(
    suite: Annotated[str, typer.Argument(help="The suite name.")],
    db: DbOption = None,
) -> None:
    """Every report accepted for a suite, the current baseline first (or, when none was
    accepted in the database, the committed baseline file `show` and `assert` use)."""
    records, where = _accepted(db, suite)
    if not records:
        committed = _committed(suite)
        if committed is None:
            raise _no_baseline(suite, f"{where} nor at `{BASELINES_DIR / f'{suite}.json'}`")
        path, document = committed
        summary = _summary_of(document)
        _plain(f"baselines of `{suite}`: none accepted {where}; the committed file is used:")
        _plain(
            f"* committed file `{path}`  run {format_time(document['started_at'])}  report "
            f"{document['report_id']}  success {summary['success_rate']:.1%}  cost/success "
            f"{_money(summary['cost_per_successful_task'])}  unsafe "
            f"{summary['unsafe_attempts']}  gate {'passed' if summary['gate_passed'] else 'failed'}"
        )
        return
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
    shadowed = _shadowed(suite, records[0].report_id)
    if shadowed is not None:
        _plain(shadowed)


def register(app: typer.Typer) -> None:
    """Add `agent-eval baseline …`."""
    app.add_typer(baseline_app, name="baseline")
