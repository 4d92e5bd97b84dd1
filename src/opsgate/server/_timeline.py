"""A run's audit events as one timeline a person reads: each event a kind, a title and
labelled fields, built from what the trail stores (already redacted), never more.

Every value here is hostile text (the agent's, a model's, a tool's, a ticket's): it is
handed to Jinja as data and autoescaped there, never marked safe.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from opsgate.audit import AuditRecord

__all__ = ["TimelineItem", "timeline"]

_DENY = {"deny": "deny", "needs_approval": "ask", "allow": "allow"}


@dataclass(frozen=True, slots=True)
class TimelineItem:
    """One event as shown.

    Attributes:
        kind: A CSS class: ``start``, ``read``, ``model``, ``call``, ``allow``, ``deny``,
            ``ask``, ``approved``, ``refused``, ``result``, ``error``, ``write``,
            ``escalated``, ``end``, ``other``.
        fields: (label, value) pairs; values are plain text.
        blocks: (label, pretty JSON) pairs shown as preformatted text.
    """

    seq: int
    at: float
    type: str
    kind: str
    title: str
    fields: list[tuple[str, str]] = field(default_factory=list)
    blocks: list[tuple[str, str]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """JSON data for the API."""
        return {
            "seq": self.seq,
            "at": self.at,
            "type": self.type,
            "kind": self.kind,
            "title": self.title,
            "fields": [list(f) for f in self.fields],
            "blocks": [list(b) for b in self.blocks],
        }


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


def _pretty(value: Any) -> str:
    return json.dumps(value, sort_keys=True, indent=2, ensure_ascii=False)


def _fields(d: dict[str, Any], *names: str) -> list[tuple[str, str]]:
    return [(n.replace("_", " "), _text(d[n])) for n in names if d.get(n) not in (None, "", [])]


def _item(r: AuditRecord) -> TimelineItem:
    d = r.data
    t = r.type
    tool = _text(d.get("tool"))
    if t == "run_started":
        return TimelineItem(
            r.seq,
            r.at,
            t,
            "start",
            "run started",
            _fields(d, "invoker", "agent_id", "workflow", "policy_version", "stage", "request"),
        )
    if t == "context_read":
        return TimelineItem(
            r.seq,
            r.at,
            t,
            "read",
            f"read {_text(d.get('source'))} ({_text(d.get('trust'))})",
            _fields(d, "text"),
        )
    if t == "model_call":
        cost = f"${float(d.get('cost_usd') or 0):.6f}" + (
            " (estimate)" if d.get("estimate") else ""
        )
        return TimelineItem(
            r.seq,
            r.at,
            t,
            "model" if d.get("ok", True) else "error",
            f"model step: {_text(d.get('model'))} ({_text(d.get('role'))})",
            [
                ("model id", _text(d.get("response_model") or d.get("request_model"))),
                ("tokens in / out", f"{d.get('input_tokens', 0)} / {d.get('output_tokens', 0)}"),
                ("cost", cost),
                ("latency", f"{float(d.get('latency_s') or 0):.2f} s"),
                *_fields(d, "cache_hit", "attempts", "finish_reason", "error_type"),
            ],
        )
    if t == "tool_call_proposed":
        return TimelineItem(
            r.seq,
            r.at,
            t,
            "call",
            f"proposed {tool}",
            _fields(d, "call_id"),
            [("arguments", _pretty(d.get("args")))],
        )
    if t == "decision":
        effect = _text(d.get("effect"))
        blocks = [("origin of the argument", _pretty(d["origin"]))] if d.get("origin") else []
        return TimelineItem(
            r.seq,
            r.at,
            t,
            _DENY.get(effect, "other"),
            f"gate: {effect} {tool}",
            _fields(
                d,
                "reason",
                "message",
                "rule",
                "policy_version",
                "argument",
                "source",
                "cap",
                "endorsed_by",
                "repeats",
                "call_id",
            ),
            blocks,
        )
    if t == "approval_requested":
        return TimelineItem(
            r.seq,
            r.at,
            t,
            "ask",
            f"approval asked for {tool}",
            _fields(d, "reason", "rule", "request_id"),
            [("origins of the arguments", _pretty(d.get("origins") or {}))],
        )
    if t in ("approval_granted", "approval_denied"):
        granted = t == "approval_granted"
        return TimelineItem(
            r.seq,
            r.at,
            t,
            "approved" if granted else "refused",
            f"{'approved' if granted else 'denied'} by {_text(d.get('approver'))}: {tool}",
            _fields(d, "reason", "via", "request_id"),
        )
    if t in ("tool_result", "tool_error", "tool_retry"):
        kind = "result" if t == "tool_result" else "error"
        blocks = [("result", _pretty(d.get("result")))] if "result" in d else []
        return TimelineItem(
            r.seq,
            r.at,
            t,
            kind,
            f"{t.replace('_', ' ')}: {tool}",
            _fields(d, "trust", "attempts", "error", "call_id"),
            blocks,
        )
    if t == "write_performed":
        return TimelineItem(
            r.seq,
            r.at,
            t,
            "write",
            f"CHANGED via {tool}",
            _fields(d, "policy_version", "call_id"),
            [("arguments", _pretty(d.get("args"))), ("result", _pretty(d.get("result")))],
        )
    if t == "escalated":
        return TimelineItem(
            r.seq,
            r.at,
            t,
            "escalated",
            f"escalated: {_text(d.get('reason'))}",
            _fields(d, "message", "cap", "actor"),
            [("partial progress", _pretty(d.get("progress") or {}))],
        )
    if t == "run_ended":
        return TimelineItem(
            r.seq,
            r.at,
            t,
            "end",
            f"run ended: {_text(d.get('status'))} ({_text(d.get('reason'))})",
            [
                ("cost", f"${float(d.get('cost_usd') or 0):.6f}"),
                *_fields(
                    d, "tool_calls", "model_calls", "denials", "refusals", "errors", "elapsed_s"
                ),
            ],
        )
    return TimelineItem(r.seq, r.at, t, "other", t.replace("_", " "), [], [("data", _pretty(d))])


def timeline(records: list[AuditRecord]) -> list[TimelineItem]:
    """The run's events, in order, as timeline items; a decision also shows the arguments
    of the call it decided (a reader of a denial needs both in one place)."""
    proposed: dict[str, Any] = {}
    out = []
    for r in records:
        item = _item(r)
        call_id = r.data.get("call_id")
        if r.type == "tool_call_proposed" and isinstance(call_id, str):
            proposed[call_id] = r.data.get("args")
        elif r.type == "decision" and isinstance(call_id, str) and call_id in proposed:
            item.blocks.insert(0, ("arguments", _pretty(proposed[call_id])))
        out.append(item)
    return out
