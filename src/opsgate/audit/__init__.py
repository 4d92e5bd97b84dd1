"""The audit trail: append-only, hash-chained, Merkle-checkpointed and signed."""

from opsgate.audit._log import (
    RECORD_VERSION,
    ArchivedSegment,
    AuditLog,
    AuditRecord,
    Checkpoint,
    VerifyReport,
    checkpoint_statement,
    verify_archive,
)
from opsgate.audit._merkle import (
    CompactRange,
    leaf_hash,
    node_hash,
    verify_consistency,
    verify_inclusion,
)
from opsgate.audit._proof import verify_inclusion_document
from opsgate.audit._recorder import AuditRecorder
from opsgate.audit._signing import SIGNING_KEY_ENV, Signer, default_key_path, load_public_key

__all__ = [
    "RECORD_VERSION",
    "SIGNING_KEY_ENV",
    "ArchivedSegment",
    "AuditLog",
    "AuditRecord",
    "AuditRecorder",
    "Checkpoint",
    "CompactRange",
    "Signer",
    "VerifyReport",
    "checkpoint_statement",
    "default_key_path",
    "leaf_hash",
    "load_public_key",
    "node_hash",
    "verify_archive",
    "verify_consistency",
    "verify_inclusion",
    "verify_inclusion_document",
]
