"""The policy engine: a YAML policy, validated, compiled once, and a pure `decide`."""

from opsgate.policy._api import decide, load_policy
from opsgate.policy._blast import (
    ArgumentBound,
    BlastRadius,
    Limit,
    QuotaBound,
    ToolBound,
    Unreachable,
    blast_radius,
)
from opsgate.policy._cel import Condition, compile_condition
from opsgate.policy._compiled import CompiledPolicy, Quota, ToolSettings
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
from opsgate.policy._load import content_version, error_location, line_of, parse_policy, read_yaml

__all__ = [
    "STAGES",
    "STAGE_SCOPES",
    "ArgConstraint",
    "ArgumentBound",
    "BlastRadius",
    "Caps",
    "CommittedPlan",
    "CompiledPolicy",
    "Condition",
    "Decision",
    "Effect",
    "Endorsement",
    "Limit",
    "OutputTrust",
    "PolicyDocument",
    "ProposedCall",
    "ProvenancePolicy",
    "Quota",
    "QuotaBound",
    "Reason",
    "Rule",
    "RunState",
    "SimpleRunState",
    "Stage",
    "ToolBound",
    "ToolPolicy",
    "ToolSettings",
    "Unreachable",
    "WorkflowPolicy",
    "blast_radius",
    "compile_condition",
    "content_version",
    "decide",
    "error_location",
    "line_of",
    "load_policy",
    "parse_policy",
    "read_yaml",
]
