"""The agent patterns end to end: a real HTTP model server (scripted), the router, the real
gateway and policy of the example shop."""

from __future__ import annotations

from typing import Any

import pytest

from opsgate.agent import HumanInTheLoopAgent, Lane, PlannerExecutor, RouterToolAgent
from opsgate.contracts import Toolbelt
from opsgate.examples.support_triage import POLICY_PATH, tools
from opsgate.examples.support_triage.world import demo_world
from opsgate.gateway import (
    ApprovalAnswer,
    CallbackApprover,
    Gateway,
    MappingSecretStore,
    RunStatus,
)
from opsgate.models import ROLES, ModelRouter, load_router_config
from opsgate.policy import ProposedCall, load_policy
from opsgate.provenance import ContextItem
from opsgate.recorder import EventType, InMemoryRecorder
from tests.models.fake_openai import FakeOpenAI, error_reply, text_reply, tool_reply

LANES = {
    "order_status": Lane(
        "where is my order, delivery questions", ("get_ticket", "get_order_status", "draft_reply")
    ),
    "refund": Lane(
        "damaged or missing items, money back",
        ("get_ticket", "get_order_status", "refund", "add_internal_note"),
    ),
}


def _router(base_url: str, *, budget: float = 0.25, fallback_url: str | None = None) -> ModelRouter:
    models = (
        f"  small: {{provider: openai_compatible, base_url: '{base_url}', model: fake-model,"
        " price: {input_per_1m: 1.0, output_per_1m: 2.0}}\n"
    )
    act = "small"
    if fallback_url:
        models += (
            f"  backup: {{provider: openai_compatible, base_url: '{fallback_url}',"
            " model: fake-model, price: {input_per_1m: 3.0, output_per_1m: 6.0}}\n"
        )
    roles = ", ".join(
        f"{r}: {{model: {act}" + (", fallbacks: [backup]" if fallback_url else "") + "}"
        for r in ROLES
    )
    text = (
        f"version: 1\nmodels:\n{models}roles: {{{roles}}}\n"
        f"budgets: {{support_triage: {{max_cost_per_task: {budget}}}}}\n"
    )
    return ModelRouter(load_router_config("router.yaml", text=text))


def _gateway(recorder: InMemoryRecorder, approve: bool = True) -> Gateway:
    belt = Toolbelt.from_module(tools)
    return Gateway(
        belt,
        load_policy(POLICY_PATH, belt),
        recorder=recorder,
        secrets=MappingSecretStore({"PAYMENTS_API_KEY": "pk-test-1234"}),
        approver=CallbackApprover(lambda r: ApprovalAnswer(approve, "lead@example.com", "ok")),
    )


def _start(gateway: Gateway, ticket: str = "T-3") -> Any:
    world = demo_world()
    t = world.tickets[ticket]
    return gateway.start_run(
        "support_triage",
        invoker="desk",
        agent_id="triage-bot",
        request=f"Handle ticket {ticket}",
        context=[ContextItem(t.body, "untrusted", f"ticket:{ticket}")],
        deps=world,
    )


async def test_router_agent_routes_then_acts_within_its_lane() -> None:
    recorder = InMemoryRecorder()
    gateway = _gateway(recorder)
    script = [
        text_reply('{"lane": "order_status", "confidence": 0.9}'),
        tool_reply(("get_order_status", '{"order_id": "ORD-1003"}')),
        text_reply("Your order ORD-1003 is in transit."),
    ]
    with FakeOpenAI(script) as server:
        agent = RouterToolAgent(gateway, _router(server.base_url), LANES, system="Be brief.")
        run = _start(gateway)
        result = await agent.run(run, "Where is my order ORD-1003?")
        offered = [t["function"]["name"] for t in server.requests[1].json["tools"]]
        route_format = server.requests[0].json["response_format"]["json_schema"]["schema"]
    assert result.status is RunStatus.COMPLETED and result.reason == "done"
    assert result.lane == "order_status" and result.output == "Your order ORD-1003 is in transit."
    assert offered == ["get_ticket", "get_order_status", "draft_reply"]  # the lane's belt only
    assert route_format["properties"]["lane"]["enum"] == ["order_status", "refund", "unclear"]
    calls = [e.data for e in recorder.of_type(EventType.MODEL_CALL)]
    assert [c["role"] for c in calls] == ["route", "act", "act"]
    assert all(c["cost_usd"] > 0 and c["ok"] for c in calls)
    assert run.cost_usd == pytest.approx(sum(c["cost_usd"] for c in calls))
    assert recorder.of_type(EventType.RUN_ENDED)[0].data["model_calls"] == 3


async def test_unclear_requests_get_a_question_not_a_guess() -> None:
    recorder = InMemoryRecorder()
    gateway = _gateway(recorder)
    with FakeOpenAI(
        [text_reply('{"lane": "unclear", "confidence": 0.3, "question": "Which order is it?"}')]
    ) as server:
        agent = RouterToolAgent(gateway, _router(server.base_url), LANES, system="")
        run = _start(gateway)
        result = await agent.run(run, "it's broken")
    assert (result.status, result.reason, result.output) == (
        RunStatus.COMPLETED,
        "needs_clarification",
        "Which order is it?",
    )
    assert recorder.of_type(EventType.DECISION) == []


async def test_budget_stops_before_the_call_that_would_cross_it() -> None:
    recorder = InMemoryRecorder()
    gateway = _gateway(recorder)
    with FakeOpenAI([]) as server:
        agent = RouterToolAgent(
            gateway, _router(server.base_url, budget=0.000001), LANES, system=""
        )
        run = _start(gateway)
        result = await agent.run(run, "Where is ORD-1003?")
        assert server.requests == []
    assert (result.status, result.reason) == (RunStatus.ESCALATED, "budget_exceeded")
    assert run.escalation is not None and "budget" in run.escalation.message


async def test_fallback_model_answers_when_the_first_fails() -> None:
    recorder = InMemoryRecorder()
    gateway = _gateway(recorder)
    failing = [error_reply(500)] * 10
    with (
        FakeOpenAI(failing) as bad,
        FakeOpenAI(
            [
                text_reply('{"lane": "order_status", "confidence": 0.8}'),
                text_reply("It is on its way."),
            ]
        ) as good,
    ):
        router = _router(bad.base_url, fallback_url=good.base_url)
        agent = RouterToolAgent(gateway, router, LANES, system="")
        run = _start(gateway)
        result = await agent.run(run, "Where is ORD-1003?")
    assert result.reason == "done"
    calls = [e.data for e in recorder.of_type(EventType.MODEL_CALL)]
    assert [(c["model"], c["ok"]) for c in calls][:2] == [("small", False), ("backup", True)]
    assert calls[0]["error_type"] == "ModelServerError" and calls[0]["attempts"] >= 2


PLAN = (
    '{"steps": [{"tool": "get_ticket", "purpose": "read"}, '
    '{"tool": "get_order_status", "purpose": "check"}]}'
)


async def test_planner_records_its_plan_then_executes_it_step_by_step() -> None:
    recorder = InMemoryRecorder()
    gateway = _gateway(recorder)
    with FakeOpenAI(
        [
            text_reply(PLAN),
            tool_reply(("get_ticket", '{"ticket_id": "T-3"}')),
            tool_reply(("get_order_status", '{"order_id": "ORD-1003"}')),
        ]
    ) as server:
        agent = PlannerExecutor(
            gateway,
            _router(server.base_url),
            tools=["get_ticket", "get_order_status", "draft_reply", "escalate_to_human"],
            system="You help IT and support staff.",
        )
        run = _start(gateway)
        result = await agent.run(run, "Check ticket T-3")
        offered = [[t["function"]["name"] for t in r.json["tools"]] for r in server.requests[1:]]
        assert server.remaining == 0
    assert [s["tool"] for s in result.plan] == ["get_ticket", "get_order_status"]
    assert recorder.of_type(EventType.PLAN)[0].data["steps"] == result.plan
    # each turn sees only its step's tool, and the hand-off
    assert offered == [
        ["get_ticket", "escalate_to_human"],
        ["get_order_status", "escalate_to_human"],
    ]
    assert result.reason == "done" and [c.tool for c in run.completed] == [
        "get_ticket",
        "get_order_status",
    ]
    assert result.output == "Done: get_ticket, get_order_status."


async def test_stepwise_execution_hands_off_or_answers_mid_plan() -> None:
    for reply, reason in [
        (tool_reply(("escalate_to_human", '{"ticket_id": "T-3", "reason": "odd"}')), "handed_off"),
        (text_reply("I need the order number first."), "done"),
    ]:
        recorder = InMemoryRecorder()
        gateway = _gateway(recorder)
        with FakeOpenAI([text_reply(PLAN), reply]) as server:
            agent = PlannerExecutor(
                gateway,
                _router(server.base_url),
                tools=["get_ticket", "get_order_status", "escalate_to_human"],
                system="",
            )
            run = _start(gateway)
            result = await agent.run(run, "Check ticket T-3")
        assert result.reason == reason
        assert len(server.requests) == 2  # the plan's second step never ran


async def test_free_execution_offers_the_plans_whole_belt() -> None:
    recorder = InMemoryRecorder()
    gateway = _gateway(recorder)
    with FakeOpenAI(
        [
            text_reply(PLAN),
            tool_reply(("get_ticket", '{"ticket_id": "T-3"}')),
            tool_reply(("get_order_status", '{"order_id": "ORD-1003"}')),
            text_reply("Checked: in transit."),
        ]
    ) as server:
        agent = PlannerExecutor(
            gateway,
            _router(server.base_url),
            tools=["get_ticket", "get_order_status", "draft_reply"],
            system="You help IT and support staff.",
            stepwise=False,
        )
        run = _start(gateway)
        result = await agent.run(run, "Check ticket T-3")
        offered = [t["function"]["name"] for t in server.requests[1].json["tools"]]
    assert offered == ["get_ticket", "get_order_status"]
    assert result.reason == "done" and result.output == "Checked: in transit."


async def test_invalid_calls_end_in_a_counted_failure() -> None:
    recorder = InMemoryRecorder()
    gateway = _gateway(recorder)
    bad = tool_reply(("get_order_status", '{"order_id": 1003'))
    with FakeOpenAI(
        [text_reply('{"lane": "order_status", "confidence": 0.9}'), bad, bad, bad, bad]
    ) as server:
        agent = RouterToolAgent(gateway, _router(server.base_url), LANES, system="")
        result = await agent.run(_start(gateway), "Where is ORD-1003?")
    assert (result.status, result.reason) == (RunStatus.FAILED, "invalid_model_output")
    assert len(recorder.of_type(EventType.DECISION)) == 3


async def test_model_failure_is_recorded_not_raised() -> None:
    recorder = InMemoryRecorder()
    gateway = _gateway(recorder)
    with FakeOpenAI([error_reply(400, "bad request")]) as server:
        agent = RouterToolAgent(gateway, _router(server.base_url), LANES, system="")
        result = await agent.run(_start(gateway), "hi")
    assert (result.status, result.reason) == (RunStatus.FAILED, "model_error")
    assert recorder.of_type(EventType.MODEL_CALL)[0].data["error_type"] == "ModelRequestError"


async def test_human_in_the_loop_refund_waits_for_a_person() -> None:
    recorder = InMemoryRecorder()
    gateway = _gateway(recorder)
    with FakeOpenAI(
        [
            tool_reply(("get_order_status", '{"order_id": "ORD-1002"}')),
            tool_reply(("refund", '{"order_id": "ORD-1002", "amount": 180, "reason": "damaged"}')),
            text_reply("Refunded after approval."),
        ]
    ) as server:
        agent = HumanInTheLoopAgent(
            gateway,
            _router(server.base_url),
            tools=["get_order_status", "refund"],
            system="Support.",
        )
        run = _start(gateway, "T-2")
        result = await agent.run(run, "The kettle leaks, refund please")
    assert result.reason == "done"
    kinds = [e.type for e in recorder.of_run(run.run_id)]
    assert EventType.APPROVAL_REQUESTED in kinds and EventType.APPROVAL_GRANTED in kinds
    assert run.deps.refunds == [{"order_id": "ORD-1002", "amount": 180.0, "reason": "damaged"}]


def _two_model_router(
    small_url: str, large_url: str, cache: Any = None, *, large_roles: tuple[str, ...] = ()
) -> ModelRouter:
    """Every role on the small model but ``large_roles``; escalation to the large one."""
    roles = {r: "large" if r in large_roles else "small" for r in ROLES}
    text = (
        "version: 1\nmodels:\n"
        f"  small: {{provider: openai_compatible, base_url: '{small_url}', model: fake-model,"
        " price: {input_per_1m: 1.0, output_per_1m: 2.0}}\n"
        f"  large: {{provider: openai_compatible, base_url: '{large_url}', model: fake-model,"
        " price: {input_per_1m: 5.0, output_per_1m: 15.0}}\n"
        "roles: {" + ", ".join(f"{r}: {{model: {m}}}" for r, m in roles.items()) + "}\n"
        "escalation: {to: large, after_failures: 2}\n"
    )
    return ModelRouter(load_router_config("router.yaml", text=text), cache=cache)


async def test_repeated_failure_escalates_to_the_larger_model() -> None:
    recorder = InMemoryRecorder()
    gateway = _gateway(recorder)
    bad = tool_reply(("get_order_status", '{"order_id": 1003}'))
    route = text_reply('{"lane": "order_status", "confidence": 0.9}')
    with (
        FakeOpenAI([route, route, bad, bad]) as small,  # the route holds in either menu order
        FakeOpenAI([text_reply("Your order is in transit.")]) as large,
    ):
        agent = RouterToolAgent(
            gateway, _two_model_router(small.base_url, large.base_url), LANES, system=""
        )
        result = await agent.run(_start(gateway), "Where is ORD-1003?")
        assert len(large.requests) == 1
    assert result.reason == "done"
    models = [e.data["model"] for e in recorder.of_type(EventType.MODEL_CALL)]
    assert models == ["small", "small", "small", "small", "large"]


def _routed_router(small_url: str, large_url: str) -> ModelRouter:
    """As `config/router.yaml`: route and extract on the small model, act on the large."""
    return _two_model_router(small_url, large_url, large_roles=("act", "plan"))


async def test_a_route_that_changes_with_the_menu_order_is_asked_of_the_larger_model() -> None:
    """A small model says 0.99 whatever it picks and leans to a place in the menu: the
    agreement of two readings (the menu in both orders) is what escalation trusts."""
    recorder = InMemoryRecorder()
    gateway = _gateway(recorder)
    with (
        FakeOpenAI(
            [
                text_reply('{"lane": "address_change", "confidence": 0.99}'),
                text_reply('{"lane": "escalate", "confidence": 0.99}'),
                tool_reply(("escalate_to_human", '{"ticket_id": "T-3", "reason": "2FA reset"}')),
            ]
        ) as small,
        FakeOpenAI([text_reply('{"lane": "escalate", "confidence": 0.9}')]) as large,
    ):
        router = _two_model_router(small.base_url, large.base_url)
        from opsgate.examples.support_triage.agent import LANES as SHOP

        result = await RouterToolAgent(gateway, router, SHOP, system="").run(
            _start(gateway), "Ticket T-3: turn off two-factor on my account"
        )
        first, second = (r.json["messages"][0]["content"] for r in small.requests[:2])
    assert (result.lane, result.reason) == ("escalate", "handed_off")
    assert first.index("- order_status") < first.index("- escalate")
    assert second.index("- escalate") < second.index("- order_status")  # read the other way
    assert result.models == ["small", "large"]
    assert result.route_escalation == (
        "small read the lanes two ways (address_change / escalate); asked large"
    )


async def test_low_confidence_asks_the_larger_model_before_the_customer() -> None:
    recorder = InMemoryRecorder()
    gateway = _gateway(recorder)
    with (
        FakeOpenAI([text_reply('{"lane": "refund", "confidence": 0.2}')]) as small,
        FakeOpenAI(
            [text_reply('{"lane": "order_status", "confidence": 0.9}'), text_reply("Checked.")]
        ) as large,
    ):
        router = _two_model_router(small.base_url, large.base_url)
        result = await RouterToolAgent(gateway, router, LANES, system="").run(
            _start(gateway), "Where is ORD-1003?"
        )
    assert result.lane == "order_status"
    assert result.route_escalation == "small was not sure (refund, 0.2); asked large"


async def test_cacheable_calls_are_answered_from_the_cache(tmp_path: Any) -> None:
    from opsgate.models import ResponseCache
    from opsgate.store import open_store

    store = open_store(f"sqlite:///{tmp_path / 'c.db'}")
    recorder = InMemoryRecorder()
    gateway = _gateway(recorder)
    route = text_reply('{"lane": "unclear", "confidence": 0.1, "question": "Which order?"}')
    with FakeOpenAI([route]) as small, FakeOpenAI([]) as large:
        router = _two_model_router(small.base_url, large.base_url, ResponseCache(store))
        router.config = router.config.model_copy(
            update={"escalation": router.config.escalation.model_copy(update={"to": None})}
        )
        for _ in range(2):
            result = await RouterToolAgent(gateway, router, LANES, system="").run(
                _start(gateway), "it's broken"
            )
            assert result.output == "Which order?"
        assert len(small.requests) == 1
    calls = [e.data for e in recorder.of_type(EventType.MODEL_CALL)]
    assert [c["cache_hit"] for c in calls] == [False, True]
    assert calls[1]["cost_usd"] == 0.0
    store.close()


async def test_a_plan_naming_no_usable_tool_falls_back_to_the_executor_loop() -> None:
    recorder = InMemoryRecorder()
    gateway = _gateway(recorder)
    with FakeOpenAI(
        [
            text_reply('{"steps": [{"tool": "launch_rocket", "purpose": "?"}]}'),
            tool_reply(("get_order_status", '{"order_id": "ORD-1003"}')),
            text_reply("In transit."),
        ]
    ) as server:
        agent = PlannerExecutor(
            gateway, _router(server.base_url), tools=["get_order_status"], system=""
        )
        run = _start(gateway)
        result = await agent.run(run, "Where is ORD-1003?")
    assert result.reason == "done" and result.output == "In transit."
    assert [c.tool for c in run.completed] == ["get_order_status"]


def _plan_lock_gateway(recorder: InMemoryRecorder) -> Gateway:
    """The shop's gateway with committed plans on (`provenance.plan: optional`)."""
    belt = Toolbelt.from_module(tools)
    text = POLICY_PATH.read_text().replace(
        "    provenance:\n", "    provenance:\n      plan: optional\n", 1
    )
    return Gateway(
        belt,
        load_policy("policy.yaml", belt, text=text),
        recorder=recorder,
        secrets=MappingSecretStore({"PAYMENTS_API_KEY": "pk-test-1234"}),
    )


async def test_the_planner_commits_a_plan_made_before_anything_untrusted_was_read() -> None:
    recorder = InMemoryRecorder()
    gateway = _plan_lock_gateway(recorder)
    with FakeOpenAI(
        [
            text_reply(PLAN),
            tool_reply(("get_ticket", '{"ticket_id": "T-3"}')),
            tool_reply(("get_order_status", '{"order_id": "ORD-1003"}')),
        ]
    ) as server:
        agent = PlannerExecutor(
            gateway,
            _router(server.base_url),
            tools=["get_ticket", "get_order_status", "refund", "draft_reply", "escalate_to_human"],
            system="You help support staff.",
        )
        run = gateway.start_run(  # a request and nothing untrusted: the plan can bind the run
            "support_triage", invoker="desk", agent_id="triage-bot",
            request="Check ticket T-3 and order ORD-1003", deps=demo_world(),
        )  # fmt: skip
        await agent.run(run, "Check ticket T-3 and order ORD-1003")
    assert run.plan is not None
    assert run.plan.tools == {"get_ticket", "get_order_status", "escalate_to_human"}
    committed = recorder.of_type(EventType.PLAN_COMMITTED)[0].data
    assert committed["accepted"] is True
    # whatever the run reads later, a refund is outside the plan
    refund = {"order_id": "ORD-1003", "amount": 75.5, "reason": "damaged"}
    decision = gateway.policy.decide(ProposedCall("refund", refund, "refund:x"), run)
    assert decision.reason == "outside_plan"


async def test_after_untrusted_input_the_planner_only_records_its_plan() -> None:
    recorder = InMemoryRecorder()
    gateway = _plan_lock_gateway(recorder)
    with FakeOpenAI(
        [
            text_reply(PLAN),
            tool_reply(("get_ticket", '{"ticket_id": "T-3"}')),
            tool_reply(("get_order_status", '{"order_id": "ORD-1003"}')),
        ]
    ) as server:
        agent = PlannerExecutor(
            gateway,
            _router(server.base_url),
            tools=["get_ticket", "get_order_status", "draft_reply", "escalate_to_human"],
            system="You help support staff.",
        )
        run = _start(gateway)  # the ticket is read at the start: a plan now could be injected
        await agent.run(run, "Check ticket T-3")
    assert run.plan is None and not recorder.of_type(EventType.PLAN_COMMITTED)
    assert recorder.of_type(EventType.PLAN)


def test_the_generic_patterns_carry_no_domain_wording() -> None:
    """Support-desk wording lives in the support example (issue #12), not in the patterns
    every domain uses."""
    from pathlib import Path

    import opsgate.agent._patterns as patterns  # tests this module

    text = Path(patterns.__file__).read_text().lower()
    for word in ("customer", "refund", "order is", "shop", "ticket"):
        assert word not in text, word
    from opsgate.examples.support_triage import agent as support

    assert "customer" in support.ROUTE_PROMPT and "{menu}" in support.ROUTE_PROMPT
    assert "{menu}" in patterns.ROUTE_PROMPT
