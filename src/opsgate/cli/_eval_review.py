"""`agent-eval review next|record|show`: the human review queue, scriptable.

`next` lists a sample of finished trials (weighted toward high-impact ones) with everything a
reviewer needs; `record` stores a verdict; `show` puts human and automated verdicts side by
side with their agreement, and `--write` adds that section to the report file.
"""

from __future__ import annotations

import json
import os
import shlex
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer
from rich.table import Table

from opsgate.cli._common import cli_errors, console, write_file
from opsgate.cli._eval_baseline import DbOption, current_user
from opsgate.cli._safe import cell, clean, shown
from opsgate.errors import SuiteError
from opsgate.evals import (
    VERDICTS,
    EvalStore,
    ImpactRules,
    ReviewItem,
    check_report,
    load_report,
    open_existing,
    review_items,
    review_summary,
    sample,
)
from opsgate.store import Store, open_store

review_app = typer.Typer(
    help="The human review queue: sample finished tasks, record verdicts, measure agreement.",
    no_args_is_help=True,
)

ReportOption = Annotated[
    str, typer.Option("--report", help="A report file, or the id of a stored report.")
]


def _is_file_reference(reference: str) -> bool:
    return (
        Path(reference).exists()
        or reference.endswith(".json")
        or os.sep in reference
        or "/" in reference
    )


def _report(reference: str, store: Store | None) -> tuple[dict[str, Any], Path | None]:
    """The report named on the command line (a file, or a stored id) and its file, if any."""
    if _is_file_reference(reference):
        path = Path(reference)
        return check_report(load_report(path), f"`{path}`"), path
    if store is None:
        raise SuiteError(
            f"`{reference}` is not a report file, and there is no database to find a "
            "stored report of that id in"
        )
    return EvalStore(store).get_report(reference), None


def _plain(text: str) -> None:
    """Print a line as text: it quotes a report (a model's output, its calls, task ids), so
    never as markup, and with its control characters made visible."""
    console.print(clean(text), markup=False, soft_wrap=True)


def _describe(n: int, total: int, item: ReviewItem, reference: str) -> None:
    task = item.task
    verdict = "PASS" if item.automated else "FAIL"
    impact = "; ".join(item.impact) if item.impact else "no"
    _plain(f"[{n}/{total}] task {item.task_id}  trial {item.trial}  automated: {verdict}")
    _plain(f"  high impact: {impact}")
    run_id = f", run {task['run_id']}" if task.get("run_id") else ""
    _plain(f"  run: {task.get('status')} ({task.get('reason')}){run_id}")
    calls = task.get("calls") or []
    _plain(f"  calls ({len(calls)}):" if calls else "  calls: none")
    for call in calls:
        ran = "ran" if call.get("executed") else "not run"
        args = json.dumps(call.get("args"), sort_keys=True, ensure_ascii=False)
        _plain(f"    - {call.get('tool')} {args}: {call.get('reason')}, {ran}")
    output = task.get("output")
    _plain("  output: (none)" if output is None else "  output:")
    if output is not None:
        for line in str(output).splitlines() or [""]:
            _plain(f"    | {line}")
    failures = task.get("failures") or []
    _plain("  failures:" if failures else "  failures: none")
    for failure in failures:
        _plain(f"    - {failure}")
    if task.get("error"):
        _plain(f"  harness error: {task['error']}")
    _plain(
        f"  record: agent-eval review record --report {shlex.quote(reference)} "
        f"--task {shlex.quote(item.task_id)} --trial {item.trial} --verdict pass|fail "
        "--notes '…'"
    )
    _plain("")


@review_app.command("next")
@cli_errors
def next_(
    report: ReportOption,
    sample_size: Annotated[int, typer.Option("--sample", help="How many trials to list.")] = 5,
    seed: Annotated[int, typer.Option("--seed", help="Same seed, same sample.")] = 0,
    reviewer: Annotated[
        str | None,
        typer.Option(
            "--reviewer",
            help="Skip only what this reviewer has judged (default: skip anything judged).",
        ),
    ] = None,
    suite: Annotated[
        str | None,
        typer.Option(
            "--suite", help="The suite file whose tool contracts say what is high-impact."
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the sample as JSON.")] = False,
    db: DbOption = None,
) -> None:
    """List unreviewed trials to review, high-impact ones (writes, messages, money) likelier."""
    store = open_existing(db)
    try:
        document, _ = _report(report, store)
        reviewed = [] if store is None else EvalStore(store).reviews(document["report_id"])
    finally:
        if store is not None:
            store.close()
    done = {(r.task_id, r.trial) for r in reviewed if reviewer is None or r.reviewer == reviewer}
    rules = ImpactRules.for_suite(suite or document["suite"])
    items = review_items(document, rules)
    chosen = sample(items, sample_size, seed=seed, exclude=done)
    if as_json:  # ASCII JSON: the same data, no control or bidi character reaches a terminal
        typer.echo(
            json.dumps(
                [
                    {
                        "task_id": i.task_id,
                        "trial": i.trial,
                        "automated": i.automated,
                        "high_impact": i.high_impact,
                        "impact": i.impact,
                        "task": i.task,
                    }
                    for i in chosen
                ],
                indent=2,
                ensure_ascii=True,
            )
        )
        return
    left = sum((i.task_id, i.trial) not in done for i in items)
    high = sum(i.high_impact for i in items if (i.task_id, i.trial) not in done)
    _plain(
        f"report {document['report_id']} ({document['suite']}): {left} of {len(items)} "
        f"trials unreviewed, {high} of them high-impact; impact judged by {rules.source}"
    )
    if not chosen:
        _plain("nothing left to review")
        return
    _plain(f"sample of {len(chosen)} (seed {seed}):")
    _plain("")
    for n, item in enumerate(chosen, 1):
        _describe(n, len(chosen), item, report)


@review_app.command("record")
@cli_errors
def record(
    report: ReportOption,
    task: Annotated[str, typer.Option("--task", help="The task id.")],
    verdict: Annotated[str, typer.Option("--verdict", help="pass or fail.")],
    trial: Annotated[int, typer.Option("--trial", help="Which trial of the task.")] = 0,
    notes: Annotated[str, typer.Option("--notes", help="What you saw.")] = "",
    reviewer: Annotated[
        str | None, typer.Option("--reviewer", help="Who judges (default: $USER).")
    ] = None,
    db: DbOption = None,
) -> None:
    """Store a verdict on one trial (the report is stored too if it is not yet)."""
    verdict = verdict.strip().lower()
    if verdict not in VERDICTS:
        raise SuiteError(f"--verdict is `pass` or `fail`, not `{verdict}`")
    who = reviewer if reviewer is not None else current_user()
    with open_store(db) as store:
        document, _ = _report(report, store)
        saved = EvalStore(store).record_review(document, task, trial, verdict, who, notes)
    automated = next(
        bool(t.get("passed"))
        for t in document["tasks"]
        if t["task_id"] == task and t["trial"] == trial
    )
    agree = "agrees" if (verdict == "pass") == automated else "disagrees"
    _plain(
        f"recorded {saved.verdict} on {task} trial {trial} by {saved.reviewer} "
        f"({agree} with the automated {'pass' if automated else 'fail'})"
    )


def _rate(value: float | None, percent: bool) -> str:
    if value is None:
        return "n/a"
    return f"{value:.1%}" if percent else f"{value:.2f}"


@review_app.command("show")
@cli_errors
def show(
    report: ReportOption,
    write: Annotated[
        bool, typer.Option("--write", help="Add the `reviews` section to the report file.")
    ] = False,
    db: DbOption = None,
) -> None:
    """Human and automated verdicts side by side, with agreement and Cohen's kappa."""
    store = open_existing(db)
    try:
        document, path = _report(report, store)
        summary: dict[str, Any] = (
            review_summary(store, document)
            if store is not None
            else {"reviewed": 0, "agreement": None, "kappa": None, "items": []}
        )
    finally:
        if store is not None:
            store.close()
    if write and path is None:
        raise SuiteError("--write needs the report file, not a stored report id")
    table = Table(title=f"reviews of {shown(document['report_id'])}", title_justify="left")
    for column in ("task", "trial", "reviewer", "human", "automated", "agree", "notes"):
        table.add_column(column, overflow="fold")
    for item in summary["items"]:
        human = item["verdict"] == "pass"
        table.add_row(
            cell(item["task_id"]),
            cell(item["trial"]),
            cell(item["reviewer"]),
            cell(item["verdict"]),
            "pass" if item["automated"] else "fail",
            "yes" if human == item["automated"] else "NO",
            cell(item["notes"]),
        )
    if summary["items"]:
        console.print(table)
    count = summary["reviewed"]
    _plain(
        f"{count} verdict{'' if count == 1 else 's'}: agreement "
        f"{_rate(summary['agreement'], True)}, Cohen's kappa {_rate(summary['kappa'], False)}"
        + ("" if summary["reviewed"] else " (nothing reviewed yet: agent-eval review next)")
    )
    if write and path is not None:
        written = dict(load_report(path), reviews=summary)
        write_file(path, orjson.dumps(written, option=orjson.OPT_INDENT_2))
        _plain(f"wrote the reviews section into {path}")


def register(app: typer.Typer) -> None:
    """Add `agent-eval review …`."""
    app.add_typer(review_app, name="review")
