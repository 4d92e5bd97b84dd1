"""Browser sessions and CSRF tokens, signed with a key that lives only in this process.

A session cookie carries ``token_id.nonce.expiry.mac`` (HMAC-SHA256 under the process key):
it names the token, never holds it, and every request looks the token up again, so a
revoked token's sessions end at once. The key is random per process: restarting the
console logs everyone out, which is the price of keeping no session table.

CSRF: every form and every htmx request carries a token derived from the session's nonce
(HMAC again), checked on every writing request a cookie authenticates; the login form,
before any session, uses a nonce from its own short-lived signed cookie. Requests that
carry a bearer token (the API from a script) need none: a browser never adds that header
by itself.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass

__all__ = ["PRELOGIN_COOKIE", "SESSION_COOKIE", "Session", "SessionKeys"]

SESSION_COOKIE = "opsgate_session"
PRELOGIN_COOKIE = "opsgate_login"
SESSION_TTL_S = 12 * 3600.0
PRELOGIN_TTL_S = 3600.0


@dataclass(frozen=True, slots=True)
class Session:
    """A verified session cookie."""

    token_id: str
    nonce: str
    expires_at: float


class SessionKeys:
    """Signs and checks session cookies and CSRF tokens with one process-wide key."""

    def __init__(self, key: bytes | None = None) -> None:
        self._key = key or secrets.token_bytes(32)

    def _mac(self, text: str) -> str:
        return hmac.new(self._key, text.encode(), hashlib.sha256).hexdigest()

    def issue(self, token_id: str, ttl_s: float = SESSION_TTL_S) -> str:
        """A new session cookie value for ``token_id``."""
        body = f"{token_id}.{secrets.token_hex(16)}.{int(time.time() + ttl_s)}"
        return f"{body}.{self._mac('session:' + body)}"

    def read(self, value: str | None) -> Session | None:
        """The session ``value`` carries, if it is ours and not expired."""
        if not value or len(value) > 300:
            return None
        parts = value.split(".")
        if len(parts) != 4:
            return None
        token_id, nonce, expiry, mac = parts
        body = f"{token_id}.{nonce}.{expiry}"
        if not _same(mac, self._mac("session:" + body)):
            return None
        try:
            expires_at = float(expiry)
        except ValueError:
            return None
        if expires_at < time.time():
            return None
        return Session(token_id, nonce, expires_at)

    def prelogin(self) -> str:
        """A cookie value holding the login form's nonce."""
        body = f"{secrets.token_hex(16)}.{int(time.time() + PRELOGIN_TTL_S)}"
        return f"{body}.{self._mac('prelogin:' + body)}"

    def prelogin_nonce(self, value: str | None) -> str | None:
        """The login form's nonce in ``value``, if it is ours and fresh."""
        if not value or len(value) > 200:
            return None
        parts = value.split(".")
        if len(parts) != 3:
            return None
        nonce, expiry, mac = parts
        if not _same(mac, self._mac(f"prelogin:{nonce}.{expiry}")):
            return None
        if not expiry.isascii() or not expiry.isdigit() or float(expiry) < time.time():
            return None
        return nonce

    def csrf(self, nonce: str) -> str:
        """The CSRF token of the session (or login form) with ``nonce``."""
        return self._mac("csrf:" + nonce)

    def csrf_ok(self, nonce: str, presented: str | None) -> bool:
        """Whether ``presented`` is the CSRF token of ``nonce``."""
        return bool(presented) and _same(self.csrf(nonce), presented or "")


def _same(a: str, b: str) -> bool:
    """Constant-time equality of two texts, whatever characters a client sent."""
    return hmac.compare_digest(
        a.encode("utf-8", "surrogatepass"), b.encode("utf-8", "surrogatepass")
    )
