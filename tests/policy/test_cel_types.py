"""CEL conditions are type-checked against the contracts at load: a condition that cannot
evaluate (it would deny every call as `condition_error`) is a `PolicyError` naming the file,
the rule and the problem; conditions that fail only for some values still load."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import pytest
from typer.testing import CliRunner

import opsgate.examples
from opsgate.cli.main import app
from opsgate.contracts import Toolbelt, tool
from opsgate.errors import PolicyError
from opsgate.policy import (
    CompiledPolicy,
    Effect,
    ProposedCall,
    Reason,
    SimpleRunState,
    load_policy,
)
from opsgate.policy._cel import compile_condition, type_problem
from tests.conftest import BELT

EXAMPLE_POLICIES = sorted(Path(opsgate.examples.__file__).parent.glob("*/policy.yaml"))

POLICY = """
version: "1"
workflows:
  wf:
    stage: autonomous_in_scope
    tools:
      lookup: {}
      note: {}
      pay:
        approval_when: %s
"""


def _load(condition: str, template: str = POLICY) -> CompiledPolicy:
    return load_policy("p.yaml", BELT, text=template % (repr(condition),))


def _error(condition: str, template: str = POLICY) -> PolicyError:
    with pytest.raises(PolicyError) as info:
        _load(condition, template)
    return info.value


# ---------------------------------------------------------------------------------------
# what is refused at load
# ---------------------------------------------------------------------------------------


def test_comparing_a_number_with_a_string_is_refused_at_load() -> None:
    error = _error('args.amount > "fifty"')
    assert error.source == "p.yaml"
    assert error.location == "workflows.wf.tools.pay.approval_when"
    message = str(error)
    assert message.startswith("p.yaml at `workflows.wf.tools.pay.approval_when`: ")
    assert 'CEL `args.amount > "fifty"` is ill-typed for `pay`' in message
    assert "no operator or function takes operands of these types" in message
    assert "args.amount = " in message
    assert "condition_error" in message
    assert "\n" not in message


@pytest.mark.parametrize(
    ("condition", "needle"),
    [
        ('args.amount + "x" == "y"', "float + string"),  # string + number
        ("args.amount.size() > 3", "`size` does not take arguments of these types"),
        ("size(args.amount) > 3", "`size` does not take arguments of these types"),
        ('"x" in args.amount', "no operator or function"),  # `in` on a non-list
        ("args.order_id in 5", "no operator or function"),
        ("args.amount * 2 > 100.0", "CEL does not mix int and double"),  # a float arg
        ("args.order_id.startsWith(1)", "`startsWith` does not take"),
        ("args.amount", "it gives a number, not true or false"),
        ("!args.order_id", "no operator or function"),
        ('tool.scopee == "write"', "there is no field `scopee`"),
        ("run.stepz > 3", "there is no field `stepz`"),
        ('run.steps > "3"', "no operator or function"),
        ("prov(args.order_id).trust > 1", "no operator or function"),
        ("read.exists(r, r.trust > 1)", "no operator or function"),
        ('stage == "draft" && args.amount > "x"', "no operator or function"),
    ],
)
def test_type_errors_are_refused(condition: str, needle: str) -> None:
    message = str(_error(condition))
    assert "workflows.wf.tools.pay.approval_when" in message
    assert needle in message, message


def test_a_type_error_reachable_only_for_some_values_is_found() -> None:
    # only a goodwill refund over 100 reaches the ill-typed comparison
    message = str(_error('args.reason == "goodwill" && args.amount > 100.0 && args.order_id > 5'))
    assert 'args.reason = "goodwill"' in message
    assert "no operator or function" in message


def test_an_invalid_regex_literal_is_refused() -> None:
    message = str(_error('args.order_id.matches("ORD-[0-9")'))
    assert "is not a valid regex" in message
    assert "workflows.wf.tools.pay.approval_when" in message


def test_an_argument_indexed_by_name_is_checked_like_a_field() -> None:
    assert "unknown argument(s) amonut" in str(_error('args["amonut"] > 5.0'))
    assert "no operator or function" in str(_error('args["amount"] > "x"'))


@pytest.mark.parametrize(
    ("section", "location"),
    [
        (
            "    tools:\n      note: {deny_when: 'args.urgent > 1'}\n",
            "workflows.wf.tools.note.deny_when",
        ),
        (
            "    tools:\n      note: {}\n"
            "    rules:\n      - {id: r1, effect: deny, tools: [note], when: 'args.text * 2'}\n",
            "workflows.wf.rules.0",
        ),
        (  # a rule on every tool: checked against each of them
            "    tools:\n      note: {}\n"
            "    rules:\n"
            "      - {id: r2, effect: require_approval, when: 'run.cost_usd > \"1\"'}\n",
            "workflows.wf.rules.0",
        ),
        (  # an endorsement's condition
            "    tools:\n      note: {}\n"
            "    provenance:\n      endorse:\n"
            "        - {id: e1, tools: [note], args: [ticket], when: 'read.size() > \"0\"'}\n",
            "workflows.wf.provenance.endorse.0",
        ),
    ],
)
def test_every_kind_of_condition_is_checked(section: str, location: str) -> None:
    text = 'version: "1"\nworkflows:\n  wf:\n    stage: autonomous_in_scope\n' + section
    with pytest.raises(PolicyError) as info:
        load_policy("p.yaml", BELT, text=text)
    assert info.value.location == location, str(info.value)
    assert "ill-typed" in str(info.value)


# ---------------------------------------------------------------------------------------
# what still loads: value-dependent failures are left to run time
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "condition",
    [
        "args.amount > 50.0",
        "args.amount > 50",  # comparing a double with an int is defined
        "args.amount * 2.0 > 100.0",
        'args.reason == "goodwill" && args.amount > 20.0',
        'args.reason in ["damaged", "goodwill"]',
        "int(args.order_id) > 3",  # fails only for an id that is not a number
        "100.0 / args.amount > 2.0",
        'args.order_id.matches("^ORD-[0-9]+$")',
        'prov(args.order_id).trust == "trusted"',
        '"request" in prov(args.amount).sources',
        'prov(args.order_id).part == "x"',  # an optional detail: a missing key is a value's
        'read.exists(r, r.source.startsWith("tool:read_mail"))',
        'request.matches("(?i)refund")',
        'run.cost_usd > 1.0 || run.steps > 3 || run.agent == "bot"',
        'stage == "draft" || tool.impact == "high"',
        'has(args.reason) && args.reason != "goodwill"',
        "[1, 2].all(x, x > 0) && args.amount < 10.0",
        'args.amount > 10.0 ? true : args.order_id == "ORD-1"',
    ],
)
def test_well_typed_conditions_load(condition: str) -> None:
    assert _load(condition).allowed_tools("wf") == ["lookup", "note", "pay"]


def test_a_rule_on_every_tool_may_read_an_argument_some_tools_lack() -> None:
    text = POLICY % ("'true'",) + (
        "    rules:\n      - {id: big, effect: deny, when: 'args.amount > 500.0'}\n"
    )
    policy = load_policy("p.yaml", BELT, text=text)
    assert policy.allowed_tools("wf") == ["lookup", "note", "pay"]


@tool(scope="write")
def shaped(
    count: int,
    maybe: str | None = None,
    level: int | float = 0,
    tags: list[str] | None = None,
    meta: dict[str, int] | None = None,
    anything: Any = None,
    mode: Literal["a", "b"] = "a",
    on: bool = False,
) -> str:
    """A tool with arguments of many shapes."""
    return "ok"


SHAPED = Toolbelt([shaped])
SHAPED_POLICY = 'version: "1"\nworkflows:\n  wf:\n    stage: autonomous_in_scope\n    tools:\n'


def _shaped(condition: str) -> str | None:
    compiled = compile_condition(condition, ValueError)
    return type_problem(
        compiled,
        shaped.parameters_schema,
        tool={"name": "shaped", "scope": "write", "impact": "low"},
        workflow="wf",
    )


@pytest.mark.parametrize(
    "condition",
    [
        "args.count * 2 > 10",  # an integer argument is an int
        "args.level * 2 > 10",  # int | float: an int works
        "args.level * 2.0 > 10.0",  # ... and so does a double
        "args.maybe.size() > 3",  # null fails, a string works: value-dependent
        "args.maybe > 3 || true",
        'args.tags.exists(t, t.startsWith("x"))',
        "args.meta.k > 5",
        "args.anything > 5",
        "args.anything.size() > 5",
        'args.mode == "b" && args.on',
        "args.on",
        "args.count / args.level > 1",  # int / int for an int level
    ],
)
def test_value_dependent_failures_are_not_type_errors(condition: str) -> None:
    assert _shaped(condition) is None
    load_policy(
        "p.yaml", SHAPED, text=SHAPED_POLICY + f"      shaped: {{approval_when: {condition!r}}}\n"
    )


@pytest.mark.parametrize(
    ("condition", "needle"),
    [
        ("args.maybe > 3", "no operator"),  # neither a string nor null compares with 3
        ('args.count > "3"', "no operator"),
        ("args.tags.exists(t, t > 5)", "no operator"),
        ('args.meta.k > "x"', "no operator"),
        ("args.mode > 1", "no operator"),
        ("args.on > 1", "no operator"),
        ("args.count", "it gives a number"),
    ],
)
def test_type_errors_on_shaped_arguments(condition: str, needle: str) -> None:
    problem = _shaped(condition)
    assert problem is not None and needle in problem, problem


# ---------------------------------------------------------------------------------------
# the shipped policies, the hot path, the command line
# ---------------------------------------------------------------------------------------


def test_there_are_example_policies() -> None:
    assert len(EXAMPLE_POLICIES) >= 4


@pytest.mark.parametrize("path", EXAMPLE_POLICIES, ids=lambda p: p.parent.name)
def test_every_shipped_example_policy_loads(path: Path) -> None:
    policy = load_policy(path)
    for workflow in policy.document.workflows:
        assert policy.allowed_tools(workflow)
        assert policy.stage_table(workflow)


def test_a_value_error_still_fails_closed_at_run_time() -> None:
    text = POLICY.replace("pay:\n        approval_when: %s", "pay: {}\n      draft: {}") + (
        "    rules:\n      - {id: r, effect: deny, tools: [draft], when: 'int(args.text) > 3'}\n"
    )
    policy = load_policy("p.yaml", BELT, text=text)
    state = SimpleRunState("wf")
    decision = policy.decide(ProposedCall("draft", {"text": "nine"}, "k"), state)
    assert (decision.effect, decision.reason) == (Effect.DENY, Reason.CONDITION_ERROR)
    assert policy.decide(ProposedCall("draft", {"text": "2"}, "k2"), state).allowed


def test_policy_check_on_a_type_error_is_one_line_and_exit_2(tmp_path: Path) -> None:
    path = tmp_path / "typed.yaml"
    path.write_text(
        'version: "1"\ntoolbelt: opsgate.examples.support_triage.tools\nworkflows:\n'
        "  w:\n    stage: write_with_approval\n    tools:\n      refund:\n"
        "        approval_when: 'args.amount > \"fifty\"'\n"
    )
    result = CliRunner(env={"COLUMNS": "250", "NO_COLOR": "1"}).invoke(
        app, ["policy", "check", str(path)]
    )
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    line = lines[0]
    assert line.startswith("error:"), line
    assert str(path) in line
    assert "workflows.w.tools.refund.approval_when" in line
    assert 'CEL `args.amount > "fifty"` is ill-typed for `refund`' in line
    assert "Traceback" not in result.output
