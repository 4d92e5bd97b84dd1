"""The gateway: the one path every tool call takes.

`Gateway` decides (contract, policy, approvals, caps) and records; a `ToolExecutor` does:
`LocalToolExecutor` runs tools in this process, `ScriptedToolExecutor` answers from a
script (tests, dry runs). The model router charges a run through `Gateway.meter(run)`.
"""

from opsgate.gateway._approval import (
    ApprovalAnswer,
    ApprovalRequest,
    Approver,
    CallbackApprover,
    DenyAllApprover,
    InMemoryApprovalQueue,
)
from opsgate.gateway._durable import ApprovalRecord, ApprovalTakenOver, DurableApprovalQueue
from opsgate.gateway._executor import (
    Execution,
    LocalToolExecutor,
    RetryGate,
    ToolExecutor,
    ToolRequest,
)
from opsgate.gateway._gateway import Gateway, OutcomeStatus, PlanCommitment, ToolOutcome
from opsgate.gateway._meter import RunMeter
from opsgate.gateway._quotas import (
    InMemoryQuotaLedger,
    QuotaLedger,
    QuotaRefusal,
    QuotaUse,
    StoreQuotaLedger,
)
from opsgate.gateway._run import (
    CompletedCall,
    Escalation,
    Progress,
    Run,
    RunCounts,
    RunPurpose,
    RunStatus,
    UnexecutedCall,
)
from opsgate.gateway._scripted import ScriptedToolExecutor
from opsgate.gateway._secrets import EnvSecretStore, MappingSecretStore, SecretStore
from opsgate.gateway._stages import StageSource, StoreStageSource
from opsgate.gateway._stops import StopRequest, StopSource, StoreStopSource

__all__ = [
    "ApprovalAnswer",
    "ApprovalRecord",
    "ApprovalRequest",
    "ApprovalTakenOver",
    "Approver",
    "CallbackApprover",
    "CompletedCall",
    "DenyAllApprover",
    "DurableApprovalQueue",
    "EnvSecretStore",
    "Escalation",
    "Execution",
    "Gateway",
    "InMemoryApprovalQueue",
    "InMemoryQuotaLedger",
    "LocalToolExecutor",
    "MappingSecretStore",
    "OutcomeStatus",
    "PlanCommitment",
    "Progress",
    "QuotaLedger",
    "QuotaRefusal",
    "QuotaUse",
    "RetryGate",
    "Run",
    "RunCounts",
    "RunMeter",
    "RunPurpose",
    "RunStatus",
    "ScriptedToolExecutor",
    "SecretStore",
    "StageSource",
    "StopRequest",
    "StopSource",
    "StoreQuotaLedger",
    "StoreStageSource",
    "StoreStopSource",
    "ToolExecutor",
    "ToolOutcome",
    "ToolRequest",
    "UnexecutedCall",
]
