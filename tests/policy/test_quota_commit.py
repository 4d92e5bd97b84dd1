"""`StoreQuotaLedger.reserve` commits without an fsync of its own (the call's write-ahead
audit commit makes it durable), yet stays atomic and visible to every other connection at
once, and leaves the pooled connection as durable as it found it."""

from __future__ import annotations

from sqlalchemy import create_engine, func, select

from opsgate.gateway import QuotaUse, StoreQuotaLedger
from opsgate.policy import Quota
from opsgate.store import open_store, quota_uses

QUOTA = Quota("wf:send", "send", None, 2.0, 3600.0, "workflow", "workflows.wf.quotas.send")


def _use(call_id: str) -> QuotaUse:
    return QuotaUse(QUOTA, "wf", 1.0, "run-1", call_id)


def test_a_reservation_is_seen_at_once_and_the_connection_stays_durable(db_url: str) -> None:
    with open_store(db_url) as store:
        ledger = StoreQuotaLedger(store)
        assert ledger.reserve([_use("c1")]) is None
        # another engine (another process's view) sees it committed
        other = create_engine(db_url.replace("postgresql://", "postgresql+psycopg://"))
        try:
            with other.connect() as conn:
                count = conn.execute(select(func.count()).select_from(quota_uses)).scalar()
            assert count == 1
        finally:
            other.dispose()
        assert ledger.reserve([_use("c2")]) is None
        refused = ledger.reserve([_use("c3")])
        assert refused is not None and refused.used == 2.0  # the tally counts both
        with store.engine.connect() as conn:
            if conn.dialect.name == "sqlite":  # back to FULL (2) for the audit's commits
                assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2
            else:  # SET LOCAL ended with the reservation's transaction
                assert conn.exec_driver_sql("SHOW synchronous_commit").scalar() == "on"
