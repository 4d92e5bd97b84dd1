"""Resource subscriptions through the proxy: each URI subscribed to once at its upstream for
every client session that asked, and ended there with the last of them."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from opsgate.mcp._upstream import Upstream, UpstreamError

__all__ = ["Subscriptions"]


class Subscriptions:
    """Which sessions (by key) subscribed to which resource URI, and at which upstream."""

    def __init__(self, upstreams: Mapping[str, Upstream], say: Callable[[str], None]) -> None:
        self._upstreams = upstreams
        self._say = say
        self._keys: dict[str, set[str]] = {}
        self._at: dict[str, str] = {}

    async def add(self, key: str, uri: str, upstream: str) -> None:
        """Subscribe session ``key`` (the upstream is asked only for the first).

        Raises:
            UpstreamError: the upstream refused or failed (nobody is subscribed then).
        """
        if not self._keys.get(uri):
            await self._upstreams[upstream].subscribe(uri)
            self._at[uri] = upstream
        self._keys.setdefault(uri, set()).add(key)

    async def remove(self, key: str, uri: str) -> None:
        """End session ``key``'s subscription; the upstream's with the last session."""
        keys = self._keys.get(uri)
        if keys is None:
            return
        keys.discard(key)
        if keys:
            return
        del self._keys[uri]
        name = self._at.pop(uri, None)
        if name is None:
            return
        try:
            await self._upstreams[name].unsubscribe(uri)
        except UpstreamError as exc:  # nobody hears its updates now anyway
            self._say(f"upstream `{name}` did not end a subscription: {exc}")

    def keys_for(self, uri: str, upstream: str) -> list[str]:
        """The sessions to tell that ``upstream`` updated ``uri`` (none when another
        upstream was asked for it: an upstream speaks only of its own resources)."""
        if self._at.get(uri) != upstream:
            return []
        return sorted(self._keys.get(uri, ()))
