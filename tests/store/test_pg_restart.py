"""A PostgreSQL restart is a pause for opsgate's writers, not a failure (issue #11, the soak).

Before, the audit writer's reconnect after `pg_ctl restart` met "the database system is
shutting down" or a refused connection and failed the batch, and a write-ahead
`AuditRecorder` then refused every later event: each gateway worker had to be restarted.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from opsgate.audit import AuditLog, AuditRecorder, Signer
from opsgate.errors import StoreError
from opsgate.recorder import Event, EventType
from opsgate.store import _engine, open_store
from tests import _postgres

pytestmark = pytest.mark.slow


@pytest.fixture
def own_cluster() -> Iterator[_postgres.Cluster]:
    """A cluster of its own: restarting the session's would disturb the other tests."""
    yield from _postgres.cluster()


def _restart(cluster: _postgres.Cluster, mode: str) -> None:
    cluster._run(
        "pg_ctl",
        "-D",
        str(cluster.root / "data"),
        "-m",
        mode,
        "-w",
        "-l",
        str(cluster.root / "log"),  # the server must not hold the test's pipes
        "-o",
        f"-p {cluster.port} -k {cluster.root} -c listen_addresses=127.0.0.1",
        "restart",
    )


def test_write_ahead_appends_ride_through_a_fast_restart(own_cluster: _postgres.Cluster) -> None:
    store = open_store(own_cluster.new_database())
    log = AuditLog(store, Signer.generate())
    recorder = AuditRecorder(log, durable="write_ahead", checkpoint_on_run_end=False)
    errors: list[BaseException] = []
    written = after = run = 0
    stop = time.monotonic() + 3.0
    restarter = threading.Timer(0.5, _restart, (own_cluster, "fast"))
    restarter.start()
    try:
        while time.monotonic() < stop:
            try:  # a barrier event: record() returns once it is committed
                recorder.record(Event(EventType.RUN_ENDED, f"r{run}", written, time.time(), {}))
                written += 1
                after += bool(errors) or not restarter.is_alive()
            except StoreError as exc:
                # only a commit the restart cut short fails (it is never retried: it may
                # have landed); that run's record is broken, the next run's goes on
                errors.append(exc)
                run += 1
        restarter.join()
        assert len(errors) <= 1, errors
        assert after > 0  # writes went on after the restart
        recorder.record(Event(EventType.RUN_ENDED, f"r{run}", written, time.time(), {}))
        recorder.flush()
        assert written + 1 <= log.verify().events <= written + 1 + len(errors)
    finally:
        restarter.cancel()
        recorder.close()
        store.close()


def test_a_server_that_is_not_there_still_fails_soon(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_engine, "PG_REFUSED_WAIT_S", 0.5)
    started = time.monotonic()
    with pytest.raises(StoreError, match="cannot connect"):
        open_store(f"postgresql://postgres@127.0.0.1:{_postgres._free_port()}/nothing")
    assert time.monotonic() - started < 5.0
