"""`opsgate policy check|explain`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from opsgate.cli._common import EXIT_FAILED, EXIT_OK, cli_errors, console
from opsgate.cli._safe import cell, shown
from opsgate.contracts import Toolbelt
from opsgate.errors import ConfigError, InvalidToolCall
from opsgate.policy import CompiledPolicy, Effect, ProposedCall, SimpleRunState, load_policy
from opsgate.provenance import ProvenanceLedger

policy_app = typer.Typer(help="Validate policies and explain decisions.", no_args_is_help=True)

PolicyFile = Annotated[Path, typer.Argument(help="The policy YAML file.")]
ToolsOption = Annotated[
    str | None,
    typer.Option(
        "--tools", help="Import path of the tools module (default: the policy's `toolbelt` key)."
    ),
]


def _load(path: Path, tools: str | None) -> CompiledPolicy:
    return load_policy(path, Toolbelt.from_module(tools) if tools else None)


@policy_app.command("check")
@cli_errors
def check(path: PolicyFile, tools: ToolsOption = None) -> None:
    """Validate a policy against its tools and print what each stage allows."""
    # names, versions and values below come from the policy file: text, never markup
    policy = _load(path, tools)
    console.print(f"[green]ok[/] {shown(path)}: version [bold]{shown(policy.version)}[/]")
    for workflow in policy.document.workflows:
        table = Table(title=f"workflow {shown(workflow)}", title_justify="left")
        table.add_column("tool")
        table.add_column("scope/impact")
        stages = policy.stage_table(workflow)
        current = policy.stage(workflow)
        for stage in stages:
            table.add_column(cell(stage + (" *" if stage == current else "")))
        for name in policy.allowed_tools(workflow):
            contract = policy.toolbelt.get(name)
            table.add_row(
                cell(name),
                cell(f"{contract.scope}/{contract.impact}"),
                *(cell(stages[s][name]) for s in stages),
            )
        console.print(table)
        console.print(
            "  * the stage in force; caps: "
            + shown(
                ", ".join(
                    f"{k}={v}"
                    for k, v in policy.caps(workflow).model_dump().items()
                    if v is not None
                )
            )
        )
        for agent, override in policy.document.workflows[workflow].agents.items():
            console.print(
                f"  agent {shown(agent)}: stage {shown(override.stage or current)}, tools "
                f"{shown(', '.join(policy.allowed_tools(workflow, agent)))}"
            )
        plan = policy.document.workflows[workflow].provenance.plan
        if plan != "off":
            console.print(f"  committed plans: {shown(plan)}")
    for notice in policy.notices:
        console.print(f"[yellow]notice:[/] {shown(notice)}")


@policy_app.command("explain")
@cli_errors
def explain(
    path: PolicyFile,
    tool: Annotated[str, typer.Option("--tool", help="The tool to call.")],
    args: Annotated[str, typer.Option("--args", help="The arguments, as JSON.")] = "{}",
    workflow: Annotated[str | None, typer.Option(help="Default: the only workflow.")] = None,
    agent: Annotated[str, typer.Option(help="The agent identity.")] = "agent",
    request: Annotated[
        str, typer.Option(help="The invoker's request (trusted; `request` in conditions).")
    ] = "",
    trusted: Annotated[
        list[str] | None, typer.Option(help="Trusted context text (repeatable): a KB page.")
    ] = None,
    untrusted: Annotated[
        list[str] | None,
        typer.Option(help="Untrusted context text (repeatable): a ticket, an e-mail."),
    ] = None,
    tools: ToolsOption = None,
) -> None:
    """Print the decision for one call, the rule that fired and why.

    Exit code 0 when the call is allowed, 1 when it is denied or needs approval.
    """
    policy = _load(path, tools)
    if workflow is None:
        names = list(policy.document.workflows)
        if len(names) != 1:
            raise ConfigError(
                f"the policy has several workflows; pass --workflow ({', '.join(names)})"
            )
        workflow = names[0]
    policy.stage(workflow)  # unknown workflow: a clear error
    ledger = ProvenanceLedger()
    if request:
        ledger.add(request, trust="trusted", source="request")
    for i, text in enumerate(trusted or ()):
        ledger.add(text, trust="trusted", source=f"trusted#{i + 1}")
    for i, text in enumerate(untrusted or ()):
        ledger.add(text, trust="untrusted", source=f"untrusted#{i + 1}")
    try:
        contract = policy.toolbelt.get(tool)
        data: dict[str, Any] = contract.validate_args(args).model_dump(mode="json")
    except InvalidToolCall as exc:
        console.print(f"[red]refused[/] ({shown(exc.code)}): {shown(exc)}")
        raise typer.Exit(EXIT_FAILED) from None
    state = SimpleRunState(workflow=workflow, agent_id=agent, provenance=ledger, request=request)
    decision = policy.decide(ProposedCall(tool, data, tool + json.dumps(data)), state)
    colour = {Effect.ALLOW: "green", Effect.DENY: "red", Effect.NEEDS_APPROVAL: "yellow"}
    console.print(
        f"[bold {colour[decision.effect]}]{decision.effect.value}[/] "
        f"({shown(decision.reason.value)})"
    )
    # the message quotes argument values; the rest names parts of the policy file
    console.print(f"  why:     {shown(decision.message)}")
    console.print(f"  rule:    {shown(decision.rule)}")
    if decision.argument:
        console.print(f"  arg:     {shown(decision.argument)}")
    if decision.source:
        console.print(f"  source:  {shown(decision.source)}")
    if decision.origin and decision.origin.get("where"):
        console.print(f"  found:   {shown(decision.origin['where'])}")
    if decision.endorsed_by:
        console.print(f"  endorsed by: {shown(decision.endorsed_by)}")
    console.print(f"  stage:   {shown(policy.stage(workflow, agent))}")
    console.print(f"  policy:  {shown(decision.policy_version)}")
    raise typer.Exit(EXIT_OK if decision.allowed else EXIT_FAILED)
