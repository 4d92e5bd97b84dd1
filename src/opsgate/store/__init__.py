"""Storage: one SQLite file by default, PostgreSQL by URL; schema by Alembic migrations."""

from opsgate.store._engine import (
    DATABASE_URL_ENV,
    DEFAULT_DIR_ENV,
    NoDatabaseError,
    default_url,
    home_url,
)
from opsgate.store._schema import SCHEMA_VERSION, runs
from opsgate.store._store import SchemaState, Store, open_store, schema_state, upgrade_store

__all__ = [
    "DATABASE_URL_ENV",
    "DEFAULT_DIR_ENV",
    "SCHEMA_VERSION",
    "NoDatabaseError",
    "SchemaState",
    "Store",
    "default_url",
    "home_url",
    "open_store",
    "runs",
    "schema_state",
    "upgrade_store",
]
