"""`agent-eval merge`: one report (and its JUnit XML / Markdown) from the reports of CI shards.

    agent-eval merge out/shard-*.json --report out/eval.json --junit out/eval.xml \\
      --markdown out/eval.md

Exit codes: 0 the merged gate holds, 1 it does not (each threshold named), 2 bad input.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import orjson
import typer

from opsgate.cli._common import EXIT_FAILED, cli_errors, console, err_console, write_file
from opsgate.cli._safe import shown
from opsgate.evals import junit_xml, load_report, markdown_summary, merge_reports


def merge(
    shards: Annotated[
        list[Path], typer.Argument(metavar="SHARD.json...", help="The shard reports (JSON).")
    ],
    report: Annotated[Path, typer.Option(help="Where to write the merged JSON report.")] = Path(
        "out/eval.json"
    ),
    junit: Annotated[
        Path | None, typer.Option(help="Also write the merged report as JUnit XML here.")
    ] = None,
    markdown: Annotated[
        Path | None, typer.Option(help="Also write a Markdown summary (a PR comment) here.")
    ] = None,
    allow_partial: Annotated[
        bool, typer.Option(help="Merge even when some shards of i/n are missing.")
    ] = False,
) -> None:
    """Merge the reports of `agent-eval run --shard i/n`, recomputing metrics and the gate."""
    document = merge_reports([load_report(p) for p in shards], allow_partial=allow_partial)
    write_file(report, orjson.dumps(document, option=orjson.OPT_INDENT_2))
    if junit is not None:
        write_file(junit, junit_xml(document))
    if markdown is not None:
        write_file(markdown, markdown_summary(document).encode())
    m = document["metrics"]
    failures = document["gate"]["failures"]
    missing = document["missing_shards"]
    # the suite's name, version and shards are read from the shard files
    console.print(
        f"merged {len(document['merged_from'])} shard(s) of {shown(document['suite'])} "
        f"v{shown(document['suite_version'])}: {m['tasks']} tasks, {m['trials']} trials, "
        f"success {m['success_rate']:.1%} [{m['success_low']:.1%}, {m['success_high']:.1%}], "
        + (f"missing {shown(', '.join(missing))}, " if missing else "")
        + ("gate failed" if failures else "gate passed")
        + f" -> {shown(report)}",
        soft_wrap=True,
    )
    for failure in failures:
        err_console.print(f"[bold red]threshold failed:[/] {shown(failure)}")
    if failures:
        raise typer.Exit(EXIT_FAILED)


def register(app: typer.Typer) -> None:
    """Add this module's commands to `agent-eval`."""
    app.command("merge")(cli_errors(merge))
