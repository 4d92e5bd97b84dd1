"""The three patterns that hold up in production (the seed's), each a thin layer over the
executor loop, the router and the gateway.

- `RouterToolAgent`: a small model classifies the request into a *lane*; the executor then
  works with only that lane's narrow tool belt. An unclear request gets a clarifying
  question instead of wandering.
- `PlannerExecutor`: the ``plan`` model writes a plan (recorded as its own event and span,
  scored apart from the outcome), then the executor carries it out with the tools it names.
- `HumanInTheLoopAgent`: drafts first; every high-impact write goes through the gateway's
  approval path (the policy decides which), so a person approves before it happens.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from opsgate.agent._lanes import Step, missing_from_request, run_steps
from opsgate.agent._loop import (
    AgentResult,
    execute,
    guarded,
    json_completion,
    observe_model_text,
)
from opsgate.agent._screen import Screen, first_match, screened_texts
from opsgate.gateway import Gateway, OutcomeStatus, Run, RunStatus
from opsgate.models import Message, ModelRouter, ModelSettings

__all__ = [
    "HumanInTheLoopAgent",
    "Lane",
    "PlannerExecutor",
    "Question",
    "RouterToolAgent",
    "read_both_ways",
]

UNCLEAR = "unclear"

#: The router's instructions (``{menu}``: the lanes), when an agent gives none of its own.
ROUTE_PROMPT = (
    "You route requests. Pick the one lane that fits, or `unclear` when the request is "
    "ambiguous or misses what is needed (then ask one short question).\n"
    "Lanes:\n{menu}\nAnswer with JSON only."
)


@dataclass(frozen=True)
class Question:
    """One closed question put to the route model about a request (JSON-constrained).

    Attributes:
        prompt: The question (the system message; the request is the user's).
        key: The answer's name in the JSON object.
        choices: The answers it may give (all booleans: a yes or no).
        wanted: The answer that counts as a yes for the caller.
    """

    prompt: str
    key: str
    choices: tuple[str | bool, ...]
    wanted: str | bool

    def schema(self) -> dict[str, Any]:
        kind: dict[str, Any] = (
            {"type": "boolean"}
            if all(isinstance(c, bool) for c in self.choices)
            else {"type": "string", "enum": list(self.choices)}
        )
        return {
            "type": "object",
            "properties": {self.key: kind},
            "required": [self.key],
            "additionalProperties": False,
        }


def read_both_ways(
    intro: str, key: str, kinds: Mapping[str, str], wanted: str
) -> tuple[Question, Question]:
    """One classification as two `Question`s, its kinds listed in opposite orders (a small
    model leans to a place in a list: two readings that agree are worth more than one)."""
    orders = (tuple(kinds), tuple(reversed(tuple(kinds))))
    first, second = (
        Question(
            f"{intro} "
            + " ".join(f"`{k}`: {kinds[k]}." for k in order)
            + " Answer with JSON only.",
            key,
            order,
            wanted,
        )
        for order in orders
    )
    return first, second


#: Asked of the route model, each in turn, when the routed lane needs a value the request
#: does not write (an id) and the agent has a lane for general questions (``general_lane``):
#: one question read with its choices both ways round, as the route is read with the menu
#: both ways round; where the readings disagree, the router's escalation model answers.
GENERAL_QUESTIONS = read_both_ways(
    "Classify the request below.",
    "kind",
    {
        "question": "a general question about rules or services that anyone could ask",
        "case": "about something of the requester's own, or a change they want",
        "other": "anything else",
    },
    "question",
)


#: What the agent asks when the router could not pick a lane and wrote no question.
CLARIFYING_QUESTION = "Could you tell me more: what is this about, and what would you like done?"
#: What the human-in-the-loop agent is told about review.
REVIEW_NOTE = (
    "Draft before you act. Any write with a high impact is reviewed by a person before it "
    "happens: propose it, then wait for the result."
)


@dataclass(frozen=True)
class Lane:
    """A kind of request and the narrow tool belt that serves it.

    Attributes:
        description: What requests belong here (shown to the routing model).
        tools: The belt.
        done_after: Tools whose successful call completes the lane's job (its definition
            of done), e.g. drafting the reply.
        instructions: Extra instructions for the executor in this lane.
        steps: The lane as a small state machine (`Step`: each offers only its own tools,
            in order; one marked ``ends`` is its definition of done). Without steps the
            executor loop gets the whole belt.
        routed: Whether the route model may pick the lane. A lane only a screen sends
            to is left out of its menu (each lane more is a place more for a small model
            to lean to).
    """

    description: str
    tools: tuple[str, ...]
    done_after: tuple[str, ...] = ()
    instructions: str = ""
    steps: tuple[Step, ...] = ()
    routed: bool = True


async def _classify(
    gateway: Gateway,
    router: ModelRouter,
    run: Run,
    lanes: Mapping[str, Lane],
    context: str,
    model: str | None = None,
    prompt: str = ROUTE_PROMPT,
    reverse: bool = False,
) -> tuple[str, float, str | None, str]:
    """(lane, confidence, clarifying question, the model that answered) from the ``route``
    model, JSON-constrained; ``reverse`` reads the menu to it in the other order."""
    if reverse:
        lanes = dict(reversed(list(lanes.items())))
    names = [*lanes, UNCLEAR]
    schema = {
        "type": "object",
        "properties": {
            "lane": {"type": "string", "enum": names},
            "confidence": {"type": "number", "minimum": 0, "maximum": 1},
            "question": {"type": "string"},
        },
        "required": ["lane", "confidence"],
        "additionalProperties": False,
    }
    menu = "\n".join(f"- {name}: {lane.description}" for name, lane in lanes.items())
    system = prompt.format(menu=menu)
    data, _, answered_by = await json_completion(
        gateway, router, run, "route", [Message.system(system), Message.user(context)],
        schema, 96, model,
    )  # fmt: skip
    if not isinstance(data, dict) or data.get("lane") not in names:
        return UNCLEAR, 0.0, None, answered_by
    confidence = data.get("confidence")
    confidence = float(confidence) if isinstance(confidence, (int, float)) else 0.0
    question = data.get("question")
    asked = question if isinstance(question, str) else None
    return str(data["lane"]), confidence, asked, answered_by


class RouterToolAgent:
    """Router + tool micro-agent.

    Args:
        gateway: The gate every call passes.
        router: Model routing (``route`` picks the lane, ``act`` executes).
        lanes: Lane name → description and tool belt.
        system: The executor's instructions.
        min_confidence: Below this, ask a clarifying question instead of acting.
        route_prompt: The router's instructions, with ``{menu}`` where the lanes go (the
            domain's wording belongs to the agent that uses this pattern).
        clarifying_question: Asked when no lane fits and the router wrote no question.
        screens: Looked at before routing (`Screen`): a request one matches goes to that
            screen's lane (a hand-off lane), unrouted; the model then only fills in the
            hand-off.
        ask_when_missing: Where a lane's step lacks what the requester must write (an id),
            ask for it rather than offer the model the choice of a hand-off too. For an
            agent whose screens send what a person must handle to a person first: a small
            model offered the hand-off takes it whatever the request, a larger one never.
        general_lane: A lane for general questions, which need nothing looked up (a
            knowledge-base search). Where the routed lane needs a value the request does
            not write (an id), the route model is asked ``general_questions`` (closed
            questions, each of which must get its wanted answer) before the requester is
            asked for the value: a small model picks from a menu by its place in it, and
            sends a question about the rules to a lane that can only ask which case it is
            about; a closed question it gets right more often, two that agree more still.
            The general lane is not in the route model's menu: it is reached this way.
        menu_by_request: The route model's menu holds only the lanes the request can
            start: those none of whose steps needs a value the requester must write (an
            id, a file path) that the request does not write (all lanes where none can).
            A request naming a config file and no account is not offered the account
            lanes; for an agent whose every lane would otherwise ask for the missing id.
        unclear_lane: Where the router finds the request unclear (or is not confident),
            this lane runs instead of the run ending with the router's question: a desk
            that asks its requester in a drafted reply. Not in the menu:
            the route model's ``unclear`` is the way to it.
    """

    def __init__(
        self,
        gateway: Gateway,
        router: ModelRouter,
        lanes: Mapping[str, Lane],
        *,
        system: str,
        min_confidence: float = 0.5,
        route_prompt: str = ROUTE_PROMPT,
        clarifying_question: str = CLARIFYING_QUESTION,
        screens: Sequence[Screen] = (),
        ask_when_missing: bool = False,
        general_lane: str | None = None,
        general_questions: Sequence[Question] = GENERAL_QUESTIONS,
        unclear_lane: str | None = None,
        menu_by_request: bool = False,
    ) -> None:
        self.gateway = gateway
        self.router = router
        self.lanes = dict(lanes)
        self.system = system
        self.min_confidence = min_confidence
        self.route_prompt = route_prompt
        self.clarifying_question = clarifying_question
        self.screens = tuple(screens)
        self.ask_when_missing = ask_when_missing
        self.general_lane = general_lane
        self.general_questions = tuple(general_questions)
        self.unclear_lane = unclear_lane
        self.menu_by_request = menu_by_request
        for name, chosen in (("general_lane", general_lane), ("unclear_lane", unclear_lane)):
            if chosen is not None and chosen not in self.lanes:
                raise ValueError(f"{name} {chosen!r} is not one of the lanes")
        if UNCLEAR in self.lanes:
            raise ValueError(f"{UNCLEAR!r} is the router's answer, not a lane name")
        # what the route model picks from: the general lane is reached by the closed
        # questions, not from the menu (each lane more in a small model's menu is a place
        # more for it to lean to)
        self.menu = {
            k: v
            for k, v in self.lanes.items()
            if v.routed and k not in (general_lane, unclear_lane)
        }
        for screen in self.screens:
            if screen.lane not in self.lanes:
                raise ValueError(f"screen {screen.name!r} sends to an unknown lane {screen.lane!r}")

    def _lacks(self, lane: Lane, request: str) -> bool:
        """Whether one of ``lane``'s required steps needs a value ``request`` does not write."""
        return any(
            missing_from_request(self.gateway, step, step.tools, request)
            for step in lane.steps
            if not step.optional
        )

    def menu_for(self, request: str) -> dict[str, Lane]:
        """The lanes the route model is offered for ``request`` (see ``menu_by_request``)."""
        if not self.menu_by_request:
            return self.menu
        fitting = {k: v for k, v in self.menu.items() if not self._lacks(v, request)}
        return fitting or self.menu

    async def _route(
        self, run: Run, context: str, result: AgentResult
    ) -> tuple[str, float, str | None]:
        menu = self.menu_for(context)
        lane, confidence, question, model = await _classify(
            self.gateway, self.router, run, menu, context, prompt=self.route_prompt
        )
        result.used(model)
        escalate_to = self.router.config.escalation_for("route")
        can_escalate = escalate_to is not None
        if can_escalate and lane != UNCLEAR and confidence >= self.min_confidence:
            # A small model states high confidence whatever it picks, and leans to a place
            # in the menu: its answer holding when the menu is read the other way round is
            # the confidence worth escalating on.
            again, *_, model = await _classify(
                self.gateway,
                self.router,
                run,
                menu,
                context,
                prompt=self.route_prompt,
                reverse=True,
            )
            result.used(model)
            if again != lane:
                confidence = 0.0
                result.route_escalation = (
                    f"{model} read the lanes two ways ({lane} / {again}); asked {escalate_to}"
                )
        if can_escalate and (lane == UNCLEAR or confidence < self.min_confidence):
            result.route_escalation = result.route_escalation or (
                f"{model} was not sure ({lane}, {confidence:g}); asked {escalate_to}"
            )
            # low confidence: ask the larger model before asking the invoker
            lane, confidence, question, model = await _classify(
                self.gateway,
                self.router,
                run,
                menu,
                context,
                model=escalate_to,
                prompt=self.route_prompt,
            )
            result.used(model)
        return lane, confidence, question

    async def _general(self, run: Run, context: str, lane: str, result: AgentResult) -> bool:
        """Whether a request routed to ``lane`` (or unclear), which lacks a value that lane
        needs, is a general question (the route model's yes or no; see ``general_lane``)."""
        chosen = self.lanes.get(lane)
        if chosen is not None and not self._lacks(chosen, context):
            return False  # the request gives what the lane needs: no question to ask
        said = [await self._ask(run, context, q, result) for q in self.general_questions]
        if all(said) or not any(said):
            return all(said)
        # the readings disagree: the larger model's reading, where the router has one
        larger = self.router.config.escalation_for("route")
        if larger is None:
            return False
        said_why = f"the readings of a general question disagree; asked {larger}"
        routed_why = result.route_escalation  # the route's own escalation, if any, stays
        result.route_escalation = f"{routed_why}; {said_why}" if routed_why else said_why
        return await self._ask(run, context, self.general_questions[0], result, model=larger)

    async def _ask(
        self,
        run: Run,
        context: str,
        question: Question,
        result: AgentResult,
        model: str | None = None,
    ) -> bool:
        """Whether the route model (or ``model``) gives ``question`` its wanted answer."""
        data, _, answered_by = await json_completion(
            self.gateway, self.router, run, "route",
            [Message.system(question.prompt), Message.user(context)],
            question.schema(), 16, model,
        )  # fmt: skip
        result.used(answered_by)
        return isinstance(data, dict) and data.get(question.key) == question.wanted

    async def run(self, run: Run, context: str) -> AgentResult:
        """Route, then execute with the lane's belt (or ask, or stop with a reason)."""
        result = AgentResult(RunStatus.RUNNING, "")
        if not self.gateway.step(run):
            return _ended(result, run)
        matched = first_match(self.screens, screened_texts(run, context))
        if matched is not None:  # a person must see it: no route, only the hand-off lane
            screen, found = matched
            result.lane = screen.lane
            result.screened = f"{screen.name}: {found}"
            return await self._act(run, context, result, note=screen.told(found), must_call=True)
        routed = await guarded(self.gateway, run, self._route(run, context, result))
        if routed is None:
            return _ended(result, run)
        lane, confidence, question = routed
        if self.general_lane is not None and lane != self.general_lane:
            general = await guarded(self.gateway, run, self._general(run, context, lane, result))
            if general is None:
                return _ended(result, run)
            if general:
                lane, confidence = self.general_lane, 1.0
        result.lane = lane
        if (lane == UNCLEAR or confidence < self.min_confidence) and self.unclear_lane:
            result.lane = self.unclear_lane  # the agent asks in its own way (a draft)
            return await self._act(run, context, result)
        if lane == UNCLEAR or confidence < self.min_confidence:
            result.output = question or self.clarifying_question
            self.gateway.finish(run, reason="needs_clarification", output=result.output)
            return _ended(result, run)
        return await self._act(run, context, result)

    async def _act(
        self,
        run: Run,
        context: str,
        result: AgentResult,
        *,
        note: str = "",
        must_call: bool = False,
    ) -> AgentResult:
        """Carry out ``result.lane``; ``must_call``: the model is asked for a call only."""
        assert result.lane is not None
        chosen = self.lanes[result.lane]
        # the route is the plan: the lane's steps (or its belt), recorded to be scored apart
        planned = [(s.name, t) for s in chosen.steps for t in s.tools] or [
            (result.lane, t) for t in chosen.tools
        ]
        self.gateway.record_plan(run, [{"tool": t, "purpose": why} for why, t in planned])
        system = "\n".join(t for t in (self.system, chosen.instructions, note) if t)
        settings = ModelSettings(
            temperature=0.0, max_tokens=256, tool_choice="required" if must_call else "auto"
        )
        if chosen.steps:
            return await run_steps(
                self.gateway,
                self.router,
                run,
                chosen.steps,
                system=system,
                messages=[Message.user(context)],
                result=result,
                ask_when_missing=self.ask_when_missing,
            )
        return await execute(
            self.gateway,
            self.router,
            run,
            system=system,
            messages=[Message.user(context)],
            tools=chosen.tools,
            done_after=chosen.done_after,
            settings=settings,
            result=result,
        )


class PlannerExecutor:
    """Planner + executor: the plan is recorded (and scored) apart from the outcome.

    ``stepwise`` (the default) carries the plan out one step at a time, each turn offered
    only that step's tool and the hand-off; ``stepwise=False`` gives the executor loop the
    plan's whole belt instead (better for a large model that may need to deviate).
    """

    def __init__(
        self,
        gateway: Gateway,
        router: ModelRouter,
        *,
        tools: Sequence[str],
        system: str,
        max_steps: int = 6,
        stepwise: bool = True,
        handoff_tools: Sequence[str] = ("escalate_to_human",),
        max_repairs: int = 2,
    ) -> None:
        self.gateway = gateway
        self.router = router
        self.tools = list(tools)
        self.system = system
        self.max_steps = max_steps
        self.stepwise = stepwise
        self.handoff_tools = tuple(handoff_tools)
        self.max_repairs = max_repairs

    def _commit(self, run: Run, plan: list[dict[str, Any]]) -> None:
        """Commit the plan (plan lock) when the workflow takes committed plans and the run has
        read nothing untrusted yet: a plan made from the trusted request alone, which an
        instruction read later cannot widen. After untrusted input a plan is only recorded."""
        mode = self.gateway.policy.document.workflows[run.workflow].provenance.plan
        tools = [s["tool"] for s in plan if s.get("tool") in self.tools]
        if mode == "off" or run.provenance.tainted or not tools:
            return
        self.gateway.commit_plan(
            run, [{"tool": t} for t in dict.fromkeys([*tools, *self.handoff_tools])]
        )

    async def run(self, run: Run, context: str) -> AgentResult:
        """Plan with the ``plan`` model, record the plan (and commit it, where the workflow
        takes committed plans and nothing untrusted was read yet), then execute it."""
        result = AgentResult(RunStatus.RUNNING, "")
        schema = {
            "type": "object",
            "properties": {
                "steps": {
                    "type": "array",
                    "maxItems": self.max_steps,
                    "items": {
                        "type": "object",
                        "properties": {
                            "tool": {"type": "string", "enum": self.tools},
                            "purpose": {"type": "string"},
                        },
                        "required": ["tool", "purpose"],
                        "additionalProperties": False,
                    },
                }
            },
            "required": ["steps"],
            "additionalProperties": False,
        }
        belt = "\n".join(
            f"- {c['function']['name']}: {c['function']['description']}"
            for c in self.gateway.toolbelt.openai_tools(self.tools)
        )
        if not self.gateway.step(run):
            return _ended(result, run)
        asked = [
            Message.system(
                f"{self.system}\nWrite a short plan: which tools, in which "
                f"order, and why. Tools:\n{belt}\nAnswer with JSON only."
            ),
            Message.user(context),
        ]
        planned_call = await guarded(
            self.gateway,
            run,
            json_completion(self.gateway, self.router, run, "plan", asked, schema, 256),
        )
        if planned_call is None:
            return _ended(result, run)
        data, said, model = planned_call
        result.used(model)
        steps = data.get("steps") if isinstance(data, dict) else None
        plan = [s for s in steps if isinstance(s, dict)] if isinstance(steps, list) else []
        result.plan = plan
        self.gateway.record_plan(run, plan, valid=bool(plan))
        self._commit(run, plan)
        observe_model_text(self.gateway, run, said, "plan")
        planned = [s["tool"] for s in plan if s.get("tool") in self.tools] or self.tools
        text = "\n".join(
            f"{i + 1}. {s.get('tool')}: {s.get('purpose', '')}" for i, s in enumerate(plan)
        )
        if self.stepwise and any(s.get("tool") in self.tools for s in plan):
            return await self._execute_stepwise(run, context, plan, text, result)
        # no usable plan (or free execution asked for): the executor loop with the belt
        return await execute(
            self.gateway,
            self.router,
            run,
            system=f"{self.system}\nFollow this plan:\n{text}",
            messages=[Message.user(context)],
            tools=list(dict.fromkeys(planned)),
            result=result,
        )

    async def _execute_stepwise(
        self,
        run: Run,
        context: str,
        plan: list[dict[str, Any]],
        text: str,
        result: AgentResult,
    ) -> AgentResult:
        """One model turn per plan step, offered only that step's tool (and the hand-off).

        A small model given the whole belt tends to repeat its first call; narrowed to one
        step it fills in that call's arguments, which is what it is good at. A step the
        model answers in words instead ends the run with that answer; a hand-off ends it
        handed off; invalid calls are retried up to ``max_repairs`` times per step.
        """
        gateway, router = self.gateway, self.router
        allowed = gateway.policy.allowed_tools(run.workflow, run.agent_id)
        handoff = [t for t in self.handoff_tools if t in self.tools and t in allowed]
        history = [
            Message.system(f"{self.system}\nThe plan:\n{text}"),
            Message.user(context),
        ]
        settings = ModelSettings(temperature=0.0, max_tokens=256)
        steps = [s for s in plan if s.get("tool") in self.tools]
        for number, step in enumerate(steps, start=1):
            tool = str(step["tool"])
            offered = [t for t in dict.fromkeys([tool, *handoff]) if t in allowed]
            if tool not in offered:
                continue  # the policy does not give this agent that tool: skip the step
            instruction = Message.user(
                f"Step {number} of {len(steps)}: call `{tool}` ({step.get('purpose', '')}), "
                "with arguments taken from the request and the results so far. If the "
                "request cannot be served safely, hand it to a human instead."
            )
            for _attempt in range(self.max_repairs + 1):
                if not run.active or not gateway.step(run):
                    return _ended(result, run)
                answered = await guarded(
                    gateway,
                    run,
                    router.complete(
                        "act",
                        [*history, instruction],
                        gateway.toolbelt.openai_tools(offered),
                        settings,
                        meter=gateway.meter(run),
                    ),
                )
                if answered is None:
                    return _ended(result, run)
                response, model = answered
                result.used(model)
                result.turns += 1
                observe_model_text(gateway, run, response.text, "act")
                if not response.tool_calls:
                    gateway.finish(run, reason="done", output=response.text)
                    result.output = response.text
                    return _ended(result, run)
                history.append(response.message)
                refused = False
                for call in response.tool_calls:
                    outcome = await gateway.call(
                        run, call.name, call.arguments, call_id=call.id or None
                    )
                    history.append(Message.tool(call.id or outcome.call_id, outcome.for_model()))
                    refused = refused or outcome.status is OutcomeStatus.REFUSED
                    if outcome.ok and call.name in handoff:
                        gateway.finish(run, reason="handed_off", output=response.text)
                        return _ended(result, run)
                    if not run.active:
                        return _ended(result, run)
                if not refused:
                    break
            else:
                gateway.finish(
                    run,
                    status=RunStatus.FAILED,
                    reason="invalid_model_output",
                    output=f"the model kept proposing invalid calls at step {number}",
                )
                return _ended(result, run)
        done = [c.tool for c in run.completed]
        output = "Done: " + (", ".join(done) if done else "nothing was changed") + "."
        gateway.finish(run, reason="done", output=output)
        result.output = output
        return _ended(result, run)


class HumanInTheLoopAgent:
    """Drafts actions; high-impact writes wait for a person (the gateway's approval path)."""

    def __init__(
        self,
        gateway: Gateway,
        router: ModelRouter,
        *,
        tools: Sequence[str],
        system: str,
        review_note: str = REVIEW_NOTE,
    ) -> None:
        self.gateway = gateway
        self.router = router
        self.tools = list(tools)
        self.system = f"{system}\n{review_note}"

    async def run(self, run: Run, context: str) -> AgentResult:
        """Execute with approvals for high-impact writes."""
        return await execute(
            self.gateway,
            self.router,
            run,
            system=self.system,
            messages=[Message.user(context)],
            tools=self.tools,
        )


def _ended(result: AgentResult, run: Run) -> AgentResult:
    result.status = run.status
    result.reason = run.reason
    return result
