"""`Gateway`: the one path of a tool call.

    proposed call ─► contract.validate ─► policy.decide ─► [approver] ─► tool (timeout,
    retries) ─► result labelled with its provenance ─► events to the recorder

Every call yields exactly one ``decision`` event, whatever happens: an unknown tool or
bad arguments are a recorded, counted refusal (deny with ``unknown_tool`` /
``invalid_arguments``) whose message goes back to the model so it can repair the call.
A cap hit ends the run as ``escalated`` with its partial progress kept. A tool that
raises, hangs or returns something unserialisable is a recorded, counted error. Nothing
here raises into the agent loop for any of those.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import orjson
from pydantic import BaseModel
from pydantic_core import to_jsonable_python

from opsgate._jsondata import dumps, json_data
from opsgate.contracts import Toolbelt, ToolContract
from opsgate.errors import ApprovalError, InvalidToolCall, PolicyError
from opsgate.gateway._approval import ApprovalAnswer, ApprovalRequest, Approver, DenyAllApprover
from opsgate.gateway._durable import ApprovalTakenOver, DurableApprovalQueue
from opsgate.gateway._executor import (
    Execution,
    LocalToolExecutor,
    RetryGate,
    ToolExecutor,
    ToolRequest,
)
from opsgate.gateway._meter import RunMeter
from opsgate.gateway._quotas import QuotaLedger, QuotaUse
from opsgate.gateway._run import (
    CompletedCall,
    Escalation,
    Run,
    RunPurpose,
    RunStatus,
    UnexecutedCall,
)
from opsgate.gateway._secrets import EnvSecretStore, SecretStore, scrub
from opsgate.gateway._stages import StageSource
from opsgate.gateway._stops import StopSource
from opsgate.models import Message, ModelCall, ModelMeter, ModelResponse, genai_messages
from opsgate.policy import (
    STAGE_SCOPES,
    CommittedPlan,
    CompiledPolicy,
    Decision,
    Effect,
    ProposedCall,
    Reason,
    ToolSettings,
)
from opsgate.provenance import ContextItem
from opsgate.recorder import Event, EventType, InMemoryRecorder, Recorder

#: How much of each context item the record keeps (what the agent read; redacted on write).
_CONTEXT_CHARS = 8192

__all__ = ["Gateway", "OutcomeStatus", "PlanCommitment", "ToolOutcome"]


@dataclass(frozen=True, slots=True)
class PlanCommitment:
    """What became of a plan the agent tried to commit.

    Attributes:
        accepted: Whether the plan now binds the run.
        reason: Why it was refused (empty when accepted).
        message: One sentence for the agent or a person.
        plan: The committed plan, when accepted.
    """

    accepted: bool
    reason: str
    message: str
    plan: CommittedPlan | None = None


class OutcomeStatus(StrEnum):
    """How a call ended."""

    OK = "ok"
    REFUSED = "refused"  # not a valid call of a known tool
    DENIED = "denied"  # the policy said no
    APPROVAL_DENIED = "approval_denied"  # a person said no
    ERROR = "error"  # the tool failed
    ESCALATED = "escalated"  # the run stopped here and handed over


@dataclass(frozen=True, slots=True)
class ToolOutcome:
    """What became of one proposed call.

    Attributes:
        call_id: The call's id.
        tool: The tool named.
        status: How it ended.
        decision: The gate's decision (present for every status).
        result: The tool's result (JSON data), for ``ok``.
        message: What went wrong, for anything but ``ok``; safe to show the model.
    """

    call_id: str
    tool: str
    status: OutcomeStatus
    decision: Decision
    result: Any = None
    message: str = ""

    @property
    def ok(self) -> bool:
        """Whether the tool ran and returned."""
        return self.status is OutcomeStatus.OK

    def for_model(self) -> str:
        """The tool message to hand back to the model (JSON text)."""
        if self.ok:
            return dumps(self.result).decode()
        # the message may quote what the model sent (a tool name no UTF-8 text can hold)
        return dumps(
            {"error": self.message, "status": self.status.value, "reason": self.decision.reason}
        ).decode()


def _canonical(data: Any) -> bytes:
    return orjson.dumps(data, option=orjson.OPT_SORT_KEYS)


class Gateway:
    """The only caller of tools.

    Args:
        toolbelt: The contracts of the tools that exist.
        policy: The compiled policy deciding every call.
        approver: Who answers approval requests (default: deny all).
        recorder: Where events go (default: in memory).
        secrets: Where declared secrets are read at execution (default: env vars).
        approval_timeout_s: How long a call waits for an approval before the run escalates.
        max_tool_threads: Threads for sync tools (a hung tool holds one until it returns).
        shadow: A candidate policy deciding every call too, never acting (its differences
            are recorded); default: the candidate each workflow's ``shadow`` names.
    """

    def __init__(
        self,
        toolbelt: Toolbelt,
        policy: CompiledPolicy,
        *,
        approver: Approver | None = None,
        recorder: Recorder | None = None,
        secrets: SecretStore | None = None,
        approval_timeout_s: float = 3600.0,
        max_tool_threads: int = 32,
        executor: ToolExecutor | None = None,
        stops: StopSource | None = None,
        shadow: CompiledPolicy | None = None,
        quotas: QuotaLedger | None = None,
        stages: StageSource | None = None,
    ) -> None:
        self.toolbelt = toolbelt
        self.policy = policy
        self.approver: Approver = approver or DenyAllApprover()
        self.recorder: Recorder = recorder if recorder is not None else InMemoryRecorder()
        _check_capabilities(self.recorder, ("record", "settle"), "Recorder")
        _check_capabilities(self.approver, ("request", "give_up", "persists"), "Approver")
        self.secrets: SecretStore = secrets or EnvSecretStore()
        self.executor: ToolExecutor = executor or LocalToolExecutor(max_tool_threads)
        self.stops = stops
        self.shadow = shadow
        self.quotas = quotas
        self.stages = stages
        if policy.has_quotas and quotas is None:
            raise TypeError(
                "the policy declares quotas across runs: give the gateway a quota ledger "
                "(StoreQuotaLedger(store) for every process on a database, "
                "InMemoryQuotaLedger() within one process)"
            )
        self._declared_secrets = sorted({n for c in toolbelt for n in c.secrets})
        self.approval_timeout_s = approval_timeout_s

    # -- run lifecycle -------------------------------------------------------------------

    def start_run(
        self,
        workflow: str,
        *,
        invoker: str,
        agent_id: str,
        request: str,
        context: Sequence[ContextItem] = (),
        deps: Any = None,
        purpose: RunPurpose = "production",
    ) -> Run:
        """Start a run: record who invoked what, and label everything it starts with.

        The invoker's request is trusted; each context item carries its own label. An eval
        trial says so (``purpose="eval"``): it is recorded like any run, and production
        roll-ups (cost, runs, budgets, drift) leave it out unless asked for.

        Raises:
            PolicyError: the policy has no such workflow.
        """
        if not self.policy.has_workflow(workflow):
            self.policy.stage(workflow)  # raises PolicyError naming the known workflows
        if not invoker or not agent_id:
            raise PolicyError("a run needs an invoker identity and an agent identity")
        run = Run(
            workflow=workflow,
            invoker=invoker,
            agent_id=agent_id,
            policy_version=self.policy.version,
            request=request,
            deps=deps,
            purpose=purpose,
        )
        self._know_secrets(run)
        self._emit(
            run,
            EventType.RUN_STARTED,
            {
                "workflow": workflow,
                "invoker": invoker,
                "agent_id": agent_id,
                "policy_version": self.policy.version,
                "stage": self.policy.stage(workflow, agent_id),
                "request": request,
                "purpose": purpose,
            },
        )
        self.observe(run, request, trust="trusted", source="request")
        for item in context:
            self.observe(run, item.text, trust=item.trust, source=item.source)
        return run

    def _know_secrets(self, run: Run) -> None:
        """Known up front, so that a secret pasted into a request or a document is scrubbed
        from the very first record (and after a resume), not only once a tool used it."""
        for name in self._declared_secrets:
            value = self.secrets.get(name)
            if value:
                run._secret_values[name] = value

    def observe(self, run: Run, content: Any, *, trust: str, source: str) -> None:
        """Label content entering the run's context (a document, model text) and record it."""
        if trust not in ("trusted", "untrusted"):
            raise ValueError(f"trust must be `trusted` or `untrusted`, not `{trust}`")
        run.provenance.add(content, trust=trust, source=source)  # type: ignore[arg-type]
        text = content if isinstance(content, str) else repr(content)
        if run._secret_values:
            text = scrub(text, run._secret_values)  # before the cut: no half secret survives
        data: dict[str, Any] = {"source": source, "trust": trust, "text": text[:_CONTEXT_CHARS]}
        if len(text) > _CONTEXT_CHARS:
            data["chars"] = len(text)  # what it read, cut: the record stays bounded
        self._emit(run, EventType.CONTEXT_READ, data)

    def step(self, run: Run) -> bool:
        """Count one model turn; escalate and return False when the steps cap is passed
        (or someone asked for the run to stop)."""
        if self._stopped(run) or not run.active:
            return False
        run._counts.steps += 1
        self._emit(run, EventType.STEP, {"step": run.steps})
        limit = self.policy.caps(run.workflow, run.agent_id).max_steps
        if limit is not None and run.steps > limit:
            self._escalate(
                run, "cap_exceeded", f"the run reached its cap max_steps={limit}", cap="max_steps"
            )
            return False
        return True

    def add_cost(self, run: Run, usd: float) -> None:
        """Add spend (model calls) to the run; the cost cap is checked before each call."""
        if usd < 0:
            raise ValueError("cost cannot be negative")
        run._counts.cost_usd += usd

    def record_model_call(
        self,
        run: Run,
        *,
        role: str,
        model: str,
        provider: str,
        input_tokens: int,
        output_tokens: int,
        cost_usd: float,
        latency_s: float,
        cached_input_tokens: int = 0,
        estimate: bool = False,
        attempts: int = 1,
        cache_hit: bool = False,
        error_type: str | None = None,
        request_model: str = "",
        response_model: str = "",
        finish_reason: str = "",
        messages: Sequence[Message] = (),
        response: ModelResponse | None = None,
        temperature: float | None = None,
        max_tokens: int | None = None,
    ) -> None:
        """Record one model call of the run: its tokens, cost, latency and attempts.

        The cost is added to the run (the cost cap is checked before every tool call and by
        the router before every model call); retried HTTP attempts count against the run's
        retry cap. A failed call (``error_type``) is recorded and counted like any other.
        ``request_model`` / ``response_model`` are the provider's model ids (``model`` is
        the router's name); ``messages`` and ``response`` reach the debug traces only.
        """
        if cost_usd < 0:
            raise ValueError("cost cannot be negative")
        run._counts.cost_usd += cost_usd
        run._counts.retries += max(0, attempts - 1)
        run._counts.model_calls += 1
        self._emit(
            run,
            EventType.MODEL_CALL,
            {
                "role": role,
                "model": model,
                "provider": provider,
                "input_tokens": input_tokens,
                "output_tokens": output_tokens,
                "cached_input_tokens": cached_input_tokens,
                "cost_usd": cost_usd,
                "estimate": estimate,
                "latency_s": round(latency_s, 6),
                "attempts": attempts,
                "cache_hit": cache_hit,
                "ok": error_type is None,
                "error_type": error_type,
                "request_model": request_model or model,
                "response_model": response_model,
                "finish_reason": finish_reason,
                "temperature": temperature,
                "max_tokens": max_tokens,
            },
            debug=_debug_of(messages, response) if messages else None,
        )

    def charge(self, run: Run, call: ModelCall) -> None:
        """Record a model call a `ModelMeter` reported (`record_model_call`)."""
        self.record_model_call(
            run,
            role=call.role,
            model=call.model,
            provider=call.provider,
            input_tokens=call.input_tokens,
            output_tokens=call.output_tokens,
            cached_input_tokens=call.cached_input_tokens,
            cost_usd=call.cost_usd,
            latency_s=call.latency_s,
            estimate=call.estimate,
            attempts=call.attempts,
            cache_hit=call.cache_hit,
            error_type=call.error_type,
            request_model=call.request_model,
            response_model=call.response_model,
            finish_reason=call.finish_reason,
            messages=call.messages,
            response=call.response,
            temperature=call.temperature,
            max_tokens=call.max_tokens,
        )

    def meter(self, run: Run) -> ModelMeter:
        """What the model router charges ``run``'s model calls to (its budget and retry
        cap from the policy, each call recorded): ``router.complete(..., meter=)``."""
        return RunMeter(self, run)

    def record_plan(self, run: Run, steps: list[dict[str, Any]], *, valid: bool = True) -> None:
        """Record the plan a planner wrote (scored apart from the outcome)."""
        self._emit(run, EventType.PLAN, {"steps": steps, "valid": valid})

    def commit_plan(self, run: Run, steps: Sequence[Mapping[str, Any]]) -> PlanCommitment:
        """Commit the run's intent before it reads anything untrusted (plan lock).

        Each step names a tool and, optionally, per argument the sources its value will
        come from: ``{"tool": "send_money", "sources": {"recipient": ["request"]}}``. Where
        the workflow's policy has ``provenance.plan`` on, the gateway then denies calls to
        tools outside the plan (``outside_plan``) and holds each bound argument to its
        sources, so an instruction read later cannot add an action. Recorded as an audit
        event and a span, accepted or not.

        Refused (nothing committed, a recorded event, the reason returned): after untrusted
        content was read (``plan_after_untrusted``), a second plan (``plan_already_committed``),
        a tool the workflow does not allow or an unknown argument or source (``invalid_plan``),
        a run that ended (``run_not_active``).
        """
        refused = self._plan_problem(run, steps)
        if refused is not None:
            reason, message = refused
            self._emit(
                run,
                EventType.PLAN_COMMITTED,
                {"accepted": False, "reason": reason, "message": message, "tools": []},
            )
            return PlanCommitment(False, reason, message)
        plan = CommittedPlan(
            frozenset(str(step["tool"]) for step in steps),
            {
                str(step["tool"]): {a: tuple(s) for a, s in (step.get("sources") or {}).items()}
                for step in steps
                if step.get("sources")
            },
        )
        run.plan = plan
        data = plan.as_dict()
        self._emit(
            run,
            EventType.PLAN_COMMITTED,
            {"accepted": True, "reason": "", "tools": data["tools"], "sources": data["sources"]},
        )
        return PlanCommitment(True, "", f"plan committed: {', '.join(data['tools'])}", plan)

    def _plan_problem(self, run: Run, steps: Sequence[Mapping[str, Any]]) -> tuple[str, str] | None:
        if not run.active:
            return "run_not_active", f"the run is {run.status.value}"
        if run.plan is not None:
            return "plan_already_committed", "a plan is committed already; it cannot be widened"
        if run.provenance.tainted:
            first = run.provenance.untrusted_sources[0]
            return (
                "plan_after_untrusted",
                f"the run already read untrusted `{first}`: a plan made now could be an "
                "attacker's; commit it before reading anything untrusted",
            )
        allowed = set(self.policy.allowed_tools(run.workflow, run.agent_id))
        if not steps:
            return "invalid_plan", "a plan names at least one tool"
        for i, step in enumerate(steps):
            tool = step.get("tool") if isinstance(step, Mapping) else None
            if not isinstance(tool, str) or tool not in allowed:
                return (
                    "invalid_plan",
                    f"step {i} names `{tool}`, not a tool of this workflow "
                    f"(tools: {', '.join(sorted(allowed))})",
                )
            sources = step.get("sources") or {}
            if not isinstance(sources, Mapping):
                return "invalid_plan", f"step {i}: sources map arguments to lists of sources"
            arg_names = self.toolbelt.get(tool).arg_names
            for arg, specs in sources.items():
                if arg not in arg_names:
                    return (
                        "invalid_plan",
                        f"step {i}: `{tool}` has no argument `{arg}` "
                        f"(arguments: {', '.join(arg_names)})",
                    )
                if not isinstance(specs, (list, tuple)) or not specs:
                    return "invalid_plan", f"step {i}: `{arg}` needs a list of sources"
                for spec in specs:
                    named = str(spec).removeprefix("tool:")
                    if str(spec).startswith("tool:") and named not in self.toolbelt:
                        return "invalid_plan", f"step {i}: source `{spec}` names no tool"
        return None

    def finish(
        self,
        run: Run,
        *,
        status: RunStatus = RunStatus.COMPLETED,
        reason: str = "done",
        output: Any = None,
    ) -> None:
        """End the run as completed (or failed) and record it. No-op if already ended."""
        if not run.active:
            return
        if status not in (RunStatus.COMPLETED, RunStatus.FAILED):
            raise ValueError("finish() ends a run as completed or failed; use escalate()")
        run.status = status
        run.reason = reason
        self._emit(run, EventType.RUN_ENDED, self._end_data(run, output))

    def escalate(self, run: Run, message: str, *, reason: str = "requested") -> Escalation | None:
        """Stop the run and hand it to a person, keeping its partial progress."""
        if not run.active:
            return run.escalation
        return self._escalate(run, reason, message)

    # -- the call ------------------------------------------------------------------------

    def call_sync(
        self,
        run: Run,
        tool: str,
        args: str | bytes | Mapping[str, Any] | None = None,
        *,
        call_id: str | None = None,
    ) -> ToolOutcome:
        """`call` for synchronous callers (not from inside a running event loop)."""
        return asyncio.run(self.call(run, tool, args, call_id=call_id))

    async def call(
        self,
        run: Run,
        tool: str,
        args: str | bytes | Mapping[str, Any] | None = None,
        *,
        call_id: str | None = None,
        approval: ApprovalAnswer | None = None,
    ) -> ToolOutcome:
        """Take one proposed call through the gate, and run it if the gate allows.

        Args:
            run: The run the call belongs to.
            tool: The tool name the model proposed.
            args: The arguments: JSON text as models send them, or a mapping.
            call_id: The provider's tool-call id, if any.
            approval: A person's answer, given through a framework's pause (`preview`).

        Raises:
            ApprovalTakenOver: another process claimed the outcome of the durable approval
                the call waited for (`resume`): the run goes on there, not here.
        """
        call_id = call_id or os.urandom(8).hex()
        if self._stopped(run) or not run.active:
            return self._inactive(run, call_id, tool, args)
        checked = self._check(run, call_id, tool, args)
        if isinstance(checked, ToolOutcome):
            return checked
        decision = await self._decide(run, call_id, checked)
        if decision.effect is Effect.DENY:
            return self._denied(run, call_id, tool, checked.data, decision)
        if decision.effect is Effect.NEEDS_APPROVAL:
            refused = await self._approval(run, call_id, tool, checked.data, decision, approval)
            if refused is not None:
                return refused
        return await self._execute(run, checked, call_id, decision)

    def _stopped(self, run: Run) -> bool:
        """End ``run`` (escalated, ``interrupted``, the actor recorded) if someone asked for
        it to stop; whether it did."""
        if self.stops is None or not run.active:
            return False
        stop = self.stops.requested(run.run_id)
        if stop is None:
            return False
        why = f"stopped by {stop.actor}" + (f": {stop.reason}" if stop.reason else "")
        self._escalate(run, "interrupted", why, actor=stop.actor)
        self.stops.honoured(run.run_id)
        return True

    async def _decide(self, run: Run, call_id: str, checked: _Checked) -> Decision:
        """The live decision (its quotas reserved), counted and recorded; and the shadow
        policy's on the same state, recorded beside it where it differs (it never acts)."""
        tool = checked.contract.name
        self._emit_proposed(run, call_id, tool, checked.data, checked.normalized)
        call = ProposedCall(tool, checked.data, checked.key)
        decision = self._policy_of(run).decide(call, run)
        shadow = self.shadow if self.shadow is not None else self.policy.shadow(run.workflow)
        candidate = None if shadow is None else self._candidate(shadow, call, run)
        if decision.effect is not Effect.DENY and self.policy.quotas(run.workflow, tool):
            decision = await self._reserve(run, call_id, call, decision)
        run._counts.tool_calls += 1
        run._counts.calls[checked.key] += 1
        self._emit_decision(run, call_id, tool, decision)
        if candidate is not None and (candidate.effect, candidate.reason) != (
            decision.effect,
            decision.reason,
        ):
            data = candidate.as_dict()
            data.update(
                call_id=call_id,
                tool=tool,
                live_effect=decision.effect.value,
                live_reason=decision.reason.value,
                live_policy_version=decision.policy_version,
            )
            self._emit(run, EventType.SHADOW_DECISION, data)
        return decision

    def _policy_of(self, run: Run) -> CompiledPolicy:
        """The policy as it decides for ``run`` now: at the stage set in the store, if one
        is (a promotion or a demotion reaches the next call)."""
        if self.stages is None:
            return self.policy
        stage = self.stages.stage(run.workflow)
        if stage is None or stage not in STAGE_SCOPES:
            return self.policy
        return self.policy.with_stage(run.workflow, stage)

    async def _reserve(
        self, run: Run, call_id: str, call: ProposedCall, decision: Decision
    ) -> Decision:
        """Reserve the call's share of each quota it counts against (all or none, off the
        event loop); a quota it would exceed, or a ledger out of reach, denies it."""
        assert self.quotas is not None
        uses = [
            QuotaUse(
                q,
                q.subject(run.workflow, run.invoker, run.agent_id),
                q.amount(call.args),
                run.run_id,
                call_id,
            )
            for q in self.policy.quotas(run.workflow, call.tool)
        ]
        try:
            refused = await asyncio.to_thread(self.quotas.reserve, uses)
        except Exception as exc:  # fail closed: a quota that cannot be counted holds nothing
            message = f"the quota ledger could not be reached ({type(exc).__name__}); denied"
            return Decision(
                Effect.DENY, Reason.INTERNAL_ERROR, "quotas", message, self.policy.version
            )
        if refused is None:
            return decision
        q = refused.use.quota
        what = f"a total of {q.arg}" if q.arg else "calls"
        message = (
            f"`{call.tool}` would take quota `{q.key.split(':', 1)[1]}` past {q.max:g} "
            f"({what} per {_window(q.window_s)} per {q.by}; used {refused.used:g}, this call "
            f"{refused.use.amount:g})"
        )
        return Decision(Effect.DENY, Reason.QUOTA_EXCEEDED, q.rule, message, self.policy.version)

    async def _release(self, run: Run, call_id: str, tool: str) -> None:
        """Give back the quota shares of a call that will not run."""
        if self.quotas is not None and self.policy.quotas(run.workflow, tool):
            # a release that fails keeps the share reserved: the quota errs on the safe side
            with contextlib.suppress(Exception):
                await asyncio.to_thread(self.quotas.release, run.run_id, call_id)

    def _candidate(self, shadow: CompiledPolicy, call: ProposedCall, run: Run) -> Decision:
        """The shadow policy's decision; a failing candidate is recorded as such, and
        never touches the live call."""
        try:
            return shadow.decide(call, run)
        except Exception as exc:
            message = f"the shadow policy failed: {type(exc).__name__}: {exc}"
            return Decision(Effect.DENY, Reason.INTERNAL_ERROR, "shadow", message, shadow.version)

    def _inactive(self, run: Run, call_id: str, tool: str, args: Any) -> ToolOutcome:
        """A call proposed after the run ended: recorded, and refused."""
        self._emit_proposed(run, call_id, tool, _loggable_args(args))
        decision = Decision(
            Effect.DENY,
            Reason.RUN_NOT_ACTIVE,
            "run",
            f"the run is {run.status.value}; it takes no more calls",
            self.policy.version,
        )
        self._emit_decision(run, call_id, tool, decision)
        return ToolOutcome(call_id, tool, OutcomeStatus.REFUSED, decision, message=decision.message)

    def preview(
        self, run: Run, tool: str, args: str | bytes | Mapping[str, Any] | None = None
    ) -> Decision:
        """What the gate would decide for this call now, recording and counting nothing.

        For a framework that pauses a call its own way before running it (an interruption,
        a deferred call, a graph interrupt): ``needs_approval`` says to pause, and the
        person's answer then goes to `call` (``approval=``), which decides again and
        records everything. An unknown tool or invalid arguments preview as the denial
        `call` would record.
        """
        if not run.active:
            message = f"the run is {run.status.value}; it takes no more calls"
            return Decision(Effect.DENY, Reason.RUN_NOT_ACTIVE, "run", message, self.policy.version)
        try:
            contract = self.toolbelt.find(tool)
            if contract is None:
                raise InvalidToolCall("unknown_tool", self._unknown_tool_message(run, tool))
            fixed, _ = contract.normalize_args(args)
            data = contract.validate_args(fixed).model_dump(mode="json")
            key = tool + ":" + _canonical(data).decode()
        except (InvalidToolCall, TypeError) as exc:
            unknown = isinstance(exc, InvalidToolCall) and exc.code == "unknown_tool"
            reason = Reason.UNKNOWN_TOOL if unknown else Reason.INVALID_ARGUMENTS
            return Decision(Effect.DENY, reason, "contract", str(exc), self.policy.version)
        return self.policy.decide(ProposedCall(tool, data, key), run)

    def refuse(
        self,
        run: Run,
        tool: str,
        args: Any,
        *,
        reason: Reason,
        rule: str,
        message: str,
        call_id: str | None = None,
    ) -> ToolOutcome:
        """Record and count a call refused before the gate could judge it (a proxy's tool
        whose definition changed, a tool the proxy hides): proposed, then denied with
        ``reason`` by ``rule``, like the gate's own refusals. Caps still apply."""
        call_id = call_id or os.urandom(8).hex()
        shown = _loggable_args(args)
        self._emit_proposed(run, call_id, tool, shown)
        return self._refused(run, call_id, tool, shown, reason, rule, message)

    def _check(
        self, run: Run, call_id: str, tool: str, args: str | bytes | Mapping[str, Any] | None
    ) -> _Checked | ToolOutcome:
        """The call as its contract validates it, or the refusal (recorded) of one that is
        not a valid call of a known tool."""
        try:
            contract = self.toolbelt.find(tool)
            if contract is None:
                raise InvalidToolCall("unknown_tool", self._unknown_tool_message(run, tool))
            fixed, normalized = contract.normalize_args(args)
            validated = contract.validate_args(fixed)
            data = validated.model_dump(mode="json")
            try:
                key = tool + ":" + _canonical(data).decode()
            except TypeError as exc:  # valid for pydantic, not JSON: an int past 64 bits
                raise InvalidToolCall(
                    "invalid_arguments", f"arguments of `{tool}` are not JSON data: {exc}"
                ) from None
        except InvalidToolCall as exc:
            shown = _loggable_args(args)
            self._emit_proposed(run, call_id, tool, shown)
            return self._refuse(run, call_id, tool, shown, exc)
        return _Checked(contract, validated, data, key, normalized)

    def _denied(
        self, run: Run, call_id: str, tool: str, data: dict[str, Any], decision: Decision
    ) -> ToolOutcome:
        """A denial's outcome; a cap hit escalates the run, its progress kept."""
        if decision.reason is Reason.CAP_EXCEEDED:
            run.unexecuted.append(UnexecutedCall(call_id, tool, data, decision.message))
            self._escalate(run, "cap_exceeded", decision.message, cap=decision.cap)
            return ToolOutcome(
                call_id, tool, OutcomeStatus.ESCALATED, decision, message=decision.message
            )
        run._counts.denials += 1
        return ToolOutcome(
            call_id, tool, OutcomeStatus.DENIED, decision, message=f"denied: {decision.message}"
        )

    async def _approval(
        self,
        run: Run,
        call_id: str,
        tool: str,
        data: dict[str, Any],
        decision: Decision,
        given: ApprovalAnswer | None,
    ) -> ToolOutcome | None:
        """Ask a person; None when they approved, else the outcome (denied or escalated)."""
        answer = await self._ask(run, call_id, tool, data, decision, given)
        if answer is None or not answer.approved:
            await self._release(run, call_id, tool)
        if answer is None:
            why = run.escalation.message if run.escalation else "approval expired"
            return ToolOutcome(
                call_id,
                tool,
                OutcomeStatus.ESCALATED,
                decision,
                message=f"{why}; the run was escalated",
            )
        if answer.approved:
            return None
        run._counts.denials += 1
        return ToolOutcome(
            call_id,
            tool,
            OutcomeStatus.APPROVAL_DENIED,
            decision,
            message=f"a person denied this call: {answer.reason or 'no reason given'}",
        )

    async def resume(self, request_id: str, *, deps: Any = None) -> tuple[Run, ToolOutcome]:
        """Resume a run whose call waited for a person, from the durable approval queue.

        Works in the process that asked or in any other (after a restart): the run is
        rebuilt from its snapshot, the call is decided again under the current policy (a
        policy that now denies it wins), and an approved call is executed at most once. The
        request's outcome is claimed first, so the run goes on in exactly one process; a run
        whose end is already on the audit trail (it escalated while waiting) is not resumed.

        Args:
            request_id: The approval request (or a unique prefix of it).
            deps: The run's dependencies (what tools receive as ``ctx.deps``).

        Raises:
            ApprovalError: no durable queue, unknown request, still pending, already run or
                resumed (`ApprovalTakenOver` when another process claimed it meanwhile), or
                its run already ended.
        """
        queue = self.approver
        if not isinstance(queue, DurableApprovalQueue):
            raise ApprovalError("resume() needs a DurableApprovalQueue as the approver")
        record = await asyncio.to_thread(queue.load, request_id)
        if record.status == "pending" and time.time() >= record.expires_at:
            await asyncio.to_thread(queue.expire, record.request_id)
            record = await asyncio.to_thread(queue.load, record.request_id)
        if record.status == "pending":
            raise ApprovalError(f"approval request `{record.request_id}` is still pending")
        if record.executed_at is not None:
            raise ApprovalError(
                f"the call of `{record.request_id}` was already executed, or its run resumed"
            )
        if await asyncio.to_thread(queue.run_ended, record.run_id):
            await asyncio.to_thread(queue.claim, record.request_id)  # nobody tries again
            raise ApprovalError(
                f"run `{record.run_id}` already ended (see its audit trail): approval request "
                f"`{record.request_id}` can no longer resume it"
            )
        answer = await asyncio.to_thread(queue.answer_for, record)  # claims, or raises
        run = Run.restore(record.run_state, deps)
        self._know_secrets(run)
        run.unexecuted = [u for u in run.unexecuted if u.call_id != record.call_id]
        run.status = RunStatus.RUNNING
        self._emit(
            run,
            EventType.RUN_RESUMED,
            {
                "request_id": record.request_id,
                "approval": record.status,
                "policy_version": self.policy.version,
                "asked_under": record.decision.get("policy_version"),
            },
        )
        contract = self.toolbelt.get(record.tool)
        validated = contract.validate_args(record.args)
        data = validated.model_dump(mode="json")
        decision = Decision(
            Effect.NEEDS_APPROVAL,
            Reason.APPROVAL_REQUIRED,
            record.decision.get("rule", ""),
            record.decision.get("message", ""),
            record.decision.get("policy_version", ""),
        )
        if record.status in ("expired", "denied"):  # it will not run: its quota shares go back
            await self._release(run, record.call_id, record.tool)
        if record.status == "expired":
            self._escalate(
                run,
                "approval_expired",
                f"the approval of `{record.tool}` expired without an answer",
            )
            return run, ToolOutcome(
                record.call_id,
                record.tool,
                OutcomeStatus.ESCALATED,
                decision,
                message="approval expired; run escalated",
            )
        if not answer.recorded:  # the approver stopped before writing it to the trail
            self._emit_answer(run, record.call_id, record.request_id, record.tool, answer)
        if record.status == "denied":
            run._counts.denials += 1
            return run, ToolOutcome(
                record.call_id,
                record.tool,
                OutcomeStatus.APPROVAL_DENIED,
                decision,
                message=f"a person denied this call: {record.reason or 'no reason given'}",
            )
        key = record.tool + ":" + _canonical(data).decode()
        now = self.policy.decide(ProposedCall(record.tool, data, key), run)
        if now.effect is Effect.DENY:
            self._emit_decision(run, record.call_id, record.tool, now)
            run._counts.denials += 1
            return run, ToolOutcome(
                record.call_id,
                record.tool,
                OutcomeStatus.DENIED,
                now,
                message=f"denied under the current policy: {now.message}",
            )
        checked = _Checked(contract, validated, data, key)
        return run, await self._execute(run, checked, record.call_id, decision)

    # -- internals -----------------------------------------------------------------------

    def _unknown_tool_message(self, run: Run, tool: str) -> str:
        offered = ", ".join(self.policy.allowed_tools(run.workflow, run.agent_id)) or "none"
        return f"unknown tool `{tool}`; available tools: {offered}"

    def _refuse(
        self, run: Run, call_id: str, tool: str, args: Any, exc: InvalidToolCall
    ) -> ToolOutcome:
        reason = Reason.UNKNOWN_TOOL if exc.code == "unknown_tool" else Reason.INVALID_ARGUMENTS
        return self._refused(run, call_id, tool, args, reason, "contract", str(exc))

    def _refused(
        self, run: Run, call_id: str, tool: str, args: Any, reason: Reason, rule: str, text: str
    ) -> ToolOutcome:
        """A refusal, counted (caps apply: refusals repeated past a cap escalate). Its key is
        the canonical JSON of what was recorded, as a valid call's is (the order the model
        wrote the keys in does not make two refusals different)."""
        try:
            key = tool + ":" + _canonical(args).decode()
        except TypeError:  # not JSON data after all: its text
            key = f"{tool}:{args!s}"
        capped = self.policy.cap_reached(run, key)
        run._counts.tool_calls += 1
        run._counts.calls[key] += 1
        run._counts.refusals += 1
        if capped is not None:
            self._emit_decision(run, call_id, tool, capped)
            self._escalate(run, "cap_exceeded", capped.message, cap=capped.cap)
            return ToolOutcome(
                call_id, tool, OutcomeStatus.ESCALATED, capped, message=capped.message
            )
        decision = Decision(Effect.DENY, reason, rule, text, self.policy.version)
        self._emit_decision(run, call_id, tool, decision)
        return ToolOutcome(call_id, tool, OutcomeStatus.REFUSED, decision, message=text)

    async def _ask(
        self,
        run: Run,
        call_id: str,
        tool: str,
        data: dict[str, Any],
        decision: Decision,
        given: ApprovalAnswer | None = None,
    ) -> ApprovalAnswer | None:
        """Record the approval request, then take ``given`` (a person answered through a
        framework's own pause) or wait for the approver; None when the run escalated."""
        request_id = os.urandom(16).hex()
        pending = UnexecutedCall(call_id, tool, data, "awaiting approval")
        run.unexecuted.append(pending)
        run.status = RunStatus.AWAITING_APPROVAL
        origins = {
            arg: run.provenance.origin(value, explain=True).as_dict() for arg, value in data.items()
        }
        self._emit(
            run,
            EventType.APPROVAL_REQUESTED,
            {
                "call_id": call_id,
                "request_id": request_id,
                "tool": tool,
                "reason": decision.reason.value,
                "rule": decision.rule,
                "origins": origins,
            },
        )
        if given is not None:
            answer: ApprovalAnswer | None = given
        else:
            request = ApprovalRequest(
                run.run_id,
                call_id,
                run.workflow,
                run.invoker,
                run.agent_id,
                tool,
                data,
                decision,
                request_id=request_id,
                run_state=run.snapshot() if self.approver.persists else None,
                request_text=run.request,
                origins=origins,
            )
            answer = await self._wait(run, request)
        if answer is None:
            return None
        run.unexecuted.remove(pending)
        run.status = RunStatus.RUNNING
        if not answer.recorded:
            self._emit_answer(run, call_id, request_id, tool, answer)
        return answer

    async def _wait(self, run: Run, request: ApprovalRequest) -> ApprovalAnswer | None:
        """The approver's answer; None (the run escalated) when it expired or failed."""
        tool = request.tool
        try:
            async with asyncio.timeout(self.approval_timeout_s):
                return await self.approver.request(request)
        except TimeoutError:
            await self._give_up(request.request_id)
            self._escalate(
                run,
                "approval_expired",
                f"no answer to the approval of `{tool}` within {self.approval_timeout_s:g}s",
            )
            return None
        except ApprovalTakenOver:
            raise  # the run went on in another process: it is not ours to end
        except Exception as exc:  # a broken approver approves nothing, and is no denial
            await self._give_up(request.request_id)
            self._escalate(
                run,
                "approver_error",
                f"the approver failed on `{tool}` ({type(exc).__name__}: {exc}); nothing ran",
            )
            return None

    async def _give_up(self, request_id: str) -> None:
        """A run stops waiting for a durable request: nobody may approve it late or resume
        the run elsewhere (`DurableApprovalQueue.give_up`). Best effort when the database
        is out of reach: a run whose end is on the trail is never resumed anyway.

        Raises:
            ApprovalTakenOver: another process claimed the request first.
        """
        try:
            await asyncio.shield(asyncio.to_thread(self.approver.give_up, request_id))
        except ApprovalTakenOver:
            raise
        except Exception:  # see above
            pass

    def _emit_answer(
        self, run: Run, call_id: str, request_id: str, tool: str, answer: ApprovalAnswer
    ) -> None:
        self._emit(
            run,
            EventType.APPROVAL_GRANTED if answer.approved else EventType.APPROVAL_DENIED,
            {
                "call_id": call_id,
                "request_id": request_id,
                "tool": tool,
                "approver": answer.approver,
                "reason": answer.reason,
            },
        )

    async def _execute(
        self, run: Run, checked: _Checked, call_id: str, decision: Decision
    ) -> ToolOutcome:
        """Carry out an allowed call through the executor, once its decision is kept."""
        await self.recorder.settle(run.run_id)  # write-ahead: the decision is kept first
        contract = checked.contract
        tool = contract.name
        secrets = self._secrets_of(run, contract)
        if isinstance(secrets, str):
            text = f"secret `{secrets}` needed by `{tool}` is not configured in the secret store"
            return self._tool_failed(run, call_id, tool, decision, "ConfigError", text, 0)
        settings = self.policy.tool_settings(run.workflow, tool, run.agent_id)
        request = ToolRequest(
            contract,
            dict(checked.validated.__dict__),
            run.run_id,
            run.workflow,
            call_id,
            run.deps,
            secrets,
            min(settings.timeout_s, max(0.001, self._wall_left(run))),
        )
        done = await self.executor.execute(request, self._retry_gate(run, call_id, tool))
        if done.ok:
            return self._succeeded(run, checked, call_id, decision, settings, done)
        error_type, error = done.error_type or "ToolError", done.error or "failed"
        outcome = self._tool_failed(run, call_id, tool, decision, error_type, error, done.attempts)
        if not done.retries_refused:
            return outcome
        limit = self.policy.caps(run.workflow, run.agent_id).max_retries
        self._escalate(
            run,
            "cap_exceeded",
            f"the run reached its cap max_retries={limit} ({error})",
            cap="max_retries",
        )
        message = scrub(f"{error}; retries exhausted, run escalated", run._secret_values)
        return ToolOutcome(call_id, tool, OutcomeStatus.ESCALATED, decision, message=message)

    def _secrets_of(self, run: Run, contract: ToolContract) -> dict[str, str] | str:
        """The secrets ``contract`` declares, from the store (each one known to the run, to
        be scrubbed from every record); the name of the first one missing otherwise."""
        found: dict[str, str] = {}
        for name in contract.secrets:
            value = self.secrets.get(name)
            if value is None:
                return name
            found[name] = value
            run._secret_values[name] = value
        return found

    def _retry_gate(self, run: Run, call_id: str, tool: str) -> RetryGate:
        """Allows a retry while the run's retry cap does, counting and recording it first."""

        async def retry(attempt: int, error_type: str, error: str) -> bool:
            limit = self.policy.caps(run.workflow, run.agent_id).max_retries
            if limit is not None and run.retries >= limit:
                return False
            run._counts.retries += 1
            self._emit(
                run,
                EventType.TOOL_RETRY,
                {
                    "call_id": call_id,
                    "tool": tool,
                    "attempt": attempt,
                    "error_type": error_type,
                    "error": error,
                },
            )
            await self.recorder.settle(run.run_id)  # the retry is kept before it happens
            return True

        return retry

    def _succeeded(
        self,
        run: Run,
        checked: _Checked,
        call_id: str,
        decision: Decision,
        settings: ToolSettings,
        done: Execution,
    ) -> ToolOutcome:
        """Label the result, add it to the run's progress and record it (and the write)."""
        tool, result, data = checked.contract.name, done.result, checked.data
        labelled = run.provenance.add(
            result,
            trust=settings.output_trust,
            source=f"tool:{tool}#{call_id}",
            fields=settings.output_map,
        )
        run.completed.append(CompletedCall(call_id, tool, checked.contract.scope, data, result))
        event: dict[str, Any] = {
            "call_id": call_id,
            "tool": tool,
            "result": result,
            "trust": labelled.trust if labelled.trust != "none" else settings.output_trust,
            "attempts": done.attempts,
        }
        if labelled.truncated:
            event["unlabelled_chars"] = labelled.truncated  # read as untrusted, not vouched for
        self._emit(run, EventType.TOOL_RESULT, event)
        if checked.contract.scope == "write":
            self._record_write(run, checked, call_id, result)
        return ToolOutcome(call_id, tool, OutcomeStatus.OK, decision, result=result)

    def _record_write(self, run: Run, checked: _Checked, call_id: str, result: Any) -> None:
        """A write that ran: what changed, under which policy (the same write again is
        then a ``duplicate_write``)."""
        run.executed_writes.setdefault(checked.key, call_id)
        self._emit(
            run,
            EventType.WRITE_PERFORMED,
            {
                "call_id": call_id,
                "tool": checked.contract.name,
                "args": checked.data,
                "result": result,
                "policy_version": self.policy.version,
            },
        )

    def _tool_failed(
        self,
        run: Run,
        call_id: str,
        tool: str,
        decision: Decision,
        kind: str,
        text: str,
        attempts: int,
    ) -> ToolOutcome:
        run._counts.errors += 1
        self._emit(
            run,
            EventType.TOOL_ERROR,
            {
                "call_id": call_id,
                "tool": tool,
                "error_type": kind,
                "error": text,
                "attempts": attempts,
            },
        )
        return ToolOutcome(
            call_id, tool, OutcomeStatus.ERROR, decision, message=scrub(text, run._secret_values)
        )

    def _wall_left(self, run: Run) -> float:
        wall = self.policy.caps(run.workflow, run.agent_id).max_wall_seconds
        return float("inf") if wall is None else wall - run.elapsed_s

    def _escalate(
        self,
        run: Run,
        reason: str,
        message: str,
        cap: str | None = None,
        actor: str | None = None,
    ) -> Escalation:
        escalation = Escalation(reason, message, cap, run.progress())
        run.escalation = escalation
        run.status = RunStatus.ESCALATED
        run.reason = reason
        data: dict[str, Any] = {
            "reason": reason,
            "message": message,
            "cap": cap,
            "progress": escalation.progress.as_dict(),
        }
        if actor is not None:
            data["actor"] = actor  # who stopped it
        self._emit(run, EventType.ESCALATED, data)
        self._emit(run, EventType.RUN_ENDED, self._end_data(run, None))
        return escalation

    @staticmethod
    def _end_data(run: Run, output: Any) -> dict[str, Any]:
        return {
            "status": run.status.value,
            "reason": run.reason,
            "steps": run.steps,
            "tool_calls": run.tool_calls,
            "refusals": run.refusals,
            "denials": run.denials,
            "errors": run.errors,
            "retries": run.retries,
            "cost_usd": run.cost_usd,
            "model_calls": run.model_calls,
            "elapsed_s": round(run.elapsed_s, 6),
            "output": to_jsonable_python(output, fallback=repr),
        }

    def _emit_proposed(
        self,
        run: Run,
        call_id: str,
        tool: str,
        args: Any,
        normalized: dict[str, dict[str, Any]] | None = None,
    ) -> None:
        data: dict[str, Any] = {"call_id": call_id, "tool": tool, "args": args}
        if normalized:
            data["normalized"] = normalized  # what the contract put in the system's form
        self._emit(run, EventType.TOOL_CALL_PROPOSED, data)

    def _emit_decision(self, run: Run, call_id: str, tool: str, decision: Decision) -> None:
        data = decision.as_dict()
        data["call_id"] = call_id
        data["tool"] = tool
        self._emit(run, EventType.DECISION, data)

    def _emit(
        self,
        run: Run,
        kind: EventType,
        data: dict[str, Any],
        debug: Callable[[], dict[str, Any]] | None = None,
    ) -> None:
        if run._secret_values:
            data = scrub(data, run._secret_values)
            if debug is not None:
                debug = _scrubbed(debug, dict(run._secret_values))
        # outside text no record can hold (a lone surrogate in a ticket, a tool name, an
        # exception's message) is made writable where it is written, on the failure path only
        # (`opsgate._jsondata.dumps` in the audit encoder): this is the hot path
        self.recorder.record(Event(kind, run.run_id, run.next_seq(), time.time(), data, debug))

    def close(self) -> None:
        """Release the executor's threads (waits for none)."""
        self.executor.close()


def _check_capabilities(obj: object, names: tuple[str, ...], protocol: str) -> None:
    """Refuse, when the gateway is made, a recorder or approver that lacks part of its
    protocol: found out later, it would fail in the middle of a run.

    Raises:
        TypeError: naming what is missing.
    """
    missing = [n for n in names if not hasattr(obj, n)]
    if missing:
        raise TypeError(
            f"{type(obj).__name__} is not a {protocol}: it lacks {', '.join(missing)} "
            f"(see opsgate.{'recorder' if protocol == 'Recorder' else 'gateway'}.{protocol})"
        )


def _debug_of(
    messages: Sequence[Message], response: ModelResponse | None
) -> Callable[[], dict[str, Any]]:
    """A model call's prompt and answer as GenAI messages, made when a trace reads them."""
    kept = tuple(messages)
    return lambda: genai_messages(kept, response)


def _scrubbed(
    debug: Callable[[], dict[str, Any]], secrets: dict[str, str]
) -> Callable[[], dict[str, Any]]:
    """``debug`` with the run's secrets (as known now) removed when it is made."""
    return lambda: scrub(debug(), secrets)


def _window(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g}{unit}"
    return f"{seconds:g}s"


@dataclass(frozen=True, slots=True)
class _Checked:
    """A proposed call its contract accepted."""

    contract: ToolContract
    validated: BaseModel
    data: dict[str, Any]
    key: str
    normalized: dict[str, dict[str, Any]] = field(default_factory=dict)


def _loggable_args(args: Any) -> Any:
    """The proposed arguments as data for a record, whatever the model sent."""
    if args is None:
        return {}
    if isinstance(args, (bytes, bytearray)):
        args = bytes(args).decode("utf-8", "replace")
    if isinstance(args, str):
        try:
            return json_data(orjson.loads(args))  # orjson reads 1024 levels, writes 254
        except orjson.JSONDecodeError:
            return {"_raw": args[:2000]}
    try:
        return to_jsonable_python(args, fallback=repr)
    except Exception:  # nested past what serialises, or holding itself: kept as far as it goes
        return json_data(args)
