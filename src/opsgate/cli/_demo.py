"""`opsgate demo`: the example support workflow's proposals, walked through the real gate."""

from __future__ import annotations

import asyncio
import os
from typing import Annotated

import typer

from opsgate.audit import AuditLog, AuditRecorder, Signer
from opsgate.cli._common import cli_errors, console
from opsgate.contracts import Toolbelt
from opsgate.examples.support_triage import POLICY_PATH, tools
from opsgate.examples.support_triage.scenario import EPISODES, Episode
from opsgate.examples.support_triage.world import demo_world
from opsgate.gateway import (
    ApprovalAnswer,
    ApprovalRequest,
    CallbackApprover,
    Gateway,
    MappingSecretStore,
    OutcomeStatus,
)
from opsgate.policy import load_policy
from opsgate.recorder import EventType, FanOutRecorder, InMemoryRecorder
from opsgate.store import open_store
from opsgate.tracing import otlp_endpoint_from_env, tracing_recorder

_STYLE = {
    OutcomeStatus.OK: "green",
    OutcomeStatus.DENIED: "red",
    OutcomeStatus.REFUSED: "magenta",
    OutcomeStatus.APPROVAL_DENIED: "yellow",
    OutcomeStatus.ERROR: "red",
    OutcomeStatus.ESCALATED: "bold yellow",
}


def _operator(request: ApprovalRequest) -> ApprovalAnswer:
    """The demo's on-call team lead: approves refunds backed by the order record."""
    console.print(
        f"      [yellow]waiting for approval[/] ({request.decision.message}) "
        f"-> approved by team-lead@example.com"
    )
    return ApprovalAnswer(True, "team-lead@example.com", "damage confirmed by photo")


async def _episode(gateway: Gateway, episode: Episode) -> None:
    world = demo_world()
    run = gateway.start_run(
        "support_triage",
        invoker="support-desk:maria",
        agent_id=episode.agent_id,
        request=episode.request,
        context=episode.context,
        deps=world,
    )
    console.rule(
        f"[bold]{episode.title}[/]  (agent {episode.agent_id}, "
        f"stage {gateway.policy.stage('support_triage', episode.agent_id)})"
    )
    for proposal in episode.proposals:
        outcome = await gateway.call(run, proposal.tool, proposal.args)
        d = outcome.decision
        label = outcome.status.value
        if outcome.ok:
            label = "approved, ran" if d.effect.value == "needs_approval" else "allowed, ran"
        note = f"  [dim]# {proposal.note}[/]" if proposal.note else ""
        console.print(f"  {proposal.tool}({proposal.args}){note}")
        console.print(
            f"    -> [{_STYLE[outcome.status]}]{label}[/] [dim]{d.reason.value} · {d.rule}[/]"
        )
        if not outcome.ok:
            console.print(f"       {outcome.message}")
    if run.active:
        gateway.finish(run)
    console.print(
        f"  run {run.run_id[:8]} ended [bold]{run.status.value}[/]: "
        f"{run.tool_calls} calls, {len(run.completed)} executed, {run.denials} denied, "
        f"{run.refusals} refused"
    )
    if run.escalation is not None:
        kept = run.escalation.progress
        console.print(
            f"  escalated ({run.escalation.reason}): {run.escalation.message}; "
            f"partial progress kept: {len(kept.completed)} completed, "
            f"{len(kept.unexecuted)} unexecuted"
        )


@cli_errors
def demo(
    db: Annotated[
        str | None,
        typer.Option("--db", help="Database URL (default: $OPSGATE_DATABASE_URL or .opsgate/)."),
    ] = None,
) -> None:
    """Walk the example support workflow's proposed calls through the real gate, recording
    every event in the audit trail."""
    belt = Toolbelt.from_module(tools)
    policy = load_policy(POLICY_PATH, belt)
    store = open_store(db)
    log = AuditLog(store, Signer.from_file())
    audit = AuditRecorder(log)
    traces = tracing_recorder(store)
    recorder = InMemoryRecorder()
    secret = os.environ.get("PAYMENTS_API_KEY") or "demo-payments-key-0000"
    gateway = Gateway(
        belt,
        policy,
        recorder=FanOutRecorder(audit, recorder, traces),
        approver=CallbackApprover(_operator),
        secrets=MappingSecretStore({"PAYMENTS_API_KEY": secret}),
    )
    console.print(f"policy {policy.source} version [bold]{policy.version}[/]")

    async def main() -> None:
        for episode in EPISODES:
            await _episode(gateway, episode)

    try:
        asyncio.run(main())
    finally:
        gateway.close()
        audit.close()
        traces.shutdown()
    decisions = recorder.of_type(EventType.DECISION)
    console.rule("[bold]summary[/]")
    by_reason: dict[str, int] = {}
    for event in decisions:
        by_reason[event.data["reason"]] = by_reason.get(event.data["reason"], 0) + 1
    console.print(
        f"{len(decisions)} decisions, {len(recorder)} events recorded: "
        + ", ".join(f"{k}={v}" for k, v in sorted(by_reason.items()))
    )
    leaked = [r for r in log.records() if secret in repr(r.data)]
    console.print(f"payments key found in records: {len(leaked)} (must be 0)")
    with store.engine.connect() as conn:
        span_count = conn.exec_driver_sql("SELECT count(*) FROM spans").scalar()
    endpoint = otlp_endpoint_from_env()
    console.print(
        f"debug traces: {span_count} redacted OpenTelemetry spans stored"
        + (f" and exported to {endpoint}" if endpoint else "")
    )
    report = log.verify()
    console.print(
        f"audit trail {store.url}: {report.events} events, {report.checkpoints} "
        f"signed checkpoints, verified in {report.seconds:.3f}s"
    )
    last = recorder.events[-1].run_id
    console.print(f"read a run's story: opsgate audit show {last[:12]}")
    store.close()
