"""The run's provenance ledger: what it read, under which label, and where a value comes from.

Every piece of content that enters a run (the invoker's request, documents, tool
results, text the model writes) is added with a label, per field where the tool's
`TrustMap` says so. `ProvenanceLedger.origin` tells, for a proposed argument value, where
it can be found:

- a value is read as the kind of thing it is (`parse_text`): an id, a number, an amount,
  a date, a time, an e-mail address, a URL, a phone number, an IBAN; it corroborates
  only where the same kind of thing appears (``13`` is not found in "June 13");
- a *composite* value (``2024-05-19 12:00``, ``ORD-1, ORD-2``) is found when each of its
  atoms is; a list element by element; the element or atom that fails is named;
- a number that is no single trusted number may be the total of one trusted source's
  numbers, or the sum of two of them (``kind="sum"``);
- free text is found as a normalised substring of one source.

A value found in a trusted source is *corroborated*; found only in untrusted content it
is *derived from untrusted input*; found nowhere, it was written by the model (and once
the run has read untrusted content, such text counts as untrusted too). A target bound to
named sources (``within=``) is corroborated only by those.

Look-ups are dict hits on the hot path: each key remembers the best source it was seen
in (trusted over untrusted, then the first). Listing every source of a value, binding to
named sources, sums and field paths walk the sources, and are asked for only where a
policy needs them.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from opsgate.provenance._atoms import (
    AMOUNT,
    Part,
    collapse,
    index_keys,
    kind_of_key,
    normalise,
    number_keys,
    parse_text,
)
from opsgate.provenance._fields import TrustMap, json_text, leaf_text

__all__ = [
    "LABEL_LIMIT",
    "ContextItem",
    "Labelled",
    "Origin",
    "ProvenanceLedger",
    "SourceSpec",
]

Trust = Literal["trusted", "untrusted"]

#: Characters of one piece of content labelled by its rules; the rest is untrusted.
LABEL_LIMIT = 2_000_000
_SUM_LIMIT = 400


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
        trust: ``trusted`` (found in a trusted source, one of the named ones when the
            look-up was bound), ``untrusted`` (found only in untrusted content) or
            ``unknown`` (found nowhere: written by the model; or, for a bound look-up,
            only in trusted sources it is not bound to).
        source: The source it was found in (the first, or the one that decided).
        sources: Every source it was found in, by name without call id (``request``,
            ``tool:get_contacts``), when the look-up listed them.
        kind: How it matched: ``token``, ``number``, ``amount``, ``date``, ``time``,
            ``email``, ``url``, ``host``, ``phone``, ``iban``, ``composite``, ``sum``,
            ``text``, ``constant``.
        part: The element or atom that decided, for lists and composite values
            (``[1]``, ``12:00``).
        where: The field of the source it was found in (``$.orders[0].id``), when asked.
    """

    trust: Literal["trusted", "untrusted", "unknown"]
    source: str | None = None
    sources: tuple[str, ...] = field(default=(), compare=False)
    kind: str | None = field(default=None, compare=False)
    part: str | None = field(default=None, compare=False)
    where: str | None = field(default=None, compare=False)

    def as_dict(self) -> dict[str, Any]:
        """A JSON-able form, for records, approvers and CEL (`prov(...)`)."""
        out: dict[str, Any] = {"trust": self.trust, "source": self.source or ""}
        out["sources"] = list(self.sources)
        out["kind"] = self.kind or ""
        if self.part is not None:
            out["part"] = self.part
        if self.where is not None:
            out["where"] = self.where
        return out

    def describe(self) -> str:
        """Where it was found, in a few words for a person."""
        if self.kind == "constant":
            return "a constant"
        at = f" at {self.where}" if self.where else ""
        part = f" (`{self.part}`)" if self.part else ""
        if self.trust == "trusted":
            return f"found in trusted `{self.source}`{at}{part}"
        if self.trust == "untrusted":
            return f"found only in untrusted `{self.source}`{at}{part}"
        if self.sources:
            return f"found only in `{', '.join(self.sources)}`{part}"
        return f"found in no trusted source the run read{part}"


_UNKNOWN = Origin("unknown")
_CONSTANT = Origin("trusted", "constant", kind="constant")


@dataclass(frozen=True, slots=True)
class Labelled:
    """What labelling one piece of content did.

    Attributes:
        trust: ``trusted``, ``untrusted``, ``mixed`` (field rules split it) or ``none``
            (nothing to label).
        chars: Characters labelled.
        truncated: Characters past `LABEL_LIMIT`, labelled untrusted without being read.
    """

    trust: str
    chars: int = 0
    truncated: int = 0


class SourceSpec:
    """The sources a target must come from: ``request``, ``tool:NAME`` (any call of the
    tool), ``kb:*`` (a glob over source names), ``trusted`` (any trusted source)."""

    __slots__ = ("_globs", "_names", "any_trusted", "specs")

    def __init__(self, specs: Sequence[str]) -> None:
        self.specs = tuple(specs)
        self.any_trusted = "trusted" in self.specs
        self._names = frozenset(s for s in self.specs if "*" not in s and s != "trusted")
        self._globs = tuple(s for s in self.specs if "*" in s)

    def admits(self, name: str) -> bool:
        """Whether content from source ``name`` may corroborate the target."""
        if self.any_trusted:
            return True
        base = name.split("#", 1)[0]
        if base in self._names or name in self._names:
            return True
        return any(fnmatch.fnmatchcase(base, g) for g in self._globs)

    def __str__(self) -> str:
        return ", ".join(self.specs)


class _Source:
    """One labelled piece of content (a tool result under field rules gives two)."""

    __slots__ = ("_haystack", "_numbers", "base", "fields", "keys", "name", "raw", "text", "trust")

    def __init__(
        self, name: str, trust: Trust, text: str, raw: Any, fields: TrustMap | None
    ) -> None:
        self.name = name
        self.base = name.split("#", 1)[0]
        self.trust = trust
        self.text = text
        self.keys: set[str] = set()  # filled by the ledger's first look-up after it
        self.raw = raw
        self.fields = fields
        self._haystack: str | None = None
        self._numbers: tuple[float, ...] | None = None

    @property
    def haystack(self) -> str:
        if self._haystack is None:
            self._haystack = collapse(self.text)
        return self._haystack

    @property
    def numbers(self) -> tuple[float, ...]:
        if self._numbers is None:
            found: list[float] = []
            for key in self.keys:
                text = key[len(AMOUNT) :] if key.startswith(AMOUNT) else key
                if kind_of_key(text) == "number":
                    try:
                        found.append(float(text))
                    except ValueError:
                        continue
            self._numbers = tuple(found[:_SUM_LIMIT])
        return self._numbers


_Where = Callable[[_Source], bool]


class ProvenanceLedger:
    """The labelled content of one run, and where a proposed value comes from."""

    __slots__ = (
        "_best",
        "_indexed",
        "_origins",
        "_sources",
        "_untrusted_keys",
        "_untrusted_sources",
    )

    def __init__(self, items: Iterable[ContextItem] | None = None) -> None:
        self._sources: list[_Source] = []
        self._indexed = 0  # sources before this one are in `_best`
        self._origins: dict[tuple[int, str], Origin] = {}
        # key -> index of the best source it was seen in (trusted first, then the first).
        self._best: dict[str, int] = {}
        self._untrusted_keys: set[str] = set()
        self._untrusted_sources: list[str] = []
        for item in items or ():
            self.add(item.text, trust=item.trust, source=item.source)

    # -- labelling ------------------------------------------------------------------------

    def add(
        self, content: Any, *, trust: Trust, source: str, fields: TrustMap | None = None
    ) -> Labelled:
        """Label ``content`` as seen by the run: all of it ``trust``, or each part as
        ``fields`` says (its default then replaces ``trust``)."""
        if trust not in ("trusted", "untrusted"):
            raise ValueError(f"trust must be trusted or untrusted, not {trust!r}")
        if content is None or isinstance(content, bool):
            return Labelled("none")  # no content, nothing to derive from
        if fields is not None and not fields.uniform and isinstance(content, (Mapping, list)):
            trusted, untrusted = fields.split(content)
            labelled: list[tuple[Trust, list[str]]] = [
                ("trusted", trusted),
                ("untrusted", untrusted),
            ]
        else:
            labelled = [(fields.default if fields is not None else trust, [json_text(content)])]
        chars = truncated = 0
        kinds: list[str] = []
        budget = LABEL_LIMIT
        for label, parts in labelled:
            text = "\n".join(p for p in parts if p)
            if not text.strip():
                continue
            if len(text) > budget:
                truncated += len(text) - budget
                text = text[:budget]
            budget -= len(text)
            chars += len(text)
            self._keep(source, label, text, content, fields)
            kinds.append(label)
        if truncated:
            # What was not read is not vouched for: the run has read untrusted content.
            self._keep(source, "untrusted", "", None, None)
            kinds.append("untrusted")
        if not kinds:
            return Labelled("none")
        shown = kinds[0] if len(set(kinds)) == 1 else "mixed"
        return Labelled(shown, chars, truncated)

    def _keep(self, name: str, trust: Trust, text: str, raw: Any, fields: TrustMap | None) -> None:
        """Keep a labelled text; its atoms are read at the first look-up that needs them
        (a tool result costs the call that returns it nothing; most reads are never
        looked up before the next write)."""
        self._sources.append(_Source(name, trust, text, raw, fields))
        if trust == "untrusted":
            self._untrusted_sources.append(name)

    def _flush(self) -> None:
        """Index the sources kept since the last look-up, in order."""
        sources = self._sources
        best = self._best
        while self._indexed < len(sources):
            idx = self._indexed
            src = sources[idx]
            keys = src.keys = index_keys(normalise(src.text)) if src.text else set()
            new = keys - best.keys()
            if new:
                best.update(dict.fromkeys(new, idx))
            if src.trust == "trusted":
                upgraded = keys & self._untrusted_keys
                if upgraded:
                    best.update(dict.fromkeys(upgraded, idx))
                    self._untrusted_keys -= upgraded
            else:
                self._untrusted_keys |= new
            self._indexed = idx + 1

    def snapshot(self) -> list[tuple[str, str, str]]:
        """The labelled content, as JSON-able data (to persist a run awaiting approval)."""
        return [(s.text, s.trust, s.name) for s in self._sources]

    @classmethod
    def restore(cls, items: Iterable[Sequence[str]]) -> ProvenanceLedger:
        """A ledger rebuilt from `snapshot` output."""
        ledger = cls()
        for text, trust, source in items:
            if text:
                ledger.add(text, trust=trust, source=source)  # type: ignore[arg-type]
            elif trust == "untrusted":
                ledger._keep(source, "untrusted", "", None, None)
        return ledger

    # -- what the run read ----------------------------------------------------------------

    @property
    def tainted(self) -> bool:
        """Whether the run has read any untrusted content."""
        return bool(self._untrusted_sources)

    @property
    def untrusted_sources(self) -> tuple[str, ...]:
        """The sources of untrusted content read so far, in order."""
        return tuple(self._untrusted_sources)

    def read(self) -> list[dict[str, str]]:
        """What the run read, in order: ``{source, trust}`` (one entry per label)."""
        return [{"source": s.name, "trust": s.trust} for s in self._sources]

    def texts(self, trust: Trust | None = None) -> list[tuple[str, str, str]]:
        """``(source, trust, text)`` of what the run read, optionally of one label."""
        return [(s.name, s.trust, s.text) for s in self._sources if trust in (None, s.trust)]

    # -- where a value comes from ---------------------------------------------------------

    def origin(
        self,
        value: Any,
        *,
        within: SourceSpec | None = None,
        full: bool = False,
        explain: bool = False,
    ) -> Origin:
        """Where ``value`` (a scalar, or a list/dict of them: the least trusted element
        decides, and is named) can be found in the run's content.

        Args:
            value: The argument value.
            within: Only these trusted sources corroborate (a source-bound target).
            full: List every source it was found in (`Origin.sources`).
            explain: Also find the field of the source it was found in (`Origin.where`;
                walks that source: for decisions that deny or ask a person).
        """
        if self._indexed < len(self._sources):
            self._flush()
        admit = None if within is None or within.any_trusted else within
        mode = 2 if explain else 1 if (full or admit is not None) else 0
        return self._origin(value, admit, mode, "")

    def _origin(self, value: Any, within: SourceSpec | None, mode: int, path: str) -> Origin:
        kind = type(value)  # exact types first: ABC checks cost more than the look-up
        if kind is str:
            return self._origin_of_text(value, within, mode, path)
        if kind is bool or value is None:
            return _CONSTANT
        if kind is int or kind is float:
            return self._origin_of_number(value, within, mode, path)
        if isinstance(value, (Mapping, list, tuple)):
            return self._origin_of_many(value, within, mode, path)
        if isinstance(value, (int, float)):
            return self._origin_of_number(value, within, mode, path)
        return self._origin_of_text(leaf_text(value), within, mode, path)

    def _origin_of_number(
        self, value: float, within: SourceSpec | None, mode: int, path: str
    ) -> Origin:
        keys = number_keys(value)
        if keys is None:
            return _UNKNOWN
        if mode:
            found = self._part(Part(keys, "number", str(value)), within, mode)
        else:
            found = self._best_of(keys, "number")
        if found.trust != "trusted":
            summed = self._sum(float(value), within)
            if summed is not None:
                return summed
        return _with_part(found, path) if path else found

    def _origin_of_text(
        self, value: str, within: SourceSpec | None, mode: int, path: str
    ) -> Origin:
        text = normalise(value).strip()
        if not text:
            return _CONSTANT
        parts, composite = parse_text(text)
        if len(parts) == 1 and parts[0].text == text:
            found = self._part(parts[0], within, mode)
            return _with_part(found, path) if path else found
        if composite:
            return self._composite(parts, within, mode, path)
        if len(parts) == 1 and not _has_free_words(text, parts[0]):
            return _with_part(self._part(parts[0], within, mode), path)
        return _with_part(self._text(text, within), path)

    def _origin_of_many(
        self,
        value: Mapping[Any, Any] | Sequence[Any],
        within: SourceSpec | None,
        mode: int,
        path: str,
    ) -> Origin:
        items = value.items() if isinstance(value, Mapping) else enumerate(value)
        first: Origin | None = None
        unknown: Origin | None = None
        sources: list[str] = []
        for key, item in items:
            step = f"{path}.{key}" if isinstance(value, Mapping) else f"{path}[{key}]"
            found = self._origin(item, within, mode, step)
            if found.trust == "untrusted":
                return found
            if found.trust == "unknown":
                unknown = unknown or found
            elif first is None or first.kind == "constant":
                first = found
            sources.extend(s for s in found.sources if s not in sources)
        if unknown is not None:
            return unknown
        if first is None:
            return _CONSTANT
        return Origin("trusted", first.source, tuple(sources), first.kind, None, first.where)

    def _composite(
        self, parts: tuple[Part, ...], within: SourceSpec | None, mode: int, path: str
    ) -> Origin:
        sources: list[str] = []
        first: Origin | None = None
        unknown: Origin | None = None
        for part in parts:
            found = self._part(part, within, mode)
            label = f"{path} `{part.text}`".strip()
            if found.trust == "untrusted":
                return _with_part(found, label, "composite")
            if found.trust == "unknown":
                unknown = unknown or _with_part(found, label, "composite")
                continue
            first = first or found
            sources.extend(s for s in found.sources if s not in sources)
        if unknown is not None:
            return unknown
        assert first is not None
        return Origin("trusted", first.source, tuple(sources), "composite", path or None)

    def _best_of(self, keys: tuple[str, ...], kind: str) -> Origin:
        """The hot path: the best source over a value's keys (trusted first), from the index;
        one Origin per source and kind, made once."""
        best_idx: int | None = None
        sources = self._sources
        for key in keys:
            idx = self._best.get(key)
            if idx is None:
                continue
            if best_idx is None or (
                sources[idx].trust == "trusted" and sources[best_idx].trust != "trusted"
            ):
                best_idx = idx
        if best_idx is None:
            return _UNKNOWN
        found = self._origins.get((best_idx, kind))
        if found is None:
            src = sources[best_idx]
            found = self._origins[(best_idx, kind)] = Origin(src.trust, src.name, (src.base,), kind)
        return found

    def _part(self, part: Part, within: SourceSpec | None, mode: int) -> Origin:
        """One atom: the best source over its keys (trusted first), or every source."""
        if not mode:
            return self._best_of(part.keys, part.kind)
        explained = part if mode == 2 else None
        return self._scan(
            lambda s: any(k in s.keys for k in part.keys), part.kind, within, explained
        )

    def _scan(
        self,
        holds: Callable[[_Source], bool],
        kind: str,
        within: SourceSpec | None,
        part: Part | None,
    ) -> Origin:
        """Every source that holds the value; the first admitted trusted one decides."""
        trusted: _Source | None = None
        untrusted: _Source | None = None
        elsewhere: list[str] = []
        names: list[str] = []
        for src in self._sources:
            if not holds(src):
                continue
            if src.base not in names:
                names.append(src.base)
            if src.trust == "trusted":
                if within is None or within.admits(src.name):
                    trusted = trusted or src
                elif src.base not in elsewhere:
                    elsewhere.append(src.base)
            else:
                untrusted = untrusted or src
        chosen = trusted or untrusted
        if trusted is None and elsewhere:
            return Origin("unknown", elsewhere[0], tuple(names), kind)
        if chosen is None:
            return _UNKNOWN
        where = self._where(chosen, part) if part is not None else None
        return Origin(chosen.trust, chosen.name, tuple(names), kind, None, where)

    def _text(self, text: str, within: SourceSpec | None) -> Origin:
        needle = collapse(text)
        return self._scan(lambda s: bool(s.text) and needle in s.haystack, "text", within, None)

    def _sum(self, value: float, within: SourceSpec | None) -> Origin | None:
        """A total of one trusted source's numbers, or the sum of two of them."""
        for src in self._sources:
            if src.trust != "trusted" or (within is not None and not within.admits(src.name)):
                continue
            numbers = src.numbers
            if len(numbers) < 2:
                continue
            if abs(sum(numbers) - value) < 1e-9:
                return Origin("trusted", src.name, (src.base,), "sum", "total")
            seen = set(numbers)
            for n in numbers:
                rest = round(value - n, 9)
                if rest in seen and (rest != n or numbers.count(n) > 1):
                    return Origin("trusted", src.name, (src.base,), "sum", f"{n:g} + {rest:g}")
        return None

    def _where(self, src: _Source, part: Part) -> str | None:
        """The field of ``src``'s content that holds ``part`` (for explanations)."""
        raw = src.raw
        if not isinstance(raw, (Mapping, list, tuple)):
            return None
        keys = set(part.keys)
        for path, leaf in _leaves_with_paths(raw, ()):
            if keys & index_keys(normalise(leaf_text(leaf))) and (
                src.fields is None or src.fields.trust_at(path) == src.trust
            ):
                return _path_text(path)
        return None


def _has_free_words(text: str, part: Part) -> bool:
    rest = text.replace(part.text, " ", 1)
    return any(ch.isalnum() for ch in rest)


def _with_part(found: Origin, part: str, kind: str | None = None) -> Origin:
    """``found``, naming the element or atom that decided (not needed when trusted)."""
    label = part.strip() or None
    if kind is None and (label is None or found.trust == "trusted"):
        return found
    return Origin(found.trust, found.source, found.sources, kind or found.kind, label, found.where)


def _leaves_with_paths(
    node: Any, path: tuple[str | int, ...]
) -> Iterable[tuple[tuple[str | int, ...], Any]]:
    if isinstance(node, Mapping):
        for key, item in node.items():
            yield from _leaves_with_paths(item, (*path, leaf_text(key)))
    elif isinstance(node, (list, tuple)):
        for i, item in enumerate(node):
            yield from _leaves_with_paths(item, (*path, i))
    else:
        yield path, node


def _path_text(path: tuple[str | int, ...]) -> str:
    out = "$"
    for step in path:
        out += f"[{step}]" if isinstance(step, int) else f".{step}"
    return out
