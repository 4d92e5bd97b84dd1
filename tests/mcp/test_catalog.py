"""Where an upstream tool's scope and impact come from: the policy, then `mcp.yaml`, then
the server's hints (defaults only)."""

from __future__ import annotations

import mcp_types
import pytest

from opsgate.mcp import ToolSpec
from opsgate.mcp._catalog import tool_kind
from opsgate.policy import ToolPolicy


def tool(**hints: bool) -> mcp_types.Tool:
    annotations = mcp_types.ToolAnnotations(**hints) if hints else None
    return mcp_types.Tool(name="t", inputSchema={"type": "object"}, annotations=annotations)


@pytest.mark.parametrize(
    ("hints", "spec", "said", "kind"),
    [
        ({}, None, None, ("write", "high")),  # MCP's defaults: a destructive write
        ({"readOnlyHint": True}, None, None, ("read", "low")),
        ({"destructiveHint": False}, None, None, ("write", "low")),
        ({"readOnlyHint": True}, ToolSpec(scope="write"), None, ("write", "high")),
        (
            {"readOnlyHint": True},
            ToolSpec(scope="draft"),
            ToolPolicy(scope="write"),
            ("write", "high"),
        ),
        ({}, ToolSpec(scope="draft", impact="low"), ToolPolicy(scope="read"), ("read", "low")),
        ({}, None, ToolPolicy(impact="low"), ("write", "low")),
        ({"readOnlyHint": True}, None, ToolPolicy(), ("read", "low")),  # says nothing of it
    ],
)
def test_the_policy_then_the_config_then_the_hints(
    hints: dict[str, bool],
    spec: ToolSpec | None,
    said: ToolPolicy | None,
    kind: tuple[str, str],
) -> None:
    assert tool_kind(tool(**hints), spec, said) == kind
