"""`opsgate serve`: the web console over the configured database."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from opsgate.cli._common import cli_errors, console, err_console
from opsgate.cli._safe import shown
from opsgate.server import DEFAULT_HOST, DEFAULT_PORT, MAX_WORKERS, serve


@cli_errors
def serve_command(
    host: Annotated[
        str, typer.Option(help="Address to bind (loopback by default; a warning otherwise).")
    ] = DEFAULT_HOST,
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to listen on.")] = DEFAULT_PORT,
    db: Annotated[
        str | None,
        typer.Option("--db", help="Database URL (default: $OPSGATE_DATABASE_URL or .opsgate/)."),
    ] = None,
    router: Annotated[
        Path | None,
        typer.Option(help="A router file: the Overview shows its workflow budgets."),
    ] = None,
    policy: Annotated[
        Path | None,
        typer.Option(help="The policy in force: the Autonomy page shows its stages."),
    ] = None,
    tools: Annotated[
        str | None, typer.Option(help="Import path of the policy's tools module.")
    ] = None,
    workers: Annotated[
        int,
        typer.Option(
            min=1,
            max=MAX_WORKERS,
            help="Worker processes (one per CPU core serves the most; sessions work in all).",
        ),
    ] = 1,
) -> None:
    """Serve the web console (runs, approvals, stopping runs); log in with a token from
    `opsgate tokens create`."""
    several = f", {workers} worker processes" if workers > 1 else ""
    console.print(f"opsgate console on http://{shown(host)}:{port}/{several} (Ctrl-C stops it)")
    serve(
        db,
        host=host,
        port=port,
        router=router,
        policy=policy,
        tools=tools,
        workers=workers,
        warn=lambda text: err_console.print(shown(text)),
    )
