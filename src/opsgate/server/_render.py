"""Jinja2 for the console: autoescape always on (every run, tool and model text is
hostile), and the few filters the templates use, each returning plain text."""

from __future__ import annotations

import json
import re
import shlex
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

from fastapi.templating import Jinja2Templates
from jinja2 import Environment, FileSystemLoader, StrictUndefined

__all__ = ["templates"]

_HERE = Path(__file__).parent


def _when(at: float | None) -> str:
    if at is None:
        return ""
    return datetime.fromtimestamp(float(at), UTC).strftime("%Y-%m-%d %H:%M:%S")


def _money(value: float | None) -> str:
    return f"${float(value or 0):.6f}"


def _duration(seconds: float) -> str:
    s = int(max(seconds, 0))
    return f"{s // 3600}h {s % 3600 // 60}m {s % 60}s"


def _compact(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


_NOT_WORD = re.compile(r"\W")


@lru_cache(maxsize=512)
def _class_of(text: str) -> str:
    return _NOT_WORD.sub("", text)[:32] or "unknown"


def _statusclass(value: Any) -> str:
    """A CSS class suffix from a status: letters, digits and ``_`` only (``\\W`` is
    neither: `str.isalnum` or ``_``). A page shows a few statuses many times: kept."""
    return _class_of(str(value))


def _shellquote(value: Any) -> str:
    """A shell word (the page quotes a command to copy; autoescape still applies)."""
    return shlex.quote(str(value))


def _environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(_HERE / "templates"),
        autoescape=True,  # every template, whatever its extension
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        auto_reload=False,  # shipped with the package: no stat of each template per render
    )
    env.filters.update(
        when=_when,
        money=_money,
        duration=_duration,
        compact=_compact,
        statusclass=_statusclass,
        shellquote=_shellquote,
    )
    return env


templates = Jinja2Templates(env=_environment())
