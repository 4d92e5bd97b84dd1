"""Storage: one SQLite file by default, PostgreSQL by URL; schema by Alembic migrations."""

from opsgate.store._engine import DATABASE_URL_ENV, DEFAULT_DIR_ENV, default_url
from opsgate.store._schema import SCHEMA_VERSION
from opsgate.store._store import Store, open_store

__all__ = [
    "DATABASE_URL_ENV",
    "DEFAULT_DIR_ENV",
    "SCHEMA_VERSION",
    "Store",
    "default_url",
    "open_store",
]
