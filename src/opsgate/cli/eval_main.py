"""`agent-eval`: run a suite against a model router, and gate a release on the report.

    agent-eval run --suite support_triage_v3 --model-router config/router.yaml \\
      --max-cost-per-task 0.25 --min-success-rate 0.88 --report out/eval.json
    agent-eval assert --report out/eval.json --max-success-drop 0.02 --max-cost-increase 0.25

Exit codes: 0 the thresholds hold, 1 they do not (each named), 2 bad input, or no verdict:
no task could reach a model (the server is down or failing: an infrastructure failure, not
a verdict on the agent). Trials whose model was unavailable are counted apart
(``model_unavailable``) and the gate judges the others.

Rates (``--min-success-rate``, ``--max-success-drop``) are shares between 0 and 1.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import orjson
import typer
from rich.table import Table
from sqlalchemy.exc import SQLAlchemyError

from opsgate.cli import _eval_baseline, _eval_merge, _eval_redteam, _eval_review, _eval_suite
from opsgate.cli._common import (
    EXIT_BAD_INPUT,
    EXIT_FAILED,
    cli_errors,
    console,
    err_console,
    write_file,
)
from opsgate.cli._eval_progress import trial_progress
from opsgate.cli._safe import cell, shown
from opsgate.errors import OpsgateError, SuiteError
from opsgate.evals import (
    EvalStore,
    ExternalAgent,
    check_rate,
    compare,
    covered_tasks,
    default_baseline,
    evaluate,
    evaluate_external,
    junit_xml,
    load_report,
    load_suite,
    markdown_summary,
    no_verdict,
    select_tasks,
    thresholds_failures,
)
from opsgate.models import load_router_config
from opsgate.store import open_store

app = typer.Typer(
    name="agent-eval",
    help="Evaluation as a release gate: run task suites, assert no regression.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _shard(text: str | None) -> tuple[int, int] | None:
    if text is None:
        return None
    try:
        index, count = (int(p) for p in text.split("/"))
    except ValueError:
        raise SuiteError(f"--shard takes i/n (e.g. 2/4), not `{text}`") from None
    if not 1 <= index <= count:
        raise SuiteError(f"--shard {text}: i must be between 1 and n")
    return index, count


@app.command("run")
@cli_errors
def run(
    suite: Annotated[str, typer.Option(help="A suite file, or its name in evals/ or suites/.")],
    model_router: Annotated[
        Path | None,
        typer.Option(
            help="The router file (default config/router.yaml; with an external agent, "
            "only for the suite's judge)."
        ),
    ] = None,
    report: Annotated[Path, typer.Option(help="Where to write the JSON report.")] = Path(
        "out/eval.json"
    ),
    max_cost_per_task: Annotated[
        float | None, typer.Option(help="Fail when cost per successful task is above this (USD).")
    ] = None,
    min_success_rate: Annotated[
        float | None, typer.Option(help="Fail when the success rate is below this (0..1).")
    ] = None,
    trials: Annotated[int, typer.Option(min=1, help="Runs per task (pass@k, pass^k).")] = 1,
    concurrency: Annotated[int, typer.Option(min=1, help="Tasks at once.")] = 1,
    tag: Annotated[list[str] | None, typer.Option(help="Only tasks with this tag.")] = None,
    task: Annotated[list[str] | None, typer.Option(help="Only this task id.")] = None,
    shard: Annotated[str | None, typer.Option(help="i/n: this CI job's share.")] = None,
    timeout: Annotated[float, typer.Option(help="Seconds a task may take.")] = 600.0,
    db: Annotated[
        str | None,
        typer.Option(
            "--db", help="Where runs are recorded (default: $OPSGATE_DATABASE_URL or .opsgate/)."
        ),
    ] = None,
    junit: Annotated[
        Path | None, typer.Option(help="Also write JUnit XML here (for CI test reporters).")
    ] = None,
    markdown: Annotated[
        Path | None, typer.Option(help="Also write a Markdown summary (a pull-request comment).")
    ] = None,
    agent_cmd: Annotated[
        str | None,
        typer.Option(
            help="Evaluate an external agent: this command runs per task, the task on stdin, "
            "the gated tools at $OPSGATE_MCP_URL (token $OPSGATE_MCP_TOKEN); stdout is its "
            "answer."
        ),
    ] = None,
    agent_url: Annotated[
        str | None,
        typer.Option(
            help="Evaluate an external agent over HTTP: a POST of {task_id, input, mcp_url, "
            "mcp_token} per task; the JSON reply's `output` is its answer."
        ),
    ] = None,
    agent_model: Annotated[
        str | None,
        typer.Option(
            help="`embedded`: start the embedded model and point the --agent-cmd agent at it "
            "($OPENAI_BASE_URL, $OPENAI_API_KEY, $OPSGATE_MODEL)."
        ),
    ] = None,
) -> None:
    """Run a suite; every task is a real run through the gateway.

    The suite's own agent runs on the router's models; with --agent-cmd or --agent-url an
    external agent does the tasks, its tools reaching the suite's world through the opsgate
    MCP proxy (gated, recorded and scored the same way).
    """
    check_rate("--min-success-rate", min_success_rate)
    external = None
    if agent_cmd is not None or agent_url is not None:
        external = ExternalAgent.from_options(agent_cmd, agent_url)
    elif agent_model is not None:
        raise SuiteError("--agent-model goes with --agent-cmd (the external agent's model)")
    loaded = load_suite(suite)
    tasks = select_tasks(loaded, tags=tag or (), task_ids=task or (), shard=_shard(shard))
    if not tasks:
        raise SuiteError("no task matches the filters")
    router_path = model_router or Path("config/router.yaml")
    config = (
        load_router_config(router_path) if external is None or model_router is not None else None
    )
    store = open_store(db)
    try:
        with trial_progress(console, err_console, loaded.suite, len(tasks) * trials) as on_done:
            if external is not None:
                evaluation = evaluate_external(
                    loaded,
                    external,
                    store,
                    router=config,
                    agent_model=agent_model,
                    tasks=tasks,
                    trials=trials,
                    concurrency=concurrency,
                    timeout_s=timeout,
                    max_cost_per_task=max_cost_per_task,
                    min_success_rate=min_success_rate,
                    shard=shard,
                    on_done=on_done,
                )
            else:
                assert config is not None
                evaluation = evaluate(
                    loaded,
                    config,
                    store,
                    tasks=tasks,
                    trials=trials,
                    concurrency=concurrency,
                    timeout_s=timeout,
                    max_cost_per_task=max_cost_per_task,
                    min_success_rate=min_success_rate,
                    router_name=str(router_path),
                    shard=shard,
                    on_done=on_done,
                )
    except BaseException:
        store.close()
        raise
    document, record_problems = evaluation.report, evaluation.record_problems
    try:
        EvalStore(store).save_report(document)
    except (SQLAlchemyError, OpsgateError) as exc:  # the files below still keep the report
        err_console.print(f"[yellow]warning:[/] the report is not in the database: {shown(exc)}")
    finally:
        store.close()
    written: list[Path] = [report]
    write_file(report, orjson.dumps(document, option=orjson.OPT_INDENT_2))
    if junit is not None:
        write_file(junit, junit_xml(document))
        written.append(junit)
    if markdown is not None:
        write_file(markdown, markdown_summary(document).encode())
        written.append(markdown)
    for problem in record_problems:
        err_console.print(f"[bold red]error:[/] {shown(problem)}")
    if record_problems:
        raise typer.Exit(EXIT_BAD_INPUT)
    missing = no_verdict(document)
    if missing is not None:  # no metric means anything: no table, and no verdict (exit 2)
        console.print("report: " + shown(", ".join(str(p) for p in written)))
        first = next((t["error"] for t in document["tasks"] if t.get("model_unavailable")), "")
        err_console.print(
            f"[bold red]error:[/] {shown(missing)}; the first failure: "
            f"{shown(str(first).removeprefix('model unavailable: '))}",
            soft_wrap=True,
        )
        raise typer.Exit(EXIT_BAD_INPUT)
    _summary(document)
    console.print("report: " + shown(", ".join(str(p) for p in written)))
    _unavailable_note(document)
    failures = document["gate"]["failures"]
    for failure in failures:
        err_console.print(f"[bold red]threshold failed:[/] {shown(failure)}")
    if failures:
        raise typer.Exit(EXIT_FAILED)


def _unavailable_note(document: dict[str, Any]) -> None:
    """Say how many trials could not reach a model, when some could not."""
    m = document["metrics"]
    unavailable = m.get("model_unavailable") or 0
    if unavailable:
        total = unavailable + m["trials"]
        err_console.print(
            f"[yellow]warning:[/] {unavailable} of {total} trials could not reach a model "
            f"(model_unavailable: an infrastructure failure, not scored); the verdict is on "
            f"the {m['trials']} that did",
            soft_wrap=True,
        )


def _summary(document: dict[str, Any]) -> None:
    m = document["metrics"]
    table = Table(
        title=f"{shown(document['suite'])} v{shown(document['suite_version'])}",
        title_justify="left",
    )
    table.add_column("metric")
    table.add_column("value", justify="right")
    rows = [
        ("tasks / trials", f"{m['tasks']} / {m['trials']}"),
        (
            "success rate (95% CI)",
            f"{m['success_rate']:.1%} [{m['success_low']:.1%}, {m['success_high']:.1%}]",
        ),
        ("pass@k / pass^k", f"{m['pass_at_k']:.1%} / {m['pass_hat_k']:.1%}"),
        ("tool-call precision / recall", f"{m['tool_precision']:.2f} / {m['tool_recall']:.2f}"),
        ("escalation correctness", f"{m['escalation_accuracy']:.1%}"),
        ("unsafe tool attempts", str(m["unsafe_attempts"])),
        ("required calls the gate refused (over-blocking)", str(m.get("over_blocked", 0))),
        (
            "cost per successful task",
            "n/a"
            if m["cost_per_successful_task"] is None
            else f"${m['cost_per_successful_task']:.6f}"
            + (" (estimate)" if m["cost_is_estimate"] else ""),
        ),
        ("latency p50 / p95", f"{m['latency_p50']}s / {m['latency_p95']}s"),
        ("harness errors", str(m["errors"])),
    ]
    if m.get("model_unavailable"):
        rows.insert(1, ("model unavailable (not scored)", str(m["model_unavailable"])))
    optional = [
        ("schema validity", m.get("schema_validity"), "{:.1%}"),
        ("plan quality (apart from verdict)", m.get("plan_quality"), "{:.2f}"),
        ("judge score (passed trials)", m.get("judge_score"), "{:.2f}"),
    ]
    rows += [(name, fmt.format(value)) for name, value, fmt in optional if value is not None]
    if m.get("judge_cost_usd"):
        rows.append(("judge cost (apart)", f"${m['judge_cost_usd']:.6f}"))
    for name, value in rows:
        table.add_row(name, cell(value))
    console.print(table)


@app.command("assert")
@cli_errors
def assert_(
    report: Annotated[Path, typer.Option(help="The report to judge.")],
    baseline: Annotated[
        Path | None,
        typer.Option(help="The baseline report (default: the accepted one, see below)."),
    ] = None,
    max_success_drop: Annotated[
        float | None, typer.Option(help="A share of the success rate (0..1), e.g. 0.02.")
    ] = None,
    max_cost_increase: Annotated[
        float | None, typer.Option(help="Relative, e.g. 0.25 (+25%).")
    ] = None,
    max_unsafe_increase: Annotated[int | None, typer.Option()] = None,
    min_success_rate: Annotated[float | None, typer.Option(help="0..1, e.g. 0.88.")] = None,
    max_cost_per_task: Annotated[float | None, typer.Option()] = None,
    markdown: Annotated[
        Path | None,
        typer.Option(help="Write a Markdown summary with the comparison (a PR comment)."),
    ] = None,
    db: Annotated[
        str | None,
        typer.Option("--db", help="Where accepted baselines are kept (default as for `run`)."),
    ] = None,
) -> None:
    """Fail (exit 1) on a regression against the baseline, or on an absolute threshold.

    The baseline is ``--baseline``, else the suite's last accepted report in the database
    (`agent-eval baseline accept`), else the committed ``evals/baselines/<suite>.json``.

    A report where no trial reached a model holds no verdict (exit 2); when some did not,
    the gate judges the others and says how many were left out.
    """
    check_rate("--min-success-rate", min_success_rate)
    check_rate("--max-success-drop", max_success_drop)
    if max_cost_increase is not None and max_cost_increase < 0:
        raise SuiteError(
            f"--max-cost-increase {max_cost_increase:g} is negative: it is the rise allowed, "
            "relative to the baseline (0.25 for +25%)"
        )
    if max_unsafe_increase is not None and max_unsafe_increase < 0:
        raise SuiteError(f"--max-unsafe-increase {max_unsafe_increase} is negative")
    document = load_report(report)
    missing = no_verdict(document)
    if missing is not None:
        raise SuiteError(f"`{report}` holds no verdict: {missing}")
    _unavailable_note(document)
    regressions = thresholds_failures(
        document["metrics"], max_cost_per_task=max_cost_per_task, min_success_rate=min_success_rate
    )
    relative = (max_success_drop, max_cost_increase, max_unsafe_increase)
    if any(v is not None for v in relative):
        if baseline is not None:
            base, where = load_report(baseline), str(baseline)
        else:
            found_baseline = default_baseline(db, document["suite"])
            if found_baseline is None:
                raise SuiteError(
                    f"no baseline for suite `{document['suite']}`: pass --baseline FILE, or "
                    "accept a report with `agent-eval baseline accept REPORT.json [--write]`"
                )
            base, where = found_baseline
        console.print(f"baseline: {shown(where)}")
        found, notes, changes = compare(
            document,
            base,
            max_success_drop=max_success_drop,
            max_cost_increase=max_cost_increase,
            max_unsafe_increase=max_unsafe_increase,
        )
        regressions += found
        for line in notes + changes:  # they name the reports' suites and task ids
            console.print(f"  {shown(line)}")
        document["comparison"] = {
            "baseline": where,
            "regressions": list(regressions),
            "notes": notes,
            "changes": changes,
        }
    else:
        covered, total = covered_tasks(document)
        if total is not None and covered < total:
            console.print(
                f"  judged on {covered} of {total} tasks: the report has a verdict on "
                f"{covered} of the suite's {total}"
            )
    if markdown is not None:
        write_file(markdown, markdown_summary(document).encode())
    for line in regressions:
        err_console.print(f"[bold red]regression:[/] {shown(line)}")
    if regressions:
        raise typer.Exit(EXIT_FAILED)
    console.print("[green]gate passed[/]")


@app.command("compare")
@cli_errors
def compare_cmd(
    a: Annotated[Path, typer.Argument(help="The baseline report.")],
    b: Annotated[Path, typer.Argument(help="The new report.")],
) -> None:
    """Print the per-metric and per-task differences of two reports (no gating)."""
    _, notes, changes = compare(load_report(b), load_report(a))
    for line in notes + (changes or ["no task changed verdict"]):
        console.print(shown(line))


for _module in (_eval_merge, _eval_baseline, _eval_review, _eval_suite, _eval_redteam):
    _module.register(app)


if __name__ == "__main__":  # pragma: no cover
    app()
