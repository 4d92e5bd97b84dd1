"""The audit trail: append-only, hash-chained, Merkle-checkpointed and signed."""

from opsgate.audit._archive import verify_archive
from opsgate.audit._log import AuditLog
from opsgate.audit._merkle import (
    CompactRange,
    leaf_hash,
    node_hash,
    verify_consistency,
    verify_inclusion,
)
from opsgate.audit._proof import verify_inclusion_document
from opsgate.audit._recorder import AuditRecorder
from opsgate.audit._records import (
    RECORD_VERSION,
    ArchivedSegment,
    AuditRecord,
    Checkpoint,
    VerifyReport,
    checkpoint_statement,
)
from opsgate.audit._signing import (
    SIGNING_KEY_ENV,
    Signer,
    default_key_path,
    key_id,
    load_public_key,
)
from opsgate.audit._witness import CheckpointWitness, WitnessedHead, witness_path_for

__all__ = [
    "RECORD_VERSION",
    "SIGNING_KEY_ENV",
    "ArchivedSegment",
    "AuditLog",
    "AuditRecord",
    "AuditRecorder",
    "Checkpoint",
    "CheckpointWitness",
    "CompactRange",
    "Signer",
    "VerifyReport",
    "WitnessedHead",
    "checkpoint_statement",
    "default_key_path",
    "key_id",
    "leaf_hash",
    "load_public_key",
    "node_hash",
    "verify_archive",
    "verify_consistency",
    "verify_inclusion",
    "verify_inclusion_document",
    "witness_path_for",
]
