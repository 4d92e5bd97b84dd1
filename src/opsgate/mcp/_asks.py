"""Requests the proxy sends its own client (an upstream's sampling or elicitation, relayed),
matched with the client's answers: one per client session, for the stdio and HTTP servers;
the SDK's server (a file or terminal stdin) sends them through its own session
(`SdkClientChannel`).
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

import mcp_types
from mcp.shared.exceptions import MCPError
from pydantic import BaseModel, TypeAdapter

from opsgate.mcp._rpc import ERROR_CHARS, ConnectionClosed, RpcError, resolve_answer

__all__ = [
    "CLIENT_REQUESTS",
    "ClientAsks",
    "ClientChannel",
    "SdkClientChannel",
    "SdkSession",
    "answer_text",
    "asked_text",
    "relayed_params",
]

#: The requests an upstream may have relayed to the client, by the capability each needs.
CLIENT_REQUESTS = {"sampling/createMessage": "sampling", "elicitation/create": "elicitation"}


class ClientAsks:
    """The proxy's requests to one client still waiting for their answers."""

    def __init__(self) -> None:
        self.capabilities: dict[str, Any] = {}
        """What the client said it can do at ``initialize``."""
        self._ids = itertools.count(1)
        self._waiting: dict[str, asyncio.Future[Any]] = {}

    def take_capabilities(self, params: Any) -> None:
        """Keep what an ``initialize``'s params say the client can do."""
        found = params.get("capabilities") if isinstance(params, dict) else None
        self.capabilities = found if isinstance(found, dict) else {}

    def can(self, capability: str) -> bool:
        """Whether the client announced ``capability`` (``sampling``, ``elicitation``)."""
        return isinstance(self.capabilities.get(capability), dict)

    async def ask(self, send: Callable[[dict[str, Any]], None], method: str, params: Any) -> Any:
        """Send one request with ``send``; its ``result`` once the client answers.

        Raises:
            RpcError: the client answered with an error.
            ConnectionClosed: the client went away first.
        """
        ident = f"opsgate-{next(self._ids)}"
        answer: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiting[ident] = answer
        try:
            send({"jsonrpc": "2.0", "id": ident, "method": method, "params": params})
            return await answer
        finally:
            self._waiting.pop(ident, None)

    def answered(self, message: dict[str, Any]) -> bool:
        """Hand a client's answer to its request; False when no request waits for it."""
        ident = message.get("id")
        answer = self._waiting.pop(ident, None) if isinstance(ident, str) else None
        if answer is None or answer.done():
            return False
        resolve_answer(answer, message)
        return True

    def fail_all(self, why: str) -> None:
        """The client went away: every request still waiting fails."""
        waiting, self._waiting = self._waiting, {}
        for answer in waiting.values():
            if not answer.done():
                answer.set_exception(ConnectionClosed(why))


_RELAYED_PARAMS: dict[str, TypeAdapter[Any]] = {
    "sampling": TypeAdapter(mcp_types.CreateMessageRequestParams),
    "elicitation": TypeAdapter(mcp_types.ElicitRequestParams),
}


@runtime_checkable
class ClientChannel(Protocol):
    """A client session the proxy can send requests to (its stdio and HTTP servers'; the
    SDK server's, for a file or terminal stdin, through `SdkClientChannel`)."""

    asks: ClientAsks

    async def ask(self, method: str, params: Any) -> Any: ...


@runtime_checkable
class SdkSession(Protocol):
    """What the proxy uses of the SDK server's session to ask its client."""

    @property
    def client_capabilities(self) -> mcp_types.ClientCapabilities | None: ...

    async def send_request(self, request: Any, result_type: Any) -> Any: ...


#: The SDK's models of each relayed request and of its result.
_SDK_MODELS: dict[str, tuple[type[BaseModel], type[BaseModel]]] = {
    "sampling/createMessage": (mcp_types.CreateMessageRequest, mcp_types.CreateMessageResult),
    "elicitation/create": (mcp_types.ElicitRequest, mcp_types.ElicitResult),
}


class SdkClientChannel:
    """The SDK server's client session (a file or terminal stdin) as a `ClientChannel`:
    what its client announced, and its requests sent through the SDK's session."""

    def __init__(self, session: SdkSession) -> None:
        self.session = session
        self.asks = ClientAsks()
        announced = session.client_capabilities
        if announced is not None:
            self.asks.capabilities = announced.model_dump(
                by_alias=True, mode="json", exclude_none=True
            )

    async def ask(self, method: str, params: Any) -> Any:
        """Send the client one relayed request; its result as JSON data.

        Raises:
            RpcError: the client answered with an error.
        """
        request_model, result_model = _SDK_MODELS[method]
        request = request_model.model_validate({"method": method, "params": params}, by_name=False)
        try:
            result = await self.session.send_request(request, result_model)
        except MCPError as refused:
            raise RpcError(refused.code, str(refused.message)[:ERROR_CHARS]) from None
        return result.model_dump(by_alias=True, mode="json", exclude_none=True)


def relayed_params(kind: str, params: Any) -> dict[str, Any]:
    """What is relayed of an upstream's request: checked as MCP params, and for sampling
    without context from the client's other servers (through the proxy, "this server"
    is every upstream: an upstream never asks for the others' context).

    Raises:
        RpcError: not valid params for the request.
    """
    try:
        _RELAYED_PARAMS[kind].validate_python(params)
    except Exception:
        raise RpcError(-32602, f"invalid {kind} request parameters") from None
    sent = dict(params)
    if kind == "sampling" and sent.get("includeContext") not in (None, "none"):
        sent["includeContext"] = "none"
    return sent


def asked_text(kind: str, params: dict[str, Any]) -> str:
    """What an upstream asks, as text for the run's record (its messages, or the question)."""
    if kind == "elicitation":
        return str(params.get("message", ""))
    lines = [str(params.get("systemPrompt") or "")]
    for message in params.get("messages") or ():
        content = message.get("content") if isinstance(message, dict) else None
        parts = content if isinstance(content, list) else [content]
        lines += [str(p.get("text", "")) for p in parts if isinstance(p, dict)]
    return "\n".join(line for line in lines if line)


def answer_text(kind: str, answer: Any) -> str:
    """What the client answered, as text for the run's record."""
    if not isinstance(answer, dict):
        return repr(answer)
    if kind == "elicitation":
        return f"{answer.get('action')}: {answer.get('content')}"
    content = answer.get("content")
    parts = content if isinstance(content, list) else [content]
    return "\n".join(str(p.get("text", "")) for p in parts if isinstance(p, dict))
