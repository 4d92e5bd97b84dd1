"""`opsgate model serve|check`: the embedded model and the router file."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from opsgate.cli._common import cli_errors, console
from opsgate.cli._safe import cell, clean, shown
from opsgate.models import catalogue_date, describe, load_router_config, serve_forever

model_app = typer.Typer(help="The embedded model and model routing.", no_args_is_help=True)


@model_app.command("serve")
@cli_errors
def serve(
    port: Annotated[int | None, typer.Option(help="Loopback port (default: a free one).")] = None,
) -> None:
    """Serve the embedded model on loopback (OpenAI-compatible) until Ctrl-C."""
    # the lines name the model file and paths from the environment: text, never markup
    serve_forever(port, echo=lambda line: console.print(clean(line), markup=False))


@model_app.command("check")
@cli_errors
def check(
    path: Annotated[Path, typer.Argument(help="The router file.")] = Path("config/router.yaml"),
) -> None:
    """Validate a router file and print each role's model chain with prices."""
    config = load_router_config(path)
    table = Table(
        title=f"{shown(path)} (catalogue prices as of {shown(catalogue_date())})",
        title_justify="left",
    )
    for column in ("role", "models (in order)", "USD per 1M in / out"):
        table.add_column(column)
    for role, chain in describe(config).items():
        prices = ", ".join(
            f"{c['price']['input_per_1m']:g} / {c['price']['output_per_1m']:g}"
            + (" (estimate)" if c["price"]["estimate"] else "")
            for c in chain
        )
        table.add_row(cell(role), cell(" → ".join(c["model"] for c in chain)), cell(prices))
    console.print(table)
    for workflow, budget in config.budgets.items():
        console.print(
            f"budget {shown(workflow)}: max ${shown(budget.max_cost_per_task)} per task, "
            f"${shown(budget.daily_spend)} a day"
        )
