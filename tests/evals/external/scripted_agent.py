"""A scripted external agent: reads its task on stdin, makes the calls its script names for
the task (``$OPSGATE_TASK``) through the opsgate MCP proxy (``$OPSGATE_MCP_URL``, bearer
token ``$OPSGATE_MCP_TOKEN``), and prints its answer.

    python scripted_agent.py SCRIPT.json

``SCRIPT`` maps a task id to ``{"calls": [[tool, args], ...], "answer": "..."}``; the
answer may name ``{results}`` (each call's tool and whether it was an error) and
``{tools}`` (the tools the proxy listed).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

import httpx2
from mcp.client.streamable_http import streamable_http_client

from mcp import ClientSession


async def act(url: str, token: str, calls: list[list[Any]]) -> tuple[list[str], list[str]]:
    """Make ``calls`` through the proxy at ``url``: (the tools listed, each call's outcome)."""
    headers = {"Authorization": f"Bearer {token}"}
    async with (
        httpx2.AsyncClient(headers=headers) as http,
        streamable_http_client(url, http_client=http) as streams,
        ClientSession(*streams) as session,
    ):
        await session.initialize()
        tools = sorted(t.name for t in (await session.list_tools()).tools)
        results = []
        for tool, args in calls:
            result = await session.call_tool(tool, args)
            results.append(f"{tool}={'error' if result.is_error else 'ok'}")
    return tools, results


def main() -> None:
    script = json.loads(Path(sys.argv[1]).read_text())[os.environ["OPSGATE_TASK"]]
    sys.stdin.read()
    tools, results = asyncio.run(
        act(os.environ["OPSGATE_MCP_URL"], os.environ["OPSGATE_MCP_TOKEN"], script["calls"])
    )
    print(script["answer"].format(results=" ".join(results), tools=",".join(tools)))


if __name__ == "__main__":
    main()
