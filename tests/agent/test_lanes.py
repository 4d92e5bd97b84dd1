"""Lanes as state machines, end to end: a scripted model over real HTTP, the router, the real
gateway and policy of the example shop, and the shipped support lanes."""

from __future__ import annotations

from typing import Any

from opsgate.agent import Lane, RouterToolAgent, Step, grounded_tools, request_values
from opsgate.examples.support_triage.agent import LANES
from opsgate.gateway import RunStatus
from opsgate.recorder import EventType, InMemoryRecorder
from tests.agent.test_patterns import _gateway, _routed_router, _router, _start
from tests.models.fake_openai import FakeOpenAI, text_reply, tool_reply

ROUTE_REFUND = text_reply('{"lane": "refund", "confidence": 0.9}')
ROUTE_STATUS = text_reply('{"lane": "order_status", "confidence": 0.9}')


def _offered(request: Any) -> list[str]:
    return [t["function"]["name"] for t in request.json["tools"]]


def _props(request: Any, tool: str) -> dict[str, Any]:
    for t in request.json["tools"]:
        if t["function"]["name"] == tool:
            props: dict[str, Any] = t["function"]["parameters"]["properties"]
            return props
    raise AssertionError(f"{tool} not offered")


async def test_each_step_offers_only_its_tools_and_the_handoff_in_order() -> None:
    recorder = InMemoryRecorder()
    gateway = _gateway(recorder)
    script = [
        ROUTE_STATUS,
        tool_reply(("get_order_status", '{"order_id": "ORD-1003"}')),
        tool_reply(("draft_reply", '{"ticket_id": "T-3", "body": "It is in transit."}')),
    ]
    with FakeOpenAI(script) as server:
        agent = RouterToolAgent(gateway, _router(server.base_url), LANES, system="Be brief.")
        run = _start(gateway)
        result = await agent.run(run, "Ticket T-3: where is my order ORD-1003?")
        requests = server.requests
    assert (result.status, result.reason) == (RunStatus.COMPLETED, "done")
    assert _offered(requests[1]) == ["get_order_status"]  # look first, hand off after
    assert _offered(requests[2]) == ["draft_reply"]  # the record is in hand: reply
    assert requests[2].json["tool_choice"] == "required"  # a call, not words
    assert requests[1].json.get("tool_choice", "auto") == "auto"  # may ask which order
    assert "Step 1 of 2 (look up)" in requests[1].json["messages"][-1]["content"]
    assert [c.tool for c in run.completed] == ["get_order_status", "draft_reply"]
    assert len(requests) == 3  # the reply step ends the lane: no extra turn, no loop


async def test_a_draft_cannot_come_before_the_look_up() -> None:
    """The failure the issue names: 27 of 48 runs started with a draft. At the look-up step
    a draft is not offered, so proposing one is refused and repaired, never run."""
    recorder = InMemoryRecorder()
    gateway = _gateway(recorder)
    script = [
        ROUTE_STATUS,
        tool_reply(("draft_reply", '{"ticket_id": "T-3", "body": "It will come."}')),
        tool_reply(("get_order_status", '{"order_id": "ORD-1003"}')),
        tool_reply(("draft_reply", '{"ticket_id": "T-3", "body": "It is in transit."}')),
    ]
    with FakeOpenAI(script) as server:
        agent = RouterToolAgent(gateway, _router(server.base_url), LANES, system="")
        run = _start(gateway)
        result = await agent.run(run, "Ticket T-3: where is ORD-1003?")
    assert result.reason == "done"
    assert [c.tool for c in run.completed] == ["get_order_status", "draft_reply"]
    refusals = [
        e.data for e in recorder.of_type(EventType.DECISION) if e.data.get("tool") == "draft_reply"
    ]
    assert refusals and refusals[0]["effect"] != "allow"


async def test_refund_arguments_are_grounded_in_the_looked_up_record() -> None:
    recorder = InMemoryRecorder()
    gateway = _gateway(recorder)
    script = [
        ROUTE_REFUND,
        tool_reply(("get_order_status", '{"order_id": "ord1001"}')),  # the customer's spelling
        tool_reply(("refund", '{"order_id": "ORD-1001", "amount": 40.0, "reason": "damaged"}')),
        tool_reply(("add_internal_note", '{"ticket_id": "T-1", "text": "Refunded 40 USD."}')),
    ]
    with FakeOpenAI(script) as server:
        agent = RouterToolAgent(gateway, _router(server.base_url), LANES, system="")
        run = _start(gateway, "T-1")
        result = await agent.run(run, "Ticket T-1: my mug from ord1001 arrived broken.")
        requests = server.requests
    assert (result.status, result.reason) == (RunStatus.COMPLETED, "done")
    props = _props(requests[2], "refund")
    assert props["order_id"]["enum"] == ["ORD-1001"]  # normalised by the contract, then looked up
    assert props["amount"]["enum"] == [40.0]  # the record's price and total, nothing invented
    # the look-up offers the id the customer wrote, as the contract normalises it
    assert _props(requests[1], "get_order_status")["order_id"]["enum"] == ["ORD-1001"]
    assert [c.tool for c in run.completed] == ["get_order_status", "refund", "add_internal_note"]


async def test_words_at_a_required_step_ask_the_requester_and_at_an_optional_one_move_on() -> None:
    recorder = InMemoryRecorder()
    gateway = _gateway(recorder)
    lanes = {
        "note": Lane(
            "look up, maybe note, reply",
            ("get_order_status", "add_internal_note", "draft_reply"),
            steps=(
                LANES["order_status"].steps[0],
                Step("note", ("add_internal_note",), "Note anything odd.", optional=True),
                LANES["order_status"].steps[1],
            ),
        ),
        "order_status": LANES["order_status"],
    }
    script = [
        text_reply('{"lane": "note", "confidence": 0.9}'),
        tool_reply(("get_order_status", '{"order_id": "ORD-1001"}')),
        text_reply("Nothing odd."),  # optional step: skipped
        tool_reply(("draft_reply", '{"ticket_id": "T-3", "body": "It was delivered already."}')),
    ]
    with FakeOpenAI(script) as server:
        agent = RouterToolAgent(gateway, _router(server.base_url), lanes, system="")
        run = _start(gateway)
        result = await agent.run(run, "Please change the address of ORD-1001.")
    assert result.reason == "done"
    assert [c.tool for c in run.completed] == ["get_order_status", "draft_reply"]

    recorder = InMemoryRecorder()
    gateway = _gateway(recorder)
    script = [ROUTE_STATUS, text_reply("Which order do you mean?")]
    with FakeOpenAI(script) as server:
        agent = RouterToolAgent(gateway, _router(server.base_url), LANES, system="")
        run = _start(gateway)
        result = await agent.run(run, "where is my parcel")
    assert (result.reason, result.output) == ("needs_clarification", "Which order do you mean?")
    assert list(run.completed) == []


async def test_repeated_invalid_calls_fail_the_step_by_name() -> None:
    recorder = InMemoryRecorder()
    gateway = _gateway(recorder)
    bad = tool_reply(("get_order_status", '{"order_id": 12}'))
    with FakeOpenAI([ROUTE_STATUS, bad, bad, bad]) as server:
        agent = RouterToolAgent(gateway, _router(server.base_url), LANES, system="")
        run = _start(gateway)
        result = await agent.run(run, "where is ORD-1003")
    assert (result.status, result.reason) == (RunStatus.FAILED, "invalid_model_output")
    ended = recorder.of_type(EventType.RUN_ENDED)[0].data
    assert "step 1 (look up)" in str(ended)


def test_untrusted_results_never_ground_an_argument() -> None:
    """`get_ticket` output is untrusted in the shop's policy (the customer wrote it): its
    ids are never offered as the only values."""
    recorder = InMemoryRecorder()
    gateway = _gateway(recorder)
    run = _start(gateway)
    step = Step("x", ("refund",), ground={"order_id": "get_ticket.body", "amount": "nope"})
    schemas = grounded_tools(gateway, run, step, ["refund"])
    assert "enum" not in schemas[0]["function"]["parameters"]["properties"]["order_id"]


def test_lanes_without_steps_keep_the_whole_belt() -> None:
    assert Lane("x", ("a",)).steps == ()
    assert all(lane.steps or lane.tools == ("escalate_to_human",) for lane in LANES.values())


async def test_an_invented_amount_is_refused_and_repaired_even_without_a_constrained_decoder() -> (
    None
):
    recorder = InMemoryRecorder()
    gateway = _gateway(recorder)
    script = [
        ROUTE_REFUND,
        tool_reply(("get_order_status", '{"order_id": "ORD-1001"}')),
        tool_reply(("refund", '{"order_id": "ORD-1001", "amount": 100.0, "reason": "damaged"}')),
        tool_reply(("refund", '{"order_id": "ORD-1001", "amount": 40, "reason": "damaged"}')),
        tool_reply(("add_internal_note", '{"ticket_id": "T-1", "text": "Refunded 40 USD."}')),
    ]
    with FakeOpenAI(script) as server:
        agent = RouterToolAgent(gateway, _router(server.base_url), LANES, system="")
        run = _start(gateway, "T-1")
        result = await agent.run(run, "Ticket T-1: refund 100 for my broken mug, ORD-1001")
        repair = server.requests[3].json["messages"][-2]["content"]
    assert result.reason == "done"
    assert [c.args.get("amount") for c in run.completed if c.tool == "refund"] == [40]
    assert "`amount` must be one of the values the run read: 40.0" in repair
    refused = [
        e.data
        for e in recorder.of_type(EventType.DECISION)
        if e.data.get("rule") == "lane.step.refund"
    ]
    assert len(refused) == 1 and refused[0]["reason"] == "invalid_arguments"


async def test_words_where_a_call_is_required_are_repaired_not_taken_as_a_question() -> None:
    recorder = InMemoryRecorder()
    gateway = _gateway(recorder)
    script = [
        ROUTE_STATUS,
        tool_reply(("get_order_status", '{"order_id": "ORD-1003"}')),
        text_reply("Hmm."),  # the reply step must act
        tool_reply(("draft_reply", '{"ticket_id": "T-3", "body": "It is in transit."}')),
    ]
    with FakeOpenAI(script) as server:
        agent = RouterToolAgent(gateway, _router(server.base_url), LANES, system="")
        run = _start(gateway)
        result = await agent.run(run, "Ticket T-3: where is ORD-1003?")
    assert (result.reason, [c.tool for c in run.completed]) == (
        "done",
        ["get_order_status", "draft_reply"],
    )


def test_request_values_are_the_words_the_contract_accepts_as_it_normalises_them() -> None:
    gateway = _gateway(InMemoryRecorder())
    text = "Ticket T-101 from C-300: my order 1050 (or was it #a-1051?), not ORD-1003."
    assert request_values(gateway, "get_order_status", "order_id", text) == [
        "ORD-1050",
        "ORD-1051",
        "ORD-1003",
    ]
    assert request_values(gateway, "get_order_status", "order_id", "I want my money back") == []
    # a free-text argument accepts any word: the request grounds nothing there
    assert request_values(gateway, "draft_reply", "body", text) is None
    assert request_values(gateway, "no_such_tool", "order_id", text) is None


async def test_a_request_without_the_id_asks_or_hands_off_and_never_invents_one() -> None:
    """The failure the issue names: ids invented where the customer gave none. The look-up
    step of a request that names no order offers no tool but the hand-off."""
    recorder = InMemoryRecorder()
    gateway = _gateway(recorder)
    script = [ROUTE_REFUND, text_reply("Which order is it, and what arrived damaged?")]
    with FakeOpenAI(script) as server:
        agent = RouterToolAgent(gateway, _router(server.base_url), LANES, system="")
        run = _start(gateway, "T-1")
        result = await agent.run(run, "Ticket T-1: I want my money back.")
        requests = server.requests
    assert (result.reason, result.output) == (
        "needs_clarification",
        "Which order is it, and what arrived damaged?",
    )
    assert _offered(requests[1]) == ["escalate_to_human"]
    assert "does not give the order_id" in requests[1].json["messages"][-1]["content"]
    assert recorder.of_type(EventType.TOOL_CALL_PROPOSED) == []

    recorder = InMemoryRecorder()
    gateway = _gateway(recorder)
    script = [
        ROUTE_REFUND,
        tool_reply(("escalate_to_human", '{"ticket_id": "T-1", "reason": "Account takeover."}')),
    ]
    with FakeOpenAI(script) as server:
        agent = RouterToolAgent(gateway, _router(server.base_url), LANES, system="")
        run = _start(gateway, "T-1")
        result = await agent.run(run, "Ticket T-1: someone changed my password, refund me")
    assert (result.status, result.reason) == (RunStatus.COMPLETED, "handed_off")


async def test_an_id_the_request_does_not_give_is_refused_and_repaired() -> None:
    recorder = InMemoryRecorder()
    gateway = _gateway(recorder)
    script = [
        ROUTE_STATUS,
        tool_reply(("get_order_status", '{"order_id": "ORD-1001"}')),  # not the one written
        tool_reply(("get_order_status", '{"order_id": "ORD-1003"}')),
        tool_reply(("draft_reply", '{"ticket_id": "T-3", "body": "It is in transit."}')),
    ]
    with FakeOpenAI(script) as server:
        agent = RouterToolAgent(gateway, _router(server.base_url), LANES, system="")
        run = _start(gateway)
        result = await agent.run(run, "Ticket T-3: where is my order 1003?")
    assert result.reason == "done"
    assert [c.args for c in run.completed if c.tool == "get_order_status"] == [
        {"order_id": "ORD-1003"}
    ]


ROUTE_STATUS_TWICE = [ROUTE_STATUS, ROUTE_STATUS]  # the route holds in either menu order
LOOK = tool_reply(("get_order_status", '{"order_id": "ORD-1003"}'))
REPLY = tool_reply(("draft_reply", '{"ticket_id": "T-3", "body": "It is in transit."}'))


async def _routed(small: list[Any], large: list[Any]) -> tuple[str, list[tuple[str, str]]]:
    """A status ticket through the routed agent: its ending, and (role, model) per call."""
    recorder = InMemoryRecorder()
    gateway = _gateway(recorder)
    with FakeOpenAI(small) as small_server, FakeOpenAI(large) as large_server:
        router = _routed_router(small_server.base_url, large_server.base_url)
        agent = RouterToolAgent(gateway, router, LANES, system="")
        result = await agent.run(_start(gateway), "Ticket T-3: where is ORD-1003?")
    calls = [(e.data["role"], e.data["model"]) for e in recorder.of_type(EventType.MODEL_CALL)]
    return result.reason, calls


async def test_a_step_that_only_chooses_runs_on_its_role_and_the_free_text_on_act() -> None:
    reason, calls = await _routed([*ROUTE_STATUS_TWICE, LOOK], [REPLY])
    assert reason == "done"
    # the look-up only picks the id the ticket writes: the small model; the reply: the large
    assert calls[2:] == [("extract", "small"), ("act", "large")]


async def test_a_step_that_keeps_failing_on_its_small_model_moves_to_the_larger_one() -> None:
    bad = tool_reply(("get_order_status", '{"order_id": 1003}'))
    reason, calls = await _routed([*ROUTE_STATUS_TWICE, bad, bad], [LOOK, REPLY])
    assert reason == "done"
    assert calls[2:] == [
        ("extract", "small"),
        ("extract", "small"),
        ("extract", "large"),  # two failures: the escalation model takes the step
        ("act", "large"),
    ]


async def test_a_lane_can_look_up_then_hand_off_with_the_record() -> None:
    """A problem no tool of the agent fixes (a double charge): the order is
    looked up first, then the hand-off step offers the hand-off only, as a call. A step whose
    only tool is the hand-off used to be skipped, ending the lane "done" after the look-up."""
    recorder = InMemoryRecorder()
    gateway = _gateway(recorder)
    script = [
        text_reply('{"lane": "order_problem", "confidence": 0.9}'),
        tool_reply(("get_order_status", '{"order_id": "ORD-1001"}')),
        tool_reply(
            ("escalate_to_human", '{"ticket_id": "T-1", "reason": "ORD-1001 charged twice."}')
        ),
    ]
    with FakeOpenAI(script) as server:
        agent = RouterToolAgent(gateway, _router(server.base_url), LANES, system="")
        run = _start(gateway, "T-1")
        result = await agent.run(run, "Ticket T-1: I was charged twice for ORD-1001.")
        requests = server.requests
    assert (result.status, result.reason) == (RunStatus.COMPLETED, "handed_off")
    assert _offered(requests[1]) == ["get_order_status"]  # look first
    assert _offered(requests[2]) == ["escalate_to_human"]
    assert requests[2].json["tool_choice"] == "required"  # a hand-off, not a question
    assert [c.tool for c in run.completed] == ["get_order_status", "escalate_to_human"]
    assert len(requests) == 3


async def test_a_general_question_is_searched_in_the_knowledge_base_then_answered() -> None:
    recorder = InMemoryRecorder()
    gateway = _gateway(recorder)
    script = [
        text_reply('{"lane": "policy_question", "confidence": 0.9}'),
        tool_reply(("search_kb", '{"query": "refund damaged"}')),
        tool_reply(("draft_reply", '{"ticket_id": "T-1", "body": "Refunds over 50 USD..."}')),
    ]
    with FakeOpenAI(script) as server:
        agent = RouterToolAgent(gateway, _router(server.base_url), LANES, system="")
        run = _start(gateway, "T-1")
        result = await agent.run(run, "Ticket T-1: how do refunds for damaged items work?")
        requests = server.requests
    assert (result.status, result.reason) == (RunStatus.COMPLETED, "done")
    assert _offered(requests[1]) == ["search_kb"]  # no exit beside a harmless search
    assert requests[1].json["tool_choice"] == "required"
    assert _offered(requests[2]) == ["draft_reply"]
    # the reply step sees what the knowledge base said
    assert any("team lead" in str(m.get("content")) for m in requests[2].json["messages"])
    assert [c.tool for c in run.completed] == ["search_kb", "draft_reply"]


def _general_agent(gateway: Any, router: Any) -> RouterToolAgent:
    return RouterToolAgent(
        gateway, router, LANES, system="", ask_when_missing=True, general_lane="policy_question"
    )


QUESTION = text_reply('{"kind": "question"}')
ORDER = text_reply('{"kind": "order"}')
GENERAL_ASK = "Ticket T-1: how long do I have to send an unopened item back?"


async def test_a_general_question_without_an_id_goes_to_the_general_lane_not_a_question() -> None:
    """The routed lane needs an order id the request does not give: both readings of the
    closed question say it is a general question, so the knowledge base answers it."""
    recorder = InMemoryRecorder()
    gateway = _gateway(recorder)
    script = [
        ROUTE_STATUS,  # a small model's pick: a lane that could only ask "which order?"
        QUESTION,
        QUESTION,
        tool_reply(("search_kb", '{"query": "return unopened"}')),
        tool_reply(("draft_reply", '{"ticket_id": "T-1", "body": "Within 30 days."}')),
    ]
    with FakeOpenAI(script) as server:
        agent = _general_agent(gateway, _router(server.base_url))
        run = _start(gateway, "T-1")
        result = await agent.run(run, GENERAL_ASK)
        requests = server.requests
    assert (result.lane, result.reason) == ("policy_question", "done")
    route = requests[0].json["response_format"]["json_schema"]["schema"]["properties"]["lane"]
    assert "policy_question" not in route["enum"]  # reached by the closed questions only
    assert requests[1].json["response_format"]["json_schema"]["schema"]["properties"]["kind"][
        "enum"
    ] == ["question", "case", "other"]
    assert [c.tool for c in run.completed] == ["search_kb", "draft_reply"]


async def test_readings_that_disagree_ask_the_requester_or_the_larger_model() -> None:
    recorder = InMemoryRecorder()
    gateway = _gateway(recorder)
    script = [ROUTE_STATUS, QUESTION, ORDER, text_reply("Which order is it about?")]
    with FakeOpenAI(script) as server:
        agent = _general_agent(gateway, _router(server.base_url))
        result = await agent.run(_start(gateway, "T-1"), GENERAL_ASK)
    assert (result.lane, result.reason) == ("order_status", "needs_clarification")

    recorder = InMemoryRecorder()
    gateway = _gateway(recorder)
    small = [
        ROUTE_STATUS,
        ROUTE_STATUS,
        QUESTION,
        ORDER,
        tool_reply(("search_kb", '{"query": "x"}')),
    ]
    large = [
        QUESTION,  # the larger model's reading decides
        tool_reply(("draft_reply", '{"ticket_id": "T-1", "body": "Within 30 days."}')),
    ]
    with FakeOpenAI(small) as small_server, FakeOpenAI(large) as large_server:
        router = _routed_router(small_server.base_url, large_server.base_url)
        result = await _general_agent(gateway, router).run(_start(gateway, "T-1"), GENERAL_ASK)
    assert (result.lane, result.reason) == ("policy_question", "done")
    assert result.route_escalation and "disagree" in result.route_escalation


async def test_a_request_that_gives_the_id_is_never_asked_whether_it_is_general() -> None:
    recorder = InMemoryRecorder()
    gateway = _gateway(recorder)
    script = [
        ROUTE_STATUS,
        tool_reply(("get_order_status", '{"order_id": "ORD-1003"}')),
        tool_reply(("draft_reply", '{"ticket_id": "T-3", "body": "It is in transit."}')),
    ]
    with FakeOpenAI(script) as server:
        agent = _general_agent(gateway, _router(server.base_url))
        result = await agent.run(_start(gateway), "Ticket T-3: where is my order ORD-1003?")
        assert len(server.requests) == 3  # no closed question asked
    assert (result.lane, result.reason) == ("order_status", "done")


def test_a_general_lane_must_be_one_of_the_lanes() -> None:
    import pytest

    with pytest.raises(ValueError, match="general_lane 'faq'"):
        RouterToolAgent(_gateway(InMemoryRecorder()), None, LANES, system="", general_lane="faq")  # type: ignore[arg-type]


async def test_an_answer_cut_off_at_the_token_limit_is_retried_with_a_note_not_repeated() -> None:
    """What failed three v3 tasks on the small model: a reply rambling to the 256-token limit,
    asked again with the same prompt (temperature 0: the same answer) until the step failed.
    The retry now says the answer was cut off, and a cut-off answer is never a question."""
    recorder = InMemoryRecorder()
    gateway = _gateway(recorder)
    cut = text_reply(
        '{"name": "draft_reply", "arguments": {"ticket_id": "T-3", "body": "It',
        finish_reason="length",
    )
    script = [ROUTE_STATUS, cut, LOOK, cut, REPLY]
    with FakeOpenAI(script) as server:
        agent = RouterToolAgent(gateway, _router(server.base_url), LANES, system="")
        run = _start(gateway)
        result = await agent.run(run, "Ticket T-3: where is my order ORD-1003?")
        requests = server.requests
    assert result.reason == "done"  # the look-up step allows words: a cut-off is not one
    assert [c.tool for c in run.completed] == ["get_order_status", "draft_reply"]
    assert "cut off" in requests[2].json["messages"][-1]["content"]
    assert "cut off" in requests[4].json["messages"][-1]["content"]
    assert "cut off" not in str(requests[1].json["messages"])


def test_free_text_arguments_are_capped_so_a_constrained_call_ends_within_its_budget() -> None:
    """A small model rambles in a reply's body until its 256-token limit: the call is cut
    off, and asked again it rambles again (status-03, status-06 on the 0.5B model). The
    schema the step's model sees caps free text, so a constrained decoder closes it."""
    from opsgate.agent._lanes import FREE_TEXT_CHARS

    gateway = _gateway(InMemoryRecorder())
    offered = ["draft_reply", "escalate_to_human"]
    schemas = grounded_tools(gateway, None, Step("reply", tuple(offered)), offered)  # type: ignore[arg-type]
    body = schemas[0]["function"]["parameters"]["properties"]["body"]
    assert body["maxLength"] == FREE_TEXT_CHARS == 600
    ticket = schemas[0]["function"]["parameters"]["properties"]["ticket_id"]
    assert "maxLength" not in ticket  # an argument with a pattern is not free text
    reason = schemas[1]["function"]["parameters"]["properties"]["reason"]
    assert reason["maxLength"] == 500  # the contract's own, tighter limit stands
    # the belt itself is untouched: other callers get the contract's 4000
    assert (
        gateway.toolbelt.openai_tools(["draft_reply"])[0]["function"]["parameters"]["properties"][
            "body"
        ]["maxLength"]
        == 4000
    )
