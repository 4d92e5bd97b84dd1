"""Screens: text that sends a request to a person before any lane acts on it.

A small model routes an injected ticket that names an order to the lane that order fits and
then carries the injected instruction out as far as the gate lets it; it routes an identity
or legal matter that names an order the same way. A screen is a cheap, deterministic look
at what the run read from untrusted sources (the requester's own words) for what a person
must see: markers of instructions addressed to the agent, or topics only a person handles.
A match only ever sends the request to the agent's hand-off lane, the safe direction: no
screen can start a tool call, widen a lane, or keep a request from a person. Nothing here
names a domain: the markers and the note belong to the agent that declares the screen.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from opsgate.gateway import Run

__all__ = ["INSTRUCTION_MARKERS", "Screen", "screened_texts"]

#: The shapes of an instruction addressed to the agent itself, in no domain's words: an order
#: to drop its rules, a new role, a mode it does not have. An agent's injection screen starts
#: with these and adds its own (a channel or an authority its requesters cannot speak for).
INSTRUCTION_MARKERS = (
    r"\b(ignore|disregard|forget|override)\b[^.\n]{0,30}\b(instructions|rules|guidelines"
    r"|prompt|polic(y|ies))\b",
    r"\byou are now\b",
    r"\b(admin|developer|god|debug) mode\b",
)

#: How much of the matched text is kept (for the record and the hand-off note).
_SHOWN = 80


@dataclass(frozen=True)
class Screen:
    """Markers that send a request to a person.

    Attributes:
        name: What the screen looks for (recorded with the match: ``injection``).
        markers: Regular expressions, matched case-insensitively anywhere in the text.
        lane: The lane a matching request goes to (the agent's hand-off lane).
        note: Told to the model in that lane; ``{found}`` is the matched text.
    """

    name: str
    markers: tuple[str, ...]
    lane: str
    note: str = ""
    _compiled: tuple[re.Pattern[str], ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        try:
            compiled = tuple(re.compile(m, re.IGNORECASE) for m in self.markers)
        except re.error as exc:
            raise ValueError(f"screen {self.name!r}: bad marker: {exc}") from None
        object.__setattr__(self, "_compiled", compiled)

    def find(self, texts: Iterable[str]) -> str | None:
        """The first text a marker matches in ``texts`` (shortened), or None."""
        for text in texts:
            for pattern in self._compiled:
                found = pattern.search(text)
                if found:
                    return " ".join(found.group(0).split())[:_SHOWN]
        return None

    def told(self, found: str) -> str:
        """The note for the hand-off lane, naming what matched."""
        return self.note.replace("{found}", found)


def screened_texts(run: Run, request: str) -> list[str]:
    """What a screen reads: the untrusted content the run has read (the requester's words
    and anything else an outsider could write), or, where the run has labelled nothing
    untrusted, the request itself (its origin unknown). Trusted content (a verified note,
    a record) is not screened: an instruction there is the business's own."""
    untrusted = [text for _, _, text in run.provenance.texts("untrusted") if text]
    return untrusted or [request]


def first_match(screens: Sequence[Screen], texts: Sequence[str]) -> tuple[Screen, str] | None:
    """The first screen that matches ``texts``, with what it matched."""
    for screen in screens:
        found = screen.find(texts)
        if found is not None:
            return screen, found
    return None
