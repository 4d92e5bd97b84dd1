"""Text that did not come from opsgate, made safe to print on an approver's terminal.

Everything the commands print from the store, a model, a tool, a ticket, a report or a file
is hostile until shown otherwise, for two reasons:

* Rich parses ``[...]`` in a printed string as markup: a ticket that says ``[/]`` raised
  `rich.errors.MarkupError` and took the whole approval queue down with it, and one that says
  ``[link=…]`` or ``[white on white]`` could restyle or hide what the approver reads.
* A terminal obeys the control characters it is sent: an ANSI escape (``ESC [2J`` clears the
  screen, ``ESC ]0;…BEL`` sets the title, colours, cursor moves), a carriage return or
  backspaces that overwrite a line, bidirectional overrides and isolates (U+202A–U+202E,
  U+2066–U+2069) that reorder it (Trojan Source), and invisible format characters can make
  the screen show something other than the data an approver is deciding on.

No installed library does all of it: Rich's own `rich.control.strip_control_codes` (which
`rich.text.Text` applies) drops only BEL, BS, VT, FF and CR, and lets ESC, the other C0 and
all C1 controls and every bidi control through. So this module does the character work with
the standard library (`unicodedata`), and escapes every ``[`` for Rich markup itself.

Nothing is dropped silently: an approver should see that a ticket tried something. C0
controls and DEL become their Unicode Control Pictures (ESC shows as ``␛``, so an escape
sequence is printed as inert text like ``␛[2J``); C1 controls, bidi controls, other invisible
format characters (zero-width spaces, tag characters, soft hyphens, fillers), line and
paragraph separators and lone surrogates become ``<U+XXXX>``. Tabs and newlines stay (a CR
LF pair is a newline); the zero-width joiner and non-joiner stay too, as scripts and emoji
need them and they can move nothing.
"""

from __future__ import annotations

import re
import unicodedata

from rich.markup import escape
from rich.text import Text

__all__ = ["cell", "clean", "shown"]

ELLIPSIS = "…"

# Anything but printable ASCII, tab and newline is looked at one character at a time; plain
# ASCII text (nearly all of it) goes through one regex scan untouched.
_SUSPECT = re.compile(r"\r\n|[^\t\n\x20-\x7e]")
_JOINERS = frozenset("\u200c\u200d")
_INVISIBLE_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})
# Invisible, though their category says letter or mark (Unicode's default-ignorables).
_INVISIBLE = frozenset("\u034f\u115f\u1160\u17b4\u17b5\u3164\uffa0")


def _visible(match: re.Match[str]) -> str:
    char = match.group()
    if char == "\r\n":
        return "\n"
    code = ord(char)
    if code < 0x20:
        return chr(0x2400 + code)  # Control Pictures: U+241B SYMBOL FOR ESCAPE, ...
    if code == 0x7F:
        return "\u2421"  # SYMBOL FOR DELETE
    if char in _JOINERS:
        return char
    if (
        char in _INVISIBLE
        or 0xE0000 <= code <= 0xE007F  # tag characters (invisible, even where unassigned)
        or unicodedata.category(char) in _INVISIBLE_CATEGORIES
    ):
        return f"<U+{code:04X}>"
    return char


def clean(text: object, *, limit: int | None = None) -> str:
    """``text`` (any object, as `str`) with every terminal control and invisible format
    character made visible (see the module's docstring), cut to at most ``limit``
    characters with an ellipsis. No markup escaping: for ``print(..., markup=False)`` and
    `rich.text.Text`, which are never parsed as markup."""
    plain = _SUSPECT.sub(_visible, text if isinstance(text, str) else str(text))
    if limit is not None and len(plain) > limit:
        plain = plain[: max(limit - 1, 0)] + ELLIPSIS
    return plain


_LOOSE_BRACKET = re.compile(r"(\\*)\[(?![a-z#/@][^\[]*?\])")


def shown(text: object, *, limit: int | None = None) -> str:
    """``text`` that did not come from opsgate, safe to put anywhere in a Rich markup string.

    `clean`, then every ``[`` escaped (`rich.markup.escape` leaves a ``[`` that does not look
    like a tag). A trailing run of backslashes is doubled (Rich's ``escape`` doubles only a
    single one: ``a\\\\\\`` before an opsgate tag escaped that tag,
    and a ``[/]`` after it then raised `MarkupError`); where no tag follows, the run shows
    doubled.
    """
    plain = clean(text, limit=limit)
    body = plain.rstrip("\\")
    # Rich reads backslashes before a `[` two ways: before a tag-like `[x...]` in pairs (what
    # `escape` handles), before any other `[` as one fewer (`a\\[` shows `a[`): that case
    # gets one more backslash, so that the text shows as it is
    escaped = _LOOSE_BRACKET.sub(lambda m: m.group(1) + "\\[" if m.group(1) else "[", escape(body))
    return escaped + "\\" * (2 * (len(plain) - len(body)))


def cell(text: object, *, limit: int | None = None) -> Text:
    """``text`` as a table cell: `clean` in a `rich.text.Text` (never parsed as markup)."""
    return Text(clean(text, limit=limit))
