"""`replay_policy`: every recorded call of a window, decided again under another policy.

A policy change is reviewed against production the way code is against tests: for each
run of the window, its state is rebuilt from its audit events in order, and at each
recorded proposal the new policy decides on the state as it was just before that call.
Replay then follows the record, never the new decision: what ran is what ran, and
nothing is executed. So a change early in a run does not reshape the rest of it, as it
would have live; each call is judged on the history that actually happened.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from opsgate.audit import AuditLog, AuditRecord
from opsgate.errors import InvalidToolCall
from opsgate.policy import CompiledPolicy, Decision, ProposedCall, Reason
from opsgate.replay._report import CallChange, ReplayReport, change_of
from opsgate.replay._state import Rebuilt, call_key, has_marker
from opsgate.replay._window import RecordedRun, recorded_runs, since_time
from opsgate.store import Store

__all__ = ["replay_policy"]

#: Refusals made before the policy is asked (the contract, the MCP proxy): replay keeps
#: them, and asks the new policy only whether a cap stops the call first, as the gateway does.
_BEFORE_THE_GATE = frozenset(
    {
        Reason.UNKNOWN_TOOL,
        Reason.INVALID_ARGUMENTS,
        Reason.TOOL_DEFINITION_CHANGED,
        Reason.INVALID_TOOL_SCHEMA,
        Reason.UPSTREAM_UNAVAILABLE,
        Reason.INTERNAL_ERROR,
    }
)


def replay_policy(
    store: Store,
    policy: CompiledPolicy,
    *,
    since: float | str,
    workflow: str | None = None,
    include_eval: bool = False,
) -> ReplayReport:
    """Decide every recorded call of the window again under ``policy``; list what changes.

    Args:
        store: The database holding the audit trail and the ``runs`` table.
        policy: The policy to review (compiled against the tools the runs used).
        since: Runs that started then or later: a unix time, or ``7d``, ``24h``, ``30m``,
            an ISO date.
        workflow: Only this workflow's runs.
        include_eval: Replay agent-eval trials too (production runs only by default).

    Raises:
        PolicyError: ``workflow`` is not one the policy governs.
        SuiteError: a malformed ``since``.
    """
    start = since_time(since)
    if workflow is not None:
        policy.stage(workflow)  # a workflow the policy does not know: one clear error
    log = AuditLog(store)
    tally = _Tally()
    skipped: Counter[str] = Counter()
    replayed = 0
    for run in recorded_runs(store, since=start, workflow=workflow, include_eval=include_eval):
        if not policy.has_workflow(run.workflow):
            skipped[run.workflow] += 1
            continue
        replayed += 1
        _replay_run(policy, run, log.records(run.run_id), tally)
    return ReplayReport(
        policy_version=policy.version,
        since=start,
        workflow=workflow,
        include_eval=include_eval,
        runs=replayed,
        calls=tally.calls,
        changes=tuple(tally.changes),
        skipped_workflows=dict(skipped),
        masked_calls=tally.masked,
        truncated_reads=tally.truncated,
        relabelled_results=tally.relabelled,
    )


class _Tally:
    """What the runs of a replay add up to."""

    def __init__(self) -> None:
        self.calls = 0
        self.masked = 0
        self.truncated = 0
        self.relabelled = 0
        self.changes: list[CallChange] = []


def _replay_run(
    policy: CompiledPolicy, run: RecordedRun, records: Sequence[AuditRecord], tally: _Tally
) -> None:
    """Walk one run's events; compare each recorded decision with the replayed one."""
    rebuilt: Rebuilt | None = None
    compared: dict[str, CallChange | None] = {}  # by call id, until we know what ran
    ran: set[str] = set()
    for record in records:
        data = record.data
        if record.type == "run_started":
            rebuilt = Rebuilt(
                policy,
                workflow=run.workflow,
                agent_id=str(data.get("agent_id", run.agent_id)),
                invoker=str(data.get("invoker", "")),
                request=str(data.get("request", "")),
                started_at=record.at,
            )
            continue
        if rebuilt is None:
            continue  # events before the run's start: nothing to decide on
        if record.type == "decision":
            call_id = str(data.get("call_id"))
            proposal = rebuilt.proposals.get(call_id)
            if proposal is not None and call_id not in compared:
                compared[call_id] = _compare(policy, rebuilt, run, record, proposal, tally)
            continue  # a second decision of a call (a resumed run's) was not proposed again
        if record.type in ("tool_result", "tool_error"):
            ran.add(str(data.get("call_id")))
        rebuilt.apply(record.type, data, record.at)
    if rebuilt is not None:
        tally.truncated += rebuilt.truncated_reads
        tally.relabelled += rebuilt.relabelled
    for call_id, change in compared.items():
        if change is not None:
            tally.changes.append(replace(change, ran=call_id in ran))


def _compare(
    policy: CompiledPolicy,
    rebuilt: Rebuilt,
    run: RecordedRun,
    record: AuditRecord,
    proposal: tuple[str, Any],
    tally: _Tally,
) -> CallChange | None:
    """Decide the proposal again on the state before it, count it as the gateway did,
    and return how the decision changed (None: it did not)."""
    data = record.data
    tool, args = proposal
    before_effect, before_reason = str(data.get("effect")), str(data.get("reason"))
    if before_reason == Reason.RUN_NOT_ACTIVE:
        return None  # proposed after the run ended: refused whatever the policy says
    tally.calls += 1
    masked = has_marker(args)
    tally.masked += masked
    rebuilt.at(record.at)
    after: Decision | Mapping[str, Any]
    if _refused_before_gate(policy, before_reason, tool, args):
        key = f"{tool}:{args!s}"  # the gateway's key of a refused call
        after = policy.cap_reached(rebuilt.state, key) or data
    else:
        key = call_key(tool, args)
        call_args = args if isinstance(args, Mapping) else {}
        after = policy.decide(ProposedCall(tool, call_args, key), rebuilt.state)
    rebuilt.counted(key)
    masked = _turns_on_mask(args, data, after, masked)
    shown = _shown(after)
    change = change_of(before_effect, before_reason, shown["effect"], shown["reason"])
    if change is None:
        return None
    return CallChange(
        run_id=run.run_id,
        call_id=str(data.get("call_id")),
        workflow=run.workflow,
        tool=tool,
        at=record.at,
        change=change,
        ran=False,
        masked=masked,
        before=_shown(data),
        after=shown,
    )


def _turns_on_mask(
    args: Any, before: Mapping[str, Any], after: Decision | Mapping[str, Any], masked: bool
) -> bool:
    """Whether a change may be the mask's: the arguments either decision is about hold a
    marker (any argument, when neither decision names one)."""
    named = [before.get("argument"), after.argument if isinstance(after, Decision) else None]
    about = [a for a in named if isinstance(a, str) and a]
    if not about or not isinstance(args, Mapping):
        return masked
    return any(has_marker(args.get(a)) for a in about)


def _refused_before_gate(policy: CompiledPolicy, reason: str, tool: str, args: Any) -> bool:
    """Whether the recorded decision was a refusal made before `decide` (a cap hit on a
    refused call is recorded as ``cap_exceeded`` too: then the call itself tells)."""
    if reason in _BEFORE_THE_GATE:
        return True
    if reason != Reason.CAP_EXCEEDED:
        return False
    contract = policy.toolbelt.find(tool)
    if contract is None:
        return True
    try:
        contract.validate_args(args if isinstance(args, Mapping) else {})
    except (InvalidToolCall, TypeError):
        return True
    return False


def _shown(decision: Decision | Mapping[str, Any]) -> dict[str, str]:
    """The four fields a report shows of a decision (recorded or replayed)."""
    data = decision.as_dict() if isinstance(decision, Decision) else decision
    return {name: str(data.get(name, "")) for name in ("effect", "reason", "rule", "message")}
