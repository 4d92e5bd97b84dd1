"""Policy replay and shadow mode: a policy change reviewed against what production did.

- `replay_policy`: every recorded call of a window decided again under a new policy, on
  the run's state rebuilt from its audit events (`_replay`, `_state`), and what changes
  (`ReplayReport`, `_report`);
- `shadow_report`: the ``shadow_decision`` events a gateway running a candidate policy
  in shadow recorded, counted (`_shadow`).
"""

from opsgate.replay._replay import replay_policy
from opsgate.replay._report import CHANGES, CallChange, Change, ReplayReport
from opsgate.replay._shadow import (
    SHADOW_EVENT,
    ShadowDifference,
    ShadowReport,
    ShadowRun,
    shadow_report,
)

__all__ = [
    "CHANGES",
    "SHADOW_EVENT",
    "CallChange",
    "Change",
    "ReplayReport",
    "ShadowDifference",
    "ShadowReport",
    "ShadowRun",
    "replay_policy",
    "shadow_report",
]
