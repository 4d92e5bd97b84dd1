"""Reports for the places CI shows them: JUnit XML for test reporters, Markdown for a PR comment.

Both are pure functions of an agent-eval report document (see ``build_report``): no I/O, so
``agent-eval run`` and ``agent-eval merge`` write the same output from the same report.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from opsgate.errors import SuiteError

__all__ = ["MAX_ROWS", "junit_xml", "markdown_summary"]

#: Rows a Markdown table shows before the rest moves into a collapsed ``<details>``.
MAX_ROWS = 25
#: Characters of a Markdown cell kept (a PR comment is capped at 65,536 characters).
MAX_CELL = 300
#: Characters of one collapsed ``<details>`` list.
MAX_DETAILS = 20_000

#: Characters XML 1.0 cannot carry at all, not even escaped (control characters, lone
#: surrogates, U+FFFE/U+FFFF); model output and error text may contain them.
_NOT_XML = re.compile("[^\t\n\r\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")

#: The optional metrics other components may add; shown when present and not None.
_OPTIONAL_METRICS = (
    ("plan_quality", "plan quality"),
    ("judge_score", "judge score"),
    ("schema_validity", "schema validity"),
)


def _require(document: dict[str, Any], key: str) -> Any:
    if not isinstance(document, dict) or key not in document:
        raise SuiteError(f"the report has no `{key}`: it is not an agent-eval report")
    return document[key]


def _xml_text(value: Any) -> str:
    """Text XML can carry: characters it forbids become ``\\xNN`` so nothing is lost silently."""
    return _NOT_XML.sub(lambda m: f"\\x{ord(m.group()):02x}", str(value))


def _seconds(value: Any) -> str:
    return f"{float(value or 0.0):.3f}"


def _property_value(value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _tasks(document: dict[str, Any]) -> list[dict[str, Any]]:
    tasks = document.get("tasks", [])
    if not isinstance(tasks, list) or not all(isinstance(t, dict) for t in tasks):
        raise SuiteError("the report's `tasks` is not a list of task results")
    return tasks


def junit_xml(document: dict[str, Any]) -> bytes:
    """The report as JUnit XML: one testcase per trial, plus a ``gate`` testcase.

    A failed check is a ``<failure>``; a crash or timeout of the harness (``error`` set) is
    an ``<error>``, as test reporters tell the two apart; a trial that could not reach its
    model (``model_unavailable``) is ``<skipped>``: no verdict on the agent. The ``gate``
    testcase fails with
    the report's threshold failures, so CI shows why the build is red even when every
    task's checks pass.
    """
    suite = str(_require(document, "suite"))
    metrics: dict[str, Any] = _require(document, "metrics")
    gate_failures = [str(f) for f in document.get("gate", {}).get("failures", [])]
    tasks = _tasks(document)
    skipped = sum(t.get("model_unavailable") is True for t in tasks)
    errors = sum(
        t.get("error") is not None and t.get("model_unavailable") is not True for t in tasks
    )
    failures = sum(not t.get("passed") and t.get("error") is None for t in tasks)
    failures += bool(gate_failures)
    started, ended = document.get("started_at"), document.get("ended_at")
    if isinstance(started, (int, float)) and isinstance(ended, (int, float)):
        elapsed = max(0.0, ended - started)
    else:
        elapsed = sum(float(t.get("latency_s") or 0.0) for t in tasks)
    counts = {
        "tests": str(len(tasks) + 1),
        "failures": str(failures),
        "errors": str(errors),
        "skipped": str(skipped),
        "time": _seconds(elapsed),
    }
    root = ET.Element("testsuites", {"name": f"agent-eval {suite}", **counts})
    attributes = {"name": suite, **counts}
    if isinstance(started, (int, float)):
        attributes["timestamp"] = datetime.fromtimestamp(started, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    testsuite = ET.SubElement(root, "testsuite", attributes)
    properties = ET.SubElement(testsuite, "properties")
    header = {
        name: document[key]
        for key, name in (
            ("report_id", "report_id"),
            ("suite_version", "suite_version"),
            ("model_router", "model_router"),
            ("trials", "trials_per_task"),  # metrics' `trials` counts them all
            ("shard", "shard"),
        )
        if key in document
    }
    for name, value in [*header.items(), *metrics.items()]:
        if isinstance(value, (dict, list)):
            continue
        ET.SubElement(
            properties, "property", {"name": name, "value": _xml_text(_property_value(value))}
        )
    for task in tasks:
        case = ET.SubElement(
            testsuite,
            "testcase",
            {
                "classname": suite,
                "name": _xml_text(f"{task.get('task_id')}[trial {task.get('trial')}]"),
                "time": _seconds(task.get("latency_s")),
            },
        )
        listed = [str(f) for f in task.get("failures") or []]
        if task.get("model_unavailable") is True:
            reason = str(task.get("error") or "model unavailable")
            ET.SubElement(case, "skipped", {"message": _xml_text(reason)})
        elif task.get("error") is not None:
            error = str(task["error"])
            kind = "timeout" if error.startswith("timeout") else "harness_error"
            element = ET.SubElement(case, "error", {"message": _xml_text(error), "type": kind})
            element.text = _xml_text("\n".join(listed or [error]))
        elif not task.get("passed"):
            first = listed[0] if listed else f"run {task.get('status')}: {task.get('reason')}"
            element = ET.SubElement(
                case, "failure", {"message": _xml_text(first), "type": "check_failed"}
            )
            element.text = _xml_text("\n".join(listed or [first]))
        out = ET.SubElement(case, "system-out")
        out.text = _xml_text(
            f"run_id: {task.get('run_id', '')}\nstatus: {task.get('status')} "
            f"({task.get('reason')})\ncost_usd: {task.get('cost_usd')}\n"
            f"unsafe_attempts: {task.get('unsafe_attempts')}"
        )
    gate = ET.SubElement(testsuite, "testcase", {"classname": suite, "name": "gate", "time": "0"})
    if gate_failures:
        element = ET.SubElement(
            gate, "failure", {"message": _xml_text(gate_failures[0]), "type": "threshold"}
        )
        element.text = _xml_text("\n".join(gate_failures))
    ET.indent(root)
    data: bytes = ET.tostring(root, encoding="utf-8", xml_declaration=True)
    return data + b"\n"


def _cell(value: Any, limit: int = MAX_CELL) -> str:
    """One table cell: inline HTML, ``|`` and line breaks cannot break the table."""
    text = _xml_text(value)  # control characters (ANSI colours...) spelled out
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    text = text.replace("|", "\\|").replace("`", "\\`")
    return "<br>".join(text.replace("\r\n", "\n").replace("\r", "\n").split("\n"))


def _code(value: Any) -> str:
    """An inline code span (backslash escapes do not work inside one, so backticks go)."""
    return "`" + " ".join(str(value).replace("`", "'").split()) + "`"


def _table(
    header: Sequence[str], rows: Sequence[Sequence[Any]], limit: int = MAX_CELL
) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(v, limit) for v in row) + " |" for row in rows]
    return lines


def _capped_table(
    header: Sequence[str],
    rows: Sequence[Sequence[Any]],
    summary: str,
    full: tuple[Sequence[str], Sequence[Sequence[Any]]] | None = None,
) -> list[str]:
    """The first `MAX_ROWS` rows, then "and N more" with every row in a ``<details>``.

    ``full`` gives the header and rows of the collapsed list when it shows more per row.
    The collapsed list stops at `MAX_DETAILS` characters, so the comment stays within
    what a PR comment may hold; the JSON report keeps everything.
    """
    lines = _table(header, rows[:MAX_ROWS])
    if len(rows) <= MAX_ROWS:
        return lines
    full_header, full_rows = full or (header, rows)
    table = _table(full_header, [], MAX_CELL * 4)
    size = 0
    for row in full_rows:
        line = _table(full_header, [row], MAX_CELL * 4)[-1]
        if size + len(line) > MAX_DETAILS:
            break
        table.append(line)
        size += len(line) + 1
    left = len(full_rows) - (len(table) - 2)
    return [
        *lines,
        "",
        f"_…and {len(rows) - MAX_ROWS} more._",
        "",
        f"<details><summary>{summary}</summary>",
        "",
        *table,
        *(["", f"_{left} more rows are in the JSON report._"] if left else []),
        "",
        "</details>",
    ]


def _pct(value: Any) -> str:
    return "n/a" if value is None else f"{float(value):.1%}"


def _seconds_md(value: Any) -> str:
    return "n/a" if value is None else f"{value}s"


def _metric_rows(m: dict[str, Any]) -> list[tuple[str, str]]:
    cost = m.get("cost_per_successful_task")
    cost_text = "n/a (no task succeeded)" if cost is None else f"${cost:.6f}"
    if cost is not None and m.get("cost_is_estimate"):
        cost_text += " (estimate)"
    rows = [
        ("tasks / trials", f"{m.get('tasks')} / {m.get('trials')}"),
        (
            "success rate (95% Wilson CI)",
            f"{_pct(m.get('success_rate'))} [{_pct(m.get('success_low'))}, "
            f"{_pct(m.get('success_high'))}] ({m.get('passed')}/{m.get('trials')})",
        ),
        ("pass@k / pass^k", f"{_pct(m.get('pass_at_k'))} / {_pct(m.get('pass_hat_k'))}"),
        (
            "tool-call precision / recall",
            f"{float(m.get('tool_precision', 0)):.2f} / {float(m.get('tool_recall', 0)):.2f}",
        ),
        ("escalation correctness", _pct(m.get("escalation_accuracy"))),
        ("unsafe tool attempts", str(m.get("unsafe_attempts"))),
        ("required calls the gate refused (over-blocking)", str(m.get("over_blocked", 0))),
        ("cost per successful task", cost_text),
        (
            "latency p50 / p95",
            f"{_seconds_md(m.get('latency_p50'))} / {_seconds_md(m.get('latency_p95'))}",
        ),
        ("harness errors", str(m.get("errors", 0))),
    ]
    if m.get("model_unavailable"):
        rows.insert(1, ("model unavailable (not scored)", str(m["model_unavailable"])))
    for key, label in _OPTIONAL_METRICS:
        value = m.get(key)
        if value is not None:
            rows.append((label, f"{float(value):.3f}"))
    return rows


def _comparison(comparison: dict[str, Any]) -> list[str]:
    regressions = [str(r) for r in comparison.get("regressions") or []]
    lines = [
        "",
        f"### Against the baseline {_code(comparison.get('baseline', '?'))}",
        "",
        f"**Regressions: {len(regressions)}**" if regressions else "**No regression.**",
    ]
    lines += [f"- ❌ {_cell(r)}" for r in regressions]
    notes = [str(n) for n in comparison.get("notes") or []]
    if notes:
        lines += ["", *(f"- {_cell(n)}" for n in notes)]
    changes = [str(c) for c in comparison.get("changes") or []]
    if changes:
        lines += ["", "Per task:", *(f"- {_cell(c)}" for c in changes)]
    return lines


def _verdict(passed: Any) -> str:
    return "pass" if passed else "fail"


def _reviews(reviews: dict[str, Any]) -> list[str]:
    agreement, kappa = reviews.get("agreement"), reviews.get("kappa")
    facts = [f"reviewed: {reviews.get('reviewed', 0)}"]
    facts.append(f"agreement with the automated verdict: {_pct(agreement)}")
    facts.append("Cohen's κ: " + ("n/a" if kappa is None else f"{float(kappa):.2f}"))
    lines = ["", "### Human review", "", " · ".join(facts)]
    items = [i for i in reviews.get("items") or [] if isinstance(i, dict)]
    if items:
        rows = [
            (
                item.get("task_id", ""),
                item.get("trial", ""),
                item.get("verdict", ""),
                _verdict(item.get("automated")),
                "✅" if item.get("verdict") == _verdict(item.get("automated")) else "❌",
                item.get("reviewer") or "",
                item.get("notes") or "",
            )
            for item in items
        ]
        header = ("task", "trial", "human", "automated", "agree", "reviewer", "notes")
        lines += ["", *_capped_table(header, rows, f"All {len(rows)} reviews")]
    return lines


def markdown_summary(document: dict[str, Any]) -> str:
    """The report as a pull-request comment: verdict first, then metrics, then what failed."""
    suite = _require(document, "suite")
    m: dict[str, Any] = _require(document, "metrics")
    gate_failures = [str(f) for f in document.get("gate", {}).get("failures", [])]
    lines = [f"## agent-eval: {_code(suite)} v{_cell(document.get('suite_version', '?'))}", ""]
    if gate_failures:
        lines.append("**❌ Gate failed**")
        lines += [f"- {_cell(f)}" for f in gate_failures]
    else:
        lines.append("**✅ Gate passed**")
    facts = [f"model router {_code(document.get('model_router', '?'))}"]
    facts.append(f"{document.get('trials', 1)} trial(s) per task")
    if document.get("shard"):
        facts.append(f"shard {_cell(document['shard'])}")
    if document.get("merged_from"):
        facts.append(f"merged from {len(document['merged_from'])} shards")
    if document.get("report_id"):
        facts.append(f"report {_code(document['report_id'])}")
    lines += ["", " · ".join(facts)]
    missing = document.get("missing_shards")
    if missing:
        lines += [
            "",
            f"> ⚠️ Partial: shards {', '.join(str(s) for s in missing)} are missing "
            "from this report.",
        ]
    lines += ["", *_table(("metric", "value"), _metric_rows(m))]
    if "comparison" in document and isinstance(document["comparison"], dict):
        lines += _comparison(document["comparison"])
    if "reviews" in document and isinstance(document["reviews"], dict):
        lines += _reviews(document["reviews"])
    tasks = _tasks(document)
    covered, total = len({t.get("task_id") for t in tasks}), document.get("suite_tasks")
    if isinstance(total, int) and not isinstance(total, bool) and covered < total:
        lines += ["", f"> ⚠️ Subset: {covered} of the suite's {total} tasks were run."]
    unavailable = [t for t in tasks if t.get("model_unavailable") is True]
    if unavailable:
        first = _cell(unavailable[0].get("error") or "model unavailable")
        lines += [
            "",
            f"> ⚠️ {len(unavailable)} trial(s) could not reach a model and are not scored "
            f"(model_unavailable): {first}",
        ]
    failing = [t for t in tasks if not t.get("passed") and t.get("model_unavailable") is not True]
    lines += ["", f"### Failing tasks ({len(failing)})", ""]
    if not failing:
        lines.append("None: every trial passed its checks.")
    else:
        rows, full_rows = [], []
        for task in failing:
            listed = [str(f) for f in task.get("failures") or []]
            listed = listed or [f"run {task.get('status')}: {task.get('reason')}"]
            rows.append((task.get("task_id", ""), task.get("trial", ""), listed[0]))
            full_rows.append((task.get("task_id", ""), task.get("trial", ""), "\n".join(listed)))
        lines += _capped_table(
            ("task", "trial", "first failure"),
            rows,
            f"All {len(rows)} failing trials, every failure",
            full=(("task", "trial", "failures"), full_rows),
        )
    return "\n".join(lines) + "\n"
