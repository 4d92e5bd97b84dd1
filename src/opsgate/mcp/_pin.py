"""`opsgate mcp lock`: what the upstreams list now, pinned; and how it differs from a lock."""

from __future__ import annotations

import asyncio
from pathlib import Path

from opsgate.errors import ConfigError
from opsgate.mcp._catalog import exposed_name
from opsgate.mcp._lock import LockEntry, LockFile, definition_hash
from opsgate.mcp._serve import ProxyOptions, read_config, resolve_upstreams, upstream_specs
from opsgate.mcp._upstream import Upstream, UpstreamError
from opsgate.policy import parse_policy

__all__ = ["current_pins", "drift"]


async def current_pins(options: ProxyOptions) -> LockFile:
    """Pins of the tools the upstreams list now: those the workflow names when a policy
    and workflow are given, else every tool.

    Raises:
        ConfigError: bad config, unknown workflow, or an upstream that cannot be listed
            (a lock is never written from a partial listing).
    """
    config = read_config(options)
    named: set[str] | None = None
    if options.policy is not None:
        document, _ = parse_policy(options.policy)
        if options.workflow not in document.workflows:
            known = ", ".join(sorted(document.workflows)) or "none"
            raise ConfigError(f"the policy has no workflow `{options.workflow}` ({known})")
        named = set(document.workflows[options.workflow].tools)
    specs = upstream_specs(options, config)
    base = options.config.parent if options.config else Path(".")
    namespace = config.namespace and not options.command
    upstreams = [
        Upstream(t, connect_timeout_s=config.connect_timeout_seconds)
        for t in resolve_upstreams(specs, base).values()
    ]
    try:
        listings = await asyncio.gather(*(u.list_tools() for u in upstreams))
    except UpstreamError as exc:
        raise ConfigError(f"cannot list the upstream tools: {exc}") from None
    finally:
        for upstream in upstreams:
            await upstream.close()
    pins: dict[str, LockEntry] = {}
    for upstream, tools in zip(upstreams, listings, strict=True):
        for tool in tools:
            name = exposed_name(upstream.name, tool.name, namespace)
            if name is None or name in pins or (named is not None and name not in named):
                continue
            pins[name] = LockEntry(upstream.name, tool.name, definition_hash(tool))
    return LockFile(pins)


def drift(locked: LockFile | None, now: LockFile) -> list[str]:
    """What differs between a lock and the pins of now, one line each (empty: none)."""
    if locked is None:
        return ["there is no lock"]
    lines = []
    for name in sorted(set(locked.tools) | set(now.tools)):
        old, new = locked.tools.get(name), now.tools.get(name)
        if old is None:
            lines.append(f"new: `{name}` is not pinned")
        elif new is None:
            lines.append(f"gone: `{name}` is pinned but no upstream lists it")
        elif old.sha256 != new.sha256:
            lines.append(f"changed: `{name}` differs from its pin")
    return lines
