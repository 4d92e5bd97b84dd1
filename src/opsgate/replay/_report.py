"""What a replay found: the calls whose decision changes, and the counts a reviewer reads."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = ["CHANGES", "CallChange", "Change", "ReplayReport"]

#: How a call's decision changes, named by what it becomes.
Change = Literal["newly_denied", "newly_allowed", "newly_needs_approval", "reason_changed"]
CHANGES: tuple[Change, ...] = (
    "newly_denied",
    "newly_allowed",
    "newly_needs_approval",
    "reason_changed",
)
_BECOMES: Mapping[str, Change] = {
    "deny": "newly_denied",
    "allow": "newly_allowed",
    "needs_approval": "newly_needs_approval",
}


def change_of(before_effect: str, before_reason: str, effect: str, reason: str) -> Change | None:
    """What became of a decision: None when the effect and reason are the same."""
    if effect != before_effect:
        return _BECOMES.get(effect, "reason_changed")
    return None if reason == before_reason else "reason_changed"


@dataclass(frozen=True, slots=True)
class CallChange:
    """One recorded call the replayed policy decides otherwise.

    Attributes:
        run_id: The run.
        call_id: The call's id in the run.
        workflow: The run's workflow.
        tool: The tool proposed.
        at: When it was decided (unix time).
        change: ``newly_denied``, ``newly_allowed``, ``newly_needs_approval`` or
            ``reason_changed`` (same effect, another reason).
        ran: Whether the call ran in the record (a tool result or error followed).
        masked: Whether the arguments it turns on hold a redaction marker (the argument
            the replayed decision names, else any): the live gate saw the value, replay
            sees the mask, so the difference may be the mask's alone.
        before: The recorded decision: ``effect``, ``reason``, ``rule``, ``message``.
        after: The replayed decision: ``effect``, ``reason``, ``rule``, ``message``.
    """

    run_id: str
    call_id: str
    workflow: str
    tool: str
    at: float
    change: Change
    ran: bool
    masked: bool
    before: Mapping[str, str]
    after: Mapping[str, str]

    def as_dict(self) -> dict[str, Any]:
        """JSON data (the ``--json`` schema's ``changes`` items)."""
        return {
            "run_id": self.run_id,
            "call_id": self.call_id,
            "workflow": self.workflow,
            "tool": self.tool,
            "at": self.at,
            "change": self.change,
            "ran": self.ran,
            "masked": self.masked,
            "before": dict(self.before),
            "after": dict(self.after),
        }


@dataclass(frozen=True, slots=True)
class ReplayReport:
    """Every recorded call of a window, decided again under another policy.

    Attributes:
        policy_version: The replayed policy's version.
        since: Start of the window (unix time; runs that started then or later).
        workflow: The workflow asked for, if one was.
        include_eval: Whether agent-eval trials were replayed too.
        runs: Runs replayed.
        calls: Decisions compared (recorded proposals with their decision).
        changes: The calls decided otherwise, in the order they happened.
        skipped_workflows: Runs of workflows the policy does not govern, per workflow
            (not replayed: every call would be ``unknown_workflow``).
        masked_calls: Compared calls whose stored arguments hold a redaction marker.
        truncated_reads: Context the record keeps only the start of (long reads).
        relabelled_results: Tool results the replayed policy labels otherwise than the
            record says the live one did (a changed output trust).
    """

    policy_version: str
    since: float
    workflow: str | None
    include_eval: bool
    runs: int
    calls: int
    changes: tuple[CallChange, ...]
    skipped_workflows: Mapping[str, int] = field(default_factory=dict)
    masked_calls: int = 0
    truncated_reads: int = 0
    relabelled_results: int = 0

    @property
    def counts(self) -> dict[str, int]:
        """Changed calls per kind of change (every kind, zeros included)."""
        found = Counter(c.change for c in self.changes)
        return {kind: found.get(kind, 0) for kind in CHANGES}

    @property
    def denied_that_ran(self) -> tuple[CallChange, ...]:
        """Calls that ran and the replayed policy would deny, on values the record keeps
        (what ``--fail-on-deny`` fails on)."""
        return tuple(
            c for c in self.changes if c.change == "newly_denied" and c.ran and not c.masked
        )

    @property
    def masked_denied_that_ran(self) -> tuple[CallChange, ...]:
        """Calls that ran and would be denied, where the decision turns on a masked value:
        the mask alone may be why (listed, to be checked by a person; not failed on)."""
        return tuple(c for c in self.changes if c.change == "newly_denied" and c.ran and c.masked)

    def groups(self) -> list[dict[str, Any]]:
        """Changed calls counted per (change, tool, new reason), most first."""
        found = Counter((c.change, c.tool, c.after["reason"]) for c in self.changes)
        return [
            {"change": change, "tool": tool, "reason": reason, "calls": n}
            for (change, tool, reason), n in sorted(
                found.items(), key=lambda item: (-item[1], item[0])
            )
        ]

    def as_dict(self) -> dict[str, Any]:
        """The ``--json`` document (stable: fields are added, never renamed)."""
        per_tool: dict[str, dict[str, int]] = {}
        for c in self.changes:
            row = per_tool.setdefault(c.tool, dict.fromkeys(CHANGES, 0))
            row[c.change] += 1
        return {
            "kind": "opsgate.policy_replay",
            "version": 1,
            "policy_version": self.policy_version,
            "since": self.since,
            "workflow": self.workflow,
            "include_eval": self.include_eval,
            "summary": {
                "runs": self.runs,
                "calls": self.calls,
                "changed": len(self.changes),
                **self.counts,
                "newly_denied_that_ran": len(self.denied_that_ran),
                "newly_denied_that_ran_masked": len(self.masked_denied_that_ran),
                "masked_calls": self.masked_calls,
                "changed_masked": sum(1 for c in self.changes if c.masked),
                "truncated_reads": self.truncated_reads,
                "relabelled_results": self.relabelled_results,
                "skipped_workflows": dict(sorted(self.skipped_workflows.items())),
                "by_tool": dict(sorted(per_tool.items())),
                "groups": self.groups(),
            },
            "changes": [c.as_dict() for c in self.changes],
        }
