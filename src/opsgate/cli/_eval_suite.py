"""`agent-eval suite from-runs`: draft a task suite from recorded production runs.

    agent-eval suite from-runs --workflow support_triage --since 7d --out suites/w_new.yaml

Exit codes: 0 a suite was written, or nothing to draft (no run of the workflow ended in the
window, or none left a check: said so, no file written); 2 bad input (a bad --since, an
existing --out without --force, no suite to copy the header from, no run of the workflow
recorded at all, an unreadable database).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Annotated

import typer
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from opsgate.cli._common import cli_errors, console, write_file
from opsgate.cli._safe import shown
from opsgate.contracts import Toolbelt
from opsgate.errors import StoreError, SuiteError
from opsgate.evals import (
    default_like_suite,
    draft_runs,
    load_suite,
    make_redactor,
    parse_since,
    render_suite,
)
from opsgate.store import Store, default_url, open_store

suite_app = typer.Typer(help="Build task suites.", no_args_is_help=True)


@suite_app.command("from-runs")
@cli_errors
def from_runs(
    workflow: Annotated[str, typer.Option(help="The workflow whose runs to draft from.")],
    out: Annotated[Path, typer.Option(help="The suite file to write (its stem names the suite).")],
    since: Annotated[
        str, typer.Option(help="Runs that ended since: 7d, 24h, 30m or an ISO date (UTC).")
    ] = "7d",
    like: Annotated[
        str | None,
        typer.Option(
            help="A suite to copy the header (agent, tools, policy, world) from "
            "(default: the shipped suite of the workflow)."
        ),
    ] = None,
    limit: Annotated[int, typer.Option(min=1, help="At most this many runs, the newest.")] = 200,
    db: Annotated[
        str | None,
        typer.Option("--db", help="Database URL (default: $OPSGATE_DATABASE_URL or .opsgate/)."),
    ] = None,
    force: Annotated[bool, typer.Option(help="Overwrite --out if it exists.")] = False,
    include_eval: Annotated[
        bool,
        typer.Option(
            "--include-eval",
            help="Draft from agent-eval trials too (production runs only by default).",
        ),
    ] = False,
) -> None:
    """Turn recorded runs into draft tasks (request, context, approvals, checks) to confirm."""
    start = parse_since(since)
    if out.suffix not in (".yaml", ".yml"):
        raise SuiteError(f"--out `{out}`: a suite file ends in .yaml or .yml")
    if out.exists() and not force:
        raise SuiteError(f"`{out}` exists; pass --force to overwrite it")
    template = load_suite(like if like is not None else default_like_suite(workflow))
    if template.workflow != workflow:
        raise SuiteError(
            f"--like suite `{template.suite}` is for workflow `{template.workflow}`, "
            f"not `{workflow}`"
        )
    toolbelt = Toolbelt.from_module(template.tools)
    store = _open_existing(db)
    try:
        drafts = draft_runs(
            store,
            workflow,
            since=start,
            limit=limit,
            redactor=make_redactor(toolbelt),
            tools=toolbelt.names(),
            agent_id=template.agent_id,
            include_eval=include_eval,
        )
        where = store.url
    finally:
        store.close()
    more = (
        f" (the newest {drafts.runs_read} of {drafts.matching})" if drafts.matching > limit else ""
    )
    console.print(f"runs read: {drafts.runs_read} of workflow {shown(workflow)}{more}")
    reasons = Counter(s.why for s in drafts.skipped)
    for why, count in reasons.items():  # may quote what a recorded run did
        console.print(f"skipped: {count} ({shown(why)})")
    if not drafts.tasks:
        console.print("nothing to draft: no file written")
        return
    text = render_suite(template, out.stem, out, drafts, where=where)
    write_file(out, text.encode("utf-8"))
    console.print(f"tasks drafted: {len(drafts.tasks)}")
    console.print(f"written: {shown(out)} (drafts: confirm each task, then drop its `draft` tag)")


def _open_existing(db: str | None) -> Store:
    """The database, read as it is: never created (an empty one has no run to draft from)
    nor migrated by a command that only reads."""
    url = db or default_url()
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise StoreError(
            f"`{url}` is not a database URL (sqlite:///path or postgresql://…)"
        ) from None
    path = parsed.database
    if (
        parsed.get_backend_name() == "sqlite"
        and path
        and path != ":memory:"
        and not Path(path).is_file()
    ):
        raise StoreError(
            f"no opsgate database at `{path}`: nothing was recorded there (pass --db, or "
            "set OPSGATE_DATABASE_URL)"
        )
    return open_store(url, migrate=False)


def register(app: typer.Typer) -> None:
    """Add `agent-eval suite ...` to `agent-eval`."""
    app.add_typer(suite_app, name="suite")
