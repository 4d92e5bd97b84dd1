"""Serving the console with uvicorn: loopback by default, a warning when bound elsewhere."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from pathlib import Path

import uvicorn

from opsgate.contracts import Toolbelt
from opsgate.models import load_router_config
from opsgate.policy import load_policy
from opsgate.server._app import create_app
from opsgate.server._console import Console

__all__ = ["DEFAULT_HOST", "DEFAULT_PORT", "is_loopback", "serve"]

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8700


def is_loopback(host: str) -> bool:
    """Whether ``host`` is reachable from this machine only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def serve(
    url: str | None,
    *,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    router: Path | None = None,
    policy: Path | None = None,
    tools: str | None = None,
    warn: Callable[[str], None] = print,
) -> None:
    """Serve the console over the database ``url`` until interrupted (``router``: the router
    file whose workflow budgets the Overview shows).

    ``policy`` (with its ``tools`` module when the policy does not name it) is the policy
    in force, for the Autonomy page.

    Raises:
        ConfigError: the router file does not load.
        PolicyError: the policy does not load.
    """
    settings = load_router_config(router) if router is not None else None
    if not is_loopback(host):
        warn(
            f"warning: the console is bound to `{host}`, reachable from other machines: "
            "put it behind TLS (cookies are then Secure) and give out viewer tokens by default"
        )
    compiled = None
    if policy is not None:
        compiled = load_policy(policy, Toolbelt.from_module(tools) if tools else None)
    app = create_app(Console(url, router=settings, policy=compiled))
    uvicorn.run(app, host=host, port=port, log_level="warning", proxy_headers=True)
