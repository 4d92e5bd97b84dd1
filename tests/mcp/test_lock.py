"""`opsgate mcp lock` and the lock at start: pins written, drift found, a missing or stale
lock handled fail-closed, config mistakes refused with one line."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from tests.mcp.conftest import PYTHON, SERVERS, connected, text
from typer.testing import CliRunner

from opsgate.cli.main import app
from opsgate.errors import ConfigError
from opsgate.mcp import ProxyOptions, build_proxy, load_config
from opsgate.recorder import EventType, InMemoryRecorder

SHOP = [PYTHON, str(SERVERS / "shop.py")]


def drifting(tmp_path: Path) -> list[str]:
    return [PYTHON, str(SERVERS / "drifting.py"), str(tmp_path / "listings")]


def lock(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["mcp", "lock", *args])
    return result.exit_code, result.output


def test_lock_pins_the_tools_the_workflow_names(tmp_path: Path, policy_file: Path) -> None:
    path = tmp_path / "mcp.lock"
    code, output = lock(
        "--policy", str(policy_file), "--workflow", "readonly", "--lock", str(path), "--", *SHOP
    )
    assert code == 0, output
    pins = json.loads(path.read_text())["tools"]
    assert sorted(pins) == ["get_order", "get_ticket", "refund"]  # not big, crash, pid…
    assert all(len(p["sha256"]) == 64 and p["upstream"] == "upstream" for p in pins.values())
    code, output = lock(
        "--lock",
        str(path),
        "--check",
        "--policy",
        str(policy_file),
        "--workflow",
        "readonly",
        "--",
        *SHOP,
    )
    assert code == 0 and "3 tools match" in output


def test_check_exits_1_on_drift(tmp_path: Path) -> None:
    drifting_cmd = drifting(tmp_path)
    path = tmp_path / "mcp.lock"
    assert lock("--lock", str(path), "--", *drifting_cmd)[0] == 0
    code, output = lock("--lock", str(path), "--check", "--", *drifting_cmd)
    assert code == 1 and "changed: `search`" in output


def test_check_without_a_lock_is_drift(tmp_path: Path) -> None:
    code, output = lock("--lock", str(tmp_path / "none.lock"), "--check", "--", *SHOP)
    assert code == 1 and "there is no lock" in output


def test_a_missing_lock_refuses_to_start(tmp_path: Path, policy_file: Path) -> None:
    result = CliRunner().invoke(
        app,
        [
            "mcp-proxy",
            "--policy",
            str(policy_file),
            "--workflow",
            "support",
            "--lock",
            str(tmp_path / "no.lock"),
            "--",
            *SHOP,
        ],
    )
    assert result.exit_code == 2
    assert "no lock" in result.output and "--no-lock" in result.output


async def test_a_stale_lock_hides_and_refuses_the_changed_tool(
    tmp_path: Path, policy_file: Path
) -> None:
    drifting_cmd = drifting(tmp_path)
    path = tmp_path / "mcp.lock"
    pinned = await asyncio.to_thread(lock, "--lock", str(path), "--", *drifting_cmd)
    assert pinned[0] == 0  # the first listing
    recorder = InMemoryRecorder()
    options = ProxyOptions(
        policy=policy_file, workflow="support", command=tuple(drifting_cmd), lock=path
    )
    proxy = build_proxy(options, recorder=recorder)
    async with connected(proxy) as client:  # the proxy's listing is the second: changed
        assert [t.name for t in (await client.list_tools()).tools] == ["mutate"]
        refused = await client.call_tool("search", {"q": "x"})
        assert refused.is_error and "tool_definition_changed" in text(refused)
        assert "locked again" in text(refused)
    decisions = [e.data for e in recorder.events if e.type == EventType.DECISION]
    assert decisions[-1]["reason"] == "tool_definition_changed"


def test_a_config_naming_an_unknown_workflow_is_refused(tmp_path: Path, policy_file: Path) -> None:
    result = CliRunner().invoke(
        app,
        ["mcp-proxy", "--policy", str(policy_file), "--workflow", "nope", "--no-lock", "--", *SHOP],
    )
    assert result.exit_code == 2 and "no workflow `nope`" in result.output
    code, output = lock("--policy", str(policy_file), "--workflow", "nope", "--", *SHOP)
    assert code == 2 and "no workflow `nope`" in output


def test_config_mistakes_are_one_line(tmp_path: Path, policy_file: Path) -> None:
    config = tmp_path / "mcp.yaml"
    config.write_text("upstreams:\n  git:\n    command: [x]\n    url: http://a\n")
    options = ProxyOptions(policy=policy_file, workflow="support", config=config, no_lock=True)
    with pytest.raises(ConfigError, match="either `command`"):
        build_proxy(options, recorder=InMemoryRecorder())
    config.write_text(
        "upstreams:\n  web:\n    url: http://127.0.0.1:1/mcp\n"
        "    headers: {Authorization: 'Bearer ${NO_SUCH_VAR_XYZ}'}\n"
    )
    with pytest.raises(ConfigError, match="NO_SUCH_VAR_XYZ") as caught:
        build_proxy(options, recorder=InMemoryRecorder())
    assert "Bearer" not in str(caught.value)


async def test_a_config_with_namespaced_upstreams(tmp_path: Path, policy_file: Path) -> None:
    config = tmp_path / "mcp.yaml"
    config.write_text(
        f"invoker: ana\nagent_id: helper\nupstreams:\n"
        f"  shop:\n    command: {json.dumps(SHOP)}\n"
        f"    tools: {{refund: {{scope: write, impact: high}}}}\n"
    )
    code, output = await asyncio.to_thread(
        lock, "--config", str(config), "--policy", str(policy_file), "--workflow", "multi"
    )
    assert code == 0, output
    assert (tmp_path / "mcp.lock").exists()
    recorder = InMemoryRecorder()
    options = ProxyOptions(policy=policy_file, workflow="multi", config=config)
    proxy = build_proxy(options, recorder=recorder)
    async with connected(proxy) as client:
        names = [t.name for t in (await client.list_tools()).tools]
        assert names == ["shop__get_ticket", "shop__get_order", "shop__refund"]
        assert not (await client.call_tool("shop__get_ticket", {"ticket_id": "T"})).is_error
    started = next(e.data for e in recorder.events if e.type == EventType.RUN_STARTED)
    assert (started["invoker"], started["agent_id"]) == ("ana", "helper")


def test_the_readme_mcp_config_loads(tmp_path: Path) -> None:
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    block = readme.split("```yaml\n# mcp.yaml\n", 1)[1].split("```", 1)[0]
    path = tmp_path / "mcp.yaml"
    path.write_text(block)
    config = load_config(path)
    assert config.upstreams["docs"].client_requests == ["elicitation"]
    path.write_text(block.replace("[elicitation]", "[telepathy]"))
    with pytest.raises(ConfigError, match=r"upstreams\.docs\.client_requests"):
        load_config(path)


def test_the_served_loop_is_uvloop_and_the_heap_settles() -> None:
    import asyncio
    import gc

    from opsgate.mcp import run_served, settle_heap

    seen: list[str] = []

    async def main() -> None:
        seen.append(type(asyncio.get_running_loop()).__module__)

    run_served(main())
    assert seen and seen[0].startswith("uvloop")  # libuv's loop: less CPU a call
    try:
        settle_heap()
        assert gc.get_freeze_count() > 0  # start-up's objects left out of later collections
    finally:
        gc.unfreeze()
