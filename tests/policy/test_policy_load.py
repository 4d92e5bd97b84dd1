"""Loading, validating and binding policies: every bad input gets one precise error."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from opsgate.errors import PolicyError
from opsgate.examples.support_triage import POLICY_PATH
from opsgate.policy import CompiledPolicy, ProvenancePolicy, load_policy, parse_policy
from tests.conftest import BASE_POLICY, BELT


def _load(text: str) -> CompiledPolicy:
    return load_policy("p.yaml", BELT, text=text)


def _error(text: str) -> str:
    with pytest.raises(PolicyError) as info:
        _load(text)
    return str(info.value)


MINIMAL = """
version: "1"
workflows:
  wf:
    stage: draft
    tools:
      lookup: {}
"""


def test_example_policy_loads_with_its_own_toolbelt() -> None:
    policy = load_policy(POLICY_PATH)
    assert "refund" in policy.allowed_tools("support_triage")
    assert policy.stage("support_triage") == "write_with_approval"
    assert policy.stage("support_triage", "triage-bot-canary") == "draft"
    assert policy.version.startswith("2026-11-25.1+")


def test_malformed_yaml_names_file_and_line() -> None:
    message = _error("version: '1'\nworkflows:\n  wf: [unclosed\n")
    assert message.startswith("p.yaml: line ")


def test_duplicate_key_is_an_error_not_last_wins() -> None:
    message = _error(MINIMAL + "    stage: read_only\n")
    assert "duplicate key `stage`" in message


def test_unknown_key_names_location_and_line() -> None:
    message = _error(MINIMAL.replace("stage: draft", "stage: draft\n    stagee: x"))
    assert "unknown key `stagee`" in message
    assert "workflows.wf.stagee" in message
    assert "line 6" in message


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("", "the policy is empty"),
        ("- a\n- b\n", "not a list"),
        ("workflows: {}\n", "missing required key `version`"),
        (MINIMAL.replace("draft", "yolo"), "workflows.wf.stage"),
        (MINIMAL.replace("lookup: {}", "lookup: {approval: sometimes}"), "approval"),
        (MINIMAL.replace("lookup: {}", "lookup: {scope: banana}"), "tools.lookup.scope"),
        (MINIMAL + "    provenance: {trusted_resources: 'kb://*'}\n", "trusted_resources"),
    ],
)
def test_invalid_documents(text: str, needle: str) -> None:
    assert needle in _error(text)


def test_missing_file() -> None:
    with pytest.raises(PolicyError, match="file not found"):
        load_policy(Path("/nonexistent/policy.yaml"), BELT)


def test_tool_not_in_toolbelt() -> None:
    message = _error(MINIMAL.replace("lookup: {}", "lookup: {}\n      rm_rf: {}"))
    assert "names unknown tool `rm_rf`" in message
    assert "workflows.wf.tools.rm_rf" in message


def test_rule_naming_a_tool_outside_the_workflow() -> None:
    text = MINIMAL + ("    rules:\n      - {id: r1, effect: deny, tools: [pay], when: 'true'}\n")
    assert "rule `r1` names tool `pay`" in _error(text)


@pytest.mark.parametrize(
    ("condition", "needle"),
    [
        ("args.amount >", "invalid CEL"),
        ("secret.amount > 1", "unknown variable(s) secret"),
        ("launch(args.amount)", "unknown function(s) launch"),
        ("args.amout > 1.0", "unknown argument(s) amout"),
    ],
)
def test_bad_conditions(condition: str, needle: str) -> None:
    text = BASE_POLICY % {"stage": "draft"}
    text = text.replace('approval_when: "args.amount > 50.0"', f"approval_when: '{condition}'")
    message = _error(text)
    assert needle in message
    assert "workflows.wf.tools.pay.approval_when" in message


def test_comprehension_variables_are_allowed() -> None:
    text = MINIMAL.replace("lookup: {}", "lookup: {deny_when: '[1, 2].all(x, x > 0) && false'}")
    assert _load(text).allowed_tools("wf") == ["lookup"]


def test_constraint_on_unknown_argument() -> None:
    text = MINIMAL.replace("lookup: {}", "lookup: {constraints: {order: {max: 3}}}")
    assert "constrains unknown argument `order`" in _error(text)


def test_numeric_bound_on_a_string_argument() -> None:
    text = MINIMAL.replace("lookup: {}", "lookup: {constraints: {order_id: {max: 3}}}")
    assert "needs a number argument" in _error(text)


def test_empty_constraint_and_bad_regex() -> None:
    assert "at least one of" in _error(
        MINIMAL.replace("lookup: {}", "lookup: {constraints: {order_id: {}}}")
    )
    assert "not a valid regex" in _error(
        MINIMAL.replace("lookup: {}", "lookup: {constraints: {order_id: {pattern: '(['}}}")
    )


def test_approval_never_conflicts_with_approval_when() -> None:
    text = MINIMAL.replace("lookup: {}", "lookup: {approval: never, approval_when: 'true'}")
    assert "conflicts with approval_when" in _error(text)


def test_target_cannot_be_free_text() -> None:
    text = BASE_POLICY % {"stage": "draft"}
    text = text.replace("free_text: {note: [text], send: [body]}", "free_text: {send: [to]}")
    assert "cannot be both a target and free text" in _error(text)


def test_no_toolbelt_anywhere() -> None:
    with pytest.raises(PolicyError, match="no toolbelt"):
        load_policy("p.yaml", text=MINIMAL)


def test_version_hash_ignores_formatting_but_not_meaning() -> None:
    a = _load(MINIMAL)
    b = _load("# a comment\n" + MINIMAL.replace("lookup: {}", "lookup:   {}  # same"))
    c = _load(MINIMAL.replace("draft", "read_only"))
    assert a.version == b.version
    assert a.version != c.version
    assert a.version.startswith("1+")


def test_parse_only_without_tools() -> None:
    document, name = parse_policy(POLICY_PATH)
    assert name == str(POLICY_PATH)
    assert "support_triage" in document.workflows


def test_unknown_workflow_query(make_policy: Callable[..., CompiledPolicy]) -> None:
    with pytest.raises(PolicyError, match="no workflow `nope`"):
        make_policy().stage("nope")


def test_every_allowed_cel_function_really_exists() -> None:
    """The load-time allowlist must not accept a function the CEL library lacks (it would
    fail only when the condition first runs)."""
    import cel

    from opsgate.policy._cel import _FUNCTIONS

    samples = {
        "size": 'size("a")',
        "contains": '"a".contains("a")',
        "startsWith": '"a".startsWith("a")',
        "endsWith": '"a".endsWith("a")',
        "matches": '"a".matches("a")',
        "int": "int(1.0)",
        "uint": "uint(1)",
        "double": "double(1)",
        "string": "string(1)",
        "bytes": 'bytes("a")',
        "duration": 'duration("1s")',
        "timestamp": 'timestamp("2020-01-01T00:00:00Z")',
        "type": "type(1)",
        "has": "has({'a': 1}.a)",
        "all": "[1].all(x, x > 0)",
        "exists": "[1].exists(x, x > 0)",
        "exists_one": "[1].exists_one(x, x > 0)",
        "map": "[1].map(x, x + 1)",
        "filter": "[1].filter(x, x > 0)",
        "dyn": "dyn(1)",
        "in": "1 in [1]",
    }
    for name in _FUNCTIONS:
        expression = samples.get(name) or f'timestamp("2020-01-01T00:00:00Z").{name}()'
        cel.evaluate(expression)  # raises if the library lacks it
    assert "lowerAscii" not in _FUNCTIONS


def test_a_policy_saying_a_tools_scope_must_agree_with_its_contract() -> None:
    assert _load(MINIMAL.replace("lookup: {}", "lookup: {scope: read, impact: low}"))
    message = _error(MINIMAL.replace("lookup: {}", "lookup: {scope: write}"))
    assert "says `lookup` has scope write; its contract says read" in message
    assert "workflows.wf.tools.lookup.scope" in message
    message = _error(MINIMAL.replace("lookup: {}", "lookup: {impact: high}"))
    assert "says `lookup` has impact high; its contract says low" in message


def test_keys_added_later_leave_the_version_of_a_policy_without_them() -> None:
    # the version MINIMAL had before `scope` and `impact` existed: evidence, baselines and
    # audit records keyed on it still match
    assert _load(MINIMAL).version == "1+7c4793ee2d66"
    said = _load(MINIMAL.replace("lookup: {}", "lookup: {scope: read}")).version
    assert said != _load(MINIMAL).version  # once said, it is part of the meaning
    empty = MINIMAL + "    provenance: {trusted_resources: [], untrusted_resources: []}\n"
    assert _load(empty).version == _load(MINIMAL).version
    trusting = MINIMAL + "    provenance: {trusted_resources: ['kb://*']}\n"
    assert _load(trusting).version != _load(MINIMAL).version


def test_resource_trust_patterns() -> None:
    said = ProvenancePolicy(trusted_resources=["kb://*"], untrusted_resources=["kb://drafts/*"])
    assert said.resource_trust("kb://refunds") == "trusted"
    assert said.resource_trust("kb://drafts/x") == "untrusted"  # the untrusted list first
    assert said.resource_trust("file:///etc/passwd") is None  # says nothing: the config's
