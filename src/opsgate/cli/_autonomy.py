"""`opsgate autonomy status|promote|demote`: each workflow's stage, kept in the store, moved
one stage up on evidence (refused, naming what is missing, otherwise) or down at once."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from opsgate.audit import AuditLog, AuditRecorder, Signer
from opsgate.autonomy import (
    PromotionRefused,
    StageChange,
    current_stage,
    demote,
    promote,
    stage_history,
)
from opsgate.cli._common import EXIT_FAILED, cli_errors, console
from opsgate.cli._safe import cell, shown
from opsgate.contracts import Toolbelt
from opsgate.models import load_router_config
from opsgate.policy import CompiledPolicy, load_policy
from opsgate.store import NoDatabaseError, open_store

autonomy_app = typer.Typer(
    help="Each workflow's autonomy stage: promoted on evidence, demoted at once.",
    no_args_is_help=True,
)

PolicyOption = Annotated[Path, typer.Option("--policy", help="The policy file in force.")]
ToolsOption = Annotated[
    str | None, typer.Option("--tools", help="Import path of the tools module.")
]
DbOption = Annotated[str | None, typer.Option("--db", help="Database URL.")]
AsOption = Annotated[str, typer.Option("--as", help="Your identity (required): who decides.")]


def _policy(path: Path, tools: str | None) -> CompiledPolicy:
    return load_policy(path, Toolbelt.from_module(tools) if tools else None)


def _when(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d %H:%M")


@autonomy_app.command("status")
@cli_errors
def status(policy: PolicyOption, tools: ToolsOption = None, db: DbOption = None) -> None:
    """Each workflow's stage in force (the store's latest change, else the policy file's)
    and its last change."""
    compiled = _policy(policy, tools)
    try:
        store = open_store(db, migrate=False, create=False)
    except NoDatabaseError:
        store = None
    table = Table(title="autonomy", title_justify="left")
    for column in ("workflow", "stage", "policy file", "last change"):
        table.add_column(column, overflow="fold")
    try:
        for workflow in sorted(compiled.document.workflows):
            history = [] if store is None else stage_history(store, workflow)
            last = history[-1] if history else None
            table.add_row(
                cell(workflow),
                current_stage(store, compiled, workflow),
                compiled.stage(workflow),
                "-" if last is None else cell(_change(last)),
            )
    finally:
        if store is not None:
            store.close()
    console.print(table)


def _change(c: StageChange) -> str:
    return f"{c.previous} → {c.stage} by {c.actor} at {_when(c.at)}: {c.reason or '-'}"


@autonomy_app.command("promote")
@cli_errors
def promote_command(
    workflow: Annotated[str, typer.Argument(help="The workflow to promote.")],
    policy: PolicyOption,
    who: AsOption,
    to: Annotated[str | None, typer.Option("--to", help="The next stage (checked).")] = None,
    reason: Annotated[str, typer.Option("--reason", help="Why; kept with the change.")] = "",
    router: Annotated[
        Path | None, typer.Option("--router", help="Router file with the workflow's budget.")
    ] = None,
    suite: Annotated[
        list[str] | None, typer.Option("--suite", help="An eval suite of the workflow.")
    ] = None,
    window: Annotated[str, typer.Option(help="Production window replayed: 7d, 24h.")] = "7d",
    min_success: Annotated[float, typer.Option("--min-success")] = 0.8,
    tools: ToolsOption = None,
    db: DbOption = None,
) -> None:
    """Move a workflow one stage up: only with the evidence of the policy at the new stage
    (a passing preflight; the eval gate on the latest report of each --suite, made under
    that policy and calling every tool of the stage; its shadow report over --window, else
    its replay, denying nothing the live policy let run; a stable production week, within
    the --router budget); exit 1, naming what is missing (evidence made under another
    policy version does not count), otherwise."""
    compiled = _policy(policy, tools)
    budget = None
    if router is not None:
        spec = load_router_config(router).budgets.get(workflow)
        budget = None if spec is None else spec.max_cost_per_task
    store = open_store(db)
    recorder = AuditRecorder(AuditLog(store, Signer.from_file()))
    try:
        change = promote(
            compiled,
            workflow,
            store,
            recorder,
            actor=who,
            to=to,
            reason=reason,
            window=window,
            budget_usd=budget,
            suites=suite or (),
            min_success=min_success,
        )
    except PromotionRefused as refused:
        table = Table(title=f"{shown(workflow)}: promotion refused", title_justify="left")
        for column in ("check", "go", "evidence"):
            table.add_column(column, overflow="fold")
        for row in refused.rows:
            table.add_row(row.check, "go" if row.go else "[red]no-go[/]", cell(row.evidence))
        console.print(table)
        raise typer.Exit(EXIT_FAILED) from None
    finally:
        recorder.close()
        store.close()
    console.print(f"{shown(workflow)}: {shown(_change(change))}; audited")


@autonomy_app.command("demote")
@cli_errors
def demote_command(
    workflow: Annotated[str, typer.Argument(help="The workflow to demote.")],
    policy: PolicyOption,
    to: Annotated[str, typer.Option("--to", help="The lower stage.")],
    who: AsOption,
    reason: Annotated[str, typer.Option("--reason", help="Why (required).")],
    tools: ToolsOption = None,
    db: DbOption = None,
) -> None:
    """Move a workflow down at once (the gateways read it at their next call)."""
    compiled = _policy(policy, tools)
    store = open_store(db)
    recorder = AuditRecorder(AuditLog(store, Signer.from_file()))
    try:
        change = demote(compiled, workflow, store, recorder, to=to, actor=who, reason=reason)
    finally:
        recorder.close()
        store.close()
    console.print(f"{shown(workflow)}: {shown(_change(change))}; audited")
