"""Lanes as small state machines: the model fills in arguments, the lane holds the workflow.

A small model given a whole tool belt picks the wrong tool first (a reply before the
look-up), repeats its first call, or stops after the wrong one. A lane with *steps* takes
that choice away: each step offers only its own tools (and the hand-off), the steps run in
order, and only a step marked ``ends`` (the lane's definition of done) or the last one
completes it. At any step the model may hand the request off, or answer in words instead
of calling (a question for the requester: the run ends ``needs_clarification``), unless the
step is ``optional``, when words move on to the next step.

*Grounding*: a step may tie an argument to what the run has already read (``ground={
"order_id": "get_order_status.order_id"}``): the values of that field in the results (and
arguments) of that tool's successful calls, when the policy labels its output trusted,
become the argument's ``enum`` in the schema the model sees, so a constrained decoder can
only copy a value the run looked up, never invent one. An argument the requester must have
written (``from_request=("order_id",)``) is grounded in the request itself: the words of
the request that the tool's contract accepts for it (after the contract's normalisation:
``#a-1050`` becomes ``ORD-1050``) are its ``enum``; a request that holds none offers no
tool at that step, only a question for the requester or the hand-off, so a model cannot
invent the id it was not given. A free-text argument the requester must have written (a
new address) has no words a contract picks out: the ``extract`` model copies the value the
request writes for it, kept as its ``enum`` only if the request holds it word for word, it
holds no other argument's value (an id) and it is not what the run read for it already
(``differs``: a change to the value the record holds is no change); an optional step whose
request writes none is skipped, never offered.

*Preconditions*: a step may be skipped on what the run read (``unless={"tool.field":
(values,)}``), e.g. a change the record says can no longer be made, so it is never offered.
A step whose call the policy denies may hand the request off (``hand_off_if_denied``):
what the requester asked for needs a person, not a reply saying no.

*Conditions on what the run read*: a step may run only when a CEL condition over ``read``
(each trusted tool the run called → its latest result) holds (``only_when``: a second way
to verify an identity, only after the first failed), or be the hand-off instead where one
holds (``hand_off_when``: an account the directory shows on a security hold). The record
decides, never the model; an error (a field not read) skips the step or hands off, the
safe way each time. ``choices`` fixes an argument's values (the method a step tries);
``written_as`` grounds a free-text argument (a directory query) in the request's words
another contract accepts (a user id).

*Hand-off steps*: a step whose tool is the hand-off itself (``tools=("escalate_to_human",)``)
ends the lane handed off, e.g. after a look-up, so the person gets the record with the
request (a lane that looks up, then hands off what no tool of the agent can fix).

*Models by step*: a step names the router role whose model fills it (``role``, ``act`` by
default). Choosing among grounded values is extraction, not reasoning: such a step can run
on ``extract`` (the small model where the router routes), the free text (a reply) on ``act``;
a step that keeps failing moves to the router's escalation model. Nothing here names a
domain: the lanes' wording belongs to the agent that declares them.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import json
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any

from opsgate.agent._loop import AgentResult, guarded, json_completion, observe_model_text
from opsgate.gateway import Gateway, OutcomeStatus, Run, RunStatus
from opsgate.models import Message, ModelRouter, ModelSettings, RouterRole
from opsgate.policy import Condition, Reason, compile_condition

__all__ = [
    "TRUSTED_NUMBERS",
    "Step",
    "grounded_tools",
    "grounded_values",
    "missing_from_request",
    "request_values",
    "run_steps",
]

_SCALARS = (str, int, float)


@dataclass(frozen=True)
class Step:
    """One state of a lane.

    Attributes:
        name: What the step is (shown to the model: ``look up``, ``reply``).
        tools: The tools offered at this step (the hand-off is added to every step).
        instructions: What to do at this step (the agent's wording).
        ends: A successful call here completes the lane (its definition of done).
        optional: Words instead of a call move on to the next step rather than ending
            the run with a question.
        ground: Argument name → ``tool.field`` (or several): the argument's values are
            limited to that field's values in what the run read from ``tool`` (when
            trusted).
        handoff: Whether the hand-off is offered at this step. A small model offered an
            exit beside a harmless look-up takes the exit; a lane may look first and hand
            off with the record in hand.
        ask: Whether words instead of a call are accepted here (a question for the
            requester). A step that must act (a reply after the look-up) says no: the
            model is then asked for a call only (``tool_choice: required``).
        from_request: Arguments the requester must have written: their values are
            limited to the words of the request the tool's contract accepts for them
            (arguments with a ``pattern`` or ``enum`` only: a free-text argument accepts
            any word; a free-text one is extracted, see the module). Where the request
            holds none, the step asks or hands off (an optional one is skipped).
        differs: Argument → ``tool.field`` (or several): a value the run read there is
            not offered for the argument (a change must change something).
        unless: ``tool.field`` → values: the step is skipped when the run read one of
            them there (trusted), e.g. a status in which the step's change cannot be made.
        hand_off_if_denied: A call here that the policy denies (not a person's no) is
            followed by the hand-off, the model asked for that call only.
        role: The router role whose model fills the step: ``act`` by default; a step that
            only chooses among grounded values (an id, an amount, an item of a list) can
            name a cheaper one (``extract``). Repeated failure at the step moves it to the
            router's escalation model, as the agent loop does.
        choices: Argument → the only values offered for it (its ``enum``), whatever the
            run read: a step that must try one method of several, in the lane's order.
        written_as: Argument → ``tool.argument`` whose contract reads the request's words
            for it: a free-text argument (a directory query) grounded in the words the
            request writes that another contract accepts (a user id), with
            ``from_request``.
        only_when: A CEL condition over ``read`` (each trusted tool the run called → its
            latest result): the step runs only when it holds, e.g. a second method only
            when the first did not verify. An error (a field not read) skips the step.
        hand_off_when: A CEL condition over ``read``: where it holds, the step is the
            hand-off instead (the model fills only that call), e.g. an account the record
            shows on a security hold. An error hands off too (fail closed).
        pick: Arguments with several grounded values (a group of the directory's list),
            chosen first by a closed question read both ways round (the values in their
            order, then reversed): a small model picks by place in a list. Where the two
            readings agree, that value is the only one offered; where they disagree, the
            router's escalation model chooses; without one, a person does (the hand-off).
    """

    name: str
    tools: tuple[str, ...]
    instructions: str = ""
    ends: bool = False
    optional: bool = False
    ground: Mapping[str, str | tuple[str, ...]] = field(default_factory=dict)
    handoff: bool = True
    ask: bool = True
    from_request: tuple[str, ...] = ()
    differs: Mapping[str, str | tuple[str, ...]] = field(default_factory=dict)
    unless: Mapping[str, tuple[Any, ...]] = field(default_factory=dict)
    hand_off_if_denied: bool = False
    role: RouterRole = "act"
    choices: Mapping[str, tuple[Any, ...]] = field(default_factory=dict)
    written_as: Mapping[str, str] = field(default_factory=dict)
    only_when: str = ""
    hand_off_when: str = ""
    pick: tuple[str, ...] = ()
    _conditions: dict[str, Condition] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        def fail(message: str) -> ValueError:
            return ValueError(f"step {self.name!r}: {message}")

        conditions = {
            name: compile_condition(source, fail, variables=("read",), functions=())
            for name, source in (
                ("only_when", self.only_when),
                ("hand_off_when", self.hand_off_when),
            )
            if source
        }
        for arg, source in self.written_as.items():
            if "." not in source:
                raise ValueError(f"step {self.name!r}: written_as[{arg!r}] is not `tool.argument`")
        object.__setattr__(self, "_conditions", conditions)

    def holds(self, name: str, read: Mapping[str, Any]) -> bool | None:
        """Whether the step's ``name`` condition (``only_when`` or ``hand_off_when``)
        holds over ``read``; None where the step has none. Where it cannot be evaluated (a
        field the run never read), the safe answer: ``only_when`` False (the step does not
        run), ``hand_off_when`` True (a person decides)."""
        condition = self._conditions.get(name)
        if condition is None:
            return None
        try:
            return condition.evaluate({"read": read})
        except ValueError:
            return name == "hand_off_when"  # fail closed: hand off, never run the step


def _found(value: Any, key: str, depth: int = 0) -> Iterator[tuple[int, Any]]:
    """Every value under ``key`` anywhere in ``value`` (dicts and lists), with its depth."""
    if isinstance(value, Mapping):
        for k, v in value.items():
            if k == key and isinstance(v, _SCALARS) and not isinstance(v, bool):
                yield depth, v
            else:
                yield from _found(v, key, depth + 1)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _found(item, key, depth + 1)


def _walk(value: Any, key: str) -> list[Any]:
    """The values under ``key`` nearest the top of ``value``: a record's own ``user_id``,
    not its manager's nested one; each item's ``price`` where only the items have one."""
    found = list(_found(value, key))
    top = min((depth for depth, _ in found), default=0)
    return [v for depth, v in found if depth == top]


#: A grounding source: the numbers written in the trusted content the run was handed (a
#: verified note, a decision from a person), not a tool's result nor a model's text. A
#: partial refund a team lead decided is in no record; ids (``ORD-1002``) are not numbers.
TRUSTED_NUMBERS = "@trusted.numbers"
_NUMBER = re.compile(r"(?<![\w.-])\d+(?:\.\d+)?(?![\w-]|\.\d)")


def _trusted_numbers(run: Run) -> list[float]:
    seen: dict[float, None] = {}
    for source, _, text in run.provenance.texts("trusted"):
        if source.startswith(("tool:", "model:")):
            continue
        for number in _NUMBER.findall(text):
            seen.setdefault(float(number), None)
    return list(seen)


def grounded_values(gateway: Gateway, run: Run, source: str) -> list[Any]:
    """The values of ``tool.field`` the run has read, in first-seen order: from the
    arguments and results of the tool's calls that ran, only if its output is trusted
    (`TRUSTED_NUMBERS`: the numbers of the trusted content it was handed)."""
    if source == TRUSTED_NUMBERS:
        return list(_trusted_numbers(run))
    tool, _, key = source.partition(".")
    if not key or tool not in gateway.policy.allowed_tools(run.workflow, run.agent_id):
        return []
    if gateway.policy.output_trust(run.workflow, tool, run.agent_id) != "trusted":
        return []
    seen: dict[Any, None] = {}
    for call in run.completed:
        if call.tool == tool:
            for value in (*_walk(call.args, key), *_walk(call.result, key)):
                seen.setdefault(value, None)
    return list(seen)


# A word of a request: what lies between spaces and punctuation that never belongs to an id.
_WORD = re.compile(r"[^\s,;:!?()\[\]{}<>\"'`]+")


def _accepts(prop: Mapping[str, Any], value: Any) -> bool:
    """Whether ``value`` meets an argument schema's own constraints (type, enum, pattern,
    length): the contract's validation, for one argument."""
    if not _fits(prop, value):
        return False
    if "enum" in prop and value not in prop["enum"]:
        return False
    if isinstance(value, str):
        pattern = prop.get("pattern")
        if isinstance(pattern, str) and not re.search(pattern, value):
            return False
        if len(value) > int(prop.get("maxLength", len(value))):
            return False
        if len(value) < int(prop.get("minLength", 0)):
            return False
    return True


def request_values(gateway: Gateway, tool: str, arg: str, request: str) -> list[Any] | None:
    """The values for ``tool``'s ``arg`` written in ``request``, in order: each word (and
    pair of words: ``order 1050``) as the contract normalises it, kept where the argument's
    schema accepts it. None when the argument is free text (no pattern or enum), where
    every word would do and the request grounds nothing."""
    contract = gateway.toolbelt.find(tool)
    if contract is None:
        return None
    prop = contract.parameters_schema.get("properties", {}).get(arg)
    if not isinstance(prop, Mapping) or not ({"pattern", "enum"} & prop.keys()):
        return None
    words = [w.strip(".") for w in _WORD.findall(request)]
    spans = [*words, *(f"{a} {b}" for a, b in pairwise(words))]
    found: dict[Any, None] = {}
    for span in spans:
        fixed, _ = contract.normalize_args({arg: span})
        value = fixed.get(arg) if isinstance(fixed, Mapping) else None
        if value is not None and _accepts(prop, value):
            found.setdefault(value, None)
    return list(found)


def _contract_words(
    gateway: Gateway, step: Step, tool: str, arg: str, request: str
) -> list[Any] | None:
    """`request_values` for ``tool``'s ``arg``, read by the contract ``written_as`` names."""
    other_tool, _, other_arg = step.written_as.get(arg, f"{tool}.{arg}").partition(".")
    return request_values(gateway, other_tool, other_arg, request)


def _written(
    gateway: Gateway,
    step: Step,
    tool: str,
    arg: str,
    request: str,
    extracted: Mapping[str, Sequence[Any]] | None,
) -> list[Any] | None:
    """What the request writes for ``arg``: the contract's words, else what was extracted
    for a free-text argument (None: nothing decides it)."""
    values = _contract_words(gateway, step, tool, arg, request)
    if values is None and extracted is not None and arg in extracted:
        return list(extracted[arg])
    return values


def missing_from_request(
    gateway: Gateway,
    step: Step,
    offered: Sequence[str],
    request: str,
    extracted: Mapping[str, Sequence[Any]] | None = None,
) -> list[str]:
    """The step's ``from_request`` arguments the request gives no value for, on any
    offered tool that takes them (``extracted``: the values found for free-text ones)."""
    missing: dict[str, None] = {}
    for tool in offered:
        for arg in step.from_request:
            if _written(gateway, step, tool, arg, request, extracted) == []:
                missing.setdefault(arg, None)
    return list(missing)


def _plain(text: Any) -> str:
    """Text as a reader compares it: case, spacing and end punctuation ignored."""
    return " ".join(str(text).lower().split()).strip(" .,;:!?")


#: What the ``extract`` model is asked, for a free-text argument the request must write.
EXTRACT_PROMPT = (
    "Does the request below ask for something to be changed to a {what}? If it does, copy "
    "that {what} word for word from the request. If it does not, answer with an empty "
    "string. Answer with JSON only."
)
_EXTRACT_SCHEMA = {
    "type": "object",
    "properties": {"value": {"type": "string"}},
    "required": ["value"],
    "additionalProperties": False,
}


def _holds_other_argument(gateway: Gateway, tool: str, arg: str, value: str) -> bool:
    """Whether ``value`` holds a word the contract takes for another of the tool's
    arguments (an id it recognises): a phrase about the request, not this argument's value.
    A small model asked for an address answers with the order id the request names."""
    contract = gateway.toolbelt.find(tool)
    properties = contract.parameters_schema.get("properties", {}) if contract else {}
    return any(request_values(gateway, tool, other, value) for other in properties if other != arg)


#: What `_pick` returns besides a value: the run ended, the readings did not agree (and no
#: larger model settled it), or nothing to choose between. `_json_answer` returns `_ENDED`.
_ENDED, _UNSURE, _OPEN = object(), object(), object()


async def _json_answer(
    gateway: Gateway,
    router: ModelRouter,
    run: Run,
    result: AgentResult,
    role: RouterRole,
    messages: list[Message],
    schema: dict[str, Any],
    max_tokens: int,
    model: str | None = None,
) -> Any:
    """The ``role`` model's JSON answer to ``messages``, constrained to ``schema`` (None
    where it is not JSON), or `_ENDED` where the call ended the run (budget, model failure)."""
    answered = await guarded(
        gateway,
        run,
        json_completion(gateway, router, run, role, messages, schema, max_tokens, model),
    )
    if answered is None:
        return _ENDED
    data, _, used = answered
    result.used(used)
    return data


async def extract_from_request(
    gateway: Gateway,
    router: ModelRouter,
    run: Run,
    step: Step,
    offered: Sequence[str],
    request: str,
    result: AgentResult,
) -> dict[str, list[Any]] | None:
    """The value the request writes for each of the step's free-text ``from_request``
    arguments: the ``extract`` model's answer, kept where the request holds it word for
    word, the contract accepts it, it holds no other argument's value (an id) and the run
    has not read it for the argument (``differs``). None when the model call ended the run
    (budget, model failure)."""
    found: dict[str, list[Any]] = {}
    for tool in offered:
        contract = gateway.toolbelt.find(tool)
        properties = contract.parameters_schema.get("properties", {}) if contract else {}
        for arg in step.from_request:
            prop = properties.get(arg)
            if arg in found or not isinstance(prop, Mapping):
                continue
            if _contract_words(gateway, step, tool, arg, request) is not None:
                continue  # the contract picks the words: no model needed
            what = arg.replace("_", " ")
            if isinstance(prop.get("description"), str):
                what += f" ({prop['description']})"
            messages = [Message.system(EXTRACT_PROMPT.format(what=what)), Message.user(request)]
            data = await _json_answer(
                gateway, router, run, result, "extract", messages, _EXTRACT_SCHEMA, 96
            )
            if data is _ENDED:
                return None
            value = data.get("value") if isinstance(data, dict) else None
            sources = step.differs.get(arg, ())
            read = [
                _plain(v)
                for source in ((sources,) if isinstance(sources, str) else sources)
                for v in grounded_values(gateway, run, source)
            ]
            said = _plain(request)
            value = " ".join(value.split()).strip(" .,;:!?") if isinstance(value, str) else ""
            plain = _plain(value)
            if (
                not plain
                or plain not in said  # not written in the request
                or not _accepts(prop, value)  # not what the contract takes
                or _holds_other_argument(gateway, tool, arg, value)  # an id, or a sentence
                or any(r and (plain in r or r in plain) for r in read)  # no change
            ):
                found[arg] = []
            else:
                found[arg] = [value]
    return found


def grounded_tools(
    gateway: Gateway,
    run: Run,
    step: Step,
    offered: Sequence[str],
    request: str = "",
    extracted: Mapping[str, Sequence[Any]] | None = None,
) -> list[dict[str, Any]]:
    """The offered tools' schemas, each grounded argument narrowed to what the run read
    (left free where the run has read nothing for it yet), each ``from_request`` one to
    what the request wrote (``extracted``: the values found for free-text ones)."""
    schemas = [_capped(schema) for schema in gateway.toolbelt.openai_tools(offered)]
    if not step.ground and not step.from_request and not step.choices:
        return schemas
    narrowed: list[dict[str, Any]] = []
    for schema in schemas:
        name = schema.get("function", {}).get("name", "")
        properties = schema.get("function", {}).get("parameters", {}).get("properties", {})
        wanted = {arg: src for arg, src in step.ground.items() if arg in properties}
        chosen = {arg: values for arg, values in step.choices.items() if arg in properties}
        written = {
            arg: values
            for arg in step.from_request
            if arg in properties
            and (values := _written(gateway, step, name, arg, request, extracted))
        }
        if not wanted and not written and not chosen:
            narrowed.append(schema)
            continue
        schema = copy.deepcopy(schema)
        properties = schema["function"]["parameters"]["properties"]
        for arg, values in written.items():
            properties[arg] = {**properties[arg], "enum": values}
        for arg, sources in wanted.items():
            found = [
                v
                for source in ((sources,) if isinstance(sources, str) else sources)
                for v in grounded_values(gateway, run, source)
            ]
            values = [v for v in dict.fromkeys(found) if _fits(properties[arg], v)]
            if values:
                properties[arg] = {**properties[arg], "enum": values}
        for arg, fixed in chosen.items():  # the step's own choices win
            properties[arg] = {**properties[arg], "enum": list(fixed)}
        narrowed.append(schema)
    return narrowed


#: The longest free-text argument a step's model is offered (characters): what a reply or a
#: note needs, and what fits the step's token budget (256) with the call around it. A small
#: model rambles in free text until its token limit, and a call cut off there is no call;
#: a constrained decoder closes the string here instead. The contract's own limit still
#: applies to everything else that calls the tool.
FREE_TEXT_CHARS = 600


def _capped(schema: dict[str, Any]) -> dict[str, Any]:
    """``schema`` with each free-text string argument (no enum, no pattern) limited to
    `FREE_TEXT_CHARS` (a copy where one changes)."""
    properties = schema.get("function", {}).get("parameters", {}).get("properties", {})
    wide = [
        arg
        for arg, prop in properties.items()
        if isinstance(prop, Mapping)
        and prop.get("type") == "string"
        and not ({"enum", "pattern", "const"} & prop.keys())
        and int(prop.get("maxLength", FREE_TEXT_CHARS + 1)) > FREE_TEXT_CHARS
    ]
    if not wide:
        return schema
    schema = copy.deepcopy(schema)
    properties = schema["function"]["parameters"]["properties"]
    for arg in wide:
        properties[arg] = {**properties[arg], "maxLength": FREE_TEXT_CHARS}
    return schema


def _off_lane(
    gateway: Gateway,
    step: Step,
    schemas: Sequence[Mapping[str, Any]],
    tool: str,
    args: Any,
) -> tuple[Reason, str] | None:
    """Why a proposed call does not belong to this step (None: it does): a tool the step
    does not offer, or a grounded argument whose value (as the contract normalises it) is
    not one the run read. A model without constrained decoding can propose either."""
    schema = next((s for s in schemas if s["function"]["name"] == tool), None)
    if schema is None:
        offered = ", ".join(s["function"]["name"] for s in schemas)
        return Reason.TOOL_NOT_ALLOWED, (
            f"`{tool}` is not part of this step ({step.name}); call one of: {offered}"
        )
    contract = gateway.toolbelt.find(tool)
    properties = schema["function"]["parameters"].get("properties", {})
    if contract is None or not any("enum" in p for p in properties.values()):
        return None
    fixed: Any = contract.normalize_args(args)[0]
    if isinstance(fixed, str | bytes):
        try:
            fixed = json.loads(fixed)
        except ValueError:
            return None  # not JSON: the gate refuses it, saying why
    for arg, prop in properties.items():
        grounded = "enum" in prop and isinstance(fixed, Mapping) and arg in fixed
        if grounded and fixed[arg] not in prop["enum"]:
            allowed = ", ".join(json.dumps(v) for v in prop["enum"])
            return Reason.INVALID_ARGUMENTS, (
                f"`{arg}` must be one of the values the run read: {allowed}"
            )
    return None


def _fits(prop: Mapping[str, Any], value: Any) -> bool:
    kind = prop.get("type")
    if kind == "string":
        return isinstance(value, str)
    if kind == "integer":
        return isinstance(value, int)
    if kind == "number":
        return isinstance(value, int | float)
    return True


def _instruction(step: Step, number: int, total: int, offered: Sequence[str]) -> Message:
    tools = ", ".join(f"`{t}`" for t in offered)
    if not step.tools:  # nothing to call but the hand-off: the instructions say what to do
        return Message.user(f"Step {number} of {total} ({step.name}): {step.instructions}")
    return Message.user(
        f"Step {number} of {total} ({step.name}): {step.instructions} Call one of {tools}, "
        "with arguments taken from the request and the results so far."
    )


def _ended(result: AgentResult, run: Run) -> AgentResult:
    result.status = run.status
    result.reason = run.reason
    return result


async def run_steps(
    gateway: Gateway,
    router: ModelRouter,
    run: Run,
    steps: Sequence[Step],
    *,
    system: str,
    messages: Sequence[Message],
    handoff_tools: Sequence[str] = ("escalate_to_human",),
    max_repairs: int = 2,
    settings: ModelSettings | None = None,
    result: AgentResult | None = None,
    ask_when_missing: bool = False,
) -> AgentResult:
    """Carry ``steps`` out in order, one model turn per call (see the module).

    A call the gate refuses (invalid arguments) is retried up to ``max_repairs`` times per
    step, with the refusal shown to the model; a denial moves on (the model was told why,
    and may hand off at the next step) unless the step hands off on a denial; a hand-off
    ends the run handed off. Where the request lacks what a step needs, the model is asked
    for a question or the hand-off (``ask_when_missing``: for the question only).
    """
    result = result or AgentResult(RunStatus.RUNNING, "")
    settings = settings or ModelSettings(temperature=0.0, max_tokens=256)
    allowed = set(gateway.policy.allowed_tools(run.workflow, run.agent_id))
    handoff = [t for t in handoff_tools if t in allowed]
    history = [Message.system(system), *messages]
    request = "\n".join(m.content or "" for m in messages if m.role == "user")
    hand_off = functools.partial(
        _hand_off,
        gateway,
        router,
        run,
        handoff=handoff,
        history=history,
        settings=settings,
        max_repairs=max_repairs,
        result=result,
        request=request,
    )
    for number, step in enumerate(steps, start=1):
        exits = handoff if step.handoff else []
        offered = [t for t in dict.fromkeys([*step.tools, *exits]) if t in allowed]
        if not [t for t in offered if t in step.tools]:
            continue  # the policy gives this agent none of the step's tools: skip it
        if (
            _precluded(gateway, run, step)
            or step.holds("only_when", read_results(gateway, run)) is False
        ):
            continue  # what the run read says this step cannot apply (or not yet)
        if step.holds("hand_off_when", read_results(gateway, run)):
            return await hand_off(step, (number, len(steps)), HAND_OFF_WHEN_READ)
        extracted = await extract_from_request(gateway, router, run, step, offered, request, result)
        if extracted is None:
            return _ended(result, run)
        missing = missing_from_request(gateway, step, offered, request, extracted)
        if missing and step.optional:
            continue  # the request asks for nothing this step could do
        if missing:  # nothing to fill it with: ask the requester, or hand off
            offered = [] if ask_when_missing else list(handoff)
            step = dataclasses.replace(
                step,
                tools=(),
                instructions=(
                    f"The request does not give the {', '.join(missing)} this step needs. "
                    + (
                        "Ask the requester for it in one short question."
                        if ask_when_missing
                        else "Ask the requester for it in one short question, or hand the "
                        "request off if a person must handle it."
                    )
                ),
                optional=False,
                ask=True,
                from_request=(),
            )
        for arg in step.pick if not missing else ():
            picked = await _pick(gateway, router, run, step, arg, offered, history, result)
            if picked is _ENDED:
                return _ended(result, run)
            if picked is _UNSURE:  # no agreement, no larger model: a person chooses
                return await hand_off(step, (number, len(steps)), HAND_OFF_UNSURE)
            if picked is not _OPEN:
                step = dataclasses.replace(step, choices={**step.choices, arg: (picked,)})
        outcome = await _one_step(
            gateway,
            router,
            run,
            step,
            (number, len(steps)),
            offered,
            handoff,
            history,
            settings,
            max_repairs,
            result,
            request,
            extracted,
        )
        if outcome == "blocked" and step.hand_off_if_denied and handoff and run.active:
            outcome = await _one_step(
                gateway,
                router,
                run,
                Step("hand off", (), HAND_OFF_AFTER_DENIAL, ask=False),
                (number, len(steps)),
                handoff,
                handoff,
                history,
                settings,
                max_repairs,
                result,
            )
        if outcome == "ended" or not run.active:
            return _ended(result, run)
        if step.ends and outcome == "ran":
            break
    if run.active:
        done = [c.tool for c in run.completed]
        output = "Done: " + (", ".join(done) if done else "nothing was changed") + "."
        gateway.finish(run, reason="done", output=output)
        result.output = output
    return _ended(result, run)


#: What the model is told after an answer cut off at its token limit (a small model
#: rambles in a free-text argument until the limit, the same way each time it is asked).
CUT_OFF = (
    "Your last answer was cut off before it ended. Call the tool again, keeping each text "
    "argument short: at most 50 words."
)
#: What the model is told after words where the step needs a call.
CALL_ONLY = "Answer with a call of one of the offered tools, not with words."

#: What the model is told when what the run read calls for a person (``hand_off_when``).
HAND_OFF_WHEN_READ = (
    "What the run has read shows that a person must handle this request. Hand it off, "
    "saying why in one sentence."
)

#: What the model is told when a step hands off after the policy denied its call.
HAND_OFF_AFTER_DENIAL = (
    "The policy does not let that call go ahead on this request alone: a person must "
    "handle it. Hand the request off, saying why in one sentence."
)


async def _hand_off(
    gateway: Gateway,
    router: ModelRouter,
    run: Run,
    step: Step,
    position: tuple[int, int],
    why: str,
    *,
    handoff: Sequence[str],
    history: list[Message],
    settings: ModelSettings,
    max_repairs: int,
    result: AgentResult,
    request: str,
) -> AgentResult:
    """End the lane at ``step`` with the hand-off, the model told ``why`` (it says why in
    its own words, with what the run read in front of it); where no hand-off tool is
    allowed or it fails, the gate's own escalation ends the run."""
    if handoff:
        hand_off = Step("hand off", (), why, ask=False, from_request=step.from_request)
        await _one_step(
            gateway,
            router,
            run,
            hand_off,
            position,
            handoff,
            handoff,
            history,
            settings,
            max_repairs,
            result,
            request,
        )
    if run.active:
        gateway.escalate(run, f"step {step.name}: a person must handle this", reason="hand_off")
    return _ended(result, run)


#: What the model is asked to choose a `Step.pick` argument.
PICK_PROMPT = (
    "Step ({step}): {instructions} Which {what} does the request ask for? Choose the one "
    "that fits it. Answer with JSON only."
)


async def _pick(
    gateway: Gateway,
    router: ModelRouter,
    run: Run,
    step: Step,
    arg: str,
    offered: Sequence[str],
    history: Sequence[Message],
    result: AgentResult,
) -> Any:
    """The value of ``arg`` the step's model picks the same both ways round (`Step.pick`),
    or the escalation model's where the readings differ; `_UNSURE` where they differ and
    there is none, `_OPEN` where there is nothing to pick (fewer than two values),
    `_ENDED` where the run ended (budget, model failure)."""
    values: list[Any] = []
    for schema in grounded_tools(gateway, run, step, offered):
        prop = schema["function"]["parameters"].get("properties", {}).get(arg)
        if schema["function"]["name"] in step.tools and isinstance(prop, Mapping):
            values = list(prop.get("enum") or [])
            break
    if len(values) < 2:
        return _OPEN
    question = Message.user(
        PICK_PROMPT.format(
            step=step.name, instructions=step.instructions, what=arg.replace("_", " ")
        )
    )

    async def ask(order: list[Any], model: str | None = None) -> Any:
        schema = {
            "type": "object",
            "properties": {arg: {"enum": order}},
            "required": [arg],
            "additionalProperties": False,
        }
        messages = [*history, question]
        data = await _json_answer(
            gateway, router, run, result, step.role, messages, schema, 48, model
        )
        if data is _ENDED:
            return _ENDED
        value = data.get(arg) if isinstance(data, dict) else None
        return value if value in values else _UNSURE

    first = await ask(values)
    second = _ENDED if first is _ENDED else await ask(values[::-1])
    if _ENDED in (first, second):
        return _ENDED
    if first is not _UNSURE and first == second:
        return first
    larger = router.config.escalation_for(step.role)
    if larger is None:
        return _UNSURE
    return await ask(values, model=larger)


#: What the model is told when its readings of a choice disagree and no larger model
#: settles it.
HAND_OFF_UNSURE = (
    "It is not clear which of the offered values the request asks for: a person must "
    "choose. Hand the request off, saying why in one sentence."
)


def read_results(gateway: Gateway, run: Run) -> dict[str, Any]:
    """What a step's conditions see as ``read``: each tool whose output the policy labels
    trusted → the result of its latest call that ran (a record, not a requester's words)."""
    read: dict[str, Any] = {}
    for call in run.completed:
        if gateway.policy.output_trust(run.workflow, call.tool, run.agent_id) != "trusted":
            continue
        result = call.result
        dump = getattr(result, "model_dump", None)
        read[call.tool] = dump(mode="json") if callable(dump) else result
    return read


def _precluded(gateway: Gateway, run: Run, step: Step) -> bool:
    """Whether the run read (trusted) a value that rules the step out (``unless``)."""
    return any(
        value in values
        for source, values in step.unless.items()
        for value in grounded_values(gateway, run, source)
    )


async def _one_step(
    gateway: Gateway,
    router: ModelRouter,
    run: Run,
    step: Step,
    position: tuple[int, int],
    offered: Sequence[str],
    handoff: Sequence[str],
    history: list[Message],
    settings: ModelSettings,
    max_repairs: int,
    result: AgentResult,
    request: str = "",
    extracted: Mapping[str, Sequence[Any]] | None = None,
) -> str:
    """One step: ``ran`` (its call ran), ``skipped``, ``blocked`` (the policy said no),
    ``denied`` (a person said no, or the tool failed) or ``ended`` (the run is over:
    handed off, a question asked, a failure)."""
    instruction = _instruction(step, *position, offered)
    larger = router.config.escalation_for(step.role)  # where repeated failure moves the step
    after_failures = router.config.escalation.after_failures
    failures = 0
    told: list[Message] = []  # what the last failed attempt did wrong, for the next one
    for _attempt in range(max_repairs + 1):
        if not run.active or not gateway.step(run):
            return "ended"
        answered = await guarded(
            gateway,
            run,
            router.complete(
                step.role,
                [*history, instruction, *told],
                grounded_tools(gateway, run, step, offered, request, extracted) or None,
                settings
                if step.ask or step.optional
                else dataclasses.replace(settings, tool_choice="required"),
                meter=gateway.meter(run),
                model=larger if failures >= after_failures else None,
            ),
        )
        if answered is None:
            return "ended"
        response, model = answered
        result.used(model)
        result.turns += 1
        observe_model_text(gateway, run, response.text, step.role)
        if not response.tool_calls:
            cut = response.finish_reason == "length"  # a call cut off, never a question
            if step.optional and not cut:
                return "skipped"
            if cut or not step.ask:  # a failed attempt, repaired: told what went wrong,
                failures += 1  # or the same prompt gets the same answer at temperature 0
                told = [Message.user(CUT_OFF if cut else CALL_ONLY)]
                continue
            gateway.finish(run, reason="needs_clarification", output=response.text)
            result.output = response.text
            return "ended"
        history.append(response.message)
        told = []  # the refusal, if any, is in the history now
        call, *extra = response.tool_calls  # one call a turn: the step's, or the hand-off
        schemas = grounded_tools(gateway, run, step, offered, request, extracted)
        off = _off_lane(gateway, step, schemas, call.name, call.arguments)
        if off is not None:
            outcome = gateway.refuse(
                run,
                call.name,
                call.arguments,
                reason=off[0],
                rule=f"lane.step.{step.name}",
                message=off[1],
                call_id=call.id or None,
            )
        else:
            outcome = await gateway.call(run, call.name, call.arguments, call_id=call.id or None)
        history.append(Message.tool(call.id or outcome.call_id, outcome.for_model()))
        for other in extra:
            history.append(Message.tool(other.id, "not run: one call per step"))
        if outcome.ok and call.name in handoff:
            gateway.finish(run, reason="handed_off", output=response.text)
            return "ended"
        if not run.active:
            return "ended"
        if outcome.status is OutcomeStatus.DENIED:
            return "blocked"
        if outcome.status is not OutcomeStatus.REFUSED:
            return "ran" if outcome.ok else "denied"
        failures += 1  # refused (invalid, off the lane): repaired
    gateway.finish(
        run,
        status=RunStatus.FAILED,
        reason="invalid_model_output",
        output=f"the model kept proposing invalid calls at step {position[0]} ({step.name})",
    )
    return "ended"
