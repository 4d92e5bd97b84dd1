"""Storage: one SQLite file by default, PostgreSQL by URL; schema by Alembic migrations."""

from opsgate.store._engine import (
    DATABASE_URL_ENV,
    DEFAULT_DIR_ENV,
    NoDatabaseError,
    default_url,
    describe_db_error,
    home_url,
)
from opsgate.store._runs import apply_run_events
from opsgate.store._schema import (
    AUDIT_TABLES,
    SCHEMA_VERSION,
    api_tokens,
    approvals,
    audit_checkpoints,
    audit_events,
    audit_retention,
    cost_entries,
    eval_baselines,
    eval_reports,
    eval_reviews,
    meta,
    model_cache,
    run_stops,
    runs,
    spans,
)
from opsgate.store._stops import StopStatus, request_stop
from opsgate.store._store import SchemaState, Store, open_store, schema_state, upgrade_store

__all__ = [
    "AUDIT_TABLES",
    "DATABASE_URL_ENV",
    "DEFAULT_DIR_ENV",
    "SCHEMA_VERSION",
    "NoDatabaseError",
    "SchemaState",
    "StopStatus",
    "Store",
    "api_tokens",
    "apply_run_events",
    "approvals",
    "audit_checkpoints",
    "audit_events",
    "audit_retention",
    "cost_entries",
    "default_url",
    "describe_db_error",
    "eval_baselines",
    "eval_reports",
    "eval_reviews",
    "home_url",
    "meta",
    "model_cache",
    "open_store",
    "request_stop",
    "run_stops",
    "runs",
    "schema_state",
    "spans",
    "upgrade_store",
]
