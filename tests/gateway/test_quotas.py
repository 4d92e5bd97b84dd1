"""Quotas across runs: counted and totalled per window, per workflow, invoker or agent;
calls in flight count; a call that never runs gives its share back; never exceeded by many
gateway processes on one SQLite file or one PostgreSQL database."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from opsgate.errors import PolicyError
from opsgate.gateway import (
    ApprovalAnswer,
    CallbackApprover,
    Gateway,
    InMemoryQuotaLedger,
    MappingSecretStore,
    OutcomeStatus,
    QuotaLedger,
    StoreQuotaLedger,
)
from opsgate.policy import Reason, load_policy
from opsgate.store import open_store, quota_uses
from tests.conftest import BELT

ROOT = Path(__file__).resolve().parents[2]

QUOTA_POLICY = """
version: "q1"
defaults:
  caps: {max_tool_calls: 100, max_identical_calls: 100}
workflows:
  wf:
    stage: autonomous_in_scope
    tools:
      lookup: {}
      send: {repeatable: true}
      pay: {repeatable: true, approval_when: "args.amount > 50.0"}
    provenance: {trusted_tools: [lookup, send, pay]}
    quotas:
      send: {max: 10, per: 1h}
      pay.amount: {max: 100, per: 1d, by: invoker}
"""


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def _gateway(ledger: QuotaLedger, approve: bool = True) -> Gateway:
    return Gateway(
        BELT,
        load_policy("q", BELT, text=QUOTA_POLICY),
        quotas=ledger,
        secrets=MappingSecretStore({"PAY_KEY": "k"}),
        approver=CallbackApprover(lambda r: ApprovalAnswer(approve, "lea")),
    )


def _run(gateway: Gateway, invoker: str = "ana") -> Any:
    return gateway.start_run(
        "wf",
        invoker=invoker,
        agent_id="bot",
        request="refund 60 on ORD-1, 50 on ORD-2, 40 on ORD-3; mail bo@example.com",
        deps={},
    )


async def test_a_count_quota_holds_across_runs_and_its_window_passes() -> None:
    clock = Clock()
    gateway = _gateway(InMemoryQuotaLedger(clock))
    sent = 0
    for i in range(4):  # four runs of four calls: ten go out
        run = _run(gateway)
        for j in range(4):
            outcome = await gateway.call(run, "send", {"to": "bo@example.com", "body": f"{i}{j}"})
            sent += outcome.ok
    assert sent == 10
    run = _run(gateway)
    refused = await gateway.call(run, "send", {"to": "bo@example.com", "body": "x"})
    assert refused.status is OutcomeStatus.DENIED
    assert refused.decision.reason is Reason.QUOTA_EXCEEDED
    assert refused.decision.rule == "workflows.wf.quotas.send"
    assert "past 10" in refused.message and "per 1h" in refused.message
    clock.now += 3601
    assert (await gateway.call(run, "send", {"to": "bo@example.com", "body": "y"})).ok


async def test_a_sum_quota_per_invoker_and_a_denied_approval_gives_its_share_back() -> None:
    ledger = InMemoryQuotaLedger()
    gateway = _gateway(ledger)
    run = _run(gateway)
    assert (await gateway.call(run, "pay", {"order_id": "ORD-1", "amount": 60.0})).ok
    over = await gateway.call(run, "pay", {"order_id": "ORD-2", "amount": 50.0})
    assert over.decision.reason is Reason.QUOTA_EXCEEDED and "used 60" in over.message
    assert (await gateway.call(run, "pay", {"order_id": "ORD-3", "amount": 40.0})).ok
    other = _run(gateway, invoker="max")  # by: invoker: another person's tally
    assert (await gateway.call(other, "pay", {"order_id": "ORD-1", "amount": 60.0})).ok
    denier = _gateway(ledger, approve=False)
    third = _run(denier, invoker="zoe")
    no = await denier.call(third, "pay", {"order_id": "ORD-1", "amount": 60.0})
    assert no.status is OutcomeStatus.APPROVAL_DENIED
    assert (
        await gateway.call(_run(gateway, "zoe"), "pay", {"order_id": "ORD-2", "amount": 50.0})
    ).ok


async def test_a_ledger_out_of_reach_denies_the_call() -> None:
    class Down:
        def reserve(self, uses: Any) -> None:
            raise OSError("database is locked")

        def release(self, run_id: str, call_id: str) -> None:
            raise OSError("database is locked")

    gateway = _gateway(Down())
    outcome = await gateway.call(_run(gateway), "send", {"to": "bo@example.com", "body": "x"})
    assert outcome.decision.reason is Reason.INTERNAL_ERROR and not outcome.ok
    # a tool without a quota needs no ledger
    assert (await gateway.call(_run(gateway), "lookup", {"order_id": "ORD-1"})).ok


def test_a_policy_with_quotas_needs_a_ledger() -> None:
    with pytest.raises(TypeError, match="quota ledger"):
        Gateway(BELT, load_policy("q", BELT, text=QUOTA_POLICY))


@pytest.mark.parametrize(
    ("quota", "needle"),
    [
        ("send: {max: 1, per: 0h}", "per"),
        ("send: {max: 1, per: -1d}", "per"),
        ("send: {max: 1, per: 1w}", "per"),
        ("send: {max: -1, per: 1h}", "max"),
        ("nope: {max: 1, per: 1h}", "quota `nope` names tool `nope`"),
        ("pay.amout: {max: 1, per: 1h}", "unknown argument `amout`"),
        ("send.to: {max: 1, per: 1h}", "`to`, which is not a number"),
        ("send: {max: 1, per: 1h, by: team}", "by"),
    ],
)
def test_bad_quotas_are_refused_at_load(quota: str, needle: str) -> None:
    text = QUOTA_POLICY.split("    quotas:")[0] + "    quotas:\n      " + quota + "\n"
    with pytest.raises(PolicyError) as caught:
        load_policy("q", BELT, text=text)
    assert needle in str(caught.value)


def test_many_gateway_processes_never_exceed_a_quota_in_the_store(db_url: str) -> None:
    store = open_store(db_url)
    store.close()
    workers = [
        subprocess.Popen(
            [sys.executable, "-m", "tests.gateway._quota_worker", db_url, "6"],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=os.environ.copy(),
        )
        for _ in range(4)
    ]
    ran = []
    for worker in workers:
        out, err = worker.communicate(timeout=120)
        assert worker.returncode == 0, err
        ran.append(int(out.strip().splitlines()[-1]))
    assert sum(ran) == 10, ran  # 24 calls asked for, the quota is 10 an hour
    with open_store(db_url) as store, store.engine.connect() as conn:
        kept = conn.execute(quota_uses.select().where(quota_uses.c.released.is_(False))).all()
    assert len(kept) == 10


async def test_the_store_ledger_releases_and_counts_on_its_own(db_url: str) -> None:
    with open_store(db_url) as store:
        gateway = _gateway(StoreQuotaLedger(store), approve=False)
        run = _run(gateway)
        denied = await gateway.call(run, "pay", {"order_id": "ORD-1", "amount": 60.0})
        assert denied.status is OutcomeStatus.APPROVAL_DENIED
        with store.engine.connect() as conn:
            (row,) = conn.execute(quota_uses.select()).all()
        assert row.released and row.amount == 60.0 and row.subject == "ana"
        gateway.close()
