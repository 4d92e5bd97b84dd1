"""A test MCP server (the SDK's low-level `Server`) whose resources can be subscribed to,
and that says when a resource, its resources or its prompts change; and whose tools ask the
client for a model's message (sampling) or a person's answer (elicitation) in mid-call.

Tools: ``touch(uri)`` sends ``notifications/resources/updated`` for ``uri`` (subscribed or
not: the proxy must relay it only to the sessions subscribed), ``grow`` sends the resources
and prompts ``list_changed``, ``subscribed`` lists the URIs subscribed to now, ``crash``
dies, ``ask_model(question)`` and ``ask_person(question)`` ask the client and return its
answer's text, ``count(n, say)`` reports its progress n times (the message ``say`` and
the step; one more notification under a token it was not given) and returns the progress
token it was given, ``roots`` the roots the client gives it (or why none), ``log(n, say)`` logs n
warnings. Served over
stdio.
"""

from __future__ import annotations

import json
import os
from typing import Any

import anyio
import mcp_types as types
from mcp.server.lowlevel import NotificationOptions, Server

SUBSCRIBED: set[str] = set()
READ = types.ToolAnnotations(read_only_hint=True)
RESOURCES = ["feed://status", "feed://other"]


def _tool(name: str, **props: str) -> types.Tool:
    schema = {
        "type": "object",
        "properties": {key: {"type": kind} for key, kind in props.items()},
        "required": list(props),
    }
    return types.Tool(name=name, description=f"{name}.", input_schema=schema, annotations=READ)


async def list_tools(ctx: Any, params: Any) -> types.ListToolsResult:
    return types.ListToolsResult(
        tools=[
            _tool("touch", uri="string"),
            _tool("grow"),
            _tool("subscribed"),
            _tool("crash"),
            _tool("ask_model", question="string"),
            _tool("ask_person", question="string"),
            _tool("count", n="integer", say="string"),
            _tool("roots"),
            _tool("log", n="integer", say="string"),
        ]
    )


def _text(value: str) -> types.CallToolResult:
    return types.CallToolResult(content=[types.TextContent(type="text", text=value)])


async def call_tool(ctx: Any, params: types.CallToolRequestParams) -> types.CallToolResult:
    args = params.arguments or {}
    if params.name == "touch":
        await ctx.session.send_resource_updated(args["uri"])
        return _text("touched")
    if params.name == "grow":
        await ctx.session.send_resource_list_changed()
        await ctx.session.send_prompt_list_changed()
        return _text("grown")
    if params.name == "subscribed":
        return _text(json.dumps(sorted(SUBSCRIBED)))
    if params.name == "crash":
        os._exit(3)
    if params.name == "ask_model":
        message = types.SamplingMessage(
            role="user", content=types.TextContent(type="text", text=args["question"])
        )
        sampled = await ctx.session.create_message(  # asking for every server's context
            [message], max_tokens=50, include_context="allServers"
        )
        return _text(f"the model said: {getattr(sampled.content, 'text', '?')}")
    if params.name == "ask_person":
        schema = {"type": "object", "properties": {"answer": {"type": "string"}}}
        said = await ctx.session.elicit_form(args["question"], schema)
        return _text(f"the person {said.action}: {json.dumps(said.content)}")
    if params.name == "count":
        token = (params.meta or {}).get("progress_token")
        if token is not None:
            await ctx.session.send_progress_notification("not-given", 0.5, 1.0, "stray")
            for step in range(1, args["n"] + 1):
                message = f"{args['say']} {step}" if args["say"] else None
                await ctx.session.send_progress_notification(token, step, args["n"], message)
        return _text(json.dumps(token))
    if params.name == "log":
        for step in range(args["n"]):
            await ctx.session.send_log_message("warning", f"{args['say']} {step}", "feeds.log")
        return _text("logged")
    if params.name == "roots":  # the roots the client (the proxy) gives, or why none
        try:
            listed = await ctx.session.list_roots()
        except Exception as exc:
            return _text(f"no roots: {exc}")
        return _text(json.dumps([str(root.uri) for root in listed.roots]))
    return types.CallToolResult(content=[], is_error=True)


async def list_resources(ctx: Any, params: Any) -> types.ListResourcesResult:
    return types.ListResourcesResult(
        resources=[types.Resource(uri=uri, name=uri.split("/")[-1]) for uri in RESOURCES]
    )


async def read_resource(ctx: Any, params: types.ReadResourceRequestParams) -> Any:
    text = f"{params.uri} is fine"
    return types.ReadResourceResult(
        contents=[types.TextResourceContents(uri=str(params.uri), text=text)]
    )


async def subscribe(ctx: Any, params: types.SubscribeRequestParams) -> types.EmptyResult:
    SUBSCRIBED.add(str(params.uri))
    return types.EmptyResult()


async def unsubscribe(ctx: Any, params: types.UnsubscribeRequestParams) -> types.EmptyResult:
    SUBSCRIBED.discard(str(params.uri))
    return types.EmptyResult()


server = Server(
    "feeds",
    on_list_tools=list_tools,
    on_call_tool=call_tool,
    on_list_resources=list_resources,
    on_read_resource=read_resource,
    on_subscribe_resource=subscribe,
    on_unsubscribe_resource=unsubscribe,
)
CHANGES = NotificationOptions(prompts_changed=True, resources_changed=True, tools_changed=True)


async def main() -> None:
    from mcp.server.stdio import stdio_server

    async with stdio_server() as (read, write):
        await server.run(read, write, server.create_initialization_options(CHANGES))


if __name__ == "__main__":
    anyio.run(main)
