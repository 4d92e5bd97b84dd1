"""Expanding autonomy on evidence: the preflight table of a workflow (go / no-go per row,
with the evidence), which a promotion to the next stage requires."""

from opsgate.autonomy._preflight import (
    GENERIC_TOOL,
    Preflight,
    PreflightRow,
    preflight,
    wilson_interval,
)

__all__ = ["GENERIC_TOOL", "Preflight", "PreflightRow", "preflight", "wilson_interval"]
