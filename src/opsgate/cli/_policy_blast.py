"""`opsgate policy blast-radius`: what one run can do without a person, from the policy alone
(a thin layer over `opsgate.policy.blast_radius`: options, the table, the JSON)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from opsgate.cli._common import cli_errors, console
from opsgate.cli._safe import cell, shown
from opsgate.contracts import Toolbelt
from opsgate.policy import ArgumentBound, BlastRadius, ToolBound, blast_radius, load_policy

__all__ = ["register"]


def register(app: typer.Typer) -> None:
    """Add the command to ``opsgate policy``."""
    app.command("blast-radius")(cli_errors(blast))


def blast(
    path: Annotated[Path, typer.Argument(help="The policy YAML file.")],
    workflow: Annotated[str, typer.Option("--workflow", help="The workflow to bound.")],
    stage: Annotated[
        str | None,
        typer.Option("--stage", help="Bound it as if at this stage (default: the one in force)."),
    ] = None,
    agent: Annotated[
        str | None, typer.Option("--agent", help="An agent identity the workflow narrows.")
    ] = None,
    tools: Annotated[
        str | None,
        typer.Option(
            "--tools",
            help="Import path of the tools module (default: the policy's `toolbelt` key).",
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the bound as JSON.")] = False,
) -> None:
    """Print the most one run of a workflow can do without a person: the write and draft
    tools it can reach, how many times, each argument's possible values and largest
    numbers (per call and per run), what needs approval, the caps and the quotas. What the
    analysis cannot bound is named as unbounded.

    The JSON (--json) is `BlastRadius.as_dict()`: ``workflow``, ``stage``, ``agent_id``,
    ``policy_version``, ``caps`` (the run's caps in force), ``reachable`` (per tool:
    ``tool``, ``scope``, ``impact``, ``max_calls``, ``max_calls_by``, ``repeatable``,
    ``approval``, ``requires_before``, ``notes`` and ``arguments``, each with ``name``,
    ``type``, ``role``, ``bounded``, ``values``, ``patterns``, ``contract_patterns``,
    ``excluded``, ``max_length``, ``min`` and ``max`` as ``{value, inclusive}``,
    ``per_run_total``, ``sources``, ``endorsed_by``, ``notes``), ``reads``,
    ``needs_a_person`` and ``unreachable`` (``tool``, ``scope``, ``impact``, ``why``),
    ``quotas`` (``key``, ``tool``, ``arg``, ``max``, ``per``, ``by``, ``per_run``) and
    ``unbounded`` (one phrase per open dimension). Exit 0; 2 for a policy that does not
    load, or an unknown workflow, stage or agent.
    """
    policy = load_policy(path, Toolbelt.from_module(tools) if tools else None)
    bound = blast_radius(policy, workflow, stage=stage, agent_id=agent)
    if as_json:
        typer.echo(json.dumps(bound.as_dict(), indent=2, ensure_ascii=True))
        return
    _print(bound)


def _print(bound: BlastRadius) -> None:
    who = f", agent {shown(bound.agent_id)}" if bound.agent_id else ""
    console.print(
        f"[bold]blast radius[/] of workflow {shown(bound.workflow)} at stage "
        f"{shown(bound.stage)}{who} (policy {shown(bound.policy_version)}): one run, no person",
        soft_wrap=True,
    )
    caps = bound.caps
    console.print(
        f"  caps: {_or_none(caps.max_tool_calls)} tool calls, {_or_none(caps.max_identical_calls)}"
        f" identical, {_or_none(caps.max_cost_usd, ' USD')}, "
        f"{_or_none(caps.max_wall_seconds, ' s')} wall",
        soft_wrap=True,
    )
    table = Table(title="reachable without a person", title_justify="left")
    for column in ("tool", "scope", "calls/run", "argument", "possible values", "per run"):
        table.add_column(column)
    for tool in bound.reachable:
        _add_rows(table, tool)
    if bound.reachable:
        console.print(table)
    else:
        console.print("  reachable without a person: no write or draft tool")
    for tool in bound.reachable:
        for note in _notes(tool):
            console.print(f"  {shown(tool.tool)}: {shown(note)}", soft_wrap=True)
    if bound.reads:
        console.print(f"  reads: {shown(', '.join(bound.reads))}", soft_wrap=True)
    for label, tools in (
        ("needs a person", bound.needs_a_person),
        ("cannot run", bound.unreachable),
    ):
        for u in tools:
            console.print(f"  {label}: {shown(u.tool)} ({shown(u.why)})", soft_wrap=True)
    for q in bound.quotas:
        per_run = "unbounded" if q.per_run is None else f"{q.per_run:g}"
        console.print(
            f"  quota {shown(q.key)}: {q.max:g} per {shown(q.per)} per {shown(q.by)} "
            f"(one run: {per_run})",
            soft_wrap=True,
        )
    for phrase in bound.unbounded:
        console.print(f"  [yellow]unbounded:[/] {shown(phrase)}", soft_wrap=True)


def _or_none(value: float | None, unit: str = "") -> str:
    return "no cap" if value is None else f"{value:g}{unit}"


def _add_rows(table: Table, tool: ToolBound) -> None:
    calls = "unbounded" if tool.max_calls is None else f"≤ {tool.max_calls}"
    head = [
        cell(tool.tool),
        cell(f"{tool.scope}/{tool.impact}"),
        cell(f"{calls} ({tool.max_calls_by})"),
    ]
    shown_args = [a for a in tool.arguments if a.role != "free_text"] or list(tool.arguments)
    for i, arg in enumerate(shown_args):
        total = "" if arg.per_run_total is None else f"≤ {arg.per_run_total:g}"
        table.add_row(
            *(head if i == 0 else [cell("")] * 3),
            cell(arg.name),
            cell(_values(arg)),
            cell(total),
        )


def _notes(tool: ToolBound) -> list[str]:
    """When a person is needed anyway, what must run first, what was not analysed."""
    notes = [f"needs a person when {tool.approval}"] if tool.approval != "never" else []
    notes += [f"runs only after {', '.join(tool.requires_before)}"] if tool.requires_before else []
    return [*notes, *tool.notes]


def _values(arg: ArgumentBound) -> str:
    """One line: the values an argument can take, and where they must come from."""
    parts: list[str] = []
    if arg.values is not None:
        parts.append("one of " + ", ".join(json.dumps(v) for v in arg.values))
    if arg.values is None and (arg.min is not None or arg.max is not None):
        low = "" if arg.min is None else f"{arg.min.value:g} {'≤' if arg.min.inclusive else '<'} "
        high = "" if arg.max is None else f" {'≤' if arg.max.inclusive else '<'} {arg.max.value:g}"
        parts.append(f"{low}{arg.name}{high}")
    parts += [f"matches {p}" for p in arg.patterns]
    parts += [f"contains {p}" for p in arg.contract_patterns]
    if arg.excluded:
        parts.append("not " + ", ".join(json.dumps(v) for v in arg.excluded))
    if not arg.bounded:
        parts.insert(0, "UNBOUNDED")
    if arg.sources:
        sources = ("a trusted source" if s == "trusted" else s for s in arg.sources)
        parts.append("only from " + " or ".join(sources))
    if arg.endorsed_by:
        parts.append("unless endorsed: " + ", ".join(arg.endorsed_by))
    return "; ".join(parts) or "any"
