"""Shadow mode: a candidate policy decides every call beside the live one, never acting; its
differences are recorded as `shadow_decision` events."""

from __future__ import annotations

from opsgate.gateway import Gateway, MappingSecretStore
from opsgate.policy import CompiledPolicy, load_policy
from opsgate.recorder import EventType, InMemoryRecorder
from tests.conftest import BASE_POLICY, BELT


def _policy(text: str = BASE_POLICY % {"stage": "autonomous_in_scope"}) -> CompiledPolicy:
    return load_policy("p", BELT, text=text)


async def test_a_candidate_decides_beside_the_live_policy_and_never_acts() -> None:
    live = _policy()
    stricter = _policy(
        (BASE_POLICY % {"stage": "autonomous_in_scope"}).replace(
            "constraints: {amount: {max: 200}}", "constraints: {amount: {max: 40}}"
        )
    )
    recorder = InMemoryRecorder()
    gateway = Gateway(
        BELT,
        live,
        recorder=recorder,
        shadow=stricter,
        secrets=MappingSecretStore({"PAY_KEY": "k"}),
    )
    run = gateway.start_run(
        "wf", invoker="ana", agent_id="bot", request="refund 30 on ORD-1, 45 on ORD-2", deps={}
    )
    assert (await gateway.call(run, "pay", {"order_id": "ORD-1", "amount": 30.0})).ok
    assert not recorder.of_type(EventType.SHADOW_DECISION)  # both allow: nothing to say
    outcome = await gateway.call(run, "pay", {"order_id": "ORD-2", "amount": 45.0})
    assert outcome.ok  # the live policy decides
    (shadow,) = recorder.of_type(EventType.SHADOW_DECISION)
    assert shadow.data["call_id"] == outcome.call_id and shadow.data["tool"] == "pay"
    assert (shadow.data["effect"], shadow.data["reason"]) == ("deny", "arg_constraint")
    assert (shadow.data["live_effect"], shadow.data["live_reason"]) == ("allow", "allowed")
    assert shadow.data["policy_version"] == stricter.version
    assert shadow.data["live_policy_version"] == live.version
    types = [e.type for e in recorder.of_run(run.run_id)]
    assert types.index(EventType.SHADOW_DECISION) == types.index(EventType.DECISION, 4) + 1


async def test_a_failing_candidate_is_recorded_and_the_live_call_goes_on() -> None:
    class Broken:
        version = "broken-1"

        def decide(self, call: object, state: object) -> object:
            raise RuntimeError("boom")

    recorder = InMemoryRecorder()
    gateway = Gateway(BELT, _policy(), recorder=recorder, shadow=Broken())  # type: ignore[arg-type]
    run = gateway.start_run("wf", invoker="ana", agent_id="bot", request="ORD-1?")
    assert (await gateway.call(run, "lookup", {"order_id": "ORD-1"})).ok
    (shadow,) = recorder.of_type(EventType.SHADOW_DECISION)
    assert shadow.data["reason"] == "internal_error" and "boom" in shadow.data["message"]
