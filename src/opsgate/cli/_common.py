"""What every command shares: the console and the boundary that turns errors into one line."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import typer
from rich.console import Console

from opsgate.cli._safe import shown
from opsgate.errors import ConfigError, OpsgateError

P = ParamSpec("P")
R = TypeVar("R")

# No highlighting and no emoji codes: printed data shows as it is (`:warning:` in a ticket stays
# text); data from outside opsgate goes through `opsgate.cli._safe` before it is printed.
console = Console(highlight=False, emoji=False)
err_console = Console(stderr=True, highlight=False, emoji=False)

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2


def cli_errors(fn: Callable[P, R]) -> Callable[P, R]:
    """Turn opsgate's errors into one clear line on stderr and exit code 2 (the message,
    which may quote a file, an argument or a ticket, shown as text, never as markup)."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            _check_text(kwargs)
            return fn(*args, **kwargs)
        except OpsgateError as exc:
            err_console.print(f"[bold red]error:[/] {shown(exc)}", markup=True, soft_wrap=True)
            raise typer.Exit(EXIT_BAD_INPUT) from None

    return wrapper


def _check_text(arguments: dict[str, Any]) -> None:
    """Refuse a text argument with bytes the shell could not decode (Python holds them as lone
    surrogates): no database, record or terminal takes it, and each raised its own
    UnicodeEncodeError deep inside a command. File paths (`Path` arguments) may hold them."""
    for name, value in arguments.items():
        for text in value if isinstance(value, list | tuple) else [value]:
            if not isinstance(text, str):
                continue
            try:
                text.encode()
            except UnicodeEncodeError:
                raise ConfigError(
                    f"`{name}` is not valid text: it has bytes that are not UTF-8"
                ) from None


def write_file(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` whole or not at all (a temporary file, then a rename), its
    folder made as needed; a clear `ConfigError` when the disk says no."""
    temporary = path.with_name(path.name + ".tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary.write_bytes(data)
        os.replace(temporary, path)
    except OSError as exc:
        raise ConfigError(f"cannot write `{path}`: {exc.strerror or exc}") from None
