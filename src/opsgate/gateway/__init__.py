"""The gateway: the one path every tool call takes."""

from opsgate.gateway._approval import (
    ApprovalAnswer,
    ApprovalRequest,
    Approver,
    CallbackApprover,
    DenyAllApprover,
    InMemoryApprovalQueue,
)
from opsgate.gateway._durable import ApprovalRecord, ApprovalTakenOver, DurableApprovalQueue
from opsgate.gateway._gateway import Gateway, OutcomeStatus, PlanCommitment, ToolOutcome
from opsgate.gateway._run import (
    CompletedCall,
    Escalation,
    Progress,
    Run,
    RunPurpose,
    RunStatus,
    UnexecutedCall,
)
from opsgate.gateway._secrets import EnvSecretStore, MappingSecretStore, SecretStore

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
    "Gateway",
    "InMemoryApprovalQueue",
    "MappingSecretStore",
    "OutcomeStatus",
    "PlanCommitment",
    "Progress",
    "Run",
    "RunPurpose",
    "RunStatus",
    "SecretStore",
    "ToolOutcome",
    "UnexecutedCall",
]
