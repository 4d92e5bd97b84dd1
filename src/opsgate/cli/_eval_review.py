"""agent-eval commands: placeholder until filled in (registered by eval_main)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add this module's commands to `agent-eval`."""
