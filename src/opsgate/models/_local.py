"""The models a router file asks opsgate to serve itself, made ready in one place.

A router file may name the optional larger local tier (``optional: true``); where its
weights are not installed, it is left out (its roles move to their fallbacks, escalation to
it is off) rather than failing, so one shipped file serves both machines. The embedded
models that remain are served by one `EmbeddedPool`, started up front (a missing or broken
model is a `ConfigError` before any run) and stopped after.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from opsgate.models._embedded import EMBEDDED_MODELS, EmbeddedPool, model_available
from opsgate.models._router import EmbeddedEndpoint
from opsgate.models._router_config import RouterConfig

__all__ = ["absent_models", "local_models", "resolve_local"]

#: Whether an embedded model id can be served here (`model_available` by default).
Availability = Callable[[str], bool]


def _available(data_dir: Path | None) -> Availability:
    def check(model_id: str) -> bool:
        spec = EMBEDDED_MODELS.get(model_id)
        return spec is not None and model_available(spec, data_dir)

    return check


def absent_models(config: RouterConfig, available: Availability) -> list[str]:
    """The optional embedded models of ``config`` that cannot be served here."""
    return [
        name
        for name, entry in config.models.items()
        if entry.optional and entry.provider == "embedded" and not available(entry.model)
    ]


def resolve_local(
    config: RouterConfig, *, data_dir: Path | None = None, available: Availability | None = None
) -> RouterConfig:
    """``config`` without the optional local models that are not installed."""
    return config.without(absent_models(config, available or _available(data_dir)))


@contextmanager
def local_models(
    config: RouterConfig,
    *,
    data_dir: Path | None = None,
    available: Availability | None = None,
    **server_options: Any,
) -> Iterator[tuple[RouterConfig, EmbeddedEndpoint | None, EmbeddedPool | None]]:
    """(the config in force here, the embedded endpoint or None, the pool or None).

    Raises:
        ConfigError: an embedded model cannot be served (not installed, fails to verify).
        ModelError: its server does not start.
    """
    resolved = resolve_local(config, data_dir=data_dir, available=available)
    wanted = [m.model for m in resolved.models.values() if m.provider == "embedded"]
    if not wanted:
        yield resolved, None, None
        return
    if data_dir is not None:
        server_options.setdefault("data_dir", data_dir)
    pool = EmbeddedPool(wanted, **server_options)
    with pool:
        yield resolved, pool.endpoint, pool
