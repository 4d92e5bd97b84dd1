"""A call's progress, relayed from the upstream running it to the client that asked.

The client's progress token stays with the proxy: the upstream is given a token of the
proxy's own for that one call (clients' tokens would meet, and could be guessed, at an
upstream several sessions share), and its ``notifications/progress`` under that token reach
the one session whose call it is, under the session's own token, while the call runs; a
notification for any other token, or after the call ended, is dropped (counted).

A progress message is the upstream's text on its way to the client and maybe the model:
each new one enters the run as untrusted context (recorded, labelled) before it is relayed,
cut to `MESSAGE_CHARS`; past `MAX_MESSAGES` new messages in one call, the numbers go on
without words (an upstream cannot flood the record through a progress bar). As MCP asks,
the progress a client hears only increases, across the call's retries too (a retry's count
starting again is not relayed), and at most `MAX_NOTIFICATIONS` times a call (an upstream
cannot flood a client that reads slowly either).
"""

from __future__ import annotations

import contextlib
import itertools
import math
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

__all__ = [
    "MAX_MESSAGES",
    "MAX_NOTIFICATIONS",
    "MESSAGE_CHARS",
    "ClientProgress",
    "ProgressChannel",
    "ProgressNotes",
    "ProgressRelay",
]

MAX_MESSAGES = 16
"""New progress messages one call relays (and records); later ones lose their words."""
MESSAGE_CHARS = 1000
"""A relayed progress message is cut to this many characters."""
MAX_NOTIFICATIONS = 1000
"""Progress notifications one call relays; later ones are dropped (counted)."""


@runtime_checkable
class ProgressChannel(Protocol):
    """Where a session hears of a call's progress (the SDK's `ServerSession` method)."""

    async def send_progress_notification(
        self,
        progress_token: str | int,
        progress: float,
        total: float | None = None,
        message: str | None = None,
    ) -> None: ...


class ProgressNotes(ABC):
    """The proxy's own servers' `ProgressChannel` method: the notification's params, made
    here once, go to `_send_progress` (each server's way of sending them)."""

    async def send_progress_notification(
        self,
        progress_token: str | int,
        progress: float,
        total: float | None = None,
        message: str | None = None,
    ) -> None:
        params: dict[str, Any] = {"progressToken": progress_token, "progress": progress}
        if total is not None:
            params["total"] = total
        if message is not None:
            params["message"] = message
        self._send_progress(progress_token, params)

    @abstractmethod
    def _send_progress(self, token: str | int, params: dict[str, Any]) -> None:
        """Send one progress notification's ``params`` for ``token``."""


@dataclass
class ClientProgress:
    """A client's call asking for progress, and what it was told so far (kept across the
    call's attempts: the gateway may retry it)."""

    token: str | int
    """The client's token."""
    progress: float = -math.inf
    relayed: int = 0
    messages: int = 0
    message: str | None = None
    """The last message relayed."""


@dataclass
class _Call:
    channel: ProgressChannel
    client: ClientProgress
    observe: Callable[[str], None]
    """Records a message in the run as untrusted context (raises when it cannot)."""


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


class ProgressRelay:
    """The calls in flight whose client asked for progress, by (upstream, proxy token).

    Args:
        counts: Where relayed, dropped and malformed notifications are counted.
    """

    def __init__(self, counts: Counter[str]) -> None:
        self.counts = counts
        self._calls: dict[tuple[str, str], _Call] = {}
        self._ids = itertools.count(1)

    @contextlib.contextmanager
    def call(
        self,
        upstream: str,
        client: ClientProgress,
        channel: Any,
        observe: Callable[[str], None],
    ) -> Iterator[dict[str, Any] | None]:
        """While one attempt of ``client``'s call runs at ``upstream``: the ``_meta`` to
        send it (None when the client has no channel for progress)."""
        if not isinstance(channel, ProgressChannel):
            yield None
            return
        own = f"opsgate-progress-{next(self._ids)}"
        key = (upstream, own)
        self._calls[key] = _Call(channel, client, observe)
        try:
            yield {"progressToken": own}
        finally:
            del self._calls[key]

    async def relay(self, upstream: str, params: Any) -> None:
        """Relay one ``notifications/progress`` of ``upstream`` to the client whose call it
        is (nothing raised: a notification is never answered)."""
        token = params.get("progressToken") if isinstance(params, dict) else None
        call = self._calls.get((upstream, token)) if isinstance(token, str) else None
        if call is None:
            self.counts["progress_dropped"] += 1
            return
        progress, total = params.get("progress"), params.get("total")
        if not _number(progress) or not (total is None or _number(total)):
            self.counts["progress_malformed"] += 1
            return
        client = call.client
        if progress <= client.progress or client.relayed >= MAX_NOTIFICATIONS:
            self.counts["progress_dropped"] += 1  # not forward, or too many
            return
        message = self._message(call, params.get("message"))
        client.progress = progress
        client.relayed += 1
        with contextlib.suppress(Exception):  # the client went away: nobody to tell
            await call.channel.send_progress_notification(client.token, progress, total, message)
            self.counts["progress_relayed"] += 1

    def _message(self, call: _Call, said: Any) -> str | None:
        """The words relayed with a notification: recorded first when new; none when the
        call has said too much, or when they cannot be recorded."""
        if not isinstance(said, str) or not said:
            return None
        message = said[:MESSAGE_CHARS]
        client = call.client
        if message == client.message:
            return message
        if client.messages >= MAX_MESSAGES:
            self.counts["progress_messages_dropped"] += 1
            return None
        try:
            call.observe(message)
        except Exception:  # not in the record: not relayed (the numbers still are)
            self.counts["progress_messages_dropped"] += 1
            return None
        client.messages += 1
        client.message = message
        return message
