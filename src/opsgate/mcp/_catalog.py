"""What the proxy offers: upstream tools turned into contracts, bound to the policy.

Built from the upstreams' listings, the lock and the policy (again whenever a listing or
the lock changes). Only a tool that the workflow names, whose definition matches its pin
and whose schema is valid becomes a contract; the others are hidden, and those the policy
names are refused with the reason kept here.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import mcp_types

from opsgate.contracts import Impact, Scope, Toolbelt, ToolContract, Trust, contract_from_schema
from opsgate.errors import ContractError
from opsgate.mcp._config import ToolSpec, UpstreamSpec
from opsgate.mcp._lock import LockEntry, LockFile, definition_hash
from opsgate.policy import CompiledPolicy, PolicyDocument, ToolPolicy

__all__ = ["Catalog", "Refusal", "build_catalog", "exposed_name"]

_MODEL_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_\-]{0,63}$")
SEPARATOR = "__"

ToolRunner = Callable[..., Awaitable[Any]]
MakeRunner = Callable[[str, str], ToolRunner]


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a tool the policy names cannot be called now."""

    reason: str  # tool_definition_changed, invalid_tool_schema, upstream_unavailable
    message: str


@dataclass
class Catalog:
    """One consistent view: contracts, the policy bound to them, and the refused tools.

    Attributes:
        toolbelt: Contracts of the tools that may be called (pinned, valid, named).
        policy: The policy bound to them (the workflow only; version of the whole file).
        tools: The MCP definition to show for each contract, under its exposed name.
        routes: Exposed name → (upstream, the upstream's own tool name).
        refused: Exposed name → why it is refused (named by the policy, not callable).
        pins: The pins in force (from the lock, or those taken at start).
    """

    toolbelt: Toolbelt
    policy: CompiledPolicy
    tools: dict[str, mcp_types.Tool]
    routes: dict[str, tuple[str, str]]
    refused: dict[str, Refusal] = field(default_factory=dict)
    pins: dict[str, LockEntry] = field(default_factory=dict)


def exposed_name(upstream: str, tool: str, namespace: bool) -> str | None:
    """The name a model sees (``git__commit``), or None when no model would accept it."""
    name = f"{upstream}{SEPARATOR}{tool}" if namespace else tool
    return name if _MODEL_NAME.match(name) else None


def listed(
    listings: Mapping[str, list[mcp_types.Tool]], namespace: bool
) -> dict[str, tuple[str, mcp_types.Tool]]:
    """Every listed tool a model could call, by exposed name (the first of duplicates)."""
    found: dict[str, tuple[str, mcp_types.Tool]] = {}
    for upstream, tools in listings.items():
        for tool in tools:
            name = exposed_name(upstream, tool.name, namespace)
            if name is not None and name not in found:
                found[name] = (upstream, tool)
    return found


def build_catalog(
    *,
    document: PolicyDocument,
    version: str,
    source: str,
    workflow: str,
    listings: Mapping[str, list[mcp_types.Tool]],
    down: Mapping[str, str],
    specs: Mapping[str, UpstreamSpec],
    lock: LockFile,
    namespace: bool,
    make_runner: MakeRunner,
) -> Catalog:
    """Bind what the upstreams list now to the policy's workflow, through the lock.

    Args:
        down: Upstreams that could not be listed, with why.
    """
    named = set(document.workflows[workflow].tools)
    available = listed(listings, namespace)
    contracts: list[ToolContract] = []
    tools: dict[str, mcp_types.Tool] = {}
    routes: dict[str, tuple[str, str]] = {}
    refused: dict[str, Refusal] = {}
    for name in sorted(named):
        if name not in available:
            refused[name] = _absent(name, lock, down)
            continue
        upstream, tool = available[name]
        digest = definition_hash(tool)
        state = lock.state(name, digest)
        if state != "pinned":
            refused[name] = Refusal("tool_definition_changed", _drift_message(name, state))
            continue
        spec = specs[upstream]
        said = document.workflows[workflow].tools.get(name)
        try:
            contract = _contract(name, tool, spec, said, make_runner(upstream, tool.name))
        except ContractError as exc:
            refused[name] = Refusal("invalid_tool_schema", str(exc))
            continue
        contracts.append(contract)
        tools[name] = tool
        routes[name] = (upstream, tool.name)
    toolbelt = Toolbelt(contracts)
    policy = CompiledPolicy(
        narrowed(document, workflow, set(tools)), toolbelt, version=version, source=source
    )
    return Catalog(toolbelt, policy, tools, routes, refused, dict(lock.tools))


def _absent(name: str, lock: LockFile, down: Mapping[str, str]) -> Refusal:
    entry = lock.tools.get(name)
    if entry is not None and entry.upstream in down:
        return Refusal(
            "upstream_unavailable",
            f"upstream `{entry.upstream}` is not available: {down[entry.upstream]}",
        )
    return Refusal("unknown_tool", f"no upstream lists `{name}`")


def _drift_message(name: str, state: str) -> str:
    if state == "new":
        return (
            f"`{name}` has no pin in the lock: hidden and refused until `opsgate mcp lock` pins it"
        )
    return (
        f"the definition of `{name}` changed since it was locked: hidden and refused until "
        "it is reviewed and locked again (`opsgate mcp lock`)"
    )


def tool_kind(
    tool: mcp_types.Tool, spec: ToolSpec | None, said: ToolPolicy | None = None
) -> tuple[Scope, Impact]:
    """Scope and impact: as the policy says (``said``), else as the config declares, else
    the server's hints (defaults only; MCP's own defaults make an unannotated tool a
    destructive write)."""
    hints = tool.annotations
    read_only = bool(hints and hints.read_only_hint)
    destructive = not (hints and hints.destructive_hint is False)
    scope: Scope = (
        (said.scope if said else None)
        or (spec.scope if spec else None)
        or ("read" if read_only else "write")
    )
    impact: Impact = (
        (said.impact if said else None)
        or (spec.impact if spec else None)
        or ("high" if scope == "write" and destructive else "low")
    )
    return scope, impact


def _contract(
    name: str,
    tool: mcp_types.Tool,
    spec: UpstreamSpec,
    said: ToolPolicy | None,
    runner: ToolRunner,
) -> ToolContract:
    tool_spec = spec.tools.get(tool.name)
    scope, impact = tool_kind(tool, tool_spec, said)
    output: Trust = (tool_spec.output if tool_spec and tool_spec.output else None) or spec.output
    return contract_from_schema(
        name,
        tool.description or tool.title or name,
        tool.input_schema,
        runner,
        scope=scope,
        impact=impact,
        output=output,
    )


def narrowed(document: PolicyDocument, workflow: str, usable: set[str]) -> PolicyDocument:
    """The document with only ``workflow`` and, in it, only the tools that can be called:
    a tool refused here is then unknown to the gate, which denies it."""
    wf = document.workflows[workflow]
    agents = {
        agent: override.model_copy(
            update={
                "tools": None
                if override.tools is None
                else [t for t in override.tools if t in usable]
            }
        )
        for agent, override in wf.agents.items()
    }
    narrowed = wf.model_copy(
        update={"tools": {k: v for k, v in wf.tools.items() if k in usable}, "agents": agents}
    )
    return document.model_copy(update={"workflows": {workflow: narrowed}})
