"""`opsgate preflight W`: the seed's preflight table for a workflow, go / no-go per row with
its evidence; exit 0 only when every row holds (JSON for CI)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import orjson
import typer
from rich.table import Table

from opsgate.autonomy import preflight
from opsgate.cli._common import EXIT_FAILED, cli_errors, console
from opsgate.cli._safe import cell, shown
from opsgate.contracts import Toolbelt
from opsgate.errors import ConfigError
from opsgate.models import load_router_config
from opsgate.policy import load_policy
from opsgate.store import NoDatabaseError, Store, open_store


@cli_errors
def preflight_command(
    workflow: Annotated[str, typer.Argument(help="The workflow to check.")],
    policy: Annotated[Path, typer.Option("--policy", help="The policy file in force.")],
    tools: Annotated[
        str | None, typer.Option("--tools", help="Import path of the tools module.")
    ] = None,
    router: Annotated[
        Path | None, typer.Option("--router", help="Router file with the workflow's budget.")
    ] = None,
    suite: Annotated[
        list[str] | None, typer.Option("--suite", help="An eval suite of the workflow.")
    ] = None,
    min_success: Annotated[
        float, typer.Option("--min-success", help="Success rate required (0-1).")
    ] = 0.8,
    reports: Annotated[int, typer.Option(help="Latest reports of each suite that must pass.")] = 3,
    window_days: Annotated[int, typer.Option("--window-days", help="Production window.")] = 7,
    db: Annotated[str | None, typer.Option("--db", help="Database URL.")] = None,
    json_: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Go / no-go per row of the seed's preflight checklist, with the evidence; exit 0 only
    when every row holds, 1 otherwise, 2 on bad input."""
    if not 0.0 <= min_success <= 1.0 or reports < 1 or window_days < 1:
        raise ConfigError("--min-success is 0-1; --reports and --window-days at least 1")
    compiled = load_policy(policy, Toolbelt.from_module(tools) if tools else None)
    budget = None
    if router is not None:
        spec = load_router_config(router).budgets.get(workflow)
        budget = None if spec is None else spec.max_cost_per_task
    store: Store | None
    try:
        store = open_store(db, migrate=False, create=False)
    except NoDatabaseError:
        store = None
    try:
        table = preflight(
            compiled,
            workflow,
            store,
            budget_usd=budget,
            suites=suite or (),
            min_success=min_success,
            reports=reports,
            window_days=window_days,
        )
    finally:
        if store is not None:
            store.close()
    if json_:
        typer.echo(orjson.dumps(table.as_dict(), option=orjson.OPT_INDENT_2).decode())
    else:
        shown_table = Table(
            title=f"preflight: {shown(workflow)} at stage {table.stage}", title_justify="left"
        )
        for column in ("check", "go", "evidence"):
            shown_table.add_column(column, overflow="fold")
        for row in table.rows:
            shown_table.add_row(
                row.check, "[green]go[/]" if row.go else "[red]no-go[/]", cell(row.evidence)
            )
        console.print(shown_table)
        console.print("[green]go[/]" if table.go else "[red]no-go[/]: not ready for more autonomy")
    if not table.go:
        raise typer.Exit(EXIT_FAILED)
