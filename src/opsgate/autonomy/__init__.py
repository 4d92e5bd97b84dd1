"""Expanding autonomy on evidence: the preflight table of a workflow (go / no-go per row,
with the evidence), and the workflow's stage kept in the store, promoted one stage at a time
on that evidence (and a replay of the new stage's policy over production), demoted at once,
by a person or by a firing alert whose rule says so (`demote_on_firings`)."""

from opsgate.autonomy._auto_demote import AutoDemotion, demote_on_firings, demotions_wanted
from opsgate.autonomy._preflight import (
    GENERIC_TOOL,
    Preflight,
    PreflightRow,
    preflight,
    wilson_interval,
)
from opsgate.autonomy._stages import (
    PromotionRefused,
    StageChange,
    current_stage,
    demote,
    promote,
    promotion_evidence,
    stage_history,
)

__all__ = [
    "GENERIC_TOOL",
    "AutoDemotion",
    "Preflight",
    "PreflightRow",
    "PromotionRefused",
    "StageChange",
    "current_stage",
    "demote",
    "demote_on_firings",
    "demotions_wanted",
    "preflight",
    "promote",
    "promotion_evidence",
    "stage_history",
    "wilson_interval",
]
