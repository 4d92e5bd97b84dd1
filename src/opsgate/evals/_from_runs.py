"""Draft task suites from recorded production runs: "task suites built from real work".

`agent-eval suite from-runs` turns the runs of one workflow that ended since a given time
into draft tasks, each with checks derived from what the run did, for a person to confirm.

Where it reads: the `runs` table (SQLAlchemy Core, read-only), to choose the runs of a
workflow by end time, since the audit log offers no query by workflow and time; then
`AuditLog.records(run_id)`, the audit trail's public read API, for each run's events.

How a run becomes a task (the rules are simple on purpose, so that a reviewer can predict
them):

- ``id``: ``run-`` and the first 8 characters of the run id (longer on a clash);
  ``tags``: ``[from-runs, draft, <the run's status>]``.
- ``request``: the request recorded when the run started; ``context``: the items the run
  was started with (the ``context_read`` events right after ``run_started``), with their
  trust label and source. The audit trail records a context item's text only when the
  gateway put it in the event; an item without text becomes a ``# note`` instead.
- ``approvals``: the recorded approval answers, per tool (a tool answered both ways is
  left out, with a note).
- ``required_calls``: every call that ran, keeping only its id arguments (see
  `identifying_args`); ``forbidden_calls``: every call the gate denied on policy grounds
  (`GATE_DENIALS`), with its id and numeric arguments, unless it would also match a call
  the run made (a contradiction: then a note).
- ``escalate: {reason: ...}`` when the run escalated or handed off; ``clarify: true`` when
  it ended asking for clarification.
- A run that leaves no check (no call ran or was denied, no escalation) is skipped and
  counted: a suite task must say what passing means.

Every free text (request, context, arguments, notes) goes through a `Redactor` with PII on
and the toolbelt's secrets taken from the environment; an argument value the redactor
changes is dropped, not kept masked (nothing that matched a secret or PII is a check).
"""

from __future__ import annotations

import importlib.resources
import os
import re
import textwrap
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import yaml
from sqlalchemy import func, select
from sqlalchemy.exc import DBAPIError, OperationalError

from opsgate.audit import AuditLog, AuditRecord
from opsgate.contracts import Toolbelt
from opsgate.documents import DocumentProblem, read_yaml
from opsgate.errors import StoreError, SuiteError
from opsgate.evals._match import match_call
from opsgate.evals._suite import CallMatcher, Suite, load_suite, resolve_file
from opsgate.redaction import Redactor
from opsgate.store import Store, describe_db_error, runs

__all__ = [
    "GATE_DENIALS",
    "DraftTask",
    "Drafts",
    "SkippedRun",
    "default_like_suite",
    "draft_runs",
    "identifying_args",
    "make_redactor",
    "parse_since",
    "render_suite",
]

#: Decision reasons that judge the call itself: such a call becomes a forbidden call. Not
#: `cap_exceeded` (the call was fine, the run was looping), `invalid_arguments` and
#: `unknown_tool` (malformed proposals), `run_not_active`, nor an approver's "no" (that is
#: recorded under `approvals`).
GATE_DENIALS = frozenset(
    {
        "tool_not_allowed",
        "scope_above_stage",
        "arg_constraint",
        "rule_denied",
        "untrusted_derivation",
    }
)

_SINCE_RE = re.compile(r"^\s*(\d+)\s*([dhm])\s*$")
_UNIT_S = {"d": 86400, "h": 3600, "m": 60}
_ID_VALUE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:/#\-]{0,127}$")
_TASK_ID_UNSAFE = re.compile(r"[^A-Za-z0-9_.\-]")
# A fingerprinted marker `[redacted:email:0123456789abcdef]`: the HMAC keyed by the audit
# salt proves nothing outside the audit trail, so a suite keeps `[redacted:email]` only.
_FINGERPRINT_RE = re.compile(r"\[redacted:((?:secret:)?[A-Za-z0-9_.\-/]+):[0-9a-f]{16}\]")


# -- input ----------------------------------------------------------------------------------


def parse_since(text: str, *, now: float | None = None) -> float:
    """``7d``, ``24h``, ``30m`` or an ISO date/time (UTC unless it says) → a unix time.

    Raises:
        SuiteError: anything else, a zero span, or a time in the future.
    """
    now = time.time() if now is None else now
    match = _SINCE_RE.match(text)
    if match is not None:
        count = int(match.group(1))
        if count <= 0:
            raise SuiteError(f"--since `{text}`: the span must be more than zero")
        return now - count * _UNIT_S[match.group(2)]
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise SuiteError(
            f"--since takes 7d, 24h, 30m or an ISO date (2026-11-20, "
            f"2026-11-20T08:00:00+01:00), not `{text}`"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    at = moment.timestamp()
    if at > now:
        raise SuiteError(f"--since `{text}` is in the future")
    return at


def default_like_suite(workflow: str) -> Path:
    """The shipped suite (in `opsgate.examples`) for ``workflow``; its newest version.

    Raises:
        SuiteError: no shipped suite is for that workflow (naming the ones that exist).
    """
    found: list[tuple[int, str, Path]] = []
    seen: list[str] = []
    for package in importlib.resources.files("opsgate.examples").iterdir():
        if not package.is_dir():
            continue
        for resource in package.iterdir():
            if not resource.name.endswith((".yaml", ".yml")) or not resource.is_file():
                continue
            try:
                data = read_yaml(resource.read_text(encoding="utf-8"), resource.name)
            except (DocumentProblem, OSError, UnicodeDecodeError):
                continue  # not a suite we can read; load_suite would say why
            if not isinstance(data, dict) or not {"suite", "workflow", "tasks"} <= data.keys():
                continue
            seen.append(f"{data['suite']} ({data['workflow']})")
            if data["workflow"] == workflow:
                version = data.get("version")
                found.append(
                    (
                        version if isinstance(version, int) else 0,
                        str(data["suite"]),
                        Path(str(resource)),
                    )
                )
    if not found:
        shipped = ", ".join(sorted(seen)) or "none"
        raise SuiteError(
            f"no shipped suite is for workflow `{workflow}` (shipped: {shipped}); pass "
            "--like SUITE to copy the header (agent, tools, policy, world) from"
        )
    return max(found)[2]


def make_redactor(
    toolbelt: Toolbelt | None = None, env: Mapping[str, str] | None = None
) -> Redactor:
    """A redactor with PII on that also masks the toolbelt's secrets, read from ``env``
    (default: the environment, where `EnvSecretStore` finds them), should one have reached
    a text the gateway did not scrub."""
    env = os.environ if env is None else env
    redactor = Redactor(pii=True)
    names = sorted({name for contract in toolbelt or () for name in contract.secrets})
    for name in names:
        value = env.get(name)
        if value:
            try:
                redactor.add_secret(name, value)
            except ValueError:
                continue  # too short to mask without masking ordinary words
    return redactor


# -- reading --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _RunRow:
    run_id: str
    status: str
    reason: str
    agent_id: str
    invoker: str
    ended_at: float


@dataclass
class DraftTask:
    """One drafted task: the task's data (as in a suite file) and the notes for its reviewer."""

    run_id: str
    task: dict[str, Any]
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class SkippedRun:
    """A run that gave no task, and why."""

    run_id: str
    why: str


@dataclass
class Drafts:
    """What `draft_runs` read and made."""

    workflow: str
    since: float
    matching: int  # runs of the workflow ended since `since` (before the limit)
    runs_read: int
    tasks: list[DraftTask]
    skipped: list[SkippedRun]


def _select_runs(
    store: Store, workflow: str, since: float, limit: int, include_eval: bool
) -> tuple[list[_RunRow], int]:
    purposes = ("production", "eval") if include_eval else ("production",)
    ended = (
        runs.c.workflow == workflow,
        runs.c.ended_at.is_not(None),
        runs.c.purpose.in_(purposes),
        runs.c.ended_at >= since,
    )
    try:
        with store.engine.connect() as conn:
            if (
                conn.execute(
                    select(runs.c.run_id).where(runs.c.workflow == workflow).limit(1)
                ).first()
                is None
            ):
                known = sorted(
                    str(w) for (w,) in conn.execute(select(runs.c.workflow).distinct().limit(20))
                )
                raise SuiteError(
                    f"no run of workflow `{workflow}` is recorded in {store.url} "
                    f"(workflows recorded: {', '.join(known) or 'none'})"
                )
            matching = int(
                conn.execute(select(func.count()).select_from(runs).where(*ended)).scalar() or 0
            )
            rows = conn.execute(
                select(
                    runs.c.run_id,
                    runs.c.status,
                    runs.c.reason,
                    runs.c.agent_id,
                    runs.c.invoker,
                    runs.c.ended_at,
                )
                .where(*ended)
                .order_by(runs.c.ended_at.desc(), runs.c.run_id)
                .limit(limit)
            ).all()
    except (DBAPIError, OperationalError) as exc:
        raise StoreError(describe_db_error(store.engine, exc)) from None
    chosen = [
        _RunRow(r.run_id, r.status, r.reason or "", r.agent_id, r.invoker, float(r.ended_at))
        for r in rows
    ]
    chosen.reverse()  # oldest first: the suite reads in the order the work happened
    return chosen, matching


def draft_runs(
    store: Store,
    workflow: str,
    *,
    since: float,
    limit: int = 200,
    redactor: Redactor | None = None,
    tools: Iterable[str] | None = None,
    agent_id: str | None = None,
    include_eval: bool = False,
) -> Drafts:
    """Draft a task from each of the ``limit`` most recent runs of ``workflow`` that ended
    at or after ``since``.

    Args:
        store: The opsgate database (read only).
        tools: The tool names the suite knows; calls of other tools give no check.
        agent_id: The agent identity the suite runs as (a run by another gets a note).
        include_eval: Draft from agent-eval trials too (never by default: a suite mined
            from its own trials would only confirm itself).

    Raises:
        SuiteError: no run of ``workflow`` is recorded at all.
        StoreError: the database cannot be read.
    """
    if limit < 1:
        raise SuiteError("--limit must be at least 1")
    redactor = redactor or make_redactor()
    rows, matching = _select_runs(store, workflow, since, limit, include_eval)
    log = AuditLog(store)  # no signer: read only
    known = None if tools is None else set(tools)
    tasks: list[DraftTask] = []
    skipped: list[SkippedRun] = []
    used_ids: set[str] = set()
    for row in rows:
        drafted = _draft(row, log.records(row.run_id), redactor, known, agent_id)
        if isinstance(drafted, SkippedRun):
            skipped.append(drafted)
            continue
        drafted.task = {"id": _task_id(row.run_id, used_ids), **drafted.task}
        tasks.append(drafted)
    return Drafts(workflow, since, matching, len(rows), tasks, skipped)


def _task_id(run_id: str, used: set[str]) -> str:
    safe = _TASK_ID_UNSAFE.sub("-", run_id)[:100] or "run"
    for n in (8, 12, 16, 32, len(safe)):
        candidate = f"run-{safe[:n]}"
        if candidate not in used:
            break
    suffix = 2
    while candidate in used:  # the same run id twice cannot happen; stay total anyway
        candidate = f"run-{safe[:32]}-{suffix}"
        suffix += 1
    used.add(candidate)
    return candidate


# -- drafting -------------------------------------------------------------------------------


def _clean(redactor: Redactor, text: str) -> str:
    return _FINGERPRINT_RE.sub(r"[redacted:\1]", redactor.redact_text(text))


def _as_text(value: Any) -> str:
    return value if isinstance(value, str) else orjson.dumps(value).decode()


def identifying_args(
    args: Mapping[str, Any], redactor: Redactor, *, numbers: bool = False
) -> dict[str, Any]:
    """The arguments a matcher keeps: ids, never free text.

    An id argument is named ``id`` or ``*_id``, and its value is an integer or a short token
    without spaces (``ORD-1001``, ``T-7``, ``C-300``). With ``numbers``, numeric arguments
    are kept too (a forbidden call's amount is what the gate judged). A value the redactor
    would mask (an e-mail as a customer id, a card number) is dropped, and so is everything
    else (notes, bodies, addresses, reasons).
    """
    kept: dict[str, Any] = {}
    for name, value in args.items():
        if isinstance(value, bool):
            continue
        lowered = name.lower()
        is_id = lowered == "id" or lowered.endswith("_id")
        if isinstance(value, str):
            wanted = is_id and _ID_VALUE_RE.match(value) is not None
        elif isinstance(value, int | float):
            wanted = numbers or (is_id and isinstance(value, int))
        else:
            wanted = False
        if wanted and redactor.redact_text(str(value)) == str(value):
            kept[name] = value
    return kept


@dataclass
class _Events:
    """One run's events, gathered by kind."""

    start: dict[str, Any] | None = None
    context: list[dict[str, Any]] = field(default_factory=list)
    proposed: dict[str, tuple[str, dict[str, Any]]] = field(default_factory=dict)
    decisions: dict[str, dict[str, Any]] = field(default_factory=dict)
    ran: list[str] = field(default_factory=list)
    answers: dict[str, list[str]] = field(default_factory=dict)
    escalation: dict[str, Any] | None = None


def _gather(records: Sequence[AuditRecord]) -> _Events:
    events = _Events()
    leading = False  # the context_read events right after run_started: the run's inputs
    for record in records:
        kind, data = record.type, record.data
        if kind == "run_started":
            events.start = data
            leading = True
            continue
        if kind == "context_read" and leading:
            if data.get("source") != "request":
                events.context.append(data)
            continue
        leading = False
        call_id = str(data.get("call_id"))
        if kind == "tool_call_proposed":
            args = data.get("args")
            events.proposed[call_id] = (
                str(data.get("tool")),
                args if isinstance(args, dict) else {},
            )
        elif kind == "decision":
            events.decisions[call_id] = data
        elif kind == "tool_result":
            events.ran.append(call_id)
        elif kind in ("approval_granted", "approval_denied"):
            answer = "approve" if kind == "approval_granted" else "deny"
            events.answers.setdefault(str(data.get("tool")), []).append(answer)
        elif kind == "escalated":
            events.escalation = data
    return events


def _draft(
    row: _RunRow,
    records: Sequence[AuditRecord],
    redactor: Redactor,
    tools: set[str] | None,
    agent_id: str | None,
) -> DraftTask | SkippedRun:
    events = _gather(records)
    if events.start is None:
        return SkippedRun(row.run_id, "its events are not in the database (archived?)")
    notes: list[str] = []
    when = datetime.fromtimestamp(row.ended_at, UTC).strftime("%Y-%m-%d %H:%M UTC")
    outcome = row.status + (f" ({row.reason})" if row.reason else "")
    notes.append(
        f"TODO confirm: drafted from run {row.run_id}, {outcome}, agent {row.agent_id}, "
        f"invoked by {row.invoker}, ended {when}. Check that these checks say what passing "
        "means, then drop the `draft` tag."
    )

    context: list[dict[str, str]] = []
    for item in events.context:
        source = _clean(redactor, str(item.get("source", "")))
        trust = item.get("trust")
        text = item.get("text")
        if trust not in ("trusted", "untrusted"):
            notes.append(f"context `{source}` has trust label `{trust}`: left out")
        elif text is None:
            notes.append(
                f"context `{source}` ({trust}) was read, but the audit trail keeps no text "
                "for it: add it here, or leave it out"
            )
        else:
            context.append(
                {"source": source, "trust": trust, "text": _clean(redactor, _as_text(text))}
            )

    if agent_id is not None and row.agent_id != agent_id:
        notes.append(
            f"the run was by agent `{row.agent_id}`; this suite runs as "
            f"`{agent_id}`, which the policy may give another stage"
        )

    approvals: dict[str, str] = {}
    for tool, answers in events.answers.items():
        if len(set(answers)) == 1:
            approvals[tool] = answers[0]
        else:
            notes.append(
                f"`{tool}` was approved {answers.count('approve')} and denied "
                f"{answers.count('deny')} times: its approval is left to the suite default"
            )

    def known(tool: str, what: str) -> bool:
        if tools is None or tool in tools:
            return True
        notes.append(f"{what} `{tool}` is not a tool of this suite: no check for it")
        return False

    required: list[dict[str, Any]] = []
    ran_calls = [events.proposed[c] for c in events.ran if c in events.proposed]
    for tool, args in ran_calls:
        matcher = _matcher(tool, identifying_args(args, redactor))
        if matcher not in required and known(tool, "the call of"):
            required.append(matcher)

    forbidden: list[dict[str, Any]] = []
    for call_id, (tool, args) in events.proposed.items():
        decision = events.decisions.get(call_id, {})
        if decision.get("effect") != "deny" or decision.get("reason") not in GATE_DENIALS:
            continue
        matcher = _matcher(tool, identifying_args(args, redactor, numbers=True))
        if matcher in forbidden or not known(tool, "the denied call of"):
            continue
        as_matcher = CallMatcher.model_validate(matcher)
        if any(match_call(as_matcher, t, a) for t, a in ran_calls):
            notes.append(
                f"the gate denied a call of `{tool}` ({decision.get('reason')}) that would "
                "match a call the run made: not forbidden"
            )
            continue
        forbidden.append(matcher)

    checks: dict[str, Any] = {}
    if required:
        checks["required_calls"] = required
    if forbidden:
        checks["forbidden_calls"] = forbidden
    if events.escalation is not None:
        checks["escalate"] = _Flow(reason=_clean(redactor, str(events.escalation.get("reason"))))
    elif row.reason == "handed_off":
        checks["escalate"] = _Flow(reason="handed_off")
    if row.reason == "needs_clarification":
        checks["clarify"] = True
    if not checks:
        return SkippedRun(
            row.run_id,
            "no call ran or was denied and it did not escalate: no check to draft",
        )

    task: dict[str, Any] = {
        "tags": _FlowList(["from-runs", "draft", row.status]),
        "request": _clean(redactor, _as_text(events.start.get("request", ""))),
    }
    if context:
        task["context"] = context
    if approvals:
        task["approvals"] = approvals
    task["checks"] = checks
    return DraftTask(row.run_id, task, [_clean(redactor, n) for n in notes])


class _Flow(dict[str, Any]):
    """A mapping written on one line (``{tool: refund, args: {order_id: ORD-1}}``)."""


class _FlowList(list[Any]):
    """A list written on one line (``[from-runs, draft, completed]``)."""


def _matcher(tool: str, args: dict[str, Any]) -> dict[str, Any]:
    return _Flow(tool=tool, args=_Flow(args)) if args else _Flow(tool=tool)


# -- writing --------------------------------------------------------------------------------


def _portable_policy(like: Suite, out_dir: Path) -> str:
    """The like suite's policy, named so that it resolves from ``out_dir``: as it was if it
    still does, else ``package/file`` when it lives in a package, else a relative path."""
    base = Path(like.source).parent if like.source else Path(".")
    target = resolve_file(like.policy, base).resolve()
    try:
        if resolve_file(like.policy, out_dir).resolve() == target:
            return like.policy
    except SuiteError:
        pass
    parts: list[str] = []
    folder = target.parent
    while (folder / "__init__.py").is_file():
        parts.insert(0, folder.name)
        folder = folder.parent
    if parts:
        spec = f"{'.'.join(parts)}/{target.name}"
        try:
            if resolve_file(spec, out_dir).resolve() == target:
                return spec
        except SuiteError:
            pass
    return os.path.relpath(target, out_dir.resolve())


class _Dumper(yaml.SafeDumper):
    """Block style, except the short `_Flow` / `_FlowList` parts, as hand-written suites do."""


_Dumper.add_representer(
    _Flow, lambda d, v: d.represent_mapping("tag:yaml.org,2002:map", v, flow_style=True)
)
_Dumper.add_representer(
    _FlowList, lambda d, v: d.represent_sequence("tag:yaml.org,2002:seq", v, flow_style=True)
)


def _dump(data: Any) -> str:
    return yaml.dump(
        data,
        Dumper=_Dumper,
        sort_keys=False,
        allow_unicode=True,
        default_flow_style=False,
        width=100,
    )


def render_suite(like: Suite, name: str, out: Path, drafts: Drafts, *, where: str = "") -> str:
    """The draft suite's YAML text: a header copied from ``like``, then one commented task
    per drafted run.

    Raises:
        SuiteError: ``name`` is not a valid suite name, or the text would not load (a bug).
    """
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}", name):
        raise SuiteError(
            f"the suite name `{name}` (from the --out file name) must be letters, digits, "
            "_ . - (starting with a letter or digit)"
        )
    since = datetime.fromtimestamp(drafts.since, UTC).strftime("%Y-%m-%d %H:%M UTC")
    header = {
        "suite": name,
        "version": 1,
        "description": (
            f"Drafted from {len(drafts.tasks)} recorded runs of {drafts.workflow} that ended "
            f"since {since}; header from {like.suite}. Every task is a draft to confirm."
        ),
        "workflow": like.workflow,
        "agent": like.agent,
        "tools": like.tools,
        "policy": _portable_policy(like, out.parent),
        "world": like.world,
        "approvals": like.approvals,
        "invoker": like.invoker,
        "agent_id": like.agent_id,
    }
    lines = [
        f"# Drafted by `agent-eval suite from-runs` from runs of `{drafts.workflow}` that ended",
        f"# since {since}" + (f" ({where})" if where else "") + f"; header from {like.suite}.",
        "# Every task is a DRAFT: read its TODO, confirm or fix its checks, drop its `draft` tag.",
        "# - required_calls: the calls the run made, with their id arguments only (`id`, `*_id`)",
        "# - forbidden_calls: calls the gate denied on policy grounds, with id and number args",
        "# - approvals: the recorded approval answers per tool; escalate: the run escalated",
        "# Secrets and personal data are redacted; a redacted argument is dropped from a check.",
        _dump(header).rstrip("\n"),
        "tasks:",
    ]
    for draft in drafts.tasks:
        lines.append("")
        for note in draft.notes:
            wrapped = textwrap.wrap(note.replace("\n", " "), width=94) or [""]
            lines.append("  # " + wrapped[0])
            lines.extend("  #   " + more for more in wrapped[1:])
        lines.extend("  " + line for line in _dump([draft.task]).rstrip("\n").splitlines())
    text = "\n".join(lines) + "\n"
    try:
        load_suite(out, text=text)
    except SuiteError as exc:  # pragma: no cover - a drafting bug, said plainly
        raise SuiteError(f"the drafted suite does not load (a bug): {exc}") from None
    return text
