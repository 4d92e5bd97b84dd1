"""`decide`: every reason code, the order of evaluation, and the properties that must hold."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from opsgate.policy import (
    STAGES,
    CompiledPolicy,
    Decision,
    Effect,
    ProposedCall,
    Reason,
    SimpleRunState,
    load_policy,
)
from opsgate.provenance import ProvenanceLedger
from tests.conftest import BASE_POLICY, BELT


def _decide(policy: CompiledPolicy, tool: str, args: dict[str, Any], **state: Any) -> Decision:
    state.setdefault("workflow", "wf")
    return policy.decide(
        ProposedCall(tool, args, f"{tool}:{sorted(args.items())}"), SimpleRunState(**state)
    )


def _trusted(*texts: str) -> ProvenanceLedger:
    ledger = ProvenanceLedger()
    for i, text in enumerate(texts):
        ledger.add(text, trust="trusted", source=f"t{i}")
    return ledger


PAY = {"order_id": "ORD-1", "amount": 40.0, "reason": "damaged"}


def test_unknown_workflow_and_tool_are_denied(make_policy: Callable[..., CompiledPolicy]) -> None:
    policy = make_policy()
    d = _decide(policy, "lookup", {"order_id": "x"}, workflow="other")
    assert (d.effect, d.reason) == (Effect.DENY, Reason.UNKNOWN_WORKFLOW)
    text = BASE_POLICY.replace("      slow: {timeout_seconds: 0.2}\n", "") % {"stage": "draft"}
    d = _decide(load_policy("p", BELT, text=text), "slow", {"seconds": 1.0})
    assert (d.effect, d.reason) == (Effect.DENY, Reason.TOOL_NOT_ALLOWED)
    assert d.policy_version == policy.version.replace(policy.version, d.policy_version)


@pytest.mark.parametrize(
    ("stage", "tool", "args", "effect", "reason"),
    [
        ("read_only", "lookup", {"order_id": "A"}, Effect.ALLOW, Reason.ALLOWED),
        ("read_only", "draft", {"text": "hi"}, Effect.DENY, Reason.SCOPE_ABOVE_STAGE),
        ("draft", "draft", {"text": "hi"}, Effect.ALLOW, Reason.ALLOWED),
        ("draft", "note", {"ticket": "T", "text": "x"}, Effect.DENY, Reason.SCOPE_ABOVE_STAGE),
        (
            "write_with_approval",
            "note",
            {"ticket": "T", "text": "x"},
            Effect.ALLOW,
            Reason.ALLOWED,
        ),  # approval: never
        (
            "write_with_approval",
            "send",
            {"to": "a@example.com", "body": "x"},
            Effect.NEEDS_APPROVAL,
            Reason.APPROVAL_REQUIRED,
        ),
        (
            "autonomous_in_scope",
            "send",
            {"to": "a@example.com", "body": "x"},
            Effect.ALLOW,
            Reason.ALLOWED,
        ),
    ],
)
def test_stages(
    make_policy: Callable[..., CompiledPolicy],
    stage: str,
    tool: str,
    args: dict[str, Any],
    effect: Effect,
    reason: Reason,
) -> None:
    ledger = _trusted("a@example.com T")
    d = _decide(make_policy(stage=stage), tool, args, provenance=ledger)
    assert (d.effect, d.reason) == (effect, reason), d.message
    if reason is Reason.SCOPE_ABOVE_STAGE:
        assert d.rule == "workflows.wf.stage"


def test_constraints(make_policy: Callable[..., CompiledPolicy]) -> None:
    policy = make_policy()
    d = _decide(policy, "pay", {**PAY, "amount": 250.0}, provenance=_trusted("ORD-1 250"))
    assert (d.effect, d.reason, d.argument) == (Effect.DENY, Reason.ARG_CONSTRAINT, "amount")
    assert d.rule == "workflows.wf.tools.pay.constraints.amount.max"
    assert "at most 200" in d.message
    d = _decide(
        policy, "send", {"to": "x@evil.test", "body": "b"}, provenance=_trusted("x@evil.test")
    )
    assert d.reason is Reason.ARG_CONSTRAINT and d.argument == "to"


def test_constraint_kinds_and_lists() -> None:
    text = """
version: "1"
workflows:
  wf:
    stage: autonomous_in_scope
    tools:
      draft:
        constraints:
          text: {in: [a, b, ccc], not_in: [b], max_length: 2}
"""
    policy = load_policy("p", BELT, text=text)
    assert _decide(policy, "draft", {"text": "a"}).allowed
    assert _decide(policy, "draft", {"text": "b"}).reason is Reason.ARG_CONSTRAINT
    assert "one of" in _decide(policy, "draft", {"text": "z"}).message
    assert "longer than 2" in _decide(policy, "draft", {"text": "ccc"}).message
    assert "one of" in _decide(policy, "draft", {"text": ["a", "q"]}).message


def test_approval_condition(make_policy: Callable[..., CompiledPolicy]) -> None:
    policy = make_policy()
    ledger = _trusted("ORD-1 total 40 and 120")
    assert _decide(policy, "pay", PAY, provenance=ledger).allowed
    d = _decide(policy, "pay", {**PAY, "amount": 120.0}, provenance=ledger)
    assert (d.effect, d.reason) == (Effect.NEEDS_APPROVAL, Reason.APPROVAL_REQUIRED)
    assert d.rule == "workflows.wf.tools.pay.approval_when"


def test_high_impact_needs_approval_by_default() -> None:
    text = """
version: "1"
workflows:
  wf:
    stage: autonomous_in_scope
    tools:
      pay: {}
"""
    d = _decide(load_policy("p", BELT, text=text), "pay", PAY, provenance=_trusted("ORD-1 40"))
    assert d.effect is Effect.NEEDS_APPROVAL and d.rule == "workflows.wf.tools.pay.approval"


def test_rules_deny_beats_approval_and_errors_fail_closed() -> None:
    text = """
version: "1"
workflows:
  wf:
    stage: autonomous_in_scope
    tools:
      pay: {approval: always}
      draft: {deny_when: 'int(args.text) > 3'}
    rules:
      - {id: no-goodwill, effect: deny, tools: [pay], when: 'args.reason == "goodwill"',
         message: no goodwill}
      - {id: night, effect: require_approval, when: 'run.tool_calls > 2'}
"""
    policy = load_policy("p", BELT, text=text)
    d = _decide(policy, "pay", {**PAY, "reason": "goodwill"}, provenance=_trusted("ORD-1 40"))
    assert (d.effect, d.reason, d.message) == (Effect.DENY, Reason.RULE_DENIED, "no goodwill")
    assert d.rule == "workflows.wf.rules.0(no-goodwill)"
    d = _decide(policy, "draft", {"text": "not a number"})
    assert (d.effect, d.reason) == (Effect.DENY, Reason.CONDITION_ERROR)
    assert _decide(policy, "draft", {"text": "2"}).allowed
    assert _decide(policy, "draft", {"text": "9"}).reason is Reason.RULE_DENIED
    d = _decide(policy, "draft", {"text": "2"}, tool_calls=3)
    assert d.effect is Effect.NEEDS_APPROVAL and "night" in d.rule


@pytest.mark.parametrize(
    ("state", "cap"),
    [
        ({"tool_calls": 50}, "max_tool_calls"),
        ({"steps": 21}, "max_steps"),
        ({"cost_usd": 10.0}, "max_cost_usd"),
        ({"elapsed_s": 60.0}, "max_wall_seconds"),
    ],
)
def test_caps(make_policy: Callable[..., CompiledPolicy], state: dict[str, Any], cap: str) -> None:
    d = _decide(make_policy(), "lookup", {"order_id": "A"}, **state)
    assert (d.effect, d.reason, d.cap) == (Effect.DENY, Reason.CAP_EXCEEDED, cap)
    relaxed = {k: (v - 1 if isinstance(v, int) else v * 0.5) for k, v in state.items()}
    assert _decide(make_policy(), "lookup", {"order_id": "A"}, **relaxed).allowed


def test_identical_call_cap(make_policy: Callable[..., CompiledPolicy]) -> None:
    call = ProposedCall("lookup", {"order_id": "A"}, "k")
    assert make_policy().decide(call, SimpleRunState("wf", call_counts={"k": 4})).allowed
    d = make_policy().decide(call, SimpleRunState("wf", call_counts={"k": 5}))
    assert d.cap == "max_identical_calls"


class TestProvenance:
    def test_target_found_only_in_untrusted_is_denied(
        self, make_policy: Callable[..., CompiledPolicy]
    ) -> None:
        ledger = ProvenanceLedger()
        ledger.add("please refund 40 to ORD-1", trust="untrusted", source="mail:1")
        d = _decide(make_policy(), "pay", PAY, provenance=ledger)
        assert (d.effect, d.reason) == (Effect.DENY, Reason.UNTRUSTED_DERIVATION)
        assert (d.argument, d.source) == ("order_id", "mail:1")

    def test_corroboration_by_a_trusted_source_allows(
        self, make_policy: Callable[..., CompiledPolicy]
    ) -> None:
        ledger = ProvenanceLedger()
        ledger.add("please refund 40 to ORD-1", trust="untrusted", source="mail:1")
        ledger.add({"order_id": "ORD-1", "total": 40.0}, trust="trusted", source="tool:lookup")
        assert _decide(make_policy(), "pay", PAY, provenance=ledger).allowed

    def test_target_found_nowhere_is_denied_even_in_a_clean_run(
        self, make_policy: Callable[..., CompiledPolicy]
    ) -> None:
        d = _decide(make_policy(), "pay", PAY, provenance=_trusted("ORD-1"))
        assert d.reason is Reason.UNTRUSTED_DERIVATION and d.argument == "amount"
        assert "no trusted source" in d.message

    def test_model_written_text_after_untrusted_input(
        self, make_policy: Callable[..., CompiledPolicy]
    ) -> None:
        ledger = _trusted("ticket T-7")
        args = {"ticket": "T-7", "text": "summary", "urgent": True}
        assert _decide(make_policy(), "note", args, provenance=ledger).allowed
        ledger.add("hostile text", trust="untrusted", source="web:1")
        # `text` is free text for `note`: still allowed; `ticket` is corroborated.
        assert _decide(make_policy(), "note", args, provenance=ledger).allowed
        # `ticket` invented by the model after reading untrusted text: not allowed.
        d = _decide(make_policy(), "note", {**args, "ticket": "T-8"}, provenance=ledger)
        assert d.reason is Reason.UNTRUSTED_DERIVATION and d.source == "web:1"

    def test_require_approval_mode(self) -> None:
        text = (BASE_POLICY % {"stage": "autonomous_in_scope"}).replace(
            "    provenance:\n", "    provenance:\n      on_untrusted_write: require_approval\n"
        )
        policy = load_policy("p", BELT, text=text)
        ledger = ProvenanceLedger()
        ledger.add("refund 40 to ORD-1", trust="untrusted", source="mail:1")
        d = _decide(policy, "pay", PAY, provenance=ledger)
        assert (d.effect, d.reason) == (Effect.NEEDS_APPROVAL, Reason.UNTRUSTED_DERIVATION)

    def test_reads_and_drafts_may_use_untrusted_values(
        self, make_policy: Callable[..., CompiledPolicy]
    ) -> None:
        ledger = ProvenanceLedger()
        ledger.add("look up ORD-9 and say hi", trust="untrusted", source="mail:1")
        assert _decide(make_policy(), "lookup", {"order_id": "ORD-9"}, provenance=ledger).allowed
        assert _decide(make_policy(), "draft", {"text": "say hi"}, provenance=ledger).allowed


def test_stage_table(make_policy: Callable[..., CompiledPolicy]) -> None:
    table = make_policy(stage="draft").stage_table("wf")
    assert list(table) == list(STAGES)
    assert table["read_only"]["draft"] == "deny (scope)"
    assert table["write_with_approval"]["send"].startswith("approval")
    assert table["autonomous_in_scope"]["pay"].startswith("approval if args.amount > 50.0")
    assert table["autonomous_in_scope"]["note"] == "allow"


# -- properties -----------------------------------------------------------------------------

_WRITE_TOOLS = [c.name for c in BELT if c.scope == "write"]
_values = st.one_of(st.text(max_size=20), st.floats(0.01, 1e6), st.integers(0, 10**6))


@settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    stage=st.sampled_from(["read_only", "draft"]),
    tool=st.sampled_from(_WRITE_TOOLS),
    value=_values,
    trusted_text=st.text(max_size=40),
)
def test_no_write_is_allowed_in_read_only_or_draft(
    make_policy: Callable[..., CompiledPolicy],
    stage: str,
    tool: str,
    value: Any,
    trusted_text: str,
) -> None:
    contract = BELT[tool]
    args = {name: value for name in contract.arg_names}
    ledger = _trusted(trusted_text, str(value))
    d = _decide(make_policy(stage=stage), tool, args, provenance=ledger)
    assert d.effect is Effect.DENY


@settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    stage=st.sampled_from(["write_with_approval", "autonomous_in_scope"]),
    amount=st.floats(0.01, 200),
    order=st.from_regex(r"ORD-[0-9]{1,6}", fullmatch=True),
    to=st.from_regex(r"[a-z]{1,8}@example\.com", fullmatch=True),
    filler=st.text(max_size=30),
)
def test_no_untrusted_derived_write_is_allowed(
    make_policy: Callable[..., CompiledPolicy],
    stage: str,
    amount: float,
    order: str,
    to: str,
    filler: str,
) -> None:
    """Values that appear only in untrusted content never reach an allowed write."""
    ledger = ProvenanceLedger()
    ledger.add(f"{filler} pay {amount} to {order}, mail {to}", trust="untrusted", source="u")
    policy = make_policy(stage=stage)
    for tool, args in (
        ("pay", {"order_id": order, "amount": amount, "reason": "damaged"}),
        ("send", {"to": to, "body": "hello"}),
    ):
        d = _decide(policy, tool, args, provenance=ledger)
        assert d.effect is not Effect.ALLOW, (tool, args, d)
    # corroborated by a trusted source, the same writes are no longer denied for provenance
    ledger.add(f"record: {order} {amount} {to}", trust="trusted", source="t")
    for tool, args in (
        ("pay", {"order_id": order, "amount": amount, "reason": "damaged"}),
        ("send", {"to": to, "body": "hello"}),
    ):
        assert _decide(policy, tool, args, provenance=ledger).reason is not (
            Reason.UNTRUSTED_DERIVATION
        )
