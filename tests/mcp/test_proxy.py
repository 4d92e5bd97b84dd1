"""The proxy end to end with a real MCP client session (in process) and real upstream
servers (child processes): listing, validation, provenance, approvals, failures."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import mcp_types
import pytest
from tests.mcp.conftest import PYTHON, SERVERS, connected, make_proxy, server_spec, shop_spec, text

from opsgate.gateway import DurableApprovalQueue
from opsgate.mcp import UpstreamSpec
from opsgate.recorder import EventType, InMemoryRecorder
from opsgate.store import open_store

# end to end through real upstream processes (~30 s of CPU): make test (CI) runs them; the
# edit loop keeps test_fail_closed and test_lock
pytestmark = pytest.mark.slow


def events(recorder: InMemoryRecorder, kind: EventType) -> list[dict[str, Any]]:
    return [e.data for e in recorder.events if e.type == kind]


async def test_lists_only_what_the_stage_allows_and_denies_the_rest() -> None:
    proxy = make_proxy({"shop": shop_spec()}, workflow="readonly")
    async with connected(proxy) as client:
        names = [t.name for t in (await client.list_tools()).tools]
        assert names == ["get_ticket", "get_order"]  # refund: a write above read_only
        denied = await client.call_tool("refund", {"order_id": "ORD-7", "amount": 1})
        assert denied.is_error and "scope_above_stage" in text(denied)
        hidden = await client.call_tool("pid", {})  # upstream has it; the policy does not name it
        assert hidden.is_error and "unknown_tool" in text(hidden)


async def test_the_policy_says_a_tools_scope_over_the_config_and_the_servers_hints() -> None:
    proxy = make_proxy({"shop": shop_spec()}, workflow="policy_says")
    async with connected(proxy) as client:
        names = [t.name for t in (await client.list_tools()).tools]
        # get_ticket: read by the server's hints, a write by the policy (hidden at read_only);
        # draft_reply: a draft by mcp.yaml, a read by the policy
        assert names == ["get_order", "draft_reply"]
        denied = await client.call_tool("get_ticket", {"ticket_id": "T-1"})
        assert denied.is_error and "scope_above_stage" in text(denied)


async def test_annotations_show_the_proxys_scope_not_the_servers_hints() -> None:
    proxy = make_proxy({"shop": shop_spec()})
    async with connected(proxy) as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
    assert tools["refund"].annotations.read_only_hint is False
    assert tools["refund"].annotations.destructive_hint is True
    assert tools["get_order"].annotations.read_only_hint is True
    assert tools["draft_reply"].annotations.destructive_hint is False  # declared low impact


@pytest.mark.parametrize(
    ("args", "says"),
    [
        ({"order_id": 7, "amount": 1}, "is not of type 'string'"),
        ({"order_id": "ORD-7"}, "'amount' is a required property"),
        ({"order_id": "ORD-7", "amount": 1, "note": "x"}, "Extra inputs are not permitted"),
        ({"order_id": "ORD-7", "amount": "40"}, "is not of type 'number'"),
    ],
)
async def test_arguments_failing_the_schema_are_refusals_the_model_can_repair(
    args: dict[str, Any], says: str
) -> None:
    recorder = InMemoryRecorder()
    proxy = make_proxy({"shop": shop_spec()}, recorder=recorder)
    async with connected(proxy) as client:
        result = await client.call_tool("refund", args)
    assert result.is_error and "invalid_arguments" in text(result) and says in text(result)
    assert result.meta and result.meta["opsgate"]["reason"] == "invalid_arguments"
    assert not events(recorder, EventType.TOOL_RESULT)  # nothing reached the upstream


async def test_a_write_derived_from_an_injection_is_denied_by_provenance() -> None:
    recorder = InMemoryRecorder()
    proxy = make_proxy({"shop": shop_spec()}, recorder=recorder)
    async with connected(proxy) as client:
        ticket = await client.call_tool("get_ticket", {"ticket_id": "T-1"})
        assert not ticket.is_error and "ORD-666" in text(ticket)  # the injection
        attack = await client.call_tool("refund", {"order_id": "ORD-666", "amount": 999})
        assert attack.is_error and "untrusted_derivation" in text(attack)
        order = await client.call_tool("get_order", {"order_id": "ORD-7"})  # trusted by policy
        assert not order.is_error
        fair = await client.call_tool("refund", {"order_id": "ORD-7", "amount": 40})
        assert not fair.is_error, text(fair)
    writes = events(recorder, EventType.WRITE_PERFORMED)
    assert [w["args"] for w in writes] == [{"order_id": "ORD-7", "amount": 40}]
    results = events(recorder, EventType.TOOL_RESULT)
    assert [r["trust"] for r in results] == ["untrusted", "trusted", "untrusted"]


async def test_oversized_results_are_cut_with_a_marker_and_the_full_size_audited() -> None:
    recorder = InMemoryRecorder()
    proxy = make_proxy({"shop": shop_spec()}, recorder=recorder, max_result_bytes=4096)
    async with connected(proxy) as client:
        result = await client.call_tool("big", {"size": 300_000})
    assert not result.is_error
    assert "[opsgate: result truncated:" in text(result)
    assert len(text(result)) < 4096
    recorded = events(recorder, EventType.TOOL_RESULT)[0]["result"]
    assert recorded["_meta"]["opsgate/truncated"]["bytes"] > 300_000


async def test_an_upstream_tool_error_is_a_tool_error_and_its_text_untrusted() -> None:
    recorder = InMemoryRecorder()
    proxy = make_proxy({"shop": shop_spec()}, recorder=recorder)
    async with connected(proxy) as client:
        result = await client.call_tool("fail", {})
    assert result.is_error and "warehouse is on fire" in text(result)
    assert events(recorder, EventType.TOOL_ERROR)[0]["error_type"] == "UpstreamError"
    read = events(recorder, EventType.CONTEXT_READ)
    assert any(r["trust"] == "untrusted" and "#error" in r["source"] for r in read)


async def test_an_upstream_that_dies_during_a_call_is_reported_and_restarted() -> None:
    recorder = InMemoryRecorder()
    proxy = make_proxy({"shop": shop_spec()}, recorder=recorder)
    async with connected(proxy) as client:
        first = await client.call_tool("pid", {})
        died = await client.call_tool("crash", {})
        assert died.is_error and "went away" in text(died)
        again = await client.call_tool("pid", {})
        assert not again.is_error and text(again) != text(first)  # a new process
    upstream = proxy.upstreams["shop"]
    assert upstream.counts["UpstreamCrashed"] == 1 and upstream.counts["restarts"] == 1
    assert [e["error_type"] for e in events(recorder, EventType.TOOL_ERROR)] == ["UpstreamError"]


async def test_a_hanging_upstream_call_times_out_as_a_tool_error() -> None:
    proxy = make_proxy({"shop": shop_spec()})
    async with connected(proxy) as client:
        result = await client.call_tool("hang", {"seconds": 5})
        assert result.is_error and "did not answer within 0.5s" in text(result)


async def test_an_upstream_that_is_not_mcp_is_counted_and_the_others_still_serve() -> None:
    specs = {"shop": shop_spec(), "junk": server_spec("not_mcp")}
    # the junk server never answers the handshake: it is given up on after the timeout, which
    # must still leave the shop server (a Python process) time to start on a loaded machine
    proxy = make_proxy(specs, workflow="multi", namespace=True, connect_timeout_seconds=10)
    async with connected(proxy) as client:
        names = [t.name for t in (await client.list_tools()).tools]
        assert "shop__get_ticket" in names and not [n for n in names if n.startswith("junk")]
        refused = await client.call_tool("junk__anything", {})
        assert refused.is_error and "unknown_tool" in text(refused)
        ok = await client.call_tool("shop__get_order", {"order_id": "ORD-7"})
        assert not ok.is_error
    assert proxy.upstreams["junk"].counts["UpstreamUnavailable"] >= 1


async def test_a_tool_with_an_invalid_schema_is_hidden_and_refused() -> None:
    recorder = InMemoryRecorder()
    proxy = make_proxy(
        {"bad": server_spec("bad_schema")}, workflow="multi", namespace=True, recorder=recorder
    )
    async with connected(proxy) as client:
        names = [t.name for t in (await client.list_tools()).tools]
        assert names == ["bad__fine"]
        refused = await client.call_tool("bad__broken", {"x": 1})
        assert refused.is_error and "invalid_tool_schema" in text(refused)
        assert not (await client.call_tool("bad__fine", {"x": 1})).is_error
    decisions = events(recorder, EventType.DECISION)
    assert any(d["reason"] == "invalid_tool_schema" for d in decisions)


async def test_a_changed_definition_is_hidden_refused_and_audited_until_locked_again(
    tmp_path: Path,
) -> None:
    from opsgate.mcp import LockEntry, LockFile, definition_hash

    recorder = InMemoryRecorder()
    lock_path = tmp_path / "mcp.lock"
    notified = asyncio.Event()

    async def on_message(message: Any) -> None:
        if isinstance(message, mcp_types.ToolListChangedNotification):
            notified.set()

    spec = UpstreamSpec(command=[PYTHON, str(SERVERS / "drifting.py"), str(tmp_path / "n")])
    proxy = make_proxy({"docs": spec}, recorder=recorder, lock_path=lock_path)
    async with connected(proxy, on_message) as client:
        assert [t.name for t in (await client.list_tools()).tools] == ["search", "mutate"]
        assert not (await client.call_tool("search", {"q": "a"})).is_error
        await client.call_tool("mutate", {})  # the server changes `search` and says so
        await asyncio.wait_for(notified.wait(), 10)
        assert [t.name for t in (await client.list_tools()).tools] == ["mutate"]
        refused = await client.call_tool("search", {"q": "a"})
        assert refused.is_error and "tool_definition_changed" in text(refused)
        # a person reviews the new definition and locks it again: it is served again
        tools = await proxy.upstreams["docs"].list_tools()
        pins = {t.name: LockEntry("docs", t.name, definition_hash(t)) for t in tools}
        LockFile(pins).write(lock_path)
        await proxy.tools_changed("docs")
        assert not (await client.call_tool("search", {"q": "a"})).is_error
    reasons = [d["reason"] for d in events(recorder, EventType.DECISION)]
    assert reasons.count("tool_definition_changed") >= 2  # the change, then the refused call


async def test_resources_and_prompts_pass_through_as_untrusted_context() -> None:
    recorder = InMemoryRecorder()
    proxy = make_proxy({"shop": shop_spec()}, recorder=recorder)
    async with connected(proxy) as client:
        resources = await client.list_resources()
        assert [str(r.uri) for r in resources.resources] == ["kb://refund-policy"]
        read = await client.read_resource("kb://refund-policy")
        assert "ACC-999" in read.contents[0].text  # type: ignore[union-attr]
        prompt = await client.get_prompt("summarize", {"ticket_id": "T-9"})
        assert "T-9" in prompt.messages[0].content.text  # type: ignore[union-attr]
        attack = await client.call_tool("refund", {"order_id": "ACC-999", "amount": 1})
        assert attack.is_error and "untrusted_derivation" in text(attack)
    sources = {r["source"]: r["trust"] for r in events(recorder, EventType.CONTEXT_READ)}
    assert sources["resource:shop:kb://refund-policy"] == "untrusted"
    assert sources["prompt:shop:summarize"] == "untrusted"


@pytest.mark.parametrize(
    ("workflow", "config", "trust"),
    [
        ("trusting", "untrusted", "trusted"),  # the policy's trusted_resources
        ("distrusting", "trusted", "untrusted"),  # untrusted_resources, over the config
        ("policy_says", "trusted", "trusted"),  # the policy says nothing: the config
    ],
)
async def test_the_policy_says_which_resources_a_run_reads_as_trusted(
    workflow: str, config: str, trust: str
) -> None:
    recorder = InMemoryRecorder()
    proxy = make_proxy({"shop": shop_spec(resources=config)}, workflow=workflow, recorder=recorder)
    async with connected(proxy) as client:
        await client.list_resources()
        await client.read_resource("kb://refund-policy")
    sources = {r["source"]: r["trust"] for r in events(recorder, EventType.CONTEXT_READ)}
    assert sources["resource:shop:kb://refund-policy"] == trust


def _queue(tmp_path: Path) -> DurableApprovalQueue:
    return DurableApprovalQueue(open_store(f"sqlite:///{tmp_path / 'q.db'}"), poll_s=0.05)


async def test_an_unanswered_approval_times_out_as_a_tool_error_saying_so(tmp_path: Path) -> None:
    queue = _queue(tmp_path)
    proxy = make_proxy(
        {"shop": shop_spec()}, workflow="careful", approver=queue, approval_timeout_seconds=0.5
    )
    async with connected(proxy) as client:
        await client.call_tool("get_order", {"order_id": "ORD-7"})
        result = await client.call_tool("refund", {"order_id": "ORD-7", "amount": 40})
    assert result.is_error and "within 0.5s" in text(result) and "escalated" in text(result)
    queue.store.close()


async def test_an_approved_call_runs_after_the_person_says_yes(tmp_path: Path) -> None:
    queue = _queue(tmp_path)
    proxy = make_proxy(
        {"shop": shop_spec()}, workflow="careful", approver=queue, approval_timeout_seconds=20
    )

    person_side = DurableApprovalQueue(queue.store, recorder=InMemoryRecorder())

    async def approve() -> None:
        while True:
            pending = await asyncio.to_thread(queue.list, "pending")
            if pending:
                await asyncio.to_thread(
                    person_side.decide, pending[0].request_id, approved=True, approver="lead"
                )
                return
            await asyncio.sleep(0.05)

    async with connected(proxy) as client:
        await client.call_tool("get_order", {"order_id": "ORD-7"})
        person = asyncio.create_task(approve())
        result = await client.call_tool("refund", {"order_id": "ORD-7", "amount": 40})
        await person
    assert not result.is_error, text(result)
    queue.store.close()


async def test_what_an_upstream_writes_to_stderr_is_shown_escaped(
    capfd: pytest.CaptureFixture[str],
) -> None:
    proxy = make_proxy({"shop": shop_spec()})
    async with connected(proxy) as client:
        assert (await client.list_tools()).tools
    await asyncio.sleep(0.2)  # the relay thread prints what it read
    err = capfd.readouterr().err
    assert "upstream shop: shop starting <U+001B>[2J<U+001B>]0;pwned<U+0007> <U+202E>gnp.exe" in err
    assert "\x1b" not in err and "\u202e" not in err


async def test_a_streamable_http_upstream_with_headers_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    child = await asyncio.create_subprocess_exec(
        PYTHON, str(SERVERS / "shop.py"), "http", str(port)
    )
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), 0.2).close()
                break
            except OSError:
                await asyncio.sleep(0.1)
        monkeypatch.setenv("SHOP_TOKEN", "s3cret")
        from opsgate.mcp import resolve_upstreams

        url = f"http://127.0.0.1:{port}/mcp"
        spec = UpstreamSpec(url=url, headers={"X-Token": "${SHOP_TOKEN}"}, tools=shop_spec().tools)
        target = resolve_upstreams({"shop": spec}, Path("."))["shop"]
        assert target.headers == {"X-Token": "s3cret"} and "s3cret" not in repr(target)
        proxy = make_proxy({"shop": spec})
        proxy.upstreams["shop"].target = target
        async with connected(proxy) as client:
            ticket = await client.call_tool("get_ticket", {"ticket_id": "T-1"})
            assert not ticket.is_error
            attack = await client.call_tool("refund", {"order_id": "ORD-666", "amount": 999})
            assert attack.is_error and "untrusted_derivation" in text(attack)
    finally:
        child.terminate()
        await asyncio.wait_for(child.wait(), 10)


async def test_a_malformed_result_is_a_counted_tool_error_and_the_proxy_serves_on() -> None:
    recorder = InMemoryRecorder()
    specs = {"bad": server_spec("raw")}
    proxy = make_proxy(specs, workflow="multi", namespace=True, recorder=recorder)
    async with connected(proxy) as client:
        garbage = await client.call_tool("bad__malformed", {})
        assert garbage.is_error and "not a valid MCP result" in text(garbage)
        again = await client.call_tool("bad__malformed", {})
        assert again.is_error and "not a valid MCP result" in text(again)
    assert proxy.upstreams["bad"].counts["MalformedResult"] == 2
    errors = [e.data for e in recorder.events if e.type == EventType.TOOL_ERROR]
    assert len(errors) == 2


async def test_a_shadow_policy_decides_beside_the_live_one_and_never_acts() -> None:
    from tests.mcp.conftest import POLICY

    recorder = InMemoryRecorder()
    stricter = POLICY.replace(
        "      get_order: {output: trusted}\n      draft_reply: {}\n",
        "      get_order: {output: trusted}\n      draft_reply: {approval: always}\n",
        1,
    )
    proxy = make_proxy({"shop": shop_spec()}, recorder=recorder, shadow=stricter)
    async with connected(proxy) as client:
        drafted = await client.call_tool("draft_reply", {"text": "hi"})
        assert not drafted.is_error  # the live policy decides
    (shadow,) = events(recorder, EventType.SHADOW_DECISION)
    assert (shadow["effect"], shadow["live_effect"]) == ("needs_approval", "allow")
    assert shadow["tool"] == "draft_reply"
