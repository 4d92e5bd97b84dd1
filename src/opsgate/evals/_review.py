"""The human review queue: which finished tasks a person should look at, and how often
people agree with the automated verdicts.

Sampling is skewed toward high-impact trials (writes, customer communications, financial
actions) because that is where a wrong "pass" costs most, and it is deterministic given a
seed: each trial gets a fixed random key (weighted exponential clocks, the
Efraimidis-Spirakis scheme), so the queue keeps its order as verdicts come in and reviewed
trials drop out of it.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from opsgate.contracts import Toolbelt, ToolContract
from opsgate.errors import OpsgateError, SuiteError
from opsgate.evals._store import EvalStore
from opsgate.evals._suite import load_suite
from opsgate.store import Store

__all__ = [
    "HIGH_IMPACT_WEIGHT",
    "ImpactRules",
    "ReviewItem",
    "agreement",
    "review_items",
    "review_summary",
    "sample",
]

#: How much likelier a high-impact trial is to be sampled than any other.
HIGH_IMPACT_WEIGHT = 4.0

_COMMUNICATION = re.compile(r"send_|e-?mail|reply", re.IGNORECASE)
_FINANCIAL = re.compile(r"refund|payment|charge|credit", re.IGNORECASE)


class ImpactRules:
    """Why a tool call is high-impact: its contract (impact high, scope write) when the
    suite's tools can be loaded, and its name (customer communication, money) always."""

    def __init__(self, contracts: Mapping[str, ToolContract] | None, source: str) -> None:
        self.contracts = dict(contracts or {})
        self.source = source
        """What the judgement rests on, for the reviewer."""

    @classmethod
    def for_suite(cls, suite: str) -> ImpactRules:
        """Rules from a suite's tool contracts (by name or path), else from names alone."""
        try:
            loaded = load_suite(suite)
            belt = Toolbelt.from_module(loaded.tools)
        except OpsgateError as exc:
            return cls(None, f"tool names only (suite `{suite}` not loaded: {exc})")
        return cls({c.name: c for c in belt}, f"the contracts of `{loaded.tools}` and tool names")

    def tool_reasons(self, tool: str) -> list[str]:
        """Why calling ``tool`` is high-impact (empty when it is not)."""
        reasons = []
        contract = self.contracts.get(tool)
        if contract is not None:
            if contract.impact == "high":
                reasons.append("high impact")
            if contract.scope == "write":
                reasons.append("write")
        if _COMMUNICATION.search(tool):
            reasons.append("customer communication")
        if _FINANCIAL.search(tool):
            reasons.append("financial")
        return reasons

    def task_reasons(self, task: Mapping[str, Any]) -> list[str]:
        """Why a scored trial is high-impact: each tool it called (executed or not), once."""
        found: dict[str, list[str]] = {}
        for call in task.get("calls") or []:
            tool = str(call.get("tool"))
            if tool not in found:
                found[tool] = self.tool_reasons(tool)
        return [f"{tool} ({', '.join(why)})" for tool, why in found.items() if why]


@dataclass(frozen=True)
class ReviewItem:
    """One trial of one task of a report, as the review queue sees it."""

    task_id: str
    trial: int
    automated: bool
    impact: list[str]
    task: dict[str, Any]
    """The report's scored trial: calls, output, failures, status."""

    @property
    def high_impact(self) -> bool:
        """Whether any call of the trial is high-impact."""
        return bool(self.impact)


def review_items(document: Mapping[str, Any], rules: ImpactRules) -> list[ReviewItem]:
    """Every trial of a report, with its automated verdict and why it is high-impact."""
    return [
        ReviewItem(
            task_id=t["task_id"],
            trial=int(t["trial"]),
            automated=bool(t.get("passed")),
            impact=rules.task_reasons(t),
            task=dict(t),
        )
        for t in document.get("tasks", [])
    ]


def _key(item: ReviewItem, seed: int, weight: float) -> float:
    digest = hashlib.sha256(f"{seed}\0{item.task_id}\0{item.trial}".encode()).digest()
    uniform = (int.from_bytes(digest[:7], "big") + 1) / (2**56 + 1)  # in (0, 1)
    return -math.log(uniform) / weight


def sample(
    items: Sequence[ReviewItem],
    n: int,
    *,
    seed: int = 0,
    exclude: Collection[tuple[str, int]] = (),
    high_impact_weight: float = HIGH_IMPACT_WEIGHT,
) -> list[ReviewItem]:
    """Up to ``n`` unreviewed trials, weighted toward high-impact ones, in review order."""
    if n < 1:
        raise SuiteError(f"--sample must be at least 1, not {n}")
    if high_impact_weight <= 0:
        raise SuiteError("the high-impact weight must be positive")
    skip = set(exclude)
    keyed = sorted(
        (
            (_key(i, seed, high_impact_weight if i.high_impact else 1.0), i.task_id, i.trial, i)
            for i in items
            if (i.task_id, i.trial) not in skip
        ),
        key=lambda k: k[:3],
    )
    return [entry[3] for entry in keyed[:n]]


def agreement(pairs: Sequence[tuple[bool, bool]]) -> tuple[float | None, float | None]:
    """Raw agreement and Cohen's kappa of (human, automated) pass verdicts.

    Either is None when undefined: no pairs; kappa also when chance agreement is total
    (both sides gave one and the same verdict throughout).
    """
    n = len(pairs)
    if n == 0:
        return None, None
    observed = sum(h == a for h, a in pairs) / n
    human_pass = sum(h for h, _ in pairs) / n
    auto_pass = sum(a for _, a in pairs) / n
    chance = human_pass * auto_pass + (1 - human_pass) * (1 - auto_pass)
    if math.isclose(chance, 1.0):
        return round(observed, 4), None
    return round(observed, 4), round((observed - chance) / (1 - chance), 4)


def review_summary(store: Store | EvalStore, document: Mapping[str, Any]) -> dict[str, Any]:
    """Human and automated verdicts side by side, with agreement, for a report.

    The shape the report carries under ``reviews`` (and the dashboard shows)::

        {"reviewed": int, "agreement": float | None, "kappa": float | None,
         "items": [{"task_id", "trial", "verdict", "automated", "reviewer", "notes"}]}
    """
    evals = store if isinstance(store, EvalStore) else EvalStore(store)
    order = {
        (t["task_id"], int(t["trial"])): (n, bool(t.get("passed")))
        for n, t in enumerate(document.get("tasks", []))
    }
    reviews = [
        r for r in evals.reviews(str(document.get("report_id"))) if (r.task_id, r.trial) in order
    ]
    reviews.sort(key=lambda r: (order[(r.task_id, r.trial)][0], r.reviewer))
    items: list[dict[str, Any]] = [
        {
            "task_id": r.task_id,
            "trial": r.trial,
            "verdict": r.verdict,
            "automated": order[(r.task_id, r.trial)][1],
            "reviewer": r.reviewer,
            "notes": r.notes,
        }
        for r in reviews
    ]
    raw, kappa = agreement([(i["verdict"] == "pass", i["automated"]) for i in items])
    return {"reviewed": len(items), "agreement": raw, "kappa": kappa, "items": items}
