"""The console's queries as `bench/server.py` made them (issue #14): keyset pages that see
every run once, even runs started at the same instant; "had a denial" run by run; pending
requests read without the write lock; the Cost page kept until the ledger or the trail
changes; the indexes of migration 0014 under the runs list."""

from __future__ import annotations

import importlib.util
import sqlite3
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from sqlalchemy import event, insert, select, update

from opsgate.audit import AuditLog
from opsgate.server import Console
from opsgate.server._approvals import pending_page, pending_requests
from opsgate.server._console import ConsoleError
from opsgate.server._cost import cost_view
from opsgate.server._runs import RunFilters, list_runs
from opsgate.store import Store, approvals, cost_entries, open_store, runs

BENCH = Path(__file__).resolve().parents[2] / "bench"


def _load_fill() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_server_fill", BENCH / "_server_fill.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_server_fill"] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def filled(db_url: str) -> Iterator[Store]:
    """300 runs shaped like the gateway's (SQLite, and PostgreSQL in `make test`)."""
    fill = _load_fill()
    store = open_store(db_url)
    fill.fill(store, fill.Sizes(300, 14, runs_per_day=300, pending=8), batch_runs=100)
    try:
        yield store
    finally:
        store.close()


def _all_pages(store: Store, filters: RunFilters, limit: int) -> list[str]:
    seen: list[str] = []
    cursor = None
    for _ in range(1000):
        page = list_runs(store, filters, before=cursor, limit=limit)
        seen += [r["run_id"] for r in page.rows]
        if page.next_cursor is None:
            return seen
        cursor = page.next_cursor
    raise AssertionError("the pages never ended")


def test_keyset_pages_see_every_run_once_even_at_the_same_instant(filled: Store) -> None:
    with filled.engine.begin() as conn:  # 40 runs started at one instant: the cursor's tie
        tied = list(conn.execute(select(runs.c.run_id).limit(40)).scalars())
        conn.execute(update(runs).where(runs.c.run_id.in_(tied)).values(started_at=1.8e9))
    filters = RunFilters(include_eval=True)
    seen = _all_pages(filled, filters, limit=7)
    with filled.engine.connect() as conn:
        expected = list(
            conn.execute(
                select(runs.c.run_id).order_by(runs.c.started_at.desc(), runs.c.run_id.desc())
            ).scalars()
        )
    assert seen == expected and len(seen) == 300
    production = _all_pages(filled, RunFilters(), limit=50)
    assert 0 < len(production) < 300 and len(set(production)) == len(production)


def test_had_a_denial_is_exactly_the_runs_the_gate_denied_in(filled: Store) -> None:
    denied = {
        r.run_id
        for r in AuditLog(filled).records()
        if r.type == "decision" and r.data.get("effect") == "deny"
    }
    assert denied
    assert set(_all_pages(filled, RunFilters(denied=True, include_eval=True), 9)) == denied


def _writes(store: Store) -> list[str]:
    seen: list[str] = []

    @event.listens_for(store.engine, "before_cursor_execute")
    def _record(_c: Any, _cur: Any, statement: str, *_rest: Any) -> None:
        if statement.lstrip().upper().startswith(("UPDATE", "INSERT", "DELETE")):
            seen.append(statement)

    return seen


def test_pending_requests_take_no_write_lock_until_one_expired(db_url: str, filled: Store) -> None:
    console = Console(db_url)
    try:
        store = console.store()
        writes = _writes(store)
        pending = pending_requests(console)
        assert len(pending) == 8 and writes == []
        assert [a.record.requested_at for a in pending] == sorted(
            a.record.requested_at for a in pending
        )
        one = pending[3].record
        assert [a.record.request_id for a in pending_requests(console, one.run_id)] == [
            one.request_id
        ]
        with store.engine.begin() as conn:  # its time runs out
            conn.execute(
                update(approvals)
                .where(approvals.c.request_id == one.request_id)
                .values(expires_at=time.time() - 1)
            )
        writes.clear()
        left = pending_requests(console)
        assert one.request_id not in {a.record.request_id for a in left} and len(left) == 7
        assert len(writes) == 1  # expired through the queue, as `opsgate approvals list` does
        with store.engine.connect() as conn:
            status = conn.execute(
                select(approvals.c.status).where(approvals.c.request_id == one.request_id)
            ).scalar()
        assert status == "expired"
    finally:
        console.close()


def test_the_cost_page_is_kept_until_the_ledger_changes(filled: Store) -> None:
    first = cost_view(filled, days=7, workflow=None, include_eval=False)
    assert cost_view(filled, days=7, workflow=None, include_eval=False) is first
    assert cost_view(filled, days=7, workflow="refunds", include_eval=False) is not first
    with filled.engine.begin() as conn:
        conn.execute(
            insert(cost_entries).values(
                run_id="r-late",
                workflow="refunds",
                at=time.time(),
                kind="model",
                role="act",
                model="small",
                tool=None,
                input_tokens=10,
                output_tokens=10,
                cached_input_tokens=0,
                cost_usd=1.25,
                estimate=False,
                latency_s=0.1,
                cache_hit=False,
                attempts=1,
                ok=True,
                purpose="production",
            )
        )
    after = cost_view(filled, days=7, workflow=None, include_eval=False)
    assert after is not first
    assert after.total_usd == pytest.approx(first.total_usd + 1.25)


def test_the_runs_list_reads_an_index_not_the_table(tmp_path: Path) -> None:
    path = tmp_path / "plan.db"
    open_store(f"sqlite:///{path}").close()
    conn = sqlite3.connect(path)
    try:
        plans = {
            "newest": "SELECT * FROM runs WHERE purpose = 'production' "
            "ORDER BY started_at DESC, run_id DESC LIMIT 51",
            "next page": "SELECT * FROM runs WHERE purpose = 'production' AND "
            "(started_at, run_id) < (1.0, 'x') ORDER BY started_at DESC, run_id DESC LIMIT 51",
            "waiting": "SELECT * FROM runs WHERE status = 'awaiting_approval' AND "
            "purpose = 'production' ORDER BY started_at DESC, run_id DESC LIMIT 51",
            "history": "SELECT * FROM approvals WHERE status != 'pending' "
            "ORDER BY decided_at DESC, request_id LIMIT 50",
        }
        for name, sql in plans.items():
            plan = " | ".join(row[3] for row in conn.execute("EXPLAIN QUERY PLAN " + sql))
            # (the history's ties on `decided_at` are sorted by id: only ties, not the table)
            plan = plan.replace("USE TEMP B-TREE FOR RIGHT PART OF ORDER BY", "")
            assert "USING INDEX" in plan and "TEMP B-TREE" not in plan, (name, plan)
    finally:
        conn.close()


@pytest.fixture
def crowded(db_url: str) -> Iterator[Store]:
    """120 pending requests, several asked at the same instant (the cursor's tie-break)."""
    fill = _load_fill()
    store = open_store(db_url)
    fill.fill(store, fill.Sizes(200, 2, runs_per_day=200, pending=120), batch_runs=100)
    with store.engine.begin() as conn:
        ids = conn.execute(
            select(approvals.c.request_id)
            .where(approvals.c.status == "pending")
            .order_by(approvals.c.requested_at)
            .limit(6)
        ).scalars()
        conn.execute(
            update(approvals)
            .where(approvals.c.request_id.in_(list(ids)))
            .values(requested_at=time.time() - 3600)
        )
    try:
        yield store
    finally:
        store.close()


def test_the_inbox_pages_every_pending_request_once_oldest_first(
    db_url: str, crowded: Store
) -> None:
    """The inbox shows 50 at a time (300 pending once made a 558 KB page): keyset pages on
    (requested_at, request_id) see each request once, the count beside them is all of them."""
    console = Console(db_url)
    try:
        seen: list[Any] = []
        cursor = None
        pages = 0
        while True:
            page = pending_page(console, after=cursor, limit=50)
            assert page.total == 120
            seen += [a.record for a in page.requests]
            pages += 1
            cursor = page.next_cursor
            if cursor is None:
                break
        assert pages == 3 and len(seen) == 120
        assert len({r.request_id for r in seen}) == 120
        keys = [(r.requested_at, r.request_id) for r in seen]
        assert keys == sorted(keys)
        with pytest.raises(ConsoleError) as bad:
            pending_page(console, after="yesterday")
        assert bad.value.status == 400 and "requested_at:request_id" in str(bad.value)
    finally:
        console.close()
