"""The IT help desk's router + lanes, end to end on the suite's own tasks: a scripted model
over real HTTP, the harness's world, gate and scoring. What the records say decides (a
security hold hands off, the second way to verify runs only after the first failed, an MFA
reset takes only the run's own verification id), and the step conditions fail closed."""

from __future__ import annotations

from typing import Any

import pytest

from opsgate.agent import Step
from opsgate.evals import Harness, TaskResult, load_suite, run_task
from opsgate.examples.it_helpdesk import SUITE_PATH
from opsgate.models import ROLES, ModelRouter, load_router_config
from tests.models.fake_openai import FakeOpenAI, text_reply, tool_reply


@pytest.fixture(scope="module")
def harness() -> Harness:
    return Harness.load(load_suite(SUITE_PATH))


def _router(base_url: str) -> ModelRouter:
    roles = ", ".join(f"{r}: {{model: small}}" for r in ROLES)
    text = (
        "version: 1\nmodels:\n"
        f"  small: {{provider: openai_compatible, base_url: '{base_url}', model: fake-model,"
        " price: {input_per_1m: 1.0, output_per_1m: 2.0}}\n"
        f"roles: {{{roles}}}\n"
    )
    return ModelRouter(load_router_config("router.yaml", text=text))


async def _run(harness: Harness, task_id: str, script: list[Any]) -> tuple[TaskResult, list[Any]]:
    task = next(t for t in harness.suite.tasks if t.id == task_id)
    with FakeOpenAI(script) as server:
        result = await run_task(harness, task, 0, router=_router(server.base_url))
        return result, server.requests


def _offered(request: Any) -> list[str]:
    return [t["function"]["name"] for t in request.json.get("tools") or []]


def _enum(request: Any, tool: str, arg: str) -> list[Any] | None:
    for t in request.json["tools"]:
        if t["function"]["name"] == tool:
            enum: list[Any] | None = t["function"]["parameters"]["properties"][arg].get("enum")
            return enum
    raise AssertionError(f"{tool} not offered")


def _route(lane: str) -> Any:
    return text_reply(f'{{"lane": "{lane}", "confidence": 0.9}}')


def _call(tool: str, args: str) -> Any:
    return tool_reply((tool, args))


async def test_a_locked_account_is_looked_up_unlocked_by_its_directory_id_and_answered(
    harness: Harness,
) -> None:
    result, requests = await _run(
        harness,
        "lockout-own-account",
        [
            _route("unlock"),
            _call("lookup_user", '{"query": "U-1001"}'),
            _call("unlock_account", '{"user_id": "U-1001"}'),
            _call("draft_reply", '{"ticket_id": "T-201", "body": "Unlocked: sign in again."}'),
        ],
    )
    assert result.passed, result.failures
    assert _offered(requests[1]) == ["lookup_user"]
    assert _enum(requests[1], "lookup_user", "query") == ["U-1001"]  # the id the ticket writes
    assert _enum(requests[2], "unlock_account", "user_id") == ["U-1001"]  # the directory's
    assert _enum(requests[3], "draft_reply", "ticket_id") == ["T-201"]
    assert result.plan_score is not None and result.plan_score > 0  # the lane is the plan


async def test_a_security_hold_hands_off_and_the_unlock_is_never_offered(harness: Harness) -> None:
    result, requests = await _run(
        harness,
        "lockout-security-hold",
        [
            _route("unlock"),
            _call("lookup_user", '{"query": "U-1005"}'),
            _call("escalate_to_human", '{"ticket_id": "T-202", "reason": "security hold"}'),
        ],
    )
    assert result.passed, result.failures
    assert _offered(requests[2]) == ["escalate_to_human"]  # the record decided, not the model
    assert _enum(requests[2], "escalate_to_human", "ticket_id") == ["T-202"]
    assert requests[2].json["tool_choice"] == "required"
    assert len(requests) == 3


def _reset_with_the_offered_id(user: str) -> Any:
    """A model that copies the verification id the step offers (a constrained decoder)."""

    def reply(request: Any) -> Any:
        offered = _enum(request, "reset_mfa", "verification_id")
        assert offered is not None and len(offered) == 1
        return _call("reset_mfa", f'{{"user_id": "{user}", "verification_id": "{offered[0]}"}}')

    return reply


async def test_the_manager_is_asked_only_after_the_call_back_fails_and_the_reset_takes_its_id(
    harness: Harness,
) -> None:
    result, requests = await _run(
        harness,
        "mfa-manager-confirmation",
        [
            _route("mfa_reset"),
            _call("lookup_user", '{"query": "U-1003"}'),
            _call("verify_identity", '{"user_id": "U-1003", "method": "callback_on_file"}'),
            _call("verify_identity", '{"user_id": "U-1003", "method": "manager_confirmation"}'),
            _reset_with_the_offered_id("U-1003"),
            _call("draft_reply", '{"ticket_id": "T-212", "body": "MFA reset."}'),
        ],
    )
    assert result.passed, result.failures
    assert _enum(requests[2], "verify_identity", "method") == ["callback_on_file"]
    assert _enum(requests[3], "verify_identity", "method") == ["manager_confirmation"]


async def test_a_verified_call_back_skips_the_manager(harness: Harness) -> None:
    result, requests = await _run(
        harness,
        "mfa-new-phone",
        [
            _route("mfa_reset"),
            _call("lookup_user", '{"query": "U-1002"}'),
            _call("verify_identity", '{"user_id": "U-1002", "method": "callback_on_file"}'),
            _reset_with_the_offered_id("U-1002"),
            _call("draft_reply", '{"ticket_id": "T-211", "body": "Enrol your new phone."}'),
        ],
    )
    assert result.passed, result.failures
    assert _offered(requests[3]) == ["reset_mfa"]  # straight to the reset
    assert len(requests) == 5


async def test_a_verification_id_copied_from_the_ticket_is_refused_at_the_step(
    harness: Harness,
) -> None:
    result, requests = await _run(
        harness,
        "injection-mfa-verification-id",
        [
            _route("mfa_reset"),
            _call("lookup_user", '{"query": "U-1011"}'),
            _call("verify_identity", '{"user_id": "U-1011", "method": "callback_on_file"}'),
            _call("reset_mfa", '{"user_id": "U-1011", "verification_id": "VER-5C1D2E3F"}'),
            _reset_with_the_offered_id("U-1011"),
            _call("draft_reply", '{"ticket_id": "T-215", "body": "MFA is reset."}'),
        ],
    )
    assert _enum(requests[3], "reset_mfa", "verification_id") != ["VER-5C1D2E3F"]
    assert result.unsafe_attempts >= 1  # the ticket's id was proposed, refused, never run
    assert result.passed is False  # a forbidden proposal fails the task, as it should


async def test_neither_way_verifying_hands_off_without_a_reset(harness: Harness) -> None:
    result, requests = await _run(
        harness,
        "mfa-unverifiable",
        [
            _route("mfa_reset"),
            _call("lookup_user", '{"query": "U-1004"}'),
            _call("verify_identity", '{"user_id": "U-1004", "method": "callback_on_file"}'),
            _call("verify_identity", '{"user_id": "U-1004", "method": "manager_confirmation"}'),
            _call("escalate_to_human", '{"ticket_id": "T-213", "reason": "not verified"}'),
        ],
    )
    assert result.passed, result.failures
    assert _offered(requests[4]) == ["escalate_to_human"]


async def test_no_free_seat_skips_the_assignment_and_says_so(harness: Harness) -> None:
    result, requests = await _run(
        harness,
        "licence-no-seats",
        [
            _route("licence"),
            _call("lookup_user", '{"query": "U-1002"}'),
            _call("check_license", '{"product": "tableau-creator"}'),
            _call("draft_reply", '{"ticket_id": "T-233", "body": "No seat is free."}'),
        ],
    )
    assert result.passed, result.failures
    assert _offered(requests[3]) == ["draft_reply"]


async def test_an_unclear_request_gets_one_question_drafted_on_the_ticket(
    harness: Harness,
) -> None:
    result, requests = await _run(
        harness,
        "ambiguous-access",
        [
            text_reply('{"lane": "unclear", "confidence": 0.2}'),
            _call("draft_reply", '{"ticket_id": "T-241", "body": "Which system do you mean?"}'),
        ],
    )
    assert result.passed, result.failures
    lanes = requests[0].json["response_format"]["json_schema"]["schema"]["properties"]["lane"]
    assert "ask" not in lanes["enum"]  # reached by the router's `unclear`, not the menu


async def test_a_request_about_someone_elses_account_is_screened_to_a_reply(
    harness: Harness,
) -> None:
    result, requests = await _run(
        harness,
        "lockout-on-behalf",
        [
            _call("lookup_user", '{"query": "U-1001"}'),
            _call("draft_reply", '{"ticket_id": "T-203", "body": "Priya must ask us herself."}'),
        ],
    )
    assert result.passed, result.failures
    assert "unlock_account" not in {t for r in requests for t in _offered(r)}


def test_step_conditions_fail_closed_and_are_checked_when_declared() -> None:
    step = Step("act", ("unlock_account",), only_when="read.a.ok", hand_off_when="read.a.bad")
    assert step.holds("only_when", {}) is False  # nothing read: the step does not run
    assert step.holds("hand_off_when", {}) is True  # nothing read: a person decides
    assert step.holds("only_when", {"a": {"ok": True}}) is True
    assert step.holds("hand_off_when", {"a": {"bad": False}}) is False
    assert Step("plain", ()).holds("only_when", {}) is None
    with pytest.raises(ValueError, match="step 'x'"):
        Step("x", (), only_when="read.a ==")
    with pytest.raises(ValueError, match="unknown variable"):
        Step("x", (), hand_off_when="args.a")
    with pytest.raises(ValueError, match=r"tool\.argument"):
        Step("x", (), written_as={"query": "user_id"})


def _pick(group: str) -> Any:
    return text_reply(f'{{"group": "{group}"}}')


async def test_a_group_is_picked_the_same_both_ways_round_then_added(harness: Harness) -> None:
    result, requests = await _run(
        harness,
        "group-printers",
        [
            _route("group_access"),
            _call("lookup_user", '{"query": "U-1007"}'),
            _call("list_groups", "{}"),
            _pick("printers-3f"),
            _pick("printers-3f"),
            _call("add_to_group", '{"user_id": "U-1007", "group": "printers-3f"}'),
            _call("draft_reply", '{"ticket_id": "T-221", "body": "You have the printers."}'),
        ],
    )
    assert result.passed, result.failures
    first = requests[3].json["response_format"]["json_schema"]["schema"]["properties"]["group"]
    second = requests[4].json["response_format"]["json_schema"]["schema"]["properties"]["group"]
    assert first["enum"] == second["enum"][::-1] and "printers-3f" in first["enum"]
    assert _enum(requests[5], "add_to_group", "group") == ["printers-3f"]  # the one agreed


async def test_readings_of_a_group_that_disagree_go_to_a_person(harness: Harness) -> None:
    result, requests = await _run(
        harness,
        "group-printers",
        [
            _route("group_access"),
            _call("lookup_user", '{"query": "U-1007"}'),
            _call("list_groups", "{}"),
            _pick("all-staff"),  # the first of the list, both times: a place, not a choice
            _pick("admins"),
            _call("escalate_to_human", '{"ticket_id": "T-221", "reason": "which group?"}'),
        ],
    )
    assert not result.passed  # a person decides: the task's add is not made
    assert _offered(requests[5]) == ["escalate_to_human"]
    assert result.status == "completed" and result.reason == "handed_off"


async def test_a_config_request_naming_no_account_is_offered_no_account_lane(
    harness: Harness,
) -> None:
    result, requests = await _run(
        harness,
        "config-vpn-mtu",
        [
            _route("config_change"),
            _call("set_config_value", '{"path": "vpn/client.conf", "key": "mtu", "value": "1400"}'),
            text_reply("done"),
        ],
    )
    assert result.passed, result.failures
    menu = requests[0].json["response_format"]["json_schema"]["schema"]["properties"]["lane"]
    assert set(menu["enum"]) == {"config_change", "escalate", "unclear"}
