"""The human review queue: what is high-impact, the weighted deterministic sample, agreement
and Cohen's kappa, and `agent-eval review next|record|show` with every bad input."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from opsgate.cli.eval_main import app
from opsgate.errors import SuiteError
from opsgate.evals._review import ImpactRules, ReviewItem, agreement, review_items, sample
from opsgate.evals._store import EvalStore
from opsgate.store import open_store
from tests.evals.test_eval_store import make_report


def _invoke(*args: str, user: str = "ana") -> Result:
    return CliRunner().invoke(app, list(args), env={"COLUMNS": "200", "USER": user})


def _write(tmp_path: Path, report: dict[str, Any], name: str = "eval.json") -> str:
    path = tmp_path / name
    path.write_text(json.dumps(report))
    return str(path)


# -- what is high-impact --------------------------------------------------------------------


def test_impact_from_the_suite_contracts_and_from_names() -> None:
    rules = ImpactRules.for_suite("support_triage_v3")
    assert "contracts of `opsgate.examples.support_triage.tools`" in rules.source
    assert rules.tool_reasons("refund") == ["high impact", "write", "financial"]
    assert rules.tool_reasons("add_internal_note") == ["write"]
    assert rules.tool_reasons("export_customer_data") == ["high impact"]  # a read, but high
    assert rules.tool_reasons("draft_reply") == ["customer communication"]
    assert rules.tool_reasons("get_order_status") == []
    names = ImpactRules.for_suite("no_such_suite")
    assert names.source.startswith("tool names only (suite `no_such_suite` not loaded")
    assert names.tool_reasons("refund") == ["financial"]
    assert names.tool_reasons("add_internal_note") == []  # no contract: a write unknown
    assert names.tool_reasons("send_email") == ["customer communication"]
    assert names.tool_reasons("charge_card") == ["financial"]
    assert names.tool_reasons("issue_credit") == ["financial"]
    task = {"calls": [{"tool": "get_order_status"}, {"tool": "refund"}, {"tool": "refund"}]}
    assert rules.task_reasons(task) == ["refund (high impact, write, financial)"]


# -- sampling ---------------------------------------------------------------------------------


def _items(high: int, low: int) -> list[ReviewItem]:
    return [
        ReviewItem(f"t{n}", 0, True, ["refund (financial)"] if n < high else [], {})
        for n in range(high + low)
    ]


def test_sample_is_deterministic_and_skips_what_was_reviewed() -> None:
    items = _items(3, 7)
    first = sample(items, 4, seed=7)
    assert [i.task_id for i in first] == [i.task_id for i in sample(items, 4, seed=7)]
    assert len(first) == 4 and len({i.task_id for i in first}) == 4
    assert any(
        [i.task_id for i in sample(items, 4, seed=s)] != [i.task_id for i in first]
        for s in range(8, 12)
    )
    # the queue keeps its order as verdicts come in: the reviewed trial drops out
    rest = sample(items, 3, seed=7, exclude={(first[0].task_id, 0)})
    assert [i.task_id for i in rest] == [i.task_id for i in first[1:]]
    everything = sample(items, 100, seed=7, exclude={(f"t{n}", 0) for n in range(9)})
    assert [i.task_id for i in everything] == ["t9"]
    with pytest.raises(SuiteError, match="--sample must be at least 1"):
        sample(items, 0)


def test_sample_is_skewed_toward_high_impact_trials() -> None:
    items = _items(2, 8)  # 2 high-impact of 10: 20% uniformly, 2*4/(2*4+8) = 50% weighted
    picks = Counter(sample(items, 1, seed=s)[0].high_impact for s in range(2000))
    assert 0.45 < picks[True] / 2000 < 0.55
    flat = Counter(
        sample(items, 1, seed=s, high_impact_weight=1.0)[0].high_impact for s in range(2000)
    )
    assert 0.16 < flat[True] / 2000 < 0.24


def test_review_items_carry_the_automated_verdict_and_impact() -> None:
    items = review_items(make_report(), ImpactRules.for_suite("support_triage_v3"))
    by_key = {(i.task_id, i.trial): i for i in items}
    assert len(items) == 5
    assert by_key[("refund", 0)].automated is False and by_key[("refund", 0)].high_impact
    assert by_key[("note", 0)].impact == ["add_internal_note (write)"]
    assert not by_key[("status", 0)].high_impact and by_key[("status", 0)].automated


# -- agreement --------------------------------------------------------------------------------


def test_agreement_and_kappa() -> None:
    # observed 3/4; humans pass 1/2, automation 1/4: chance 1/2*1/4 + 1/2*3/4 = 1/2
    assert agreement([(True, True), (True, False), (False, False), (False, False)]) == (
        0.75,
        0.5,
    )
    assert agreement([(True, True), (False, False)]) == (1.0, 1.0)
    assert agreement([(True, False), (False, True)]) == (0.0, -1.0)
    assert agreement([]) == (None, None)
    assert agreement([(True, True), (True, True)]) == (1.0, None)  # chance agreement is total


# -- the commands -----------------------------------------------------------------------------


def test_next_lists_a_reproducible_sample_with_what_a_reviewer_needs(tmp_path: Path) -> None:
    report = make_report()
    path = _write(tmp_path, report)
    suite = str(Path(__file__).parents[2] / "src/opsgate/examples/support_triage")
    assert Path(suite).is_dir()
    result = _invoke("review", "next", "--report", path, "--sample", "5", "--seed", "3")
    assert result.exit_code == 0, result.output
    assert (
        result.output
        == _invoke("review", "next", "--report", path, "--sample", "5", "--seed", "3").output
    )
    assert "5 of 5 trials unreviewed, 2 of them high-impact" in result.output
    assert "impact judged by tool names only (suite `mini` not loaded" in result.output
    assert "task refund  trial 0  automated: FAIL" in result.output
    assert "high impact: refund (financial)" in result.output
    assert '- refund {"order_id": "ORD-1"}: allowed, ran' in result.output
    assert "| handled refund" in result.output
    assert "- required call refund() not made" in result.output
    assert f"agent-eval review record --report {path} --task refund --trial 0" in result.output
    as_json = _invoke("review", "next", "--report", path, "--sample", "2", "--json")
    assert as_json.exit_code == 0, as_json.output
    listed = json.loads(as_json.output)
    assert len(listed) == 2 and {"task_id", "trial", "automated", "impact", "task"} <= set(
        listed[0]
    )


def test_record_show_and_write_the_reviews_section(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'o.db'}"
    report = make_report()
    path = _write(tmp_path, report)
    base = ("--report", path, "--db", db)
    result = _invoke("review", "record", *base, "--task", "refund", "--verdict", "fail")
    assert result.exit_code == 0, result.output
    assert "recorded fail on refund trial 0 by ana (agrees with the automated fail)" in (
        result.output
    )
    result = _invoke(
        "review",
        "record",
        *base,
        "--task",
        "refund",
        "--trial",
        "1",
        "--verdict",
        "FAIL",
        "--notes",
        "refunded [twice]",
        "--reviewer",
        "bo",
    )
    assert result.exit_code == 0 and "disagrees with the automated pass" in result.output
    with open_store(db) as store:
        assert EvalStore(store).has_report(report["report_id"])  # stored on the first verdict
    # the queue skips what was judged, and can be read from the stored report by id
    listed = json.loads(
        _invoke("review", "next", "--report", report["report_id"], "--db", db, "--json").output
    )
    assert {(i["task_id"], i["trial"]) for i in listed} == {
        ("status", 0),
        ("note", 0),
        ("kb", 0),
    }
    listed = json.loads(
        _invoke("review", "next", *base, "--json", "--reviewer", "bo", "--sample", "9").output
    )
    assert ("refund", 0) in {(i["task_id"], i["trial"]) for i in listed}  # only bo's skipped
    shown = _invoke("review", "show", *base, "--write")
    assert shown.exit_code == 0, shown.output
    assert "refunded [twice]" in shown.output and "NO" in shown.output
    assert "2 verdicts: agreement 50.0%, Cohen's kappa 0.00" in shown.output
    written = json.loads(Path(path).read_text())
    assert written["reviews"] == {
        "reviewed": 2,
        "agreement": 0.5,
        "kappa": 0.0,
        "items": [
            {
                "task_id": "refund",
                "trial": 0,
                "verdict": "fail",
                "automated": False,
                "reviewer": "ana",
                "notes": "",
            },
            {
                "task_id": "refund",
                "trial": 1,
                "verdict": "fail",
                "automated": True,
                "reviewer": "bo",
                "notes": "refunded [twice]",
            },
        ],
    }
    assert {k: v for k, v in written.items() if k != "reviews"} == report
    # the annotated file is still the same report: recording on it again is fine
    again = _invoke("review", "record", *base, "--task", "kb", "--verdict", "fail")
    assert again.exit_code == 0, again.output


def test_show_with_nothing_reviewed(tmp_path: Path) -> None:
    path = _write(tmp_path, make_report())
    result = _invoke("review", "show", "--report", path)
    assert result.exit_code == 0, result.output
    assert "0 verdicts: agreement n/a, Cohen's kappa n/a (nothing reviewed yet" in result.output


def test_bad_input_is_one_line_and_exit_2(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'o.db'}"
    report = make_report()
    path = _write(tmp_path, report)
    (tmp_path / "broken.json").write_text("[1, 2")
    newer = _write(tmp_path, dict(report, schema_version=5), "newer.json")
    record = ("review", "record", "--report", path, "--db", db)
    open_store(db).close()
    cases = [
        ((*record, "--task", "refund", "--verdict", "maybe"), "`pass` or `fail`, not `maybe`"),
        ((*record, "--task", "nope", "--verdict", "pass"), "task `nope` is not in report"),
        (
            (*record, "--task", "refund", "--trial", "4", "--verdict", "pass"),
            "task `refund` has no trial 4 in this report (trials: 0, 1)",
        ),
        (
            ("review", "next", "--report", "0123abcd", "--db", db),
            "no report `0123abcd` is stored",
        ),
        (
            (
                "review",
                "record",
                "--report",
                "0123abcd",
                "--db",
                db,
                "--task",
                "t",
                "--verdict",
                "pass",
            ),
            "no report `0123abcd` is stored",
        ),
        (
            ("review", "next", "--report", "0123abcd"),
            "not a report file, and there is no database",
        ),
        (("review", "next", "--report", str(tmp_path / "broken.json")), "is not a JSON report"),
        (("review", "show", "--report", newer), "newer than this agent-eval"),
        (("review", "next", "--report", path, "--sample", "0"), "--sample must be at least 1"),
        (
            ("review", "show", "--report", report["report_id"], "--db", db, "--write"),
            "no report",
        ),
    ]
    for args, message in cases:
        result = _invoke(*args)
        assert result.exit_code == 2, (args, result.output)
        assert message in result.output and "Traceback" not in result.output
    _invoke(*record, "--task", "refund", "--verdict", "pass")
    result = _invoke("review", "show", "--report", report["report_id"], "--db", db, "--write")
    assert result.exit_code == 2 and "--write needs the report file" in result.output


def test_a_real_run_goes_through_the_queue(tmp_path: Path) -> None:
    """`agent-eval run` on the scripted model, then the reviewer's three commands."""
    from tests.evals.test_runner import _run

    db = f"sqlite:///{tmp_path / 'o.db'}"
    result, _ = _run(tmp_path, "--db", db)
    assert result.exit_code == 0, result.output
    path = str(tmp_path / "out" / "eval.json")
    suite = str(tmp_path / "mini.yaml")  # the suite file: its tools' contracts
    listed = _invoke("review", "next", "--report", path, "--suite", suite, "--db", db)
    assert listed.exit_code == 0, listed.output
    assert "impact judged by the contracts of `opsgate.examples.support_triage.tools`" in (
        listed.output
    )
    assert "3 of 3 trials unreviewed, 3 of them high-impact" in listed.output
    assert "high impact: draft_reply (customer communication)" in listed.output  # status-good
    assert "refund (high impact, write, financial)" in listed.output
    for task, verdict in (("injection", "fail"), ("refund-small", "pass")):
        done = _invoke(
            "review", "record", "--report", path, "--task", task, "--verdict", verdict, "--db", db
        )
        assert done.exit_code == 0, done.output
    shown = _invoke("review", "show", "--report", path, "--db", db)
    assert "2 verdicts: agreement 100.0%, Cohen's kappa 1.00" in shown.output
