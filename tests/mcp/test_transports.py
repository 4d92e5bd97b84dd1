"""`opsgate mcp-proxy` as a process, over both transports, with the real store behind it
(write-ahead audit trail, traces, costs): a real MCP client session talks to it."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest
from mcp.client.streamable_http import streamable_http_client
from tests.mcp.conftest import PYTHON, SERVERS, text
from typer.testing import CliRunner

from mcp import ClientSession, StdioServerParameters, stdio_client
from opsgate.cli.main import app
from opsgate.mcp import TokenStore

# real proxy processes over both transports: make test (CI) runs them
pytestmark = pytest.mark.slow

SHOP = [PYTHON, str(SERVERS / "shop.py")]
OPSGATE = [PYTHON, "-m", "opsgate.cli.main"]


def proxy_args(policy: Path) -> list[str]:
    return ["mcp-proxy", "--policy", str(policy), "--workflow", "support", "--no-lock"]


async def test_stdio_end_to_end_with_the_audit_trail(policy_file: Path) -> None:
    params = StdioServerParameters(
        command=PYTHON,
        args=[
            *OPSGATE[1:],
            *proxy_args(policy_file),
            "--invoker",
            "ana",
            "--agent",
            "bot",
            "--",
            *SHOP,
        ],
        env={"OPSGATE_HOME": os.environ["OPSGATE_HOME"]},
    )
    async with stdio_client(params) as (read, write), ClientSession(read, write) as client:
        await client.initialize()
        assert "refund" in [t.name for t in (await client.list_tools()).tools]
        assert not (await client.call_tool("get_ticket", {"ticket_id": "T-1"})).is_error
        attack = await client.call_tool("refund", {"order_id": "ORD-666", "amount": 999})
        assert attack.is_error and "untrusted_derivation" in text(attack)
    result = CliRunner().invoke(app, ["audit", "verify"])
    assert result.exit_code == 0, result.output


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def http_proxy(policy: Path, tokens: Path) -> Iterator[str]:
    port = _free_port()
    process = subprocess.Popen(
        [
            *OPSGATE,
            *proxy_args(policy),
            "--http",
            f"127.0.0.1:{port}",
            "--tokens",
            str(tokens),
            "--",
            *SHOP,
        ],
        stdin=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            assert process.poll() is None, "the proxy exited"
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
                break
            time.sleep(0.1)
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


async def test_http_end_to_end_with_a_bearer_token(tmp_path: Path, policy_file: Path) -> None:
    store = TokenStore(tmp_path / "tokens.json")
    token, _ = store.create("ana", "bot")
    assert token not in (tmp_path / "tokens.json").read_text()  # only its hash at rest
    with http_proxy(policy_file, tmp_path / "tokens.json") as url:
        for bad in ({}, {"Authorization": "Bearer ogm_wrong"}, {"Authorization": token}):
            async with httpx2.AsyncClient() as plain:
                response = await plain.post(url, headers=bad, json={})
            assert response.status_code == 401, bad
        headers = {"Authorization": f"Bearer {token}"}
        async with (
            httpx2.AsyncClient(headers=headers) as http,
            streamable_http_client(url, http_client=http) as (read, write),
            ClientSession(read, write) as client,
        ):
            await client.initialize()
            assert "get_ticket" in [t.name for t in (await client.list_tools()).tools]
            assert not (await client.call_tool("get_ticket", {"ticket_id": "T-1"})).is_error
            attack = await client.call_tool("refund", {"order_id": "ORD-666", "amount": 999})
            assert attack.is_error and "untrusted_derivation" in text(attack)
    runs = CliRunner().invoke(app, ["runs", "list", "--invoker", "ana", "--agent", "bot"])
    assert runs.exit_code == 0 and "ana" in runs.output, runs.output  # the token's identity
    assert CliRunner().invoke(app, ["audit", "verify"]).exit_code == 0
