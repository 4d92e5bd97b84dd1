"""`opsgate policy replay|shadow-report`: a policy change reviewed against what production
did (a thin layer over `opsgate.replay`: options, tables, exit codes)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from opsgate.cli._common import EXIT_FAILED, cli_errors, console
from opsgate.cli._safe import cell, shown
from opsgate.contracts import Toolbelt
from opsgate.evals import parse_since
from opsgate.policy import load_policy
from opsgate.replay import CHANGES, ReplayReport, ShadowReport, replay_policy, shadow_report
from opsgate.store import NoDatabaseError, Store, open_store

__all__ = ["register"]

_SHOWN_CALLS = 50  # changed calls listed in the table; --json lists them all
_LABELS = {
    "newly_denied": "newly denied",
    "newly_allowed": "newly allowed",
    "newly_needs_approval": "newly needing approval",
    "reason_changed": "reason changed",
}

DbOption = Annotated[
    str | None,
    typer.Option("--db", help="Database URL (default: $OPSGATE_DATABASE_URL or .opsgate/)."),
]
SinceOption = Annotated[
    str, typer.Option("--since", help="Runs started within: 7d, 12h, 30m or an ISO date/time.")
]
WorkflowOption = Annotated[str | None, typer.Option("--workflow", help="Only this workflow.")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print the report as JSON.")]
EvalOption = Annotated[
    bool, typer.Option("--include-eval", help="Read agent-eval trials too (left out by default).")
]


def register(app: typer.Typer) -> None:
    """Add the commands to ``opsgate policy``."""
    app.command("replay")(cli_errors(replay))
    app.command("shadow-report")(cli_errors(shadow))


def _open(db: str | None) -> Store | None:
    """The store, or None when nothing was ever recorded (and none is made)."""
    try:
        return open_store(db, migrate=False, create=False)
    except NoDatabaseError:
        return None


def _when(at: float) -> str:
    try:
        return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d %H:%M:%S")
    except (OverflowError, OSError, ValueError):  # --since 99999999d: before year 1
        return f"unix time {at:.0f}"


def _echo_json(document: object) -> None:
    # ASCII JSON: stored text reaches the terminal as \u escapes, never as controls
    typer.echo(json.dumps(document, indent=2, ensure_ascii=True))


def replay(
    path: Annotated[Path, typer.Argument(help="The new policy YAML file.")],
    since: SinceOption = "7d",
    workflow: WorkflowOption = None,
    tools: Annotated[
        str | None,
        typer.Option(
            "--tools",
            help="Import path of the tools module (default: the policy's `toolbelt` key).",
        ),
    ] = None,
    db: DbOption = None,
    fail_on_deny: Annotated[
        bool,
        typer.Option(
            "--fail-on-deny",
            help="Exit 1 when a call that ran would now be denied (a decision that turns on "
            "a value the record keeps masked is listed, not failed on).",
        ),
    ] = False,
    include_eval: EvalOption = False,
    as_json: JsonOption = False,
) -> None:
    """Decide every recorded call of the window again under a new policy and list what
    changes: newly denied, newly allowed, newly needing approval.

    Each run's state is rebuilt from its audit events; replay follows the record (nothing
    is executed). Exit 0, or 1 with --fail-on-deny when a call that ran would now be
    denied; 2 for a policy that does not load, a workflow it does not govern or a malformed
    --since. A window with no recorded calls says so (exit 0).
    """
    policy = load_policy(path, Toolbelt.from_module(tools) if tools else None)
    start = parse_since(since)
    if workflow is not None:
        policy.stage(workflow)  # unknown to the new policy: one clear error, exit 2
    store = _open(db)
    if store is None:
        report = ReplayReport(policy.version, start, workflow, include_eval, 0, 0, ())
    else:
        try:
            report = replay_policy(
                store, policy, since=start, workflow=workflow, include_eval=include_eval
            )
        finally:
            store.close()
    if as_json:
        _echo_json(report.as_dict())
    else:
        _print_replay(report)
    if fail_on_deny and report.denied_that_ran:
        raise typer.Exit(EXIT_FAILED)


def _print_replay(report: ReplayReport) -> None:
    window = f"since {_when(report.since)} UTC" + (
        f", workflow {shown(report.workflow)}" if report.workflow else ""
    )
    for name, runs in sorted(report.skipped_workflows.items()):
        console.print(
            f"skipped {runs} run(s) of workflow {shown(name)}: not in this policy", soft_wrap=True
        )
    if report.calls == 0:
        console.print(f"no recorded calls to replay ({window}): nothing changes", soft_wrap=True)
        return
    counts = report.counts
    console.print(
        f"policy {shown(report.policy_version)} replayed on {report.runs} run(s), "
        f"{report.calls} call(s) ({window}): [bold]{len(report.changes)} changed[/]",
        soft_wrap=True,
    )
    console.print(
        "  "
        + " · ".join(f"{_LABELS[kind]}: {counts[kind]}" for kind in CHANGES)
        + f" · newly denied that ran: {len(report.denied_that_ran)}"
        + (
            f" (+{len(report.masked_denied_that_ran)} on masked values)"
            if report.masked_denied_that_ran
            else ""
        ),
        soft_wrap=True,
    )
    if report.changes:
        groups = Table(title="changes per tool and reason", title_justify="left")
        for heading in ("change", "tool", "new reason", "calls"):
            groups.add_column(heading, overflow="fold")
        for g in report.groups():  # tools and reasons come from the store: text, not markup
            groups.add_row(
                _LABELS[g["change"]], cell(g["tool"]), cell(g["reason"]), str(g["calls"])
            )
        console.print(groups)
        calls = Table(title="changed calls", title_justify="left")
        for heading in ("run", "call", "tool", "ran", "was", "now", "why now"):
            calls.add_column(heading, overflow="fold")
        for c in report.changes[:_SHOWN_CALLS]:
            calls.add_row(
                cell(c.run_id[:8]),
                cell(c.call_id, limit=12),
                cell(c.tool + (" *" if c.masked else "")),
                "yes" if c.ran else "no",
                cell(_decision(c.before)),
                cell(_decision(c.after)),
                cell(c.after["message"], limit=160),
            )
        console.print(calls)
        if len(report.changes) > _SHOWN_CALLS:
            console.print(f"... and {len(report.changes) - _SHOWN_CALLS} more (--json lists all)")
    _print_caveats(report)


def _decision(d: Mapping[str, str]) -> str:
    """``effect`` over ``reason``, short enough for a narrow column."""
    effect = "approval" if d["effect"] == "needs_approval" else d["effect"]
    return f"{effect}\n{d['reason']}"


def _print_caveats(report: ReplayReport) -> None:
    masked_changes = sum(1 for c in report.changes if c.masked)
    if report.masked_calls:
        console.print(
            f"note: {report.masked_calls} call(s) have arguments the audit trail stores masked "
            f"(secrets, personal data); replay decides on the mask, so their decision may "
            f"differ for that reason alone ({masked_changes} of the changed calls, marked *; "
            "check them by hand: --fail-on-deny does not fail on them)",
            soft_wrap=True,
        )
    if report.truncated_reads:
        console.print(
            f"note: {report.truncated_reads} long read(s) are kept only in part by the record; "
            "a value found past the cut is not seen by replay",
            soft_wrap=True,
        )
    if report.relabelled_results:
        console.print(
            f"note: {report.relabelled_results} tool result(s) are labelled otherwise by this "
            "policy's output trust than they were live",
            soft_wrap=True,
        )
    console.print(
        "replay follows the record: each call is judged on the history that happened, "
        "not on the one the new decisions would have made",
        soft_wrap=True,
    )


def shadow(
    since: SinceOption = "7d",
    workflow: WorkflowOption = None,
    db: DbOption = None,
    include_eval: EvalOption = False,
    as_json: JsonOption = False,
) -> None:
    """Summarise where a candidate policy run in shadow mode disagreed with the live one:
    per tool, per change (live -> candidate) and the runs concerned, newest first.

    Exit 0; 2 for a malformed --since.
    """
    start = parse_since(since)
    store = _open(db)
    if store is None:
        report = ShadowReport(start, workflow, include_eval, 0, (), ())
    else:
        try:
            report = shadow_report(store, since=start, workflow=workflow, include_eval=include_eval)
        finally:
            store.close()
    if as_json:
        _echo_json(report.as_dict())
        return
    window = f"since {_when(report.since)} UTC" + (
        f", workflow {shown(report.workflow)}" if report.workflow else ""
    )
    if not report.differences:
        console.print(
            f"no shadow differences recorded ({window}; {report.runs_read} run(s) read)",
            soft_wrap=True,
        )
        return
    console.print(
        f"{len(report.differences)} shadow difference(s) in {len(report.runs)} of "
        f"{report.runs_read} run(s) ({window}); candidate "
        f"{shown(', '.join(report.candidates))}",
        soft_wrap=True,
    )
    for title, counts in (("per tool", report.by_tool), ("per change", report.by_change)):
        table = Table(title=title, title_justify="left")
        table.add_column(title.removeprefix("per "), overflow="fold")
        table.add_column("calls")
        for name, n in counts.items():
            table.add_row(cell(name), str(n))
        console.print(table)
    runs = Table(title="runs concerned, newest first", title_justify="left")
    for heading in ("run", "started (UTC)", "workflow", "differences"):
        runs.add_column(heading, overflow="fold")
    for r in report.runs[:_SHOWN_CALLS]:
        runs.add_row(cell(r.run_id[:8]), _when(r.started_at), cell(r.workflow), str(r.differences))
    console.print(runs)
    calls = Table(title="differences, newest first", title_justify="left")
    for heading in ("run", "call", "tool", "live", "candidate", "why"):
        calls.add_column(heading, overflow="fold")
    for d in report.differences[:_SHOWN_CALLS]:
        calls.add_row(
            cell(d.run_id[:8]),
            cell(d.call_id, limit=12),
            cell(d.tool),
            cell(_decision(d.live)),
            cell(_decision(d.candidate)),
            cell(d.candidate["message"], limit=160),
        )
    console.print(calls)
    if len(report.differences) > _SHOWN_CALLS:
        console.print(f"... and {len(report.differences) - _SHOWN_CALLS} more (--json lists all)")
