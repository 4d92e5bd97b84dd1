"""Text from outside (an upstream, a client), made safe to print on one line."""

from __future__ import annotations

from typing import Any

__all__ = ["one_line"]


def one_line(value: Any, limit: int = 300) -> str:
    """One line, control and format characters made visible as ``<U+XXXX>``, bounded (the
    text is cut before it is looked at: outside text may be megabytes)."""
    try:
        text = str(value)[: limit * 8 + 64]
    except Exception:  # an object that cannot even say what it is
        text = f"<{type(value).__name__}>"
    text = "".join(c if c.isprintable() or c in " \t\n" else f"<U+{ord(c):04X}>" for c in text)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."
