"""`opsgate audit verify|prove|show|checkpoint`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from opsgate.audit import (
    AuditLog,
    CheckpointWitness,
    Signer,
    default_key_path,
    key_id,
    load_public_key,
    verify_archive,
    witness_path_for,
)
from opsgate.cli._common import EXIT_FAILED, cli_errors, console, err_console
from opsgate.cli._safe import cell, clean, shown
from opsgate.errors import AuditIntegrityError, ConfigError
from opsgate.store import NoDatabaseError, open_store

audit_app = typer.Typer(help="Verify, prove and read the audit trail.", no_args_is_help=True)

DbOption = Annotated[
    str | None,
    typer.Option("--db", help="Database URL (default: $OPSGATE_DATABASE_URL or .opsgate/)."),
]


def _public_keys(path: Path | None) -> dict[str, Any] | None:
    """``--public-key``'s key by its id (None: the keys the store or the archive carries)."""
    if path is None:
        return None
    try:
        key = load_public_key(path.read_bytes())  # not UTF-8: not a key (a ConfigError)
    except OSError as exc:
        raise ConfigError(f"cannot read `{path}`: {exc.strerror or exc}") from None
    return {key_id(key): key}


def _log(db: str | None, *, sign: bool = False) -> AuditLog:
    store = open_store(db, migrate=False)
    signer = Signer.from_file(create=True) if sign else None
    return AuditLog(store, signer)


@audit_app.command("verify")
@cli_errors
def verify(
    db: DbOption = None,
    public_key: Annotated[
        Path | None,
        typer.Option(
            help="PEM file of the public key obtained out of band (default: the keys the "
            "store records, which proves integrity only against those who cannot also "
            "replace them)."
        ),
    ] = None,
    witness: Annotated[
        Path | None,
        typer.Option(
            help="A copy of the signed checkpoints kept outside the database (default: the "
            "witness beside the signing key, when there is one)."
        ),
    ] = None,
    allow_missing_archives: Annotated[
        bool,
        typer.Option(
            "--allow-missing-archives",
            help="List archive files that cannot be read (kept offline) instead of failing.",
        ),
    ] = False,
) -> None:
    """Re-hash every event and check every column of the audit tables, every signed
    checkpoint, the archives and the witness.

    Exit 0 when the log verifies (or nothing was recorded yet), 1 naming the first bad
    sequence number otherwise.
    """
    try:
        log = _log(db)
    except NoDatabaseError as exc:  # no database: nothing to verify, and none is made
        console.print(shown(exc), soft_wrap=True)
        return
    keys = _public_keys(public_key)
    if witness is not None and not witness.is_file():
        raise ConfigError(f"no witness file `{witness}`")
    kept = CheckpointWitness(witness or witness_path_for(default_key_path()))
    try:
        report = log.verify(keys, allow_missing_archives=allow_missing_archives, witness=kept)
    except AuditIntegrityError as exc:
        where = "" if exc.seq is None else f" at event {shown(exc.seq)}"
        err_console.print(f"[bold red]FAILED[/]{where}: {shown(exc)}")
        raise typer.Exit(EXIT_FAILED) from None
    rate = report.events / report.seconds if report.seconds else 0.0
    extra = ""
    if report.archives:
        extra += f", {report.archives} archives"
    if report.witnessed:
        extra += f", {report.witnessed} witnessed heads"
    console.print(
        f"[green]ok[/] {report.events} events, {report.checkpoints} signed "
        f"checkpoints{extra} verified in {report.seconds:.3f}s ({rate:,.0f} events/s)"
    )
    for name in report.archives_missing:
        console.print(f"not re-checked (archive not found): {shown(name)}", soft_wrap=True)


@audit_app.command("verify-archive")
@cli_errors
def verify_archive_file(
    path: Annotated[Path, typer.Argument(help="An archive written by `opsgate retention`.")],
    public_key: Annotated[
        Path | None,
        typer.Option(help="PEM file of the public key (default: the keys the archive carries)."),
    ] = None,
) -> None:
    """Check an audit archive offline (exit 0 ok, 1 tampered)."""
    try:
        document = json.loads(path.read_text())
    except (OSError, ValueError, RecursionError) as exc:  # RecursionError: nested too deep
        raise ConfigError(f"cannot read `{path}` as an archive: {exc}") from None
    if not isinstance(document, dict):
        raise ConfigError(f"`{path}` is not an audit archive (not a JSON object)")
    keys = _public_keys(public_key)
    try:
        count = verify_archive(document, keys)
    except AuditIntegrityError as exc:
        err_console.print(f"[bold red]FAILED[/]: {shown(exc)}")
        raise typer.Exit(EXIT_FAILED) from None
    console.print(
        f"[green]ok[/] {count} events ({shown(document['from_seq'])}.."
        f"{shown(document['to_seq'] - 1)}) match the signed checkpoint at "
        f"{shown(document['to_seq'])}"
    )


@audit_app.command("checkpoint")
@cli_errors
def checkpoint(db: DbOption = None) -> None:
    """Sign a checkpoint over every event so far (with the local signing key)."""
    try:
        log = _log(db, sign=True)
    except NoDatabaseError as exc:  # nothing to sign (and no key made for it)
        console.print(shown(exc), soft_wrap=True)
        return
    cp = log.checkpoint()
    if cp is None:
        console.print("nothing new since the last checkpoint")
    else:
        console.print(
            f"checkpoint at {cp.tree_size} events, root {cp.root_hash.hex()}, "
            f"key {shown(cp.key_id)} ({shown(default_key_path())})"
        )


@audit_app.command("prove")
@cli_errors
def prove(
    seq: Annotated[int, typer.Argument(help="The event's sequence number.")],
    db: DbOption = None,
) -> None:
    """Print an inclusion proof of one event (JSON) that a verifier checks with the public
    key alone."""
    log = _log(db)
    # ASCII JSON: the event's data reaches the terminal as \u escapes, never as controls
    console.print_json(json.dumps(log.inclusion(seq)), ensure_ascii=True)


@audit_app.command("show")
@cli_errors
def show(
    run_id: Annotated[str, typer.Argument(help="The run id (or a unique prefix).")],
    db: DbOption = None,
) -> None:
    """The story of one run: who invoked it, what it read, which tools it called, what the
    gate decided, who approved, what it changed, how it ended."""
    log = _log(db)
    records = (
        log.records(run_id)
        if len(run_id) >= 32
        else [r for r in log.records() if r.run_id.startswith(run_id)]
    )
    runs = sorted({r.run_id for r in records})
    if not runs:
        raise ConfigError(f"no run `{run_id}` in the audit trail")
    if len(runs) > 1:
        raise ConfigError(f"`{run_id}` matches {len(runs)} runs; give more of the id")
    table = Table(title=f"run {shown(runs[0])}", title_justify="left")
    for column in ("seq", "event", "details"):
        table.add_column(column, overflow="fold")  # long values whole, not cut with "…"
    for r in records:  # the events' data: the agent's, a model's, a tool's, a ticket's
        table.add_row(str(r.seq), cell(r.type), cell(_describe(r.type, r.data)))
    console.print(table)


def _describe(kind: str, d: dict[str, Any]) -> str:
    """One line of plain text (not markup) about an event."""
    if kind == "run_started":
        return (
            f"invoked by {d.get('invoker')} · agent {d.get('agent_id')} · workflow "
            f"{d.get('workflow')} · policy {d.get('policy_version')} · stage {d.get('stage')}"
        )
    if kind == "context_read":
        return f"read {d.get('source')} ({d.get('trust')})"
    if kind == "tool_call_proposed":
        return f"{d.get('tool')}({json.dumps(d.get('args'), sort_keys=True)})"
    if kind == "decision":
        return f"{d.get('effect')} · {d.get('reason')} · {d.get('rule')}"
    if kind.startswith("approval_"):
        who = d.get("approver") or ""
        return f"{d.get('tool', '')} {who} {d.get('reason', '')}".strip()
    if kind == "write_performed":
        return f"CHANGED via {d.get('tool')}: {json.dumps(d.get('result'), sort_keys=True)}"
    if kind in ("tool_result", "tool_error"):
        text = d.get("error") or json.dumps(d.get("result"), sort_keys=True)
        return f"{d.get('tool')}: {clean(text, limit=120)}"
    if kind in ("escalated", "run_ended"):
        return f"{d.get('status', '')} {d.get('reason', '')} {d.get('message', '')}".strip()
    return clean(json.dumps(d, sort_keys=True), limit=120)
