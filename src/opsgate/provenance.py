"""Provenance: where each value in a run's context came from, and how far to trust it.

Every piece of content that enters a run (the invoker's request, documents, tool
results, text the model writes) is added to the run's `ProvenanceLedger` with a label:
``trusted`` (the invoker's request, internal KB, signed documents, trusted tools) or
``untrusted`` (customer text, e-mail, web pages, third-party tool output).

When the model proposes a call, `ProvenanceLedger.origin` tells for each argument value
where it can be found:

- short values (ids, amounts, e-mail addresses: one token) are matched as whole tokens,
  numbers in canonical form (``$150.00`` matches ``150``), never as substrings;
- longer values are matched as normalised substrings (case and white space folded).

A value found in a trusted source is *corroborated*. A value found only in untrusted
content is *derived from untrusted input*. A value found nowhere was written by the model;
once the run has read untrusted content, such text counts as untrusted too (a summary
of a hostile e-mail is hostile).

The ledger is append-only and only grows during a run; look-ups are dict hits for short
values, so the check stays cheap on the gate's hot path.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any, Literal

import orjson

__all__ = ["ContextItem", "Origin", "ProvenanceLedger", "canonical_tokens"]

Trust = Literal["trusted", "untrusted"]

# A token: a run of word characters, possibly joined by the punctuation that holds ids,
# e-mail addresses, decimals and paths together ("ORD-1234", "a.b@c.com", "150.00").
_TOKEN_RE = re.compile(r"(?:(?<!\w)-(?=\d))?\w(?:[\w.@+\-/:]*\w)?")
_THOUSANDS_RE = re.compile(r"(?<![\w.])(\d{1,3}(?:,\d{3})+)(?:\.(\d+))?(?![\w])")
_SPACE_RE = re.compile(r"\s+")
_NUMBER_RE = re.compile(r"^[+-]?\d+(?:\.\d+)?$")


@dataclass(frozen=True, slots=True)
class ContextItem:
    """A piece of content given to a run, with its provenance label.

    Attributes:
        text: The content (any JSON-able value is accepted and flattened to text).
        trust: ``trusted`` or ``untrusted``.
        source: A name for where it came from, e.g. ``ticket:T-1001`` or ``kb:refunds``.
    """

    text: Any
    trust: Trust
    source: str


@dataclass(frozen=True, slots=True)
class Origin:
    """Where a value was found.

    Attributes:
        trust: ``trusted`` (found in a trusted source), ``untrusted`` (found only in
            untrusted content) or ``unknown`` (found nowhere: written by the model).
        source: The first source it was found in, for ``trusted``/``untrusted``.
    """

    trust: Literal["trusted", "untrusted", "unknown"]
    source: str | None = None


_UNKNOWN = Origin("unknown")


def _canonical_number(text: str) -> str:
    try:
        number = Decimal(text)
    except InvalidOperation:
        return text
    if not number.is_finite():
        return text
    normal = number.normalize()
    # "1E+2" -> "100": fixed-point, no exponent.
    return format(normal, "f") if normal == normal.to_integral() else str(normal)


def _normalise(text: str) -> str:
    text = unicodedata.normalize("NFKC", text).casefold()
    return _SPACE_RE.sub(" ", text).strip()


def canonical_tokens(text: str) -> list[str]:
    """The whole tokens of ``text``, normalised (numbers in canonical form)."""
    text = _THOUSANDS_RE.sub(
        lambda m: m.group(1).replace(",", "") + (("." + m.group(2)) if m.group(2) else ""),
        _normalise(text),
    )
    out: list[str] = []
    for token in _TOKEN_RE.findall(text):
        out.append(_canonical_number(token) if _NUMBER_RE.match(token) else token)
    return out


def _single_token(value: Any) -> str | None:
    """The canonical token of a value that is one token, cheaply; None otherwise.

    The hot path of a provenance check: ids and amounts skip the regex pipeline.
    """
    kind = type(value)
    if kind is int:
        return str(value)
    if kind is float:
        text = repr(value)
        if "e" in text or "n" in text:  # exponent forms, nan, inf: the general path
            return None
        return _canonical_number(text)
    if kind is str and value.isascii() and _TOKEN_RE.fullmatch(value):
        if "," in value:
            return None
        lowered = value.lower()
        return _canonical_number(lowered) if _NUMBER_RE.match(lowered) else lowered
    return None


def _leaf_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if value is None:
        return ""
    if isinstance(value, (bool, int, float)):
        return orjson.dumps(value).decode()
    return str(value)


def _flatten(content: Any) -> str:
    """Content as text: strings as they are, structures as their keys and leaves on lines
    (not JSON, whose escapes would glue ``\n`` onto the next token)."""
    if isinstance(content, str):
        return content
    if isinstance(content, (Mapping, list, tuple)):
        parts: list[str] = []
        _collect(content, parts)
        return "\n".join(p for p in parts if p)
    return _leaf_text(content)


def _collect(content: Any, parts: list[str]) -> None:
    if isinstance(content, Mapping):
        for key, item in content.items():
            parts.append(_leaf_text(key))
            _collect(item, parts)
    elif isinstance(content, (list, tuple)):
        for item in content:
            _collect(item, parts)
    else:
        parts.append(_leaf_text(content))


def _leaves(value: Any) -> Iterator[Any]:
    if isinstance(value, Mapping):
        for item in value.values():
            yield from _leaves(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _leaves(item)
    else:
        yield value


class ProvenanceLedger:
    """The labelled content of one run, and where a proposed value comes from."""

    __slots__ = ("_texts", "_tokens", "_untrusted_sources")

    def __init__(self, items: list[ContextItem] | None = None) -> None:
        # token -> (trust, first source); a trusted sighting wins over an untrusted one.
        self._tokens: dict[str, tuple[Trust, str]] = {}
        self._texts: list[tuple[str, Trust, str]] = []
        self._untrusted_sources: list[str] = []
        for item in items or ():
            self.add(item.text, trust=item.trust, source=item.source)

    def add(self, content: Any, *, trust: Trust, source: str) -> None:
        """Label ``content`` as seen by the run."""
        if trust not in ("trusted", "untrusted"):
            raise ValueError(f"trust must be trusted or untrusted, not {trust!r}")
        if content is None or isinstance(content, bool):
            return  # no content, nothing to derive from: does not taint the run
        text = _flatten(content)
        if not text.strip():
            return
        found = canonical_tokens(text)
        self._texts.append((_normalise(text), trust, source))
        tokens = self._tokens
        for token in found:
            seen = tokens.get(token)
            if seen is None or (trust == "trusted" and seen[0] == "untrusted"):
                tokens[token] = (trust, source)
        if trust == "untrusted":
            self._untrusted_sources.append(source)

    def snapshot(self) -> list[tuple[str, str, str]]:
        """The labelled content, as JSON-able data (to persist a run awaiting approval)."""
        return [(text, trust, source) for text, trust, source in self._texts]

    @classmethod
    def restore(cls, items: list[tuple[str, str, str]] | list[list[str]]) -> ProvenanceLedger:
        """A ledger rebuilt from `snapshot` output."""
        ledger = cls()
        for text, trust, source in items:
            ledger.add(text, trust=trust, source=source)  # type: ignore[arg-type]
        return ledger

    @property
    def tainted(self) -> bool:
        """Whether the run has read any untrusted content."""
        return bool(self._untrusted_sources)

    @property
    def untrusted_sources(self) -> tuple[str, ...]:
        """The sources of untrusted content read so far, in order."""
        return tuple(self._untrusted_sources)

    def origin(self, value: Any) -> Origin:
        """Where ``value`` (a scalar, or a list/dict of them: the least trusted leaf wins)
        can be found in the run's content."""
        if isinstance(value, (Mapping, list, tuple)):
            worst = Origin("trusted")
            for leaf in _leaves(value):
                found = self.origin(leaf)
                if found.trust == "untrusted":
                    return found
                if found.trust == "unknown":
                    worst = found
            return worst
        if value is None or isinstance(value, bool):
            return Origin("trusted", "constant")
        token = _single_token(value)
        if token is not None:
            seen = self._tokens.get(token)
            return _UNKNOWN if seen is None else Origin(seen[0], seen[1])
        text = _flatten(value)
        if not text.strip():
            return Origin("trusted", "constant")
        tokens = canonical_tokens(text)
        if len(tokens) == 1:
            seen = self._tokens.get(tokens[0])
            return _UNKNOWN if seen is None else Origin(seen[0], seen[1])
        needle = _normalise(text)
        found_untrusted: str | None = None
        for haystack, trust, source in self._texts:
            if needle in haystack:
                if trust == "trusted":
                    return Origin("trusted", source)
                if found_untrusted is None:
                    found_untrusted = source
        return _UNKNOWN if found_untrusted is None else Origin("untrusted", found_untrusted)
