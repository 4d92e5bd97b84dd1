"""A test MCP server listing one tool with an invalid input schema, one with a valid one."""

from __future__ import annotations

from typing import Any

import anyio
import mcp_types as types
from mcp.server.lowlevel import Server
from mcp.server.stdio import stdio_server

READ = types.ToolAnnotations(read_only_hint=True)


async def list_tools(ctx: Any, params: Any) -> types.ListToolsResult:
    return types.ListToolsResult(
        tools=[
            types.Tool(
                name="broken",
                description="Broken.",
                annotations=READ,
                input_schema={"type": "object", "properties": {"x": {"type": "nonsense"}}},
            ),
            types.Tool(
                name="fine",
                description="Fine.",
                annotations=READ,
                input_schema={"type": "object", "properties": {"x": {"type": "integer"}}},
            ),
        ]
    )


async def call_tool(ctx: Any, params: types.CallToolRequestParams) -> types.CallToolResult:
    return types.CallToolResult(content=[types.TextContent(type="text", text=f"ran {params.name}")])


server = Server("bad-schema", on_list_tools=list_tools, on_call_tool=call_tool)


async def main() -> None:
    async with stdio_server() as (read, write):
        await server.run(read, write, server.create_initialization_options())


if __name__ == "__main__":
    anyio.run(main)
