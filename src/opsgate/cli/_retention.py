"""`opsgate retention apply`: expire traces, archive old audit segments (cron-friendly)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from opsgate.cli._common import cli_errors, console
from opsgate.cli._safe import shown
from opsgate.environment import AUDIT_RETENTION_DAYS_ENV, TRACE_RETENTION_DAYS_ENV
from opsgate.errors import ConfigError
from opsgate.retention import apply_retention, default_archive_dir
from opsgate.store import NoDatabaseError, open_store

retention_app = typer.Typer(help="Data retention.", no_args_is_help=True)


def _days(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw is None:
        return default
    try:
        return float(raw)
    except ValueError:
        raise ConfigError(f"`{name}` must be a number of days, not `{raw}`") from None


@retention_app.command("apply")
@cli_errors
def apply(
    db: Annotated[str | None, typer.Option("--db", help="Database URL.")] = None,
    traces_days: Annotated[
        float | None,
        typer.Option(
            help="Delete debug traces older than this (default $OPSGATE_TRACE_RETENTION_DAYS "
            "or 30)."
        ),
    ] = None,
    audit_days: Annotated[
        float | None,
        typer.Option(
            help="Archive audit segments older than this (default "
            "$OPSGATE_AUDIT_RETENTION_DAYS or 365)."
        ),
    ] = None,
    archive_dir: Annotated[
        Path | None, typer.Option(help="Where audit archives go (default $OPSGATE_HOME/archive).")
    ] = None,
    dry_run: Annotated[bool, typer.Option(help="Report, change nothing.")] = False,
) -> None:
    """Apply the retention rules once and report what was removed."""
    traces = traces_days if traces_days is not None else _days(TRACE_RETENTION_DAYS_ENV, 30.0)
    audit = audit_days if audit_days is not None else _days(AUDIT_RETENTION_DAYS_ENV, 365.0)
    if traces <= 0 or audit <= 0:
        raise ConfigError("retention periods must be positive numbers of days")
    try:
        store = open_store(db, migrate=False)
    except NoDatabaseError as exc:  # a fresh install: nothing to expire (a cron job stays green)
        console.print(shown(exc), soft_wrap=True)
        return
    try:
        report = apply_retention(
            store,
            traces_days=traces,
            audit_days=audit,
            archive_dir=archive_dir or default_archive_dir(),
            dry_run=dry_run,
        )
    finally:
        store.close()
    verb = "would delete" if dry_run else "deleted"
    console.print(f"traces: {verb} {report.spans_deleted} spans older than {traces:g} days")
    if not report.segments:
        console.print(
            f"audit: no whole segment older than {audit:g} days"
            + (" (dry run: archiving skipped)" if dry_run else "")
        )
    for segment in report.segments:
        console.print(
            f"audit: archived events {segment.from_seq}..{segment.to_seq - 1} to "
            f"{shown(segment.path)} (sha256 {shown(segment.sha256[:16])}…), then dropped them"
        )
