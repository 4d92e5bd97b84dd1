"""Hostile text through the command line (issue #11): Rich markup (``[/]``, ``[bold red]``),
terminal control sequences and bidi controls from a ticket, a model, a tool or a file must
neither crash a command (`rich.errors.MarkupError`) nor reach the terminal as controls.

`opsgate.cli._safe` on its own first, then the commands that print such text, each on a
temporary database (the conftest's OPSGATE_HOME; never the repository's ``.opsgate/``).
"""

from __future__ import annotations

import json
import time
import unicodedata
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rich.markup import escape
from rich.text import Text
from typer.testing import CliRunner, Result

from opsgate.audit import AuditLog, Signer
from opsgate.cli._safe import cell, clean, shown
from opsgate.cli.eval_main import app as eval_app
from opsgate.cli.main import app
from opsgate.evals import TaskResult, build_report
from opsgate.examples.support_triage import POLICY_PATH
from opsgate.gateway import ApprovalRequest, DurableApprovalQueue
from opsgate.policy import Decision, Effect, Reason
from opsgate.recorder import Event, EventType
from opsgate.store import Store, open_store

# property tests over every command (~15 s): make test (CI) runs them
pytestmark = pytest.mark.slow

# Not a terminal whatever the developer's environment says: then any ESC in the output came
# from the data, not from Rich's own styles.
runner = CliRunner(
    env={"COLUMNS": "200", "NO_COLOR": "1", "TTY_COMPATIBLE": "0", "FORCE_COLOR": None}
)

MARKUP = "[/] [bold red]"

# What a ticket, a model's output or a tool's result may carry.
FRAGMENTS = [
    "[/]",
    "[bold red]",
    "[/bold]",
    "[link=x]",
    "[link=https://evil.example]click[/link]",
    "[bold",
    "[@click=app.quit]",
    "[white on white]hidden",
    "[",
    "]",
    "\\",
    "\\\\\\",
    "\\[bold]",
    ":warning:",
    "\x1b[2J",
    "\x1b[31mred\x1b[0m",
    "\x1b]0;title\x07",
    "\x1b]8;;https://evil.example\x1b\\link\x1b]8;;\x1b\\",
    "\x1bP1$r\x1b\\",
    "\x1bc",
    "\x9b2J",
    "\x9d0;title\x9c",
    "\x85",
    "\r",
    "\r\n",
    "\n",
    "\t",
    "\x08\x08\x08",
    "\x00",
    "\x07",
    "\x7f",
    "\u202e",
    "\u202a",
    "\u2066",
    "\u2067",
    "\u2068",
    "\u2069",
    "\u200e",
    "\u200f",
    "\u061c",
    "\u200b",
    "\ufeff",
    "\u2028",
    "\u2029",
    "\u00ad",
    "\U000e0041",
    "שלום",
    "مرحبا",
    "ORD-1",
    "ana@example.com",
    "x" * 400,  # longer than the terminal is wide
]


@st.composite
def hostile(draw: st.DrawFn, surrogates: bool = False) -> str:
    """Text assembled from hostile fragments and arbitrary characters."""
    pieces = st.sampled_from(FRAGMENTS + (["\ud800", "\udc80"] if surrogates else []))
    return "".join(draw(st.lists(st.one_of(pieces, st.text(max_size=12)), max_size=10)))


def unsafe(output: str) -> list[str]:
    """Characters in ``output`` that a terminal would obey or that hide or reorder text:
    ESC and every other C0/C1 control but newline and tab, DEL, bidi and other format
    characters (the joiners aside), separators, lone surrogates."""
    return [
        f"U+{ord(c):04X}"
        for c in output
        if (c not in "\n\t" and unicodedata.category(c) in ("Cc", "Cf", "Cs", "Zl", "Zp"))
        and c not in "\u200c\u200d"
    ]


def assert_clean(result: Result, codes: set[int]) -> str:
    """The command ended with one of its documented exit codes, no traceback, and printed
    nothing a terminal obeys; its output."""
    output = result.output
    assert result.exit_code in codes, (result.exit_code, result.exception, output[-2000:])
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(
        result.exception
    )
    assert "MarkupError" not in output and "Traceback" not in output
    assert "\x1b" not in output
    assert not unsafe(output), unsafe(output)[:20]
    return output


# -- the helper ---------------------------------------------------------------------------


def test_shown_makes_controls_visible_and_escapes_markup() -> None:
    assert shown("\x1b[2J") == "\u241b[2J"  # ␛[2J: inert text
    assert shown("\x1b]0;title\x07") == "\u241b]0;title\u2407"
    assert shown("paid\rrefunded") == "paid\u240drefunded"
    assert shown("ok\x08\x08no") == "ok\u2408\u2408no"
    assert shown("a\r\nb\tc") == "a\nb\tc"  # a CR LF pair is a newline; tab and newline stay
    assert shown("\x7f\x00\x9b") == "\u2421\u2400<U+009B>"
    assert shown("evil\u202etxt.exe\u2066\u2069") == "evil<U+202E>txt.exe<U+2066><U+2069>"
    assert shown("\u200fa\u200bb\ufeff\U000e0041") == "<U+200F>a<U+200B>b<U+FEFF><U+E0041>"
    assert shown("\ud800") == "<U+D800>"  # a lone surrogate would not even encode
    assert shown("नमस्ते \u200d\u200c") == "नमस्ते \u200d\u200c"  # joiners stay
    assert shown("[/] [bold red]x") == escape("[/] [bold red]x")
    assert shown(3) == "3" and shown(None) == "None" and shown(Path("a/[b]")) == "a/\\[b]"


def test_limit_cuts_with_an_ellipsis() -> None:
    assert shown("abcdef", limit=4) == "abc…"
    assert shown("abcd", limit=4) == "abcd"
    assert clean("\x1b[2J" * 10, limit=5) == "\u241b[2J…"
    assert len(clean("x" * 500, limit=120)) == 120


def test_a_trailing_backslash_run_cannot_escape_the_tag_after_it() -> None:
    # Rich's escape leaves `a\\\` as it is: then `[bold]` after it was escaped and `[/]`
    # raised MarkupError
    for n in range(1, 6):
        text = "a" + "\\" * n
        assert Text.from_markup(shown(text) + "[bold]b[/]").plain == text + "b"


def test_cell_is_text_not_markup() -> None:
    value = cell("[/] \x1b[2J", limit=50)
    assert isinstance(value, Text) and value.plain == "[/] \u241b[2J"


@settings(max_examples=50, deadline=None)
@given(hostile(surrogates=True))
def test_shown_property(text: str) -> None:
    visible = clean(text)
    assert not unsafe(visible)
    assert "\x1b" not in shown(text)
    # as markup, on its own or between opsgate's tags, it reads exactly as the clean text
    assert Text.from_markup(shown(text) + "[bold]!", emoji=False).plain == visible + "!"
    assert Text.from_markup(f"[red]{shown(text)}[/][b]![/]", emoji=False).plain == visible + "!"
    assert cell(text).plain == visible
    cut = clean(text, limit=40)
    assert len(cut) <= 40 and (cut == visible or cut.endswith("…"))


# -- a temporary store with hostile rows ----------------------------------------------------


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    opened = open_store(f"sqlite:///{tmp_path / 'opsgate.db'}")
    yield opened
    opened.close()


def _pending(store: Store, text: str) -> None:
    """A pending approval whose every field came from the agent, a ticket or a model.

    Written by the queue's own insert (as `request()` does before it waits for a person)."""
    decision = Decision(
        Effect.NEEDS_APPROVAL,
        Reason.APPROVAL_REQUIRED,
        f"workflows.support.tools.{text}",
        f"refund to `{text}` needs a person",
        "v1",
    )
    request = ApprovalRequest(
        run_id=uuid.uuid4().hex,
        call_id="call-1",
        workflow=text,
        invoker=text,
        agent_id=text,
        tool=text,
        args={"to": text, "note": [text, 60.0]},
        decision=decision,
        request_text=text,
    )
    DurableApprovalQueue(store)._insert(request)


def _run(store: Store, text: str) -> str:
    """A run whose events carry ``text`` in every field `audit show` describes; its id."""
    run_id = uuid.uuid4().hex
    events: list[tuple[EventType, dict[str, Any]]] = [
        (EventType.RUN_STARTED, {"invoker": text, "agent_id": text, "workflow": text}),
        (EventType.CONTEXT_READ, {"source": text, "trust": "untrusted", "text": text}),
        (EventType.TOOL_CALL_PROPOSED, {"tool": text, "args": {"to": text}}),
        (EventType.DECISION, {"effect": "deny", "reason": text, "rule": text}),
        (EventType.APPROVAL_GRANTED, {"tool": text, "approver": text, "reason": text}),
        (EventType.TOOL_RESULT, {"tool": text, "result": {"body": text}}),
        (EventType.TOOL_ERROR, {"tool": text, "error": text}),
        (EventType.WRITE_PERFORMED, {"tool": text, "result": text}),
        (EventType.STEP, {"output": text}),
        (EventType.ESCALATED, {"reason": text, "message": text}),
        (EventType.RUN_ENDED, {"status": "escalated", "reason": text, "message": text}),
    ]
    log = AuditLog(store, Signer.generate())
    try:
        log.append([Event(t, run_id, n, time.time(), d) for n, (t, d) in enumerate(events)])
    finally:
        log.close()
    return run_id


def _approvals_list(store: Store, text: str) -> Result:
    with store.engine.begin() as conn:
        conn.exec_driver_sql("DELETE FROM approvals")
    _pending(store, text)
    return runner.invoke(app, ["approvals", "list", "--db", store.url])


def _audit_show(store: Store, text: str) -> Result:
    return runner.invoke(app, ["audit", "show", _run(store, text), "--db", store.url])


def _explain(text: str, *, tool: str = "send_email") -> Result:
    args = json.dumps({"to": text, "subject": text, "body": text})
    return runner.invoke(
        app,
        [
            "policy",
            "explain",
            str(POLICY_PATH),
            f"--tool={tool}",
            f"--args={args}",
            f"--request={text}",
            f"--untrusted={text}",
        ],
    )


# -- the regressions: each of these raised MarkupError -------------------------------------


def test_approvals_list_shows_markup_as_text(store: Store) -> None:
    output = assert_clean(_approvals_list(store, MARKUP), {0})
    assert "pending" in output and "[/]" in output and "[bold red]" in output


def test_audit_show_shows_markup_as_text(store: Store) -> None:
    output = assert_clean(_audit_show(store, MARKUP), {0})
    assert "[/]" in output and "[bold red]" in output and "CHANGED via" in output


def test_policy_explain_shows_markup_as_text() -> None:
    output = assert_clean(_explain("[/]@x.com"), {1})
    assert "deny (arg_constraint)" in output and "'[/]@x.com'" in output
    refused = assert_clean(_explain("a", tool="x[/]"), {1})  # the refusal quotes the tool
    assert "refused" in refused and "x[/]" in refused


def test_an_error_message_quoting_input_is_text() -> None:
    result = runner.invoke(app, ["policy", "check", "no/such/[/]\x1b[2J.yaml"])
    output = assert_clean(result, {2})
    assert "error:" in output and "no/such/[/]\u241b[2J.yaml" in output


def test_a_long_value_is_folded_not_cut(store: Store) -> None:
    # an address padded to push its real domain out of a narrow column is shown whole
    _pending(store, "ceo@example.com" + "." * 80 + "attacker.test")
    result = runner.invoke(app, ["approvals", "list", "--db", store.url], env={"COLUMNS": "100"})
    output = assert_clean(result, {0})
    assert "…" not in output and "test" in output


def test_a_screen_clear_in_a_ticket_shows_as_text(store: Store) -> None:
    output = assert_clean(_audit_show(store, "\x1b[2J\x1b]0;pwned\x07paid\rrefunded"), {0})
    assert "\u241b[2J\u241b]0;pwned\u2407paid\u240drefunded" in output


# -- every printing path, fed generated text ------------------------------------------------

_PROPERTY = settings(
    max_examples=50,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@_PROPERTY
@given(text=hostile())
def test_approvals_list_property(store: Store, text: str) -> None:
    assert_clean(_approvals_list(store, text), {0})


@_PROPERTY
@given(text=hostile())
def test_audit_show_property(store: Store, text: str) -> None:
    assert_clean(_audit_show(store, text), {0})


@_PROPERTY
@given(text=hostile(), tool=st.sampled_from(["send_email", "refund", "x[/]"]))
def test_policy_explain_property(text: str, tool: str) -> None:
    assert_clean(_explain(text, tool=tool), {0, 1, 2})


def _report(suite: str, text: str, passed: bool) -> dict[str, Any]:
    """A report built by the real `build_report`, its trial quoting ``text`` everywhere."""
    result = TaskResult(
        task_id=f"t-{text}",
        trial=0,
        tags=[text],
        passed=passed,
        failures=[] if passed else [f"expected `{text}` in the reply", text],
        status="completed",
        reason=text,
        output=text,
        calls=[{"tool": text, "args": {"to": text}, "reason": text, "executed": True}],
        cost_usd=0.001,
        latency_s=1.0,
        error=None if passed else text,
    )
    return build_report(
        suite,
        1,
        [result],
        trials=1,
        model_router=text,
        started_at=1_700_000_000.0,
        ended_at=1_700_000_060.0,
        thresholds={},
    )


@_PROPERTY
@given(text=hostile())
def test_eval_report_failure_lines_property(tmp_path: Path, text: str) -> None:
    new, old = tmp_path / "new.json", tmp_path / "old.json"
    new.write_text(json.dumps(_report("mini", text, passed=False)))
    # `review next`: the trial's calls, output, failures and harness error, line by line
    output = assert_clean(
        runner.invoke(eval_app, ["review", "next", "--report", str(new), "--sample", "1"]),
        {0},
    )
    assert "failures:" in output
    # `assert` (as `compare`): "newly failing: <task id>", of a suite the files name
    new.write_text(json.dumps(_report(text, text, passed=False)))
    old.write_text(json.dumps(_report(text, text, passed=True)))
    assert_clean(
        runner.invoke(
            eval_app,
            ["assert", "--report", str(new), "--baseline", str(old), "--max-success-drop=1"],
        ),
        {0, 1, 2},
    )


def test_eval_report_failure_lines_show_markup_as_text(tmp_path: Path) -> None:
    new, old = tmp_path / "new.json", tmp_path / "old.json"
    new.write_text(json.dumps(_report("mini", MARKUP, passed=False)))
    old.write_text(json.dumps(_report("mini", MARKUP, passed=True)))
    output = assert_clean(
        runner.invoke(eval_app, ["review", "next", "--report", str(new), "--sample", "1"]), {0}
    )
    assert "    - expected `[/] [bold red]` in the reply" in output
    output = assert_clean(runner.invoke(eval_app, ["compare", str(old), str(new)]), {0})
    assert "newly failing: t-[/] [bold red]" in output
