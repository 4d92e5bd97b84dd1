"""What the agent's final answer repeats from untrusted content alone.

Model text is not a tool call, but an answer that repeats an injected link, address or
instruction is what a user sees and may act on. `untrusted_in_answer` flags, in a final
answer, the URLs, e-mail addresses, phone numbers and IBANs, and the sentences (eight
words or more), that the run found only in untrusted content.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from opsgate.provenance._atoms import normalise, special_atoms
from opsgate.provenance._ledger import ProvenanceLedger

__all__ = ["AnswerFinding", "untrusted_in_answer"]

_SENTENCE = re.compile(r"[^.!?\n]+")
_MIN_WORDS = 8


@dataclass(frozen=True, slots=True)
class AnswerFinding:
    """One thing in an answer that came only from untrusted content.

    Attributes:
        kind: ``url``, ``email``, ``phone``, ``iban`` or ``instruction``.
        value: The text as it appears (normalised).
        source: The untrusted source it was found in.
    """

    kind: str
    value: str
    source: str


def untrusted_in_answer(ledger: ProvenanceLedger, answer: str) -> list[AnswerFinding]:
    """The links, addresses and instructions of ``answer`` found only in untrusted content."""
    if not answer or not ledger.tainted:
        return []
    findings: list[AnswerFinding] = []
    text = normalise(answer)
    for kind, value in special_atoms(text):
        if kind not in ("url", "email", "phone", "iban"):
            continue
        found = ledger.origin(value)
        if found.trust == "untrusted":
            findings.append(AnswerFinding(kind, value, found.source or ""))
    for sentence in _SENTENCE.findall(text):
        words = sentence.split()
        if len(words) < _MIN_WORDS:
            continue
        found = ledger.origin(" ".join(words))
        if found.trust == "untrusted":
            findings.append(AnswerFinding("instruction", " ".join(words), found.source or ""))
    return findings
