"""Eval trials are labelled in the store and left out of production roll-ups (issue #11,
fault 5): `agent-eval run` writes runs and cost entries with purpose `eval`; `opsgate cost`,
`opsgate runs list`, the ledger's budgets and drift count production only unless asked."""

from __future__ import annotations

import time
from pathlib import Path

from sqlalchemy import select
from tests.evals import test_runner
from typer.testing import CliRunner

from opsgate.cli.main import app
from opsgate.cost import CostLedger
from opsgate.store import open_store, runs


def test_eval_trials_are_labelled_and_left_out_of_production_rollups(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'o.db'}"
    result, report = test_runner._run(tmp_path, "--min-success-rate", "0.5", "--db", db)
    assert result.exit_code == 0, result.output
    trials = {t["run_id"] for t in report["tasks"]}
    with open_store(db) as store:
        with store.engine.connect() as conn:
            purposes = dict(conn.execute(select(runs.c.run_id, runs.c.purpose)).all())
        assert purposes == {run_id: "eval" for run_id in trials}
        ledger = CostLedger(store)
        assert ledger.by_workflow(0.0) == [] and ledger.by_model(0.0) == []
        assert ledger.daily_spend(None) == 0.0
        assert sum(d.runs for d in ledger.by_day(None, 1)) == 0
        (everything,) = ledger.by_workflow(0.0, include_eval=True)
        workflow = everything.workflow
        assert everything.runs == 3 and everything.cost_usd > 0
        assert ledger.daily_spend(None, include_eval=True) == everything.cost_usd
        drift = ledger.drift(everything.workflow, time.time() + 1)
        assert drift.current.runs == 0
        assert ledger.drift(everything.workflow, time.time() + 1, include_eval=True).current.runs

    cli = CliRunner()
    listed = cli.invoke(app, ["runs", "list", "--db", db])
    assert listed.exit_code == 0 and "no production runs recorded yet" in listed.output
    listed = cli.invoke(app, ["runs", "list", "--db", db, "--include-eval"], env={"COLUMNS": "250"})
    assert listed.exit_code == 0 and listed.output.count("(eval)") == 3, listed.output
    spent = cli.invoke(app, ["cost", "--db", db])
    assert spent.exit_code == 0 and "nothing recorded in the window" in spent.output
    spent = cli.invoke(app, ["cost", "--db", db, "--include-eval"], env={"COLUMNS": "250"})
    assert spent.exit_code == 0 and workflow in spent.output, spent.output
