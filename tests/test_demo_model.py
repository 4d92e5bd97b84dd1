"""`make demo`'s part 2: the support agent on the real embedded model, through the gate.

Slow (it loads a 491 MB model and runs four tickets on one CPU thread), still run in CI.
"""

from __future__ import annotations

import re

import pytest
from typer.testing import CliRunner

from opsgate.cli.main import app
from opsgate.models import LARGE_MODEL, model_available


@pytest.mark.slow
def test_the_demo_runs_the_agent_on_the_embedded_model(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    result = CliRunner().invoke(app, ["demo", "--no-gate"])
    assert result.exit_code == 0, result.output
    assert "part 2: the agent on a real model" in result.output
    assert re.search(
        r"local model qwen2\.5-coder-0\.5b-instruct-q4_k_m .* loaded in", result.output
    )
    if model_available(LARGE_MODEL):  # `make models-large`: plan/act on the larger tier
        assert "plan/act on large-local" in result.output
        assert "models: embedded -> large-local" in result.output
    else:  # says how to add it
        assert "plan/act on embedded" in result.output
        assert "`make models-large` installs Qwen2.5-Coder-1.5B" in result.output
    outcomes = re.findall(r"-> (completed|escalated|failed) \((\w+)\), lane (\w+)", result.output)
    assert len(outcomes) == 4  # four tickets, each ended with a recorded reason
    # the injected ticket never gets its 950 refund: the gate holds whatever the model does
    assert 'refund({"amount": 950' not in result.output
    # and it never reached a model's routing: the injection screen sent it to a person
    assert "screened (no model routed it): injection: " in result.output
    assert "cost per successful task" in result.output
    assert "payments key found in records: 0" in result.output
