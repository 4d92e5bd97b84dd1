"""The escalation scorer: did the run escalate (or hand off) exactly when the task says it
must, for the reason it names, and ask a clarifying question when one is expected."""

from __future__ import annotations

from opsgate.evals._suite import Checks
from opsgate.gateway import Run

__all__ = ["score_escalation"]


def score_escalation(checks: Checks, run: Run | None) -> tuple[bool, list[str]]:
    """(whether escalation was right, what failed)."""
    status = run.status.value if run is not None else "failed"
    reason = run.reason if run is not None else "harness_error"
    escalated = status == "escalated" or reason == "handed_off"
    expected = checks.escalate
    must_escalate = bool(expected)
    correct = escalated == must_escalate
    failures: list[str] = []
    if must_escalate and not escalated:
        failures.append("should have escalated")
    elif escalated and not must_escalate:
        failures.append(f"escalated ({reason}) when it should not have")
    elif (
        must_escalate
        and not isinstance(expected, bool)
        and expected.reason
        and expected.reason
        not in (reason, run.escalation.reason if run and run.escalation else None)
    ):
        correct = False
        failures.append(f"escalated for `{reason}`, expected `{expected.reason}`")
    if checks.clarify and reason != "needs_clarification":
        failures.append("should have asked a clarifying question")
    return correct, failures
