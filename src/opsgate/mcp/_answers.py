"""The MCP requests the proxy answers, as JSON-RPC answers: shared by its stdio server
(`opsgate.mcp._line_server`) and its streamable-HTTP server (`opsgate.mcp._http_server`).

Each request's params are checked with the SDK's model for that method; the handlers are
`opsgate.mcp._handlers.Handlers` (what the SDK's server calls in the other transports);
results are shaped for the protocol version the session agreed on, as the SDK does.
Unknown methods are ``-32601``, bad params ``-32602``, a handler's failure ``-32603``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import mcp_types
from mcp_types.methods import serialize_server_result
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS, LATEST_HANDSHAKE_VERSION
from pydantic import BaseModel, ValidationError

from opsgate.mcp._handlers import Handlers
from opsgate.mcp._proxy import ProxyError
from opsgate.mcp._rpc import error_message
from opsgate.mcp._text import one_line
from opsgate.mcp._upstream import UpstreamError

if TYPE_CHECKING:
    from opsgate.mcp._proxy import McpProxy, RequestContext

__all__ = ["Answers", "error_message"]

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603

NAME = "opsgate-mcp-proxy"
VERSION = "0.1.0"
INSTRUCTIONS = "Tools pass opsgate's policy gate; a refused call says why."
#: What the proxy can do: tools that may change (pins, restarts), resources (subscribed
#: to at their upstream) and prompts whose changes are relayed.
CAPABILITIES: dict[str, Any] = {
    "completions": {},
    "prompts": {"listChanged": True},
    "resources": {"listChanged": True, "subscribe": True},
    "tools": {"listChanged": True},
}

Handler = Callable[[Any, Any], Awaitable[BaseModel]]


class Refused(Exception):
    """A request answered with a JSON-RPC error."""

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.code, self.message, self.data = code, message, data


class Answers:
    """The proxy's answers to MCP requests."""

    def __init__(self, proxy: McpProxy) -> None:
        self.proxy = proxy
        handlers = Handlers(proxy)
        paginated = mcp_types.PaginatedRequestParams
        self._methods: dict[str, tuple[Handler, type[BaseModel], bool]] = {
            # method: (handler, its params' model, whether params may be left out)
            "tools/call": (handlers.call_tool, mcp_types.CallToolRequestParams, False),
            "tools/list": (handlers.list_tools, paginated, True),
            "resources/list": (handlers.list_resources, paginated, True),
            "resources/templates/list": (handlers.list_resource_templates, paginated, True),
            "resources/read": (handlers.read_resource, mcp_types.ReadResourceRequestParams, False),
            "resources/subscribe": (handlers.subscribe, mcp_types.SubscribeRequestParams, False),
            "resources/unsubscribe": (
                handlers.unsubscribe,
                mcp_types.UnsubscribeRequestParams,
                False,
            ),
            "prompts/list": (handlers.list_prompts, paginated, True),
            "prompts/get": (handlers.get_prompt, mcp_types.GetPromptRequestParams, False),
            "completion/complete": (handlers.complete, mcp_types.CompleteRequestParams, False),
        }

    @staticmethod
    def agreed_version(params: Any) -> str:
        """The version an ``initialize`` with ``params`` agrees on (the client's when the
        proxy speaks it, else the proxy's latest).

        Raises:
            Refused: no version asked.
        """
        asked = params.get("protocolVersion") if isinstance(params, dict) else None
        if not isinstance(asked, str):
            raise Refused(INVALID_PARAMS, "Invalid request parameters", "protocolVersion")
        return asked if asked in HANDSHAKE_PROTOCOL_VERSIONS else LATEST_HANDSHAKE_VERSION

    @staticmethod
    def initialized(version: str) -> dict[str, Any]:
        """The ``initialize`` result for ``version``."""
        return {
            "protocolVersion": version,
            "capabilities": CAPABILITIES,
            "serverInfo": {"name": NAME, "version": VERSION},
            "instructions": INSTRUCTIONS,
        }

    async def answer(
        self, context: RequestContext, version: str, ident: Any, method: str, params: Any
    ) -> dict[str, Any]:
        """The JSON-RPC answer to one request (``initialize`` is the transport's)."""
        try:
            result = await self._result(context, version, method, params)
        except Refused as refused:
            return error_message(ident, refused.code, refused.message, refused.data)
        except (ProxyError, UpstreamError) as exc:  # said in the proxy's words: not a bug
            return error_message(ident, INTERNAL_ERROR, one_line(exc))
        except Exception as exc:  # a bug: the request fails, the server goes on
            self.proxy.counts["internal_error"] += 1
            self.proxy.say(f"internal error on `{method}`: {type(exc).__name__}: {one_line(exc)}")
            return error_message(ident, INTERNAL_ERROR, f"internal error ({type(exc).__name__})")
        return {"jsonrpc": "2.0", "id": ident, "result": result}

    async def _result(
        self, context: RequestContext, version: str, method: str, params: Any
    ) -> dict[str, Any]:
        if method == "ping":
            return {}
        found = self._methods.get(method)
        if found is None:
            raise Refused(METHOD_NOT_FOUND, "Method not found", method)
        handler, model, optional = found
        if params is None and optional:
            parsed = None
        else:
            try:
                parsed = model.model_validate(params, by_name=False)
            except ValidationError as exc:
                raise Refused(INVALID_PARAMS, "Invalid request parameters", _first(exc)) from None
        answer = await handler(context, parsed)
        dumped = answer.model_dump(by_alias=True, mode="json", exclude_none=True)
        # as the SDK does: only what the agreed version's schema has (no 2026-era fields)
        return serialize_server_result(method, version, dumped)


def _first(exc: ValidationError) -> str:
    """The first problem of a params check, in a line (never the client's values)."""
    errors = exc.errors(include_input=False, include_url=False)
    if not errors:
        return ""
    where = ".".join(str(part) for part in errors[0].get("loc", ()))
    return f"{where}: {errors[0].get('msg', '')}" if where else str(errors[0].get("msg", ""))
