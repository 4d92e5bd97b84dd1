"""Provenance: where each value in a run's context came from, and how far to trust it.

- `ProvenanceLedger`: the labelled content of one run and `origin` look-ups (`_ledger`);
- `TrustMap`: field-level trust of a tool's result, by JSONPath-like selectors (`_fields`);
- atoms: values read by kind and normalised (`_atoms`);
- `untrusted_in_answer`: what a final answer repeats from untrusted content (`_answer`).
"""

from opsgate.provenance._answer import AnswerFinding, untrusted_in_answer
from opsgate.provenance._atoms import canonical_tokens
from opsgate.provenance._fields import Selector, SelectorError, TrustMap
from opsgate.provenance._ledger import (
    LABEL_LIMIT,
    ContextItem,
    Labelled,
    Origin,
    ProvenanceLedger,
    SourceSpec,
)

__all__ = [
    "LABEL_LIMIT",
    "AnswerFinding",
    "ContextItem",
    "Labelled",
    "Origin",
    "ProvenanceLedger",
    "Selector",
    "SelectorError",
    "SourceSpec",
    "TrustMap",
    "canonical_tokens",
    "untrusted_in_answer",
]
