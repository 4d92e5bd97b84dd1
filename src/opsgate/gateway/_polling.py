"""`Poller`: reads something from the store on a thread of its own, every few seconds, so
that what a call's path checks (a stop request, a workflow's stage) is a dictionary look-up,
and a change made by another process (the console, a command) reaches this one."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

__all__ = ["Poller"]

_log = logging.getLogger("opsgate.gateway")


class Poller:
    """Calls ``refresh`` now and then every ``poll_s`` seconds until `close`.

    A failing refresh is logged and counted (``errors``); what was read last stays in force.
    """

    def __init__(self, refresh: Callable[[], None], *, poll_s: float, name: str) -> None:
        if poll_s <= 0:
            raise ValueError("poll_s must be > 0")
        self._refresh = refresh
        self.poll_s = poll_s
        self.errors = 0
        self._done = threading.Event()
        self.refresh()
        self._thread = threading.Thread(target=self._poll, name=name, daemon=True)
        self._thread.start()

    def refresh(self) -> None:
        """Read now."""
        try:
            self._refresh()
        except Exception as exc:
            self.errors += 1
            _log.warning("%s could not read the store: %s", self._thread_name(), exc)

    def _thread_name(self) -> str:
        thread = getattr(self, "_thread", None)
        return thread.name if thread is not None else "a poller"

    def _poll(self) -> None:
        while not self._done.wait(self.poll_s):
            self.refresh()

    def close(self) -> None:
        """Stop polling."""
        self._done.set()
