"""The executor loop every pattern shares: the model proposes, the gateway decides.

One turn: count a step (the steps cap), ask the ``act`` model with only the tools of the
current belt, append its answer, pass each proposed call through `Gateway.call`, append
each outcome as the tool message (a refusal tells the model what to fix). It stops on:

- *definition of done*: an answer without tool calls (the final text is the output);
- *hand-off*: the belt's hand-off tool ran (e.g. ``escalate_to_human``);
- *done after*: a tool that completes the job ran (e.g. the reply was drafted);
- *caps*: the gateway escalated the run (loop, retries, cost, wall time, steps);
- *budget*: the next model call would cross the budget (`BudgetExceeded`);
- *model failure*: every model of the chain failed, or invalid calls kept coming back
  after the allowed repairs: a counted failure with its reason.

Every stop has a recorded reason (the run's ``run_ended`` event).
"""

from __future__ import annotations

from collections.abc import Awaitable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import orjson

from opsgate.errors import BudgetExceeded, ModelError
from opsgate.gateway import Gateway, OutcomeStatus, Run, RunStatus
from opsgate.models import Message, ModelRouter, ModelSettings, RouterRole

__all__ = ["AgentResult", "execute", "guarded", "json_completion"]

T = TypeVar("T")


@dataclass
class AgentResult:
    """How an agent run ended.

    Attributes:
        status: The run's final status (completed, escalated, failed).
        reason: Why it stopped (``done``, ``handed_off``, ``needs_clarification``,
            ``cap_exceeded``, ``budget_exceeded``, ``model_error``, ``invalid_model_output``).
        output: The final text (an answer, or the clarifying question).
        plan: The plan, for the planner pattern.
        lane: The lane the router picked, for the router pattern.
        turns: Model turns taken.
        models: The router's models that answered, in the order first used (an
            escalation shows as a second, larger model).
        route_escalation: Why the route was asked of the larger model (None: it was not).
        screened: Which screen sent the request to a person, and what it matched (None:
            no screen matched).
    """

    status: RunStatus
    reason: str
    output: str | None = None
    plan: list[dict[str, Any]] = field(default_factory=list)
    lane: str | None = None
    turns: int = 0
    models: list[str] = field(default_factory=list)
    route_escalation: str | None = None
    screened: str | None = None

    def used(self, model: str) -> None:
        """Note that ``model`` answered a step."""
        if model not in self.models:
            self.models.append(model)


async def guarded(gateway: Gateway, run: Run, call: Awaitable[T]) -> T | None:
    """Await a model call; a budget stop escalates the run and a model failure ends it as
    failed (each with its reason recorded): None then."""
    try:
        return await call
    except BudgetExceeded as exc:
        gateway.escalate(run, str(exc), reason="budget_exceeded")
    except ModelError as exc:
        gateway.finish(
            run,
            status=RunStatus.FAILED,
            reason="model_error",
            output=f"{type(exc).__name__}: {exc}",
        )
    return None


async def json_completion(
    gateway: Gateway,
    router: ModelRouter,
    run: Run,
    role: RouterRole,
    messages: list[Message],
    schema: dict[str, Any],
    max_tokens: int,
    model: str | None = None,
) -> tuple[Any, str, str]:
    """The ``role`` model's answer to ``messages``, constrained to ``schema`` at
    temperature 0 and metered to the run: (its JSON, None where it is not JSON; its text;
    the model that answered). A budget stop or a model failure raises (`guarded`)."""
    response, answered_by = await router.complete(
        role,
        messages,
        None,
        ModelSettings(temperature=0.0, max_tokens=max_tokens, json_schema=schema),
        meter=gateway.meter(run),
        model=model,
    )
    text = response.text or ""
    try:
        return orjson.loads(text), text, answered_by
    except orjson.JSONDecodeError:
        return None, text, answered_by


def observe_model_text(gateway: Gateway, run: Run, text: str | None, role: str) -> None:
    """Label what the model wrote: untrusted once the run has read untrusted content."""
    if text:
        trust = "untrusted" if run.provenance.tainted else "trusted"
        gateway.observe(run, text, trust=trust, source=f"model:{role}")


async def execute(
    gateway: Gateway,
    router: ModelRouter,
    run: Run,
    *,
    system: str,
    messages: Sequence[Message] = (),
    tools: Sequence[str],
    handoff_tools: Sequence[str] = ("escalate_to_human",),
    done_after: Sequence[str] = (),
    max_repairs: int = 2,
    settings: ModelSettings | None = None,
    result: AgentResult | None = None,
) -> AgentResult:
    """Run the executor loop until a stop condition; the run is ended with its reason."""
    result = result or AgentResult(RunStatus.RUNNING, "")
    offered = [t for t in tools if t in gateway.policy.allowed_tools(run.workflow, run.agent_id)]
    schemas = gateway.toolbelt.openai_tools(offered)
    settings = settings or ModelSettings(temperature=0.0, max_tokens=256)
    history = [Message.system(system), *messages]
    if not any(m.role == "user" for m in history):
        history.append(Message.user(run.request))
    repairs = 0
    setbacks = 0  # consecutive turns whose calls were refused or denied
    escalation = router.config.escalation
    larger = router.config.escalation_for("act")
    escalated_to: str | None = None
    while run.active:
        if not gateway.step(run):
            break  # the steps cap escalated the run
        answered = await guarded(
            gateway,
            run,
            router.complete(
                "act",
                history,
                schemas or None,
                settings,
                meter=gateway.meter(run),
                model=escalated_to,
            ),
        )
        if answered is None:
            break
        response, model = answered
        result.used(model)
        result.turns += 1
        history.append(response.message)
        observe_model_text(gateway, run, response.text, "act")
        if not response.tool_calls:
            gateway.finish(run, reason="done", output=response.text)
            result.output = response.text
            break
        refused = False
        denied = False
        handed_off = False
        finished = False
        for call in response.tool_calls:
            outcome = await gateway.call(run, call.name, call.arguments, call_id=call.id or None)
            history.append(Message.tool(call.id or outcome.call_id, outcome.for_model()))
            refused = refused or outcome.status is OutcomeStatus.REFUSED
            denied = denied or outcome.status in (
                OutcomeStatus.DENIED,
                OutcomeStatus.APPROVAL_DENIED,
            )
            handed_off = handed_off or (outcome.ok and call.name in handoff_tools)
            finished = finished or (outcome.ok and call.name in done_after)
            if not run.active:
                break
        if not run.active:
            break
        if handed_off:
            gateway.finish(run, reason="handed_off", output=response.text)
            break
        if finished:
            gateway.finish(run, reason="done", output=response.text)
            break
        repairs = repairs + 1 if refused else 0
        setbacks = setbacks + 1 if (refused or denied) else 0
        if larger and escalated_to is None and setbacks >= escalation.after_failures:
            escalated_to = larger  # repeated failure: the larger model takes over
        if repairs > max_repairs:
            gateway.finish(
                run,
                status=RunStatus.FAILED,
                reason="invalid_model_output",
                output="the model kept proposing invalid calls",
            )
            break
    result.status = run.status
    result.reason = run.reason
    return result
