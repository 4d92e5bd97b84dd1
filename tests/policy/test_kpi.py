"""`kpi:` in a workflow of the policy file: the workflow's one KPI for the console's
Overview. Validated (an unknown metric or a target out of range is an error naming the key),
read through `CompiledPolicy.kpi`, and not part of the policy's version (it decides nothing)."""

from __future__ import annotations

import pytest

from opsgate.errors import PolicyError
from opsgate.policy import load_policy
from tests.conftest import BASE_POLICY, BELT

LIVE = BASE_POLICY % {"stage": "autonomous_in_scope"}


def _with_kpi(kpi: str) -> str:
    return LIVE.replace(
        "    stage: autonomous_in_scope\n", f"    stage: autonomous_in_scope\n    kpi: {kpi}\n"
    )


def test_the_kpi_is_read_and_leaves_the_version() -> None:
    policy = load_policy("x", BELT, text=_with_kpi("{metric: success_rate, target: 0.9}"))
    kpi = policy.kpi("wf")
    assert kpi is not None and (kpi.metric, kpi.target) == ("success_rate", 0.9)
    assert kpi.higher_is_better and kpi.met(0.9) and not kpi.met(0.89)
    assert policy.version == load_policy("x", BELT, text=LIVE).version
    assert policy.with_stage("wf", "draft").kpi("wf") == kpi
    assert policy.kpi("no-such-workflow") is None
    assert load_policy("x", BELT, text=LIVE).kpi("wf") is None


@pytest.mark.parametrize(
    ("kpi", "lower_is_better"),
    [
        ("{metric: escalation_rate, target: 0.1}", True),
        ("{metric: cost_per_successful_task, target: 0.05}", True),
        ("{metric: approval_rate, target: 0.5}", False),
    ],
)
def test_each_metric_knows_its_direction(kpi: str, lower_is_better: bool) -> None:
    spec = load_policy("x", BELT, text=_with_kpi(kpi)).kpi("wf")
    assert spec is not None
    assert spec.met(spec.target)
    assert spec.met(spec.target * 0.5) is lower_is_better


@pytest.mark.parametrize(
    ("kpi", "says"),
    [
        ("{metric: happiness, target: 0.9}", "success_rate"),
        ("{metric: success_rate, target: 90}", "between 0 and 1"),
        ("{metric: escalation_rate, target: -0.1}", "between 0 and 1"),
        ("{metric: cost_per_successful_task, target: -1}", ">= 0"),
        ("{metric: success_rate, target: .nan}", "finite"),
        ("{metric: success_rate}", "target"),
        ("{metric: success_rate, target: 0.9, goal: 1}", "goal"),
    ],
)
def test_a_bad_kpi_is_an_error_naming_the_key(kpi: str, says: str) -> None:
    with pytest.raises(PolicyError) as caught:
        load_policy("x", BELT, text=_with_kpi(kpi))
    message = str(caught.value)
    assert "workflows.wf.kpi" in message, message
    assert says in message, message
