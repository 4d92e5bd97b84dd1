"""A run's state rebuilt from its audit events, one event at a time.

`decide` reads a `RunState`; the gateway's `Run` is one, built as the run went. Replay
builds the same state from the record instead: each event is applied the way the gateway
changed its `Run` when it emitted that event, so that before each recorded decision the
state is what the gateway decided on (or as near as the record allows: see `Rebuilt`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from opsgate.policy import CommittedPlan, CompiledPolicy, SimpleRunState
from opsgate.provenance import TrustMap

__all__ = ["PastCall", "Rebuilt", "call_key", "has_marker"]

#: What the audit trail puts where it masked a secret or a personal value.
MARKER = "[redacted:"


@dataclass(frozen=True, slots=True)
class PastCall:
    """A call that ran (what history conditions and ``requires_before`` read)."""

    tool: str
    args: Mapping[str, Any]


def call_key(tool: str, args: Any) -> str:
    """The gateway's key of a validated call: tool + sorted-key JSON of its arguments."""
    return tool + ":" + orjson.dumps(args, option=orjson.OPT_SORT_KEYS).decode()


def has_marker(value: Any) -> bool:
    """Whether ``value`` holds a redaction marker anywhere (then a decision on it may
    differ from the live one: the live gate saw the value, replay sees the mask)."""
    if isinstance(value, str):
        return MARKER in value
    if isinstance(value, Mapping):
        return any(has_marker(k) or has_marker(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return any(has_marker(v) for v in value)
    return False


class Rebuilt:
    """One run's state, advanced by its recorded events.

    Args:
        policy: The policy replayed: results are labelled as it would label them (its
            field-level output trust), since that is what it would have read.
        workflow: The run's workflow.
        agent_id: The run's agent identity.
        invoker: Who invoked it.
        request: The invoker's request, as stored (redacted).
        started_at: When the run started (its ``run_started`` event).
    """

    def __init__(
        self,
        policy: CompiledPolicy,
        *,
        workflow: str,
        agent_id: str,
        invoker: str,
        request: str,
        started_at: float,
    ) -> None:
        self.policy = policy
        self.state = SimpleRunState(
            workflow=workflow, agent_id=agent_id, invoker=invoker, request=request
        )
        self.started_at = started_at
        self.paused_s = 0.0  # time a run spent persisted, waiting for a person (`resume`)
        self._asked_at: float | None = None
        self.proposals: dict[str, tuple[str, Any]] = {}
        self.truncated_reads = 0
        self.relabelled = 0

    # -- what the gateway counted --------------------------------------------------------

    def at(self, moment: float) -> None:
        """The run's elapsed time at ``moment`` (what the wall-clock cap reads)."""
        self.state.elapsed_s = max(0.0, moment - self.started_at - self.paused_s)

    def counted(self, key: str) -> None:
        """A proposal the gateway counted (its caps apply to the next one)."""
        self.state.tool_calls += 1
        self.state.call_counts[key] = self.state.call_counts.get(key, 0) + 1

    # -- events --------------------------------------------------------------------------

    def apply(self, kind: str, data: Mapping[str, Any], at: float) -> None:
        """Advance the state as the gateway did when it emitted this event."""
        state = self.state
        if kind == "context_read":
            text = data.get("text")
            trust = data.get("trust")
            if isinstance(text, str) and trust in ("trusted", "untrusted"):
                state.provenance.add(text, trust=trust, source=str(data.get("source", "")))
            if "chars" in data:
                self.truncated_reads += 1  # the record keeps the start of a long read
        elif kind == "step":
            state.steps += 1
        elif kind == "model_call":
            state.cost_usd += _number(data.get("cost_usd"))
            state.retries += max(0, int(_number(data.get("attempts"), 1)) - 1)
        elif kind == "tool_retry":
            state.retries += 1
        elif kind == "plan_committed":
            if data.get("accepted"):
                state.plan = _plan(data)
        elif kind == "tool_call_proposed":
            self.proposals[str(data.get("call_id"))] = (str(data.get("tool")), data.get("args"))
        elif kind == "tool_result":
            self._result(data)
        elif kind == "write_performed":
            tool, args = str(data.get("tool")), data.get("args")
            state.executed_writes.setdefault(call_key(tool, args), str(data.get("call_id")))
        elif kind == "approval_requested":
            self._asked_at = at
        elif kind == "run_resumed" and self._asked_at is not None:
            # a resumed run counts its time from its snapshot (`Run.restore`), not the wait
            self.paused_s += max(0.0, at - self._asked_at)

    def _result(self, data: Mapping[str, Any]) -> None:
        """A tool result: read into the provenance (labelled as the replayed policy would
        label it) and a call that ran, for history conditions."""
        call_id, tool = str(data.get("call_id")), str(data.get("tool"))
        recorded = data.get("trust")
        labels = self._labels(tool, recorded)
        labelled = self.state.provenance.add(
            data.get("result"),
            trust=labels.default,
            source=f"tool:{tool}#{call_id}",
            fields=labels,
        )
        if labelled.trust != "none" and recorded not in (None, labelled.trust):
            self.relabelled += 1
        args = self.proposals.get(call_id, (tool, {}))[1]
        self.state.completed.append(PastCall(tool, args if isinstance(args, Mapping) else {}))

    def _labels(self, tool: str, recorded: Any) -> TrustMap:
        """How the replayed policy labels ``tool``'s results in this run's workflow: its
        own settings, else the contract's, else what the record says (``mixed`` without
        its field rules is read as untrusted: nothing vouches for it)."""
        state = self.state
        policy = self.policy
        if tool in policy.allowed_tools(state.workflow, state.agent_id):
            return policy.tool_settings(state.workflow, tool, state.agent_id).output_map
        contract = policy.toolbelt.find(tool)
        if contract is not None:
            return contract.output_map
        return TrustMap.parse("trusted" if recorded == "trusted" else "untrusted")


def _number(value: Any, default: float = 0.0) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return default


def _plan(data: Mapping[str, Any]) -> CommittedPlan | None:
    """The committed plan an accepted ``plan_committed`` event records (None: unreadable,
    which only an edited record can be: `opsgate audit verify` says so)."""
    tools, sources = data.get("tools"), data.get("sources") or {}
    if not isinstance(tools, list) or not isinstance(sources, Mapping):
        return None
    try:
        return CommittedPlan.from_dict({"tools": tools, "sources": sources})
    except (AttributeError, TypeError, ValueError):
        return None
