"""Every environment variable opsgate reads, named and documented once.

Modules read their variable through the names here (and opsgate's home through `home`), so
that what a deployment can set is this one list (`VARIABLES`), which the README's
Environment section documents (`tests/test_docs.py` checks both).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Final

__all__ = [
    "AGENT_VARIABLES",
    "AUDIT_RETENTION_DAYS_ENV",
    "AUDIT_SIGNING_KEY_ENV",
    "DATABASE_URL_ENV",
    "DEFAULT_HOME",
    "EMBEDDED_API_KEY_ENV",
    "HOME_ENV",
    "MCP_TOKEN_ENV",
    "MCP_URL_ENV",
    "MODEL_ENV",
    "OTLP_ENDPOINT_ENV",
    "TASK_ENV",
    "TRACE_CONTENT_ENV",
    "TRACE_RETENTION_DAYS_ENV",
    "VARIABLES",
    "home",
]

#: opsgate's folder: the default SQLite database, the signing key and its witness, audit
#: archives, the embedded model's weights.
HOME_ENV: Final = "OPSGATE_HOME"
#: The database URL (``sqlite:///…`` or ``postgresql://…``); default: SQLite in the home.
DATABASE_URL_ENV: Final = "OPSGATE_DATABASE_URL"
#: The Ed25519 key file that signs audit checkpoints; default: in the home.
AUDIT_SIGNING_KEY_ENV: Final = "OPSGATE_AUDIT_SIGNING_KEY"
#: ``1``/``true``/``yes``/``on``: traces carry content (arguments, results, request, output),
#: still redacted; off by default.
TRACE_CONTENT_ENV: Final = "OPSGATE_TRACE_CONTENT"
#: Where traces are exported by OTLP/HTTP (the standard ``OTEL_EXPORTER_OTLP_*`` too).
OTLP_ENDPOINT_ENV: Final = "OPSGATE_OTLP_ENDPOINT"
#: Days debug traces are kept by `opsgate retention apply` (default 30).
TRACE_RETENTION_DAYS_ENV: Final = "OPSGATE_TRACE_RETENTION_DAYS"
#: Days before audit segments are archived by `opsgate retention apply` (default 365).
AUDIT_RETENTION_DAYS_ENV: Final = "OPSGATE_AUDIT_RETENTION_DAYS"
#: The API key of the embedded model server (for its clients; `opsgate model serve` uses it
#: instead of a random one when set).
EMBEDDED_API_KEY_ENV: Final = "OPSGATE_EMBEDDED_API_KEY"

#: Every variable, for the docs test and `opsgate` diagnostics.
VARIABLES: Final = (
    HOME_ENV,
    DATABASE_URL_ENV,
    AUDIT_SIGNING_KEY_ENV,
    TRACE_CONTENT_ENV,
    OTLP_ENDPOINT_ENV,
    TRACE_RETENTION_DAYS_ENV,
    AUDIT_RETENTION_DAYS_ENV,
    EMBEDDED_API_KEY_ENV,
)

#: What `agent-eval run --agent-cmd` sets for the external agent it runs (the proxy's URL,
#: its bearer token, the task id, the model id); opsgate itself reads none of them, and
#: none of `VARIABLES` reaches that agent.
MCP_URL_ENV: Final = "OPSGATE_MCP_URL"
MCP_TOKEN_ENV: Final = "OPSGATE_MCP_TOKEN"
TASK_ENV: Final = "OPSGATE_TASK"
MODEL_ENV: Final = "OPSGATE_MODEL"
AGENT_VARIABLES: Final = (MCP_URL_ENV, MCP_TOKEN_ENV, TASK_ENV, MODEL_ENV)

#: The home when `HOME_ENV` is unset: ``.opsgate`` in the current folder.
DEFAULT_HOME: Final = ".opsgate"


def home() -> Path:
    """opsgate's folder: ``$OPSGATE_HOME``, else ``.opsgate`` (read each time: tests and
    processes may set it late)."""
    return Path(os.environ.get(HOME_ENV) or DEFAULT_HOME)
