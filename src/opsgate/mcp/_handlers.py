"""The proxy as a low-level MCP server: each request handler hands over to `McpProxy`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import mcp_types
from mcp.server.lowlevel import Server

from opsgate.mcp._text import one_line

if TYPE_CHECKING:
    from opsgate.mcp._proxy import McpProxy
    from opsgate.mcp._proxy import RequestContext as Ctx

__all__ = ["Handlers", "build_server"]


def build_server(proxy: McpProxy) -> Server[Any]:
    """The server (without the SDK's per-request OpenTelemetry span: opsgate's own traces
    cover every call)."""
    handlers = Handlers(proxy)
    server: Server[Any] = Server(
        "opsgate-mcp-proxy",
        version="0.1.0",
        instructions="Tools pass opsgate's policy gate; a refused call says why.",
        on_list_tools=handlers.list_tools,
        on_call_tool=handlers.call_tool,
        on_list_resources=handlers.list_resources,
        on_list_resource_templates=handlers.list_resource_templates,
        on_read_resource=handlers.read_resource,
        on_subscribe_resource=handlers.subscribe,
        on_unsubscribe_resource=handlers.unsubscribe,
        on_list_prompts=handlers.list_prompts,
        on_get_prompt=handlers.get_prompt,
        on_completion=handlers.complete,
    )
    server.middleware = []
    return server


class Handlers:
    """The MCP requests the proxy answers, for the SDK's server (HTTP) and the stdio
    `opsgate.mcp._line_server.LineServer` alike."""

    def __init__(self, proxy: McpProxy) -> None:
        self.proxy = proxy

    async def list_tools(
        self, ctx: Ctx, params: mcp_types.PaginatedRequestParams | None
    ) -> mcp_types.ListToolsResult:
        proxy = self.proxy
        try:
            tools = proxy.visible_tools(proxy.session(ctx))
        except Exception as exc:  # fail closed: nothing is offered
            proxy.counts["internal_error"] += 1
            proxy.say(f"internal error listing tools: {type(exc).__name__}: {one_line(exc)}")
            tools = []
        return mcp_types.ListToolsResult(tools=tools)

    async def call_tool(
        self, ctx: Ctx, params: mcp_types.CallToolRequestParams
    ) -> mcp_types.CallToolResult:
        token = params.meta.get("progress_token") if params.meta else None
        return await self.proxy.call(ctx, params.name, params.arguments or {}, progress=token)

    async def list_resources(
        self, ctx: Ctx, params: mcp_types.PaginatedRequestParams | None
    ) -> mcp_types.ListResourcesResult:
        self.proxy.session(ctx)
        return mcp_types.ListResourcesResult(resources=await self.proxy.list_resources())

    async def list_resource_templates(
        self, ctx: Ctx, params: mcp_types.PaginatedRequestParams | None
    ) -> mcp_types.ListResourceTemplatesResult:
        self.proxy.session(ctx)
        templates = await self.proxy.list_resource_templates()
        return mcp_types.ListResourceTemplatesResult(resource_templates=templates)

    async def read_resource(
        self, ctx: Ctx, params: mcp_types.ReadResourceRequestParams
    ) -> mcp_types.ReadResourceResult:
        return await self.proxy.read_resource(ctx, str(params.uri))

    async def subscribe(
        self, ctx: Ctx, params: mcp_types.SubscribeRequestParams
    ) -> mcp_types.EmptyResult:
        await self.proxy.subscribe(ctx, str(params.uri))
        return mcp_types.EmptyResult()

    async def unsubscribe(
        self, ctx: Ctx, params: mcp_types.UnsubscribeRequestParams
    ) -> mcp_types.EmptyResult:
        await self.proxy.unsubscribe(ctx, str(params.uri))
        return mcp_types.EmptyResult()

    async def complete(
        self, ctx: Ctx, params: mcp_types.CompleteRequestParams
    ) -> mcp_types.CompleteResult:
        return mcp_types.CompleteResult(completion=await self.proxy.complete(ctx, params))

    async def list_prompts(
        self, ctx: Ctx, params: mcp_types.PaginatedRequestParams | None
    ) -> mcp_types.ListPromptsResult:
        self.proxy.session(ctx)
        return mcp_types.ListPromptsResult(prompts=await self.proxy.list_prompts())

    async def get_prompt(
        self, ctx: Ctx, params: mcp_types.GetPromptRequestParams
    ) -> mcp_types.GetPromptResult:
        return await self.proxy.get_prompt(ctx, params.name, dict(params.arguments or {}))
