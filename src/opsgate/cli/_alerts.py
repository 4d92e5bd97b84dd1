"""`opsgate alerts add|list|remove|check`: alert rules from a terminal, and the cron check
(exit 1 when anything fires, 0 when nothing does, 2 on bad input). A rule with
``--demote-to`` demotes its workflow when `check` finds it firing (given the policy)."""

from __future__ import annotations

import json
from pathlib import Path
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
from opsgate.audit import AuditLog, AuditRecorder, Signer
from opsgate.autonomy import AutoDemotion, demote_on_firings, demotions_wanted
from opsgate.cli._common import EXIT_FAILED, cli_errors, console, err_console
from opsgate.cli._safe import cell, shown
from opsgate.contracts import Toolbelt
from opsgate.policy import STAGES, CompiledPolicy, load_policy
from opsgate.store import NoDatabaseError, Store, open_store

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
    demote_to: Annotated[
        str | None,
        typer.Option(
            "--demote-to",
            help="When it fires, `alerts check --policy` demotes the workflow to this stage: "
            + ", ".join(STAGES[:-1])
            + ".",
        ),
    ] = None,
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
            demote_to=demote_to,
        )
        known = workflow_known(store, rule.workflow)
    finally:
        store.close()
    console.print(
        f"rule {rule.rule_id}: {shown(rule.kind)} on `{shown(rule.workflow)}` past "
        f"{rule.threshold:g} ({shown(KINDS[rule.kind])}); sinks: {shown(_sinks(rule))}"
        + (f"; demotes to {rule.demote_to} when it fires" if rule.demote_to else ""),
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
    for column in (
        "id",
        "workflow",
        "kind",
        "threshold",
        "window",
        "sinks",
        "demotes to",
        "on",
        "by",
    ):
        table.add_column(column, overflow="fold")
    for r in rules:
        table.add_row(
            str(r.rule_id),
            cell(r.workflow),
            r.kind,
            f"{r.threshold:g} {UNITS.get(r.kind, '')}",
            "-" if r.kind == "approval_backlog" else f"{r.window_days}d",
            cell(_sinks(r)),
            cell(r.demote_to or "-"),
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


def _demote(
    store: Store, firings: list[Firing], policy: CompiledPolicy | None
) -> tuple[list[AutoDemotion], list[str]]:
    """The demotions of the firing rules with ``demote_to``, and what could not be done."""
    wanted = demotions_wanted(store, firings)
    if not wanted:
        return [], []
    if policy is None:
        return [], [
            f"rule {f.rule_id} would demote `{f.workflow}` to {stage}, but no --policy was "
            "given: not demoted"
            for f, stage in wanted
        ]
    recorder = AuditRecorder(AuditLog(store, Signer.from_file()))
    try:
        done = demote_on_firings(policy, store, recorder, firings)
    finally:
        recorder.close()
    problems = [
        f"rule {d.rule_id} would demote `{d.workflow}`, which the policy does not govern: "
        "not demoted"
        for d in done
        if d.outcome == "unknown_workflow"
    ]
    return done, problems


def _toolbelt(tools: str | None) -> Toolbelt | None:
    return Toolbelt.from_module(tools) if tools else None


@alerts_app.command("check")
@cli_errors
def check(
    db: DbOption = None,
    as_json: JsonOption = False,
    no_notify: Annotated[
        bool, typer.Option("--no-notify", help="Evaluate only: no log line, no webhook.")
    ] = False,
    policy: Annotated[
        Path | None,
        typer.Option("--policy", help="The policy in force: rules with --demote-to demote on it."),
    ] = None,
    tools: Annotated[
        str | None, typer.Option("--tools", help="Import path of the tools module.")
    ] = None,
) -> None:
    """Evaluate every enabled rule now, send what fires to its sinks and demote the
    workflows of firing rules with --demote-to (for cron): exit 1 when anything fires, 0
    when nothing does."""
    # a bad policy is bad input: said before anything is evaluated, sent or changed
    compiled = None if policy is None else load_policy(policy, _toolbelt(tools))
    try:
        store = open_store(db, migrate=False, create=False)
    except NoDatabaseError as exc:
        if as_json:
            print(json.dumps({"firing": [], "notified": [], "demoted": []}))
        else:
            console.print(shown(exc), soft_wrap=True)
        return
    try:
        firings = evaluate(store)
        notified = [] if no_notify else notify(store, firings)
        demotions, problems = _demote(store, firings, compiled)
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
                    "demoted": [
                        {
                            "rule_id": d.rule_id,
                            "workflow": d.workflow,
                            "to": d.demote_to,
                            "from": d.previous,
                            "outcome": d.outcome,
                        }
                        for d in demotions
                    ],
                    "problems": problems,
                },
                indent=2,
            )
        )
    elif firings:
        _print_firings(firings)
        for n in notified:
            if n.outcome in ("delivered", "failed", "suppressed"):
                console.print(f"rule {n.rule_id}: webhook {n.outcome} ({n.attempts} attempt(s))")
        for d in demotions:
            if d.outcome == "demoted":
                console.print(
                    f"rule {d.rule_id}: `{shown(d.workflow)}` demoted {d.previous} → "
                    f"{d.demote_to} (actor {d.actor}); audited",
                    soft_wrap=True,
                )
            elif d.outcome == "already":
                console.print(
                    f"rule {d.rule_id}: `{shown(d.workflow)}` is at {d.previous}, not above "
                    f"{d.demote_to}: nothing to demote",
                    soft_wrap=True,
                )
    else:
        console.print("no alert fires")
    for line in problems:
        err_console.print(f"warning: {shown(line)}", soft_wrap=True)
    if firings:
        raise typer.Exit(EXIT_FAILED)
