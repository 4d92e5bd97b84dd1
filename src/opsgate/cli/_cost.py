"""`opsgate cost`: spend, runs, successes and cost per successful task, from the ledger.

The figures are `CostLedger`'s (see its counting rules): spend counts when it was spent, runs
in the window they started in, a success is a completed run, and the cost per successful
task is the window's spend over its successful runs.
"""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Annotated

import typer
from rich.table import Table

from opsgate.cli._common import cli_errors, console
from opsgate.cli._safe import cell, shown
from opsgate.cost import CostLedger
from opsgate.evals import parse_since
from opsgate.store import NoDatabaseError, open_store

DbOption = Annotated[
    str | None,
    typer.Option("--db", help="Database URL (default: $OPSGATE_DATABASE_URL or .opsgate/)."),
]

_DAY = 86_400.0


class By(StrEnum):
    workflow = "workflow"
    day = "day"
    model = "model"


def _money(value: float | None) -> str:
    return "-" if value is None else f"${value:.4f}"


def _estimate(flag: bool) -> str:
    return "~" if flag else ""


def _by_workflow(ledger: CostLedger, since: float, now: float, include_eval: bool) -> Table:
    table = Table(title="cost by workflow", title_justify="left")
    for column in ("workflow", "spend", "runs", "successes", "success rate", "per success"):
        table.add_column(column, overflow="fold")
    spend = count = ok = 0.0
    found = ledger.by_workflow(since, now, include_eval=include_eval)
    for w in found:
        spend += w.cost_usd
        count += w.runs
        ok += w.successful_runs
        table.add_row(
            cell(w.workflow),  # from the store: text, never markup
            _money(w.cost_usd) + _estimate(w.estimate),
            str(w.runs),
            str(w.successful_runs),
            "-" if w.success_rate is None else f"{w.success_rate:.1%}",
            _money(w.cost_per_success) + _estimate(w.estimate and w.cost_per_success is not None),
        )
    if not found:
        return table
    table.add_section()
    table.add_row(
        "total",
        _money(spend),
        str(int(count)),
        str(int(ok)),
        "",
        _money(spend / ok if ok else None),
    )
    return table


def _by_day(ledger: CostLedger, since: float, now: float, include_eval: bool) -> Table:
    days = max(1, math.ceil((now - since) / _DAY))
    table = Table(title="cost by UTC day", title_justify="left")
    for column in ("day", "spend", "runs", "successes", "per success"):
        table.add_column(column, overflow="fold")
    for d in ledger.by_day(None, days, now, include_eval=include_eval):
        start = datetime(d.day.year, d.day.month, d.day.day, tzinfo=UTC)
        # successes: the runs that started that day and completed (the ledger's rule)
        ok = sum(
            w.successful_runs
            for w in ledger.by_workflow(
                start.timestamp(),
                (start + timedelta(days=1)).timestamp(),
                include_eval=include_eval,
            )
        )
        table.add_row(
            d.day.isoformat(),
            _money(d.cost_usd) + _estimate(d.estimate),
            str(d.runs),
            str(ok),
            _money(d.cost_usd / ok if ok else None),
        )
    return table


def _by_model(ledger: CostLedger, since: float, now: float, include_eval: bool) -> Table:
    table = Table(title="cost by model", title_justify="left")
    for column in ("model", "spend", "calls", "failed", "cache hits", "tokens in/out", "latency"):
        table.add_column(column, overflow="fold")
    for m in ledger.by_model(since, now, include_eval=include_eval):
        table.add_row(
            cell(m.model),  # from the store: text, never markup
            _money(m.cost_usd) + _estimate(m.estimate),
            str(m.calls),
            str(m.failed_calls),
            str(m.cache_hits),
            f"{m.input_tokens}/{m.output_tokens}",
            f"{m.mean_latency_s:.2f}s",
        )
    return table


@cli_errors
def cost(
    db: DbOption = None,
    since: Annotated[
        str, typer.Option(help="The window: 7d, 24h, 30m or an ISO date/time.")
    ] = "7d",
    by: Annotated[By, typer.Option("--by", help="Roll up by workflow, UTC day or model.")] = (
        By.workflow
    ),
    include_eval: Annotated[
        bool,
        typer.Option("--include-eval", help="Count agent-eval trials too (left out by default)."),
    ] = False,
) -> None:
    """Spend, runs, successes and cost per successful task (`~`: an estimate). Production
    runs only, unless --include-eval."""
    now = time.time()
    start = parse_since(since, now=now)
    try:
        store = open_store(db, migrate=False, create=False)
    except NoDatabaseError as exc:  # no database: no spend, and none is made
        console.print(shown(exc), soft_wrap=True)
        return
    try:
        ledger = CostLedger(store)
        if by is By.day:
            table = _by_day(ledger, start, now, include_eval)
        elif by is By.model:
            table = _by_model(ledger, start, now, include_eval)
        else:
            table = _by_workflow(ledger, start, now, include_eval)
    finally:
        store.close()
    console.print(table)
    if table.row_count == 0:
        console.print(f"nothing recorded in the window (--since {shown(since)})", soft_wrap=True)
