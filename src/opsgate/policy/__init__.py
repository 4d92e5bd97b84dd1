"""The policy engine: a YAML policy, validated, compiled once, and a pure `decide`."""

from opsgate.policy._api import decide, load_policy
from opsgate.policy._compiled import CompiledPolicy
from opsgate.policy._decision import (
    CommittedPlan,
    Decision,
    Effect,
    ProposedCall,
    Reason,
    RunState,
    SimpleRunState,
)
from opsgate.policy._document import (
    STAGE_SCOPES,
    STAGES,
    ArgConstraint,
    Caps,
    Endorsement,
    OutputTrust,
    PolicyDocument,
    ProvenancePolicy,
    Rule,
    Stage,
    ToolPolicy,
    WorkflowPolicy,
)
from opsgate.policy._load import content_version, parse_policy

__all__ = [
    "STAGES",
    "STAGE_SCOPES",
    "ArgConstraint",
    "Caps",
    "CommittedPlan",
    "CompiledPolicy",
    "Decision",
    "Effect",
    "Endorsement",
    "OutputTrust",
    "PolicyDocument",
    "ProposedCall",
    "ProvenancePolicy",
    "Reason",
    "Rule",
    "RunState",
    "SimpleRunState",
    "Stage",
    "ToolPolicy",
    "WorkflowPolicy",
    "content_version",
    "decide",
    "load_policy",
    "parse_policy",
]
