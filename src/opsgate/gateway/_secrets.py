"""Secrets: read at execution from a store, handed only to the tool that declared them,
and scrubbed from every record."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, Protocol

__all__ = ["EnvSecretStore", "MappingSecretStore", "SecretStore", "scrub"]

_MIN_SECRET_LEN = 4  # shorter values would redact ordinary words


class SecretStore(Protocol):
    """Where the gateway reads secrets from."""

    def get(self, name: str) -> str | None:
        """The secret's value, or None when it is not configured."""
        ...


class EnvSecretStore:
    """Secrets from environment variables (optionally with a prefix): the default."""

    def __init__(self, prefix: str = "") -> None:
        self._prefix = prefix

    def get(self, name: str) -> str | None:
        """``os.environ[prefix + name]``, if set and not empty."""
        return os.environ.get(self._prefix + name) or None


class MappingSecretStore:
    """Secrets from a mapping (tests, or a vault client's snapshot)."""

    def __init__(self, values: Mapping[str, str]) -> None:
        self._values = dict(values)

    def get(self, name: str) -> str | None:
        """The value for ``name``, if present."""
        return self._values.get(name)


def scrub(value: Any, secrets: Mapping[str, str]) -> Any:
    """Replace every secret value inside ``value`` (strings, lists, dicts) with a marker."""
    if not secrets:
        return value
    if isinstance(value, str):
        for name, secret in secrets.items():
            if len(secret) >= _MIN_SECRET_LEN and secret in value:
                value = value.replace(secret, f"[secret {name}]")
        return value
    if isinstance(value, dict):
        return {scrub(k, secrets): scrub(v, secrets) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [scrub(v, secrets) for v in value]
    return value
