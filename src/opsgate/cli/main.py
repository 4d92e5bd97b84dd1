"""`opsgate`: the operator's command line."""

from __future__ import annotations

import typer

from opsgate import __version__
from opsgate.cli._alerts import alerts_app
from opsgate.cli._approvals import approvals_app
from opsgate.cli._audit import audit_app
from opsgate.cli._autonomy import autonomy_app
from opsgate.cli._common import console
from opsgate.cli._cost import cost
from opsgate.cli._db import db_app
from opsgate.cli._demo import demo
from opsgate.cli._mcp import register as register_mcp
from opsgate.cli._model import model_app
from opsgate.cli._policy import policy_app
from opsgate.cli._policy_blast import register as register_blast
from opsgate.cli._policy_replay import register as register_replay
from opsgate.cli._preflight import preflight_command
from opsgate.cli._retention import retention_app
from opsgate.cli._runs import runs_app
from opsgate.cli._serve import serve_command
from opsgate.cli._tokens import tokens_app

app = typer.Typer(
    name="opsgate",
    help="Run LLM agents like critical software: one gate for every tool call.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
register_replay(policy_app)  # `opsgate policy replay` and `policy shadow-report`
register_blast(policy_app)  # `opsgate policy blast-radius`
app.add_typer(policy_app, name="policy")
app.add_typer(audit_app, name="audit")
app.add_typer(approvals_app, name="approvals")
app.add_typer(retention_app, name="retention")
app.add_typer(model_app, name="model")
app.add_typer(db_app, name="db")
app.add_typer(runs_app, name="runs")
app.add_typer(autonomy_app, name="autonomy")
app.add_typer(tokens_app, name="tokens")
app.add_typer(alerts_app, name="alerts")
app.command("serve")(serve_command)
app.command("demo")(demo)
app.command("cost")(cost)
app.command("preflight")(preflight_command)
register_mcp(app)


@app.command("version")
def version() -> None:
    """Print the opsgate version."""
    console.print(__version__)


if __name__ == "__main__":  # pragma: no cover
    app()
