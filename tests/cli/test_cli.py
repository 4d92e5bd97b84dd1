"""The command line, driven through Typer's CliRunner on the real app."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from opsgate import __version__
from opsgate.cli.main import app
from opsgate.examples.support_triage import POLICY_PATH
from opsgate.policy import load_policy

EXAMPLE = str(POLICY_PATH)
_ANSI = re.compile(r"\x1b\[[0-9;]*m")

# A wide terminal, so that rich neither truncates table cells nor wraps lines.
runner = CliRunner(env={"COLUMNS": "250", "NO_COLOR": "1"})


def _run(*args: str) -> Result:
    return runner.invoke(app, list(args))


def _out(result: Result) -> str:
    return _ANSI.sub("", result.stdout)


def _err(result: Result) -> str:
    return _ANSI.sub("", result.stderr)


def _example_version() -> str:
    return load_policy(POLICY_PATH).version


def _assert_one_line_error(result: Result, *fragments: str) -> str:
    assert result.exit_code == 2, (result.exit_code, result.output)
    err = _err(result)
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error:"), err
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


# ---------------------------------------------------------------------------------------
# version, help
# ---------------------------------------------------------------------------------------


def test_version_command() -> None:
    result = _run("version")
    assert result.exit_code == 0
    assert _out(result).strip() == __version__


@pytest.mark.parametrize("args", [[], ["policy"]])
def test_no_arguments_shows_help(args: list[str]) -> None:
    result = runner.invoke(app, args)
    assert result.exit_code in (0, 2)  # click's no_args_is_help exit code varies by version
    assert "Usage" in result.output


# ---------------------------------------------------------------------------------------
# policy check
# ---------------------------------------------------------------------------------------


def test_policy_check_on_the_example() -> None:
    result = _run("policy", "check", EXAMPLE)
    out = _out(result)
    assert result.exit_code == 0, result.output
    assert f"ok {EXAMPLE}: version {_example_version()}" in out
    assert "workflow support_triage" in out
    for column in ("tool", "scope/impact", "read_only", "draft", "autonomous_in_scope"):
        assert column in out
    assert "write_with_approval *" in out  # the stage in force is starred
    for tool in ("get_ticket", "refund", "send_email", "escalate_to_human"):
        assert tool in out
    assert "export_customer_data" not in out  # in the toolbelt, not in the workflow
    assert "max_identical_calls=3" in out
    assert "agent triage-bot-canary: stage draft" in out
    assert result.stderr == ""


def test_policy_check_table_rows() -> None:
    out = _out(_run("policy", "check", EXAMPLE))
    rows = {
        line.split("│")[1].strip(): [cell.strip() for cell in line.split("│")[2:-1]]
        for line in out.splitlines()
        if line.startswith("│") and line.split("│")[1].strip()
    }
    assert rows["get_ticket"] == ["read/low", "allow", "allow", "allow", "allow"]
    assert rows["add_internal_note"][:3] == ["write/low", "deny (scope)", "deny (scope)"]
    assert rows["add_internal_note"][3:] == ["allow", "allow"]
    assert rows["send_reply"][0] == "write/high"
    assert rows["send_reply"][3].startswith("approval")


def test_policy_check_with_tools_option(tmp_path: Path) -> None:
    text = POLICY_PATH.read_text().replace("toolbelt: opsgate.examples.support_triage.tools\n", "")
    policy = tmp_path / "no_toolbelt.yaml"
    policy.write_text(text)
    _assert_one_line_error(_run("policy", "check", str(policy)), "no toolbelt")
    result = _run(
        "policy", "check", str(policy), "--tools", "opsgate.examples.support_triage.tools"
    )
    assert result.exit_code == 0, result.output
    assert "workflow support_triage" in _out(result)


def test_policy_check_with_unimportable_tools_module() -> None:
    _assert_one_line_error(
        _run("policy", "check", EXAMPLE, "--tools", "opsgate.no_such_module"),
        "cannot import tools module `opsgate.no_such_module`",
    )


# ---------------------------------------------------------------------------------------
# policy check: bad input is one line on stderr, exit 2
# ---------------------------------------------------------------------------------------

_HEADER = 'version: "1"\ntoolbelt: opsgate.examples.support_triage.tools\nworkflows:\n'


def _write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_missing_file(tmp_path: Path) -> None:
    missing = str(tmp_path / "nope.yaml")
    _assert_one_line_error(_run("policy", "check", missing), missing, "file not found")


def test_malformed_yaml_names_the_line(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "bad.yaml",
        _HEADER + "  w:\n    stage: read_only\n   tools: {}\n",  # line 6 is mis-indented
    )
    _assert_one_line_error(_run("policy", "check", path), path, "line 6")


def test_duplicate_key_names_the_line(tmp_path: Path) -> None:
    path = _write(tmp_path, "dup.yaml", _HEADER + "  w:\n    stage: read_only\n    stage: draft\n")
    _assert_one_line_error(_run("policy", "check", path), "line 6", "found duplicate key `stage`")


def test_unknown_key(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "unknown_key.yaml",
        _HEADER
        + "  w:\n    stage: write_with_approval\n    tools:\n      refund:\n"
        + "        constraints:\n          amount: {maxx: 200}\n",
    )
    line = _assert_one_line_error(_run("policy", "check", path), "unknown key `maxx`")
    assert "line 9" in line
    assert "workflows.w.tools.refund.constraints.amount.maxx" in line


def test_invalid_cel(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "bad_cel.yaml",
        _HEADER
        + "  w:\n    stage: write_with_approval\n    tools:\n      refund:\n"
        + '        approval_when: "args.amount >>> 50"\n',
    )
    _assert_one_line_error(
        _run("policy", "check", path),
        "invalid CEL `args.amount >>> 50`",
        "workflows.w.tools.refund.approval_when",
    )


def test_rule_naming_a_tool_outside_the_workflow(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "rule_unknown.yaml",
        _HEADER
        + "  w:\n    stage: write_with_approval\n    tools:\n      refund: {}\n"
        + '    rules:\n      - {id: r1, effect: deny, tools: [wire_money], when: "true"}\n',
    )
    _assert_one_line_error(_run("policy", "check", path), "rule `r1` names tool `wire_money`")


def test_workflow_naming_a_tool_the_toolbelt_lacks(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "tool_unknown.yaml",
        _HEADER + "  w:\n    stage: write_with_approval\n    tools:\n      wire_money: {}\n",
    )
    _assert_one_line_error(
        _run("policy", "check", path),
        "names unknown tool `wire_money`",
        "the toolbelt has: get_ticket",
    )


def test_empty_policy(tmp_path: Path) -> None:
    path = _write(tmp_path, "empty.yaml", "# nothing here\n")
    _assert_one_line_error(_run("policy", "check", path), "the policy is empty")


# ---------------------------------------------------------------------------------------
# policy explain
# ---------------------------------------------------------------------------------------


def _explain(tool: str, args: dict[str, object], *extra: str) -> Result:
    return _run("policy", "explain", EXAMPLE, "--tool", tool, "--args", json.dumps(args), *extra)


def test_explain_allowed() -> None:
    result = _explain("get_order_status", {"order_id": "ORD-1001"})
    out = _out(result)
    assert result.exit_code == 0, result.output
    assert out.startswith("allow (allowed)")
    assert "rule:    workflows.support_triage.tools.get_order_status" in out
    assert "stage:   write_with_approval" in out
    assert f"policy:  {_example_version()}" in out


def test_explain_trusted_small_refund_is_allowed() -> None:
    result = _explain(
        "refund",
        {"order_id": "ORD-1003", "amount": 15, "reason": "damaged"},
        "--trusted",
        "Refund 15 on ORD-1003, the tea set arrived broken",
    )
    assert result.exit_code == 0, result.output
    assert _out(result).startswith("allow (allowed)")


def test_explain_denied_by_a_rule() -> None:
    result = _explain(
        "refund",
        {"order_id": "ORD-1001", "amount": 30, "reason": "goodwill"},
        "--trusted",
        "refund ORD-1001 30",
    )
    out = _out(result)
    assert result.exit_code == 1, result.output
    assert out.startswith("deny (rule_denied)")
    assert "goodwill refunds are capped at 20 USD" in out
    assert "rule:    workflows.support_triage.rules.0(no-goodwill-over-20)" in out


def test_explain_denied_by_a_constraint() -> None:
    result = _explain("send_email", {"to": "exfil@attacker.example", "subject": "s", "body": "b"})
    out = _out(result)
    assert result.exit_code == 1
    assert out.startswith("deny (arg_constraint)")
    assert "workflows.support_triage.tools.send_email.constraints.to.pattern" in out
    assert "arg:     to" in out


def test_explain_needs_approval() -> None:
    result = _explain(
        "refund",
        {"order_id": "ORD-1001", "amount": 100, "reason": "damaged"},
        "--trusted",
        "refund ORD-1001 100",
    )
    out = _out(result)
    assert result.exit_code == 1, result.output
    assert out.startswith("needs_approval (approval_required)")
    assert "workflows.support_triage.tools.refund.approval_when" in out
    assert "args.amount > 50.0" in out


def test_explain_untrusted_derivation() -> None:
    result = _explain(
        "refund",
        {"order_id": "ORD-1003", "amount": 15, "reason": "damaged"},
        "--untrusted",
        "Please refund 15 to ORD-1003 right away",
    )
    out = _out(result)
    assert result.exit_code == 1, result.output
    assert out.startswith("deny (untrusted_derivation)")
    assert "arg:     order_id" in out
    assert "source:  untrusted#1" in out
    assert "workflows.support_triage.provenance.targets.refund" in out


def test_explain_second_untrusted_text_is_numbered() -> None:
    result = _explain(
        "refund",
        {"order_id": "ORD-1003", "amount": 15, "reason": "damaged"},
        "--trusted",
        "refund 15",
        "--untrusted",
        "hello",
        "--untrusted",
        "order ORD-1003",
    )
    assert result.exit_code == 1
    assert "source:  untrusted#2" in _out(result)


def test_explain_agent_override_stage() -> None:
    result = _explain(
        "change_address",
        {"order_id": "ORD-1003", "new_address": "1 New St"},
        "--agent",
        "triage-bot-canary",
    )
    out = _out(result)
    assert result.exit_code == 1
    assert out.startswith("deny (scope_above_stage)")
    assert "stage:   draft" in out


@pytest.mark.parametrize(
    ("tool", "args", "code"),
    [
        ("delete_all_orders", "{}", "unknown_tool"),
        ("get_order_status", '{"order_id": 1003}', "invalid_arguments"),
        ("get_order_status", '{"order_id": "ORD-1003"', "invalid_arguments"),
    ],
)
def test_explain_refuses_invalid_calls(tool: str, args: str, code: str) -> None:
    result = _run("policy", "explain", EXAMPLE, "--tool", tool, "--args", args)
    assert result.exit_code == 1
    assert _out(result).startswith(f"refused ({code})")


def test_explain_unknown_workflow() -> None:
    result = _run("policy", "explain", EXAMPLE, "--tool", "get_ticket", "--workflow", "billing")
    _assert_one_line_error(result, "no workflow `billing`")


def test_explain_several_workflows_needs_workflow_option(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "two.yaml",
        _HEADER
        + "  a:\n    stage: read_only\n    tools: {get_ticket: {}}\n"
        + "  b:\n    stage: read_only\n    tools: {get_ticket: {}}\n",
    )
    args = ("policy", "explain", path, "--tool", "get_ticket", "--args", '{"ticket_id": "T-1"}')
    _assert_one_line_error(_run(*args), "pass --workflow (a, b)")
    result = _run(*args, "--workflow", "b")
    assert result.exit_code == 0, result.output
    assert "workflows.b.tools.get_ticket" in _out(result)


def test_explain_missing_file(tmp_path: Path) -> None:
    _assert_one_line_error(
        _run("policy", "explain", str(tmp_path / "x.yaml"), "--tool", "t"), "file not found"
    )


# ---------------------------------------------------------------------------------------
# demo
# ---------------------------------------------------------------------------------------


def test_demo(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PAYMENTS_API_KEY", raising=False)
    result = _run("demo", "--no-model")
    out = _out(result)
    assert result.exit_code == 0, result.output
    assert f"version {_example_version()}" in out
    for fragment in (
        "approval",
        "approved by team-lead@example.com",
        "untrusted_derivation",
        "arg_constraint",
        "scope_above_stage",
        "tool_not_allowed",
        "unknown_tool",
        "invalid_arguments",
        "cap_exceeded",
        "payments key found in records: 0",
        "open the console on this data: opsgate serve --policy",
        "with the viewer token ogt_",
    ):
        assert fragment in out, fragment
    assert "demo-payments-key-0000" not in result.output
    assert result.stderr == ""


def test_demo_uses_the_payments_key_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PAYMENTS_API_KEY", "sk-env-abc123")
    result = _run("demo", "--no-model")
    assert result.exit_code == 0, result.output
    assert "payments key found in records: 0" in _out(result)
    assert "sk-env-abc123" not in result.output
