"""Tool results between MCP and the gateway: JSON data to label and record, bounded in
size, and back; and the tool errors a client gets for everything that did not run."""

from __future__ import annotations

from typing import Any

import mcp_types
import orjson

__all__ = ["as_data", "error_result", "from_data", "text_of"]

TRUNCATED_KEY = "opsgate/truncated"


def as_data(result: mcp_types.CallToolResult, limit: int) -> dict[str, Any]:
    """The result as JSON data (``content``, ``structuredContent``), cut to ``limit`` bytes
    with a marker; the full size stays in ``_meta`` (so the audit trail keeps it)."""
    data: dict[str, Any] = {
        "content": [
            block.model_dump(by_alias=True, exclude_none=True, mode="json")
            for block in result.content
        ]
    }
    if result.structured_content is not None:
        data["structuredContent"] = result.structured_content
    size = len(orjson.dumps(data))
    if size <= limit:
        return data
    return _truncated(data["content"], size, limit)


def _truncated(blocks: list[dict[str, Any]], size: int, limit: int) -> dict[str, Any]:
    marker = f"[opsgate: result truncated: {size} bytes, limit {limit}]"
    budget = max(0, limit - len(marker) - 256)
    kept: list[dict[str, Any]] = []
    for block in blocks:
        if budget <= 0:
            break
        if block.get("type") == "text":
            text = str(block.get("text", ""))
            cut = text.encode()[:budget].decode("utf-8", "ignore")
            kept.append({"type": "text", "text": cut})
            budget -= len(cut.encode())
        else:  # an image or a resource cannot be cut: it is left out, and said so
            kept.append(
                {"type": "text", "text": f"[opsgate: a {block.get('type')} block left out]"}
            )
    kept.append({"type": "text", "text": marker})
    return {"content": kept, "_meta": {TRUNCATED_KEY: {"bytes": size, "limit": limit}}}


def from_data(data: Any) -> mcp_types.CallToolResult:
    """The CallToolResult a client gets for a result the gate let through."""
    if not isinstance(data, dict):
        raise TypeError("a result is JSON data with `content`")
    fields: dict[str, Any] = {"content": data.get("content") or []}
    if "structuredContent" in data:
        fields["structuredContent"] = data["structuredContent"]
    if "_meta" in data:
        fields["_meta"] = data["_meta"]
    return mcp_types.CallToolResult.model_validate(fields)


def error_result(text: str, meta: dict[str, Any] | None = None) -> mcp_types.CallToolResult:
    """A tool error (``isError: true``): what was refused and why, never a protocol error."""
    fields: dict[str, Any] = {"content": [{"type": "text", "text": text}], "isError": True}
    if meta:
        fields["_meta"] = {"opsgate": meta}
    return mcp_types.CallToolResult.model_validate(fields)


def text_of(result: mcp_types.CallToolResult, limit: int = 4000) -> str:
    """The text of a result's text blocks (an upstream's error message), bounded."""
    parts = [b.text for b in result.content if isinstance(b, mcp_types.TextContent)]
    text = "\n".join(parts) or "(no text)"
    return text if len(text) <= limit else text[: limit - 3] + "..."
