"""A firing alert demotes its workflow when its rule says so (``demote_to``).

"`demote` is immediate, and a firing alert can demote automatically when configured": each
firing of a rule with ``demote_to`` moves the workflow down to that stage if it is above
it, as any demotion (`demote`: a ``workflow_stages`` row and an audited event), with the
actor ``alert:<rule id>``, the firing's message as the reason and the firing itself as the
evidence. A workflow already at that stage or lower is left alone, so repeated checks of a
rule that keeps firing demote once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from opsgate.alerts import Firing, RuleNotFound, get_rule
from opsgate.autonomy._stages import current_stage, demote
from opsgate.policy import STAGES, CompiledPolicy
from opsgate.recorder import Recorder
from opsgate.store import Store

__all__ = ["AutoDemotion", "demote_on_firings", "demotions_wanted"]


@dataclass(frozen=True, slots=True)
class AutoDemotion:
    """What one firing did to its workflow's stage.

    Attributes:
        outcome: ``demoted``; ``already`` (at that stage or lower: nothing to do);
            ``unknown_workflow`` (the policy does not govern it: nothing done).
        previous: The stage before (None for an unknown workflow).
    """

    rule_id: int
    workflow: str
    demote_to: str
    outcome: str
    previous: str | None

    @property
    def actor(self) -> str:
        """Who the demotion names."""
        return f"alert:{self.rule_id}"


def demotions_wanted(store: Store, firings: Sequence[Firing]) -> list[tuple[Firing, str]]:
    """The firings whose rule demotes, with the stage (a rule deleted since: none)."""
    out = []
    for firing in firings:
        try:
            rule = get_rule(store, firing.rule_id)
        except RuleNotFound:
            continue
        if rule.demote_to is not None:
            out.append((firing, rule.demote_to))
    return out


def demote_on_firings(
    policy: CompiledPolicy,
    store: Store,
    recorder: Recorder,
    firings: Sequence[Firing],
) -> list[AutoDemotion]:
    """Demote the workflow of each firing whose rule has ``demote_to`` (see the module)."""
    done = []
    for firing, stage in demotions_wanted(store, firings):
        if stage not in STAGES:  # written by a newer opsgate: not ours to act on
            continue
        if not policy.has_workflow(firing.workflow):
            done.append(
                AutoDemotion(firing.rule_id, firing.workflow, stage, "unknown_workflow", None)
            )
            continue
        now = current_stage(store, policy, firing.workflow)
        if now not in STAGES or STAGES.index(stage) >= STAGES.index(now):
            done.append(AutoDemotion(firing.rule_id, firing.workflow, stage, "already", now))
            continue
        demote(
            policy,
            firing.workflow,
            store,
            recorder,
            to=stage,
            actor=f"alert:{firing.rule_id}",
            reason=f"alert rule {firing.rule_id} fired: {firing.message}",
            evidence=[{"alert": firing.as_dict()}],
        )
        done.append(AutoDemotion(firing.rule_id, firing.workflow, stage, "demoted", now))
    return done
