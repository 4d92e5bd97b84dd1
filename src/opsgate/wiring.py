"""What a process wires before it runs agents, in one place.

`store_recorders` gives the three recorders of a store (the audit trail, the debug traces,
the cost ledger) and closes them each on its own; `model_router` gives the router of a router
file, with the embedded model started (and stopped) when the file asks for it. `opsgate
demo`, `agent-eval run` (through `opsgate.evals.evaluate`) and anything that serves agents
use these instead of wiring the pieces again.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Literal

from sqlalchemy.exc import SQLAlchemyError

from opsgate.audit import AuditLog, AuditRecorder, Signer
from opsgate.cost import CostRecorder, StoreBudgets
from opsgate.errors import ConfigError, ModelError, OpsgateError
from opsgate.models import ModelRouter, RouterConfig, local_models
from opsgate.recorder import Recorder
from opsgate.store import Store
from opsgate.tracing import TraceRecorder, tracing_recorder

__all__ = ["StoreRecorders", "model_router", "store_recorders"]


@dataclass(frozen=True, slots=True)
class StoreRecorders:
    """The audit, trace and cost recorders of one store."""

    audit: AuditRecorder
    traces: TraceRecorder
    costs: CostRecorder

    @property
    def all(self) -> tuple[Recorder, ...]:
        """What to give a `FanOutRecorder` or a runner's ``recorders``: the audit recorder
        alone, which hands each batch it writes to the traces and the cost ledger (its
        followers: one hand-off per batch, not one per event on the gateway's hot path)."""
        return (self.audit,)

    def close(self) -> list[str]:
        """Close each recorder on its own (one failing never keeps another open); returns
        what could not be completed, one sentence each. The cost recorder counts its own
        failures and never raises."""
        problems = []
        for name, close in (("audit trail", self.audit.close), ("traces", self.traces.shutdown)):
            try:
                close()
            except (SQLAlchemyError, OpsgateError) as exc:
                problems.append(f"the {name} could not be completed: {exc}")
        self.costs.close()
        return problems


def store_recorders(
    store: Store,
    *,
    signer: Signer | None = None,
    durable: bool | Literal["write_ahead"] = True,
    checkpoint_on_run_end: bool = True,
) -> StoreRecorders:
    """The recorders of ``store``; checkpoints are signed with ``signer`` (default: the key
    file in opsgate's home, created on first use, with its witness beside it). The traces
    and the cost ledger follow the audit trail: they get its batches as they are written,
    so only `StoreRecorders.all` (the audit recorder) goes to the gateway.

    ``durable="write_ahead"`` with ``checkpoint_on_run_end=False`` is what an eval uses: each
    tool waits for its decision's commit, concurrent tasks share commits, and checkpoints
    are signed every 1,000 events and at the end rather than per run.
    """
    log = AuditLog(store, signer or Signer.from_file())
    traces, costs = tracing_recorder(store), CostRecorder(store)
    audit = AuditRecorder(
        log,
        durable=durable,
        checkpoint_on_run_end=checkpoint_on_run_end,
        followers=(traces, costs),
    )
    return StoreRecorders(audit, traces, costs)


@contextmanager
def model_router(config: RouterConfig, store: Store | None = None) -> Iterator[ModelRouter]:
    """The router of ``config``; the embedded models it names are started first (the
    optional larger tier only where installed: `opsgate.models.local_models`) and stopped
    after. With ``store``, the budgets an operator set in the console apply before the
    file's (`opsgate.cost.StoreBudgets`).

    Raises:
        ConfigError: an embedded model cannot start.
    """
    with ExitStack() as stack:
        try:
            resolved, endpoint, _ = stack.enter_context(local_models(config))
        except (ConfigError, ModelError) as exc:
            raise ConfigError(f"the embedded model cannot start: {exc}") from None
        budgets = None if store is None else StoreBudgets(store)
        yield ModelRouter(resolved, embedded=endpoint, budgets=budgets)
