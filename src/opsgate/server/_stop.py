"""Stopping a live run from the console: `opsgate.store.request_stop` as the logged-in
token's name; the gateway running the run ends it (``escalated``, reason ``interrupted``)
before its next call, recording who asked."""

from __future__ import annotations

from opsgate.server._console import Console, ConsoleError, Principal
from opsgate.store import request_stop

__all__ = ["stop_run"]


def stop_run(console: Console, run_id: str, *, who: Principal, reason: str) -> str:
    """Ask for ``run_id`` to stop; returns ``requested`` or ``already_requested``.

    Raises:
        ConsoleError: 404 unknown run, 409 a run that has already ended.
    """
    status = request_stop(console.store(), run_id, actor=who.name, reason=reason)
    if status == "unknown_run":
        raise ConsoleError(404, f"no run `{run_id}`")
    if status == "not_running":
        raise ConsoleError(409, f"run `{run_id}` has already ended: there is nothing to stop")
    return str(status)
