"""`opsgate alerts add|list|remove|check`: alert rules from a terminal, and the cron check
(exit 1 when anything fires, 0 when nothing does, 2 on bad input)."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.table import Table

from opsgate.alerts import (
    KINDS,
    UNITS,
    Firing,
    Rule,
    create_rule,
    delete_rule,
    evaluate,
    list_rules,
    notify,
    webhook_host,
    workflow_known,
)
from opsgate.cli._common import EXIT_FAILED, cli_errors, console, err_console
from opsgate.cli._safe import cell, shown
from opsgate.store import NoDatabaseError, open_store

alerts_app = typer.Typer(
    help="Alert rules per workflow; `check` evaluates them (for cron).", no_args_is_help=True
)

DbOption = Annotated[
    str | None,
    typer.Option("--db", help="Database URL (default: $OPSGATE_DATABASE_URL or .opsgate/)."),
]
AsOption = Annotated[str, typer.Option("--as", help="Your identity (required): who changes it.")]
JsonOption = Annotated[bool, typer.Option("--json", help="JSON on stdout instead of a table.")]


def _sinks(rule: Rule) -> str:
    shown_sinks = [
        f"webhook {webhook_host(rule.webhook_url)} (secret ${rule.webhook_secret_env})"
        if s == "webhook" and rule.webhook_url
        else s
        for s in rule.sinks
    ]
    return ", ".join(shown_sinks)


@alerts_app.command("add")
@cli_errors
def add(
    workflow: Annotated[str, typer.Argument(help="The workflow watched.")],
    kind: Annotated[str, typer.Option("--kind", help="One of: " + ", ".join(KINDS) + ".")],
    threshold: Annotated[
        float, typer.Option("--threshold", help="In the kind's unit (`alerts list` says it).")
    ],
    who: AsOption,
    window: Annotated[int, typer.Option("--window", help="Days in each window compared.")] = 7,
    sink: Annotated[
        list[str] | None,
        typer.Option("--sink", help="console, log or webhook (repeat; default: console)."),
    ] = None,
    webhook: Annotated[
        str | None, typer.Option("--webhook", help="The webhook's URL (http or https).")
    ] = None,
    secret_env: Annotated[
        str | None,
        typer.Option("--secret-env", help="The environment variable holding the HMAC secret."),
    ] = None,
    renotify: Annotated[
        int, typer.Option("--renotify", help="Minutes before a still-firing rule is re-sent.")
    ] = 60,
    disabled: Annotated[bool, typer.Option("--disabled", help="Keep it, not evaluated.")] = False,
    db: DbOption = None,
) -> None:
    """Add an alert rule (a workflow with nothing recorded yet is allowed, and said)."""
    store = open_store(db)
    try:
        rule = create_rule(
            store,
            workflow=workflow,
            kind=kind,
            threshold=threshold,
            created_by=who,
            window_days=window,
            sinks=sink or ["console"],
            webhook_url=webhook,
            webhook_secret_env=secret_env,
            renotify_minutes=renotify,
            enabled=not disabled,
        )
        known = workflow_known(store, rule.workflow)
    finally:
        store.close()
    console.print(
        f"rule {rule.rule_id}: {shown(rule.kind)} on `{shown(rule.workflow)}` past "
        f"{rule.threshold:g} ({shown(KINDS[rule.kind])}); sinks: {shown(_sinks(rule))}",
        soft_wrap=True,
    )
    if not known:
        err_console.print(
            f"note: nothing is recorded for the workflow `{shown(rule.workflow)}` yet (check "
            "its name); the rule is kept and fires once there is",
            soft_wrap=True,
        )


@alerts_app.command("list")
@cli_errors
def list_(db: DbOption = None, as_json: JsonOption = False) -> None:
    """The alert rules (webhooks by host only; secrets are never stored)."""
    try:
        store = open_store(db, migrate=False, create=False)
    except NoDatabaseError as exc:
        if as_json:
            print(json.dumps({"rules": []}))
        else:
            console.print(shown(exc), soft_wrap=True)
        return
    try:
        rules = list_rules(store)
    finally:
        store.close()
    if as_json:
        print(json.dumps({"rules": [r.as_dict() for r in rules]}, indent=2))
        return
    table = Table(title="alert rules", title_justify="left")
    for column in ("id", "workflow", "kind", "threshold", "window", "sinks", "on", "by"):
        table.add_column(column, overflow="fold")
    for r in rules:
        table.add_row(
            str(r.rule_id),
            cell(r.workflow),
            r.kind,
            f"{r.threshold:g} {UNITS.get(r.kind, '')}",
            "-" if r.kind == "approval_backlog" else f"{r.window_days}d",
            cell(_sinks(r)),
            "yes" if r.enabled else "no",
            cell(r.created_by),
        )
    console.print(table)
    if not rules:
        console.print("no alert rules (`opsgate alerts add`)")


@alerts_app.command("remove")
@cli_errors
def remove(
    rule_id: Annotated[int, typer.Argument(help="The rule's id (`alerts list`).")],
    who: AsOption,
    db: DbOption = None,
) -> None:
    """Remove an alert rule (its row is kept, naming who removed it)."""
    store = open_store(db, migrate=False)
    try:
        rule = delete_rule(store, rule_id, deleted_by=who)
    finally:
        store.close()
    console.print(
        f"removed rule {rule.rule_id} ({shown(rule.kind)} on `{shown(rule.workflow)}`)",
        soft_wrap=True,
    )


def _print_firings(firings: list[Firing]) -> None:
    """One line per firing (cron mails lines; a table would wrap them)."""
    for f in firings:
        console.print(f"FIRING rule {f.rule_id} {f.kind}: {shown(f.message)}", soft_wrap=True)


@alerts_app.command("check")
@cli_errors
def check(
    db: DbOption = None,
    as_json: JsonOption = False,
    no_notify: Annotated[
        bool, typer.Option("--no-notify", help="Evaluate only: no log line, no webhook.")
    ] = False,
) -> None:
    """Evaluate every enabled rule now and send what fires to its sinks (for cron): exit 1
    when anything fires, 0 when nothing does."""
    try:
        store = open_store(db, migrate=False, create=False)
    except NoDatabaseError as exc:
        if as_json:
            print(json.dumps({"firing": [], "notified": []}))
        else:
            console.print(shown(exc), soft_wrap=True)
        return
    try:
        firings = evaluate(store)
        notified = [] if no_notify else notify(store, firings)
    finally:
        store.close()
    if as_json:
        print(
            json.dumps(
                {
                    "firing": [f.as_dict() for f in firings],
                    "notified": [
                        {"rule_id": n.rule_id, "outcome": n.outcome, "attempts": n.attempts}
                        for n in notified
                    ],
                },
                indent=2,
            )
        )
    elif firings:
        _print_firings(firings)
        for n in notified:
            if n.outcome in ("delivered", "failed", "suppressed"):
                console.print(f"rule {n.rule_id}: webhook {n.outcome} ({n.attempts} attempt(s))")
    else:
        console.print("no alert fires")
    if firings:
        raise typer.Exit(EXIT_FAILED)
