"""`mcp.lock`: the pinned definitions of the upstream tools a policy allows.

A tool's definition is what a model reads and what decides its contract: name, title,
description, input schema and annotations. The lock keeps the sha256 of each; a tool
whose definition differs from its pin, or that has none, is hidden and refused
(``tool_definition_changed``) until it is locked again.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mcp_types
import orjson

from opsgate.errors import ConfigError

__all__ = ["LOCK_VERSION", "LockEntry", "LockFile", "definition_hash"]

LOCK_VERSION = 1


def definition_hash(tool: mcp_types.Tool) -> str:
    """The sha256 of a tool's definition (canonical JSON of what a model reads)."""
    annotations = (
        tool.annotations.model_dump(by_alias=True, exclude_none=True, mode="json")
        if (tool.annotations is not None)
        else None
    )
    body = {
        "name": tool.name,
        "title": tool.title,
        "description": tool.description,
        "inputSchema": tool.input_schema,
        "annotations": annotations,
    }
    return hashlib.sha256(orjson.dumps(body, option=orjson.OPT_SORT_KEYS)).hexdigest()


@dataclass(frozen=True, slots=True)
class LockEntry:
    """One pinned tool: where it comes from and the hash of its definition."""

    upstream: str
    tool: str
    sha256: str

    def as_dict(self) -> dict[str, str]:
        """JSON data for the file."""
        return {"upstream": self.upstream, "tool": self.tool, "sha256": self.sha256}


@dataclass(frozen=True, slots=True)
class LockFile:
    """The pins, by the name the proxy exposes."""

    tools: dict[str, LockEntry]

    @classmethod
    def read(cls, path: Path) -> LockFile | None:
        """The lock at ``path``; None when there is no file.

        Raises:
            ConfigError: a file that is not a lock of this version.
        """
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise ConfigError(f"cannot read `{path}`: {exc.strerror or exc}") from None
        try:
            data = orjson.loads(raw)
            if data.get("version") != LOCK_VERSION:
                raise ValueError(f"version {data.get('version')!r}, not {LOCK_VERSION}")
            tools = {
                str(name): LockEntry(str(e["upstream"]), str(e["tool"]), str(e["sha256"]))
                for name, e in data["tools"].items()
            }
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise ConfigError(f"`{path}` is not an mcp.lock ({exc}); write it again") from None
        return cls(tools)

    def write(self, path: Path) -> None:
        """Write the lock whole (a temporary file, then a rename)."""
        data: dict[str, Any] = {
            "version": LOCK_VERSION,
            "tools": {name: self.tools[name].as_dict() for name in sorted(self.tools)},
        }
        text = orjson.dumps(data, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n"
        temporary = path.with_name(path.name + ".tmp")
        try:
            temporary.write_bytes(text)
            temporary.replace(path)
        except OSError as exc:
            raise ConfigError(f"cannot write `{path}`: {exc.strerror or exc}") from None

    def state(self, name: str, digest: str) -> str:
        """``pinned``, ``changed`` (the pin differs) or ``new`` (no pin)."""
        entry = self.tools.get(name)
        if entry is None:
            return "new"
        return "pinned" if entry.sha256 == digest else "changed"
