"""`blast_radius` and `opsgate policy blast-radius` (issue #15): what the bound says, that
what it cannot bound it names, and bad input as one clear line (exit 2).

That the bound holds against the gate itself: tests/policy/test_blast_gate.py.
"""

from __future__ import annotations

import json
import re

import pytest
from typer.testing import CliRunner, Result

from opsgate.cli.main import app
from opsgate.errors import PolicyError
from opsgate.examples.support_triage import POLICY_PATH
from opsgate.policy import BlastRadius, Limit, blast_radius, load_policy
from tests.conftest import BELT

runner = CliRunner(env={"COLUMNS": "250", "NO_COLOR": "1"})
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
SUPPORT = load_policy(POLICY_PATH)


def _bound(text: str, **kwargs: str) -> BlastRadius:
    return blast_radius(load_policy("blast-test", BELT, text=text), "wf", **kwargs)


def _policy(tools: str, extra: str = "", caps: str = "{max_tool_calls: 10}") -> str:
    return (
        f'version: "t"\ndefaults:\n  caps: {caps}\nworkflows:\n  wf:\n'
        f"    stage: autonomous_in_scope\n    tools:\n{tools}{extra}"
    )


def _run(*args: str) -> Result:
    return runner.invoke(app, ["policy", "blast-radius", *args])


# -- the support example -----------------------------------------------------------------


def test_support_refunds_are_bounded_by_the_approval_threshold() -> None:
    radius = blast_radius(SUPPORT, "support_triage")
    refund = radius.tool("refund")
    assert refund is not None
    amount = refund.argument("amount")
    assert amount.max == Limit(50.0) and amount.min == Limit(0.0, inclusive=False)
    assert refund.max_calls == 20 and refund.max_calls_by == "max_tool_calls"
    assert amount.per_run_total == 20 * 50.0
    assert amount.role == "target" and amount.sources == ("trusted",)
    assert refund.argument("reason").values == (
        "damaged",
        "not_delivered",
        "wrong_item",
        "goodwill",
    )
    assert refund.approval == "args.amount > 50.0"
    assert any("goodwill" in note and "not analysed" in note for note in refund.notes)


def test_support_high_impact_writes_need_a_person() -> None:
    radius = blast_radius(SUPPORT, "support_triage")
    assert {u.tool for u in radius.needs_a_person} == {"send_reply", "change_address", "send_email"}
    assert radius.tool("send_email") is None
    assert set(radius.reads) == {"get_ticket", "get_order_status", "search_kb"}
    assert radius.caps.max_cost_usd == 0.25


def test_a_stage_and_an_agent_narrow_the_bound() -> None:
    canary = blast_radius(SUPPORT, "support_triage", agent_id="triage-bot-canary")
    assert canary.stage == "draft"
    assert {t.tool for t in canary.reachable} == {"draft_reply", "escalate_to_human"}
    assert "refund" in {u.tool for u in canary.unreachable}
    read_only = blast_radius(SUPPORT, "support_triage", stage="read_only")
    assert read_only.reachable == () and read_only.stage == "read_only"
    autonomous = blast_radius(SUPPORT, "support_triage", stage="autonomous_in_scope")
    assert autonomous.tool("add_internal_note") is not None


# -- what the analysis reads ------------------------------------------------------------


@pytest.mark.parametrize("key", ["approval_when", "deny_when"])
@pytest.mark.parametrize(
    ("condition", "low", "high"),
    [
        ("args.amount > 40.0", None, Limit(40.0)),
        ("args.amount >= 40", None, Limit(40.0, inclusive=False)),
        ("(40.0 < args.amount)", None, Limit(40.0)),
        ("args.amount < 5.5", Limit(5.5), None),
        ("5 >= args.amount", Limit(5.0, inclusive=False), None),
    ],
)
def test_simple_comparisons_bound_a_number(
    key: str, condition: str, low: Limit | None, high: Limit | None
) -> None:
    never = "approval: never, " if key == "deny_when" else ""
    amount = _bound(_policy(f'      pay: {{{never}{key}: "{condition}"}}\n')).reachable[0]
    assert amount.argument("amount").max == high
    assert amount.argument("amount").min == (low or Limit(0.0, inclusive=False))  # gt=0


def test_a_complex_condition_is_named_not_guessed() -> None:
    tools = '      pay: {approval_when: "args.amount > 40.0 || args.reason == \\"goodwill\\""}\n'
    radius = _bound(_policy(tools))
    pay = radius.reachable[0]
    assert pay.argument("amount").max is None and not pay.argument("amount").bounded
    assert any("not analysed" in n for n in pay.notes)
    assert "pay.amount: unbounded (no max constraint)" in radius.unbounded


def test_unbounded_dimensions_are_named() -> None:
    text = _policy(
        "      pay: {approval: never}\n      send: {}\n",
        "    provenance: {targets: {send: [to]}, free_text: {send: [body]}}\n",
        caps="{max_identical_calls: 2}",
    )
    unbounded = _bound(text).unbounded
    assert "tool calls per run: unbounded (no max_tool_calls cap)" in unbounded
    assert "cost per run: unbounded (no max_cost_usd cap)" in unbounded
    assert any(
        u.startswith("send.to: unbounded (no allowlist or pattern; must come") for u in unbounded
    )
    assert any(u.startswith("pay.amount: unbounded (no max constraint") for u in unbounded)
    assert "send calls: unbounded (no cap or quota limits them)" in unbounded
    assert not any(u.startswith("send.body") for u in unbounded)  # content, not a target


def test_allowlists_and_finite_arguments_bound_the_calls() -> None:
    text = _policy(
        "      pay:\n        approval: never\n"
        "        constraints: {order_id: {in: [ORD-1, ORD-2]}, amount: {in: [5, 10]}}\n",
        caps="{max_tool_calls: 50, max_identical_calls: 3}",
    )
    pay = _bound(text).reachable[0]
    assert pay.argument("order_id").values == ("ORD-1", "ORD-2")
    assert pay.argument("amount").max == Limit(10.0)
    assert pay.argument("reason").values == ("damaged", "goodwill")
    assert pay.max_calls == 2 * 2 * 2 and pay.max_calls_by.startswith("duplicate_write")
    assert pay.argument("amount").per_run_total == 8 * 10.0


def test_quotas_bound_one_run_and_are_listed_per_window() -> None:
    text = _policy(
        "      pay: {approval: never, repeatable: true}\n",
        "    quotas:\n      pay: {max: 4, per: 1h}\n"
        "      pay.amount: {max: 70, per: 1m, by: invoker}\n",
        caps="{max_tool_calls: 50, max_wall_seconds: 150}",
    )
    radius = _bound(text)
    pay = radius.reachable[0]
    assert (pay.max_calls, pay.max_calls_by) == (4, "quota pay")
    assert pay.argument("amount").per_run_total == 70 * 3  # a run of 150 s spans 3 windows of 1m
    quotas = {q.key: q for q in radius.quotas}
    assert quotas["pay"].per == "1h" and quotas["pay"].per_run == 4
    assert quotas["pay.amount"].by == "invoker" and quotas["pay.amount"].per_run == 210


def test_approval_always_and_prerequisites_that_cannot_run() -> None:
    text = _policy(
        "      draft: {approval: always}\n      note: {approval: never}\n",
        "    requires_before: {note: [draft]}\n",
    )
    radius = _bound(text)
    assert radius.reachable == ()
    assert [u.why for u in radius.needs_a_person] == ["approval: always"]
    assert radius.unreachable[0].tool == "note" and "requires draft" in radius.unreachable[0].why


def test_an_endorsement_is_named_on_the_arguments_it_may_waive() -> None:
    text = _policy(
        "      send: {}\n",
        "    provenance:\n      targets: {send: [to]}\n"
        "      endorse: [{id: use-mail, tools: [send], args: [to], when: 'true'}]\n",
    )
    to = _bound(text).reachable[0].argument("to")
    assert to.endorsed_by == ("use-mail",)


def test_as_dict_is_json() -> None:
    data = blast_radius(SUPPORT, "support_triage").as_dict()
    again = json.loads(json.dumps(data))
    assert again["caps"]["max_tool_calls"] == 20
    refund = next(t for t in again["reachable"] if t["tool"] == "refund")
    amount = next(a for a in refund["arguments"] if a["name"] == "amount")
    assert amount["max"] == {"value": 50.0, "inclusive": True}
    assert set(again) == {
        "workflow",
        "stage",
        "agent_id",
        "policy_version",
        "caps",
        "reachable",
        "reads",
        "needs_a_person",
        "unreachable",
        "quotas",
        "unbounded",
    }


# -- bad input ---------------------------------------------------------------------------


def test_bad_input_raises_a_policy_error() -> None:
    with pytest.raises(PolicyError, match="no workflow `nope`"):
        blast_radius(SUPPORT, "nope")
    with pytest.raises(PolicyError, match="unknown stage `autonomous`"):
        blast_radius(SUPPORT, "support_triage", stage="autonomous")
    with pytest.raises(PolicyError, match=r"no agent `bot-9`.*triage-bot-canary"):
        blast_radius(SUPPORT, "support_triage", agent_id="bot-9")


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--workflow", "nope"], "no workflow `nope` (workflows: support_triage)"),
        (["--workflow", "support_triage", "--stage", "drafts"], "unknown stage `drafts`"),
        (["--workflow", "support_triage", "--agent", "bot-9"], "no agent `bot-9`"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(args: list[str], fragment: str) -> None:
    result = _run(str(POLICY_PATH), *args)
    assert result.exit_code == 2
    err = _ANSI.sub("", result.stderr).strip()
    assert len(err.splitlines()) == 1 and fragment in err, err
    assert result.stdout == ""


# -- the command -------------------------------------------------------------------------


def test_the_table() -> None:
    result = _run(str(POLICY_PATH), "--workflow", "support_triage")
    assert result.exit_code == 0, result.output
    out = _ANSI.sub("", result.stdout)
    assert "blast radius of workflow support_triage at stage write_with_approval" in out
    assert "0 < amount ≤ 50" in out and "≤ 1000" in out
    assert "refund: needs a person when args.amount > 50.0" in out
    assert "needs a person: send_email (approval: high impact)" in out
    assert "unbounded: draft_reply" not in out


def test_the_json() -> None:
    result = _run(
        str(POLICY_PATH), "--workflow", "support_triage", "--agent", "triage-bot-canary", "--json"
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["stage"] == "draft" and data["agent_id"] == "triage-bot-canary"
    assert data == blast_radius(SUPPORT, "support_triage", agent_id="triage-bot-canary").as_dict()


def test_policy_text_is_shown_never_as_markup(tmp_path: object) -> None:
    from pathlib import Path

    path = Path(str(tmp_path)) / "p.yaml"
    path.write_text(
        'version: "1"\ntoolbelt: opsgate.examples.support_triage.tools\nworkflows:\n'
        "  wf:\n    stage: autonomous_in_scope\n    tools:\n"
        "      send_email:\n        approval: never\n"
        "        constraints: {to: {in: ['[/]x@example.com', '[red]y@example.com']}}\n"
        "        deny_when: 'args.subject == \"[bold]\\u001b[2J\"'\n"
    )
    result = _run(str(path), "--workflow", "wf")
    assert result.exit_code == 0, result.output
    out = _ANSI.sub("", result.stdout)
    assert "[/]x@example.com" in out and "[red]y@example.com" in out
    assert "\x1b[2J" not in result.stdout


def test_the_stage_option() -> None:
    args = ["--workflow", "support_triage", "--stage", "read_only", "--json"]
    result = _run(str(POLICY_PATH), *args)
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["stage"] == "read_only" and data["reachable"] == []
    assert {u["tool"] for u in data["unreachable"]} >= {"refund", "draft_reply"}
