"""Fuzzing the command lines (issue #11): `opsgate` and `agent-eval` driven through Typer's
CliRunner with generated arguments: every command and option, values of hostile text,
numbers out of range, missing files, folders, files of garbage, bad JSON for ``--args``,
database URLs that go nowhere.

The invariant of a command line: exit 0 (passed), 1 (the gate said no) or 2 (bad input,
one clear line), and never a Python traceback. Every command runs against a temporary home
and database (no model is started: a suite run is only ever given router files that do not
load)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
import typer
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from opsgate.audit import AuditLog, AuditRecorder, Signer
from opsgate.cli.eval_main import app as eval_app
from opsgate.cli.main import app
from opsgate.contracts import Toolbelt
from opsgate.examples.support_triage import POLICY_PATH, tools
from opsgate.gateway import Gateway
from opsgate.policy import load_policy
from opsgate.provenance import ContextItem
from opsgate.store import open_store
from tests.fuzz._hostile import EDGE_STRINGS, scaled

REPOSITORY = Path(__file__).resolve().parents[2]
runner = CliRunner(env={"COLUMNS": "120", "NO_COLOR": "1", "TTY_COMPATIBLE": "0"})


@dataclass(frozen=True)
class Place:
    """A file (or folder, or nothing) in the test's folder, named by its role; the test
    turns it into a path (hypothesis draws the role, the fixture makes the file)."""

    name: str


@pytest.fixture(scope="module")
def places(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """Files of every kind a command may be pointed at, and a database with a run in it
    (whose request and ticket carry hostile text), all in a temporary folder."""
    root = tmp_path_factory.mktemp("fuzz-cli")
    files: dict[str, str] = {
        "policy": str(POLICY_PATH),
        "router (does not load)": "",
        "suite": str(REPOSITORY / "src/opsgate/examples/support_triage/support_triage_v3.yaml"),
        "missing": str(root / "missing.yaml"),
        "folder": str(root),
        "empty": "",
        "garbage": "",
        "not utf-8": "",
        "json list": "",
        "deep json": "",
        "hostile yaml": "",
        "report": "",
        "out": str(root / "out" / "written.md"),
    }
    contents: dict[str, bytes] = {
        "router (does not load)": b"version: 1\nmodels: {m: {provider: embedded}}\nroles: {}\n",
        "empty": b"",
        "garbage": b"\x00\x01{[: not yaml ]}",
        "not utf-8": b"\xff\xfe\xfa version: 1",
        "json list": b"[1, 2, 3]",
        "deep json": b"[" * 5000 + b"]" * 5000,
        "hostile yaml": "version: '\u202e[/]\x1b[2J'\nworkflows: {'[bold]': {}}\n".encode(),
        "report": orjson.dumps(
            {"schema_version": "\u202e", "suite": "[/]", "metrics": {"success_rate": "x"}}
        ),
    }
    for name, data in contents.items():
        path = root / f"{name.replace(' ', '_')}.dat"
        path.write_bytes(data)
        files[name] = str(path)
    files["db"] = f"sqlite:///{root / 'fuzz.db'}"
    _record_a_run(files["db"])
    yield files


def _record_a_run(url: str) -> None:
    """One run in the database, its texts hostile (markup, controls, bidi, a surrogate)."""
    store = open_store(url)
    audit = AuditRecorder(AuditLog(store, Signer.generate()))
    belt = Toolbelt.from_module(tools)
    gateway = Gateway(belt, load_policy(POLICY_PATH, belt), recorder=audit)

    async def main() -> None:
        run = gateway.start_run(
            "support_triage",
            invoker="[/]\x1b[2J",
            agent_id="\u202ebot",
            request="refund [bold]ORD-1001[/] \ud800",
            context=[ContextItem("\x1b]0;title\x07", "untrusted", "ticket:[/]")],
        )
        await gateway.call(run, "get_order_status", {"order_id": "ORD-1001"})
        gateway.finish(run, output="done \u202e")

    try:
        asyncio.run(main())
    finally:
        gateway.close()
        audit.close()
        store.close()


hostile_text: st.SearchStrategy[str] = st.one_of(
    st.sampled_from(EDGE_STRINGS),
    st.text(max_size=20),
    st.sampled_from(["-", "--", "-x", "x" * 300, "a/" * 200]),  # past what a file name may be
)
numbers: st.SearchStrategy[str] = st.one_of(
    st.sampled_from(["0", "-1", "1.5", "nan", "inf", "-inf", "1e400", "2/4", "0/0", "9" * 30]),
    st.integers().map(str),
    st.floats().map(str),
    hostile_text,
)
paths: st.SearchStrategy[Any] = st.one_of(
    st.sampled_from(
        [
            "policy",
            "suite",
            "missing",
            "folder",
            "empty",
            "garbage",
            "not utf-8",
            "json list",
            "deep json",
            "hostile yaml",
            "report",
            "router (does not load)",
        ]
    ).map(Place),
    hostile_text,
)
outputs: st.SearchStrategy[Any] = st.one_of(st.just(Place("out")), st.just(Place("folder")))
databases: st.SearchStrategy[Any] = st.one_of(
    st.just(Place("db")),
    st.sampled_from(
        [
            "",
            "nonsense",
            "sqlite:///",
            "sqlite:////no/such/folder/x.db",
            "sqlite:///:memory:",
            "postgresql://fuzz@127.0.0.1:1/none",
            "mysql://fuzz@127.0.0.1:1/none",
            "sqlite:///\x00.db",
        ]
    ),
)
json_args: st.SearchStrategy[str] = st.one_of(
    st.sampled_from(
        [
            "{}",
            '{"order_id": "ORD-1001", "amount": 80, "reason": "damaged"}',
            '{"order_id": "ORD-1001"',
            "[1]",
            "null",
            '{"amount": 1e400}',
            '{"order_id": "\\ud800"}',
            "[" * 2000 + "]" * 2000,
        ]
    ),
    hostile_text,
)

#: Per command: its words, its positional arguments and its options (a value strategy, or
#: None for a flag).
Spec = tuple[list[str], list[st.SearchStrategy[Any]], dict[str, st.SearchStrategy[Any] | None]]

OPSGATE: dict[str, Spec] = {
    "policy check": (["policy", "check"], [paths], {"--tools": hostile_text}),
    "policy explain": (
        ["policy", "explain"],
        [paths],
        {
            "--tool": st.sampled_from(["refund", "send_email", "get_ticket"]) | hostile_text,
            "--args": json_args,
            "--workflow": st.just("support_triage") | hostile_text,
            "--agent": hostile_text,
            "--request": hostile_text,
            "--trusted": hostile_text,
            "--untrusted": hostile_text,
            "--tools": st.sampled_from(["opsgate.examples.support_triage.tools", "", ".x"]),
        },
    ),
    "model check": (["model", "check"], [paths], {}),
    "runs list": (
        ["runs", "list"],
        [],
        {
            "--db": databases,
            "--workflow": hostile_text,
            "--status": hostile_text,
            "--since": st.sampled_from(["7d", "24h", "0d", "-1d", "99999999d"]) | hostile_text,
            "--limit": numbers,
            "--before": numbers,
            "--escalated": None,
            "--include-eval": None,
        },
    ),
    "cost": (
        ["cost"],
        [],
        {
            "--db": databases,
            "--since": hostile_text,
            "--by": st.sampled_from(["workflow", "day", "model"]) | hostile_text,
        },
    ),
    "audit verify": (["audit", "verify"], [], {"--db": databases, "--public-key": paths}),
    "audit show": (["audit", "show"], [hostile_text], {"--db": databases}),
    "audit prove": (["audit", "prove"], [numbers], {"--db": databases}),
    "audit verify-archive": (["audit", "verify-archive"], [paths], {"--public-key": paths}),
    "approvals list": (["approvals", "list"], [], {"--db": databases, "--all": None}),
    "approvals approve": (
        ["approvals", "approve"],
        [hostile_text],
        {"--as": hostile_text, "--reason": hostile_text, "--db": databases},
    ),
    "approvals deny": (
        ["approvals", "deny"],
        [hostile_text],
        {"--as": hostile_text, "--reason": hostile_text, "--db": databases},
    ),
    "db current": (["db", "current"], [], {"--db": databases}),
    "version": (["version"], [], {}),
}

AGENT_EVAL: dict[str, Spec] = {
    # `run` is given only router files that do not load: it never starts a model
    "run": (
        ["run"],
        [],
        {
            "--suite": paths,
            "--model-router": st.sampled_from(["missing", "garbage", "router (does not load)"]).map(
                Place
            ),
            "--report": outputs,
            "--trials": numbers,
            "--concurrency": numbers,
            "--shard": numbers,
            "--tag": hostile_text,
            "--task": hostile_text,
            "--min-success-rate": numbers,
            "--max-cost-per-task": numbers,
            "--db": databases,
        },
    ),
    "assert": (
        ["assert"],
        [],
        {
            "--report": paths,
            "--baseline": paths,
            "--max-success-drop": numbers,
            "--max-cost-increase": numbers,
            "--max-unsafe-increase": numbers,
            "--min-success-rate": numbers,
            "--markdown": outputs,
            "--db": databases,
        },
    ),
    "compare": (["compare"], [paths, paths], {}),
    "merge": (
        ["merge"],
        [paths, paths],
        {"--report": outputs, "--markdown": outputs, "--allow-partial": None},
    ),
    "baseline show": (["baseline", "show"], [hostile_text], {"--db": databases}),
    "baseline history": (["baseline", "history"], [hostile_text], {"--db": databases}),
    "baseline accept": (
        ["baseline", "accept"],
        [paths],
        {"--by": hostile_text, "--note": hostile_text, "--db": databases},
    ),
    # `review` is left out: its report lookup has a known bug (see the xfail test below)
}


@st.composite
def command_lines(draw: st.DrawFn, specs: dict[str, Spec]) -> list[Any]:
    """A command with some of its options, or a jumble of its words and options."""
    words, positionals, options = specs[draw(st.sampled_from(sorted(specs)))]
    argv: list[Any] = [*words, *(draw(p) for p in positionals)]
    for flag in draw(st.lists(st.sampled_from(sorted(options)), unique=True)) if options else []:
        value = options[flag]
        argv += [flag] if value is None else [flag, draw(value)]
    if draw(st.integers(0, 9)) == 0:  # a jumble: its words shuffled and cut short
        argv = draw(st.permutations(argv))[: draw(st.integers(0, len(argv)))]
    return argv


def _invoke(app_: typer.Typer, argv: list[Any], places: dict[str, str]) -> int:
    """Run the command line; check it ended as a command line should; its exit code."""
    args = [places[a.name] if isinstance(a, Place) else a for a in argv]
    result = runner.invoke(app_, args)
    assert result.exit_code in (0, 1, 2), (result.exit_code, args, result.output[-2000:])
    assert result.exception is None or isinstance(result.exception, SystemExit), (
        args,
        repr(result.exception),
    )
    assert "Traceback" not in result.output, (args, result.output[-2000:])
    return result.exit_code


_CLI = settings(
    max_examples=scaled(0.25),  # a command line costs tens of milliseconds
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


# What fuzzing found, each once a traceback:
@example(argv=["policy", "check", Place("policy"), "--tools", ""])  # ValueError: empty module
@example(argv=["audit", "verify-archive", Place("json list")])  # AttributeError
@example(argv=["audit", "verify-archive", Place("deep json")])  # RecursionError
@example(argv=["audit", "verify", "--db", Place("db"), "--public-key", Place("not utf-8")])
@example(argv=["approvals", "approve", "\ud800", "--db", Place("db"), "--as", "me"])
@example(argv=["policy", "explain", Place("policy"), "--tool", "refund", "--args", '"\ud800"'])
@_CLI
@given(argv=command_lines(OPSGATE))
def test_opsgate_exits_0_1_or_2_and_never_shows_a_traceback(
    places: dict[str, str], argv: list[Any]
) -> None:
    """An operator types anything: a typo, a pasted ticket, a path that is not there."""
    event(f"exit {_invoke(app, argv, places)}")


@example(argv=["run", "--suite", "x" * 300])  # OSError: file name too long
@example(argv=["baseline", "history", "\ud800", "--db", Place("db")])  # UnicodeEncodeError
@example(argv=["run", "--suite", Place("not utf-8")])  # UnicodeDecodeError
@_CLI
@given(argv=command_lines(AGENT_EVAL))
def test_agent_eval_exits_0_1_or_2_and_never_shows_a_traceback(
    places: dict[str, str], argv: list[Any]
) -> None:
    """CI passes whatever its configuration says; a traceback is no gate verdict."""
    event(f"exit {_invoke(eval_app, argv, places)}")


@pytest.mark.xfail(
    strict=True,
    raises=AssertionError,
    reason="src/opsgate/cli/_eval_review.py (not ours to change here): `_is_file_reference` "
    "calls `Path.exists`, which raises OSError for a name longer than a file name may be: "
    "`agent-eval review show --report xxx...` ends in a traceback, not exit 2.",
)
def test_review_show_with_a_name_no_file_can_have_says_why(places: dict[str, str]) -> None:
    """Pins the bug in a file owned elsewhere, until it is fixed there."""
    _invoke(eval_app, ["review", "show", "--report", "x" * 300], places)
