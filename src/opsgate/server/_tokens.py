"""Console access tokens: created, listed and revoked here (`opsgate tokens`), checked on
every request by the console.

Only the SHA-256 of a token is stored. A plain, unsalted hash is enough here, and a slow
password hash would add nothing: the token is 256 bits from `secrets`, not a password a
person chose, so no dictionary or brute force can find a preimage; and a fast hash lets a
request find its token by an indexed equality look-up. The token itself is shown once.

Creating and revoking a token is audited when a recorder is given (the CLI and the console
always give theirs): a ``token_created`` / ``token_revoked`` event naming the actor, the
token's id, name and role, never the token or its hash.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

from sqlalchemy import delete, insert, select, update

from opsgate.errors import ConfigError
from opsgate.recorder import Event, EventType, Recorder
from opsgate.store import Store, api_tokens

__all__ = [
    "Role",
    "TokenInfo",
    "authenticate",
    "create_token",
    "hash_token",
    "list_tokens",
    "revoke_token",
    "token_by_id",
]

_PREFIX = "ogt_"
_NAME_MAX = 128


class Role(IntEnum):
    """What a token may do; each role can do everything the ones below it can."""

    VIEWER = 1  # read
    APPROVER = 2  # + decide approvals, stop runs
    ADMIN = 3  # + tokens, budgets, alert rules

    @classmethod
    def parse(cls, text: str) -> Role:
        """The role named ``text`` (viewer, approver, admin)."""
        try:
            return cls[text.strip().upper()]
        except KeyError:
            raise ConfigError(f"no role `{text}`: use viewer, approver or admin") from None

    @property
    def label(self) -> str:
        """Its name, lower case, as stored and shown."""
        return self.name.lower()


@dataclass(frozen=True, slots=True)
class TokenInfo:
    """A token as stored (never the token itself)."""

    token_id: str
    name: str
    role: Role
    created_at: float
    created_by: str
    revoked_at: float | None
    revoked_by: str | None

    @property
    def active(self) -> bool:
        """Not revoked."""
        return self.revoked_at is None


def hash_token(token: str) -> str:
    """The stored form of ``token``: its SHA-256, hex (see the module docstring: why)."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def _info(r: Any) -> TokenInfo:
    return TokenInfo(
        r.token_id,
        r.name,
        Role.parse(r.role),
        r.created_at,
        r.created_by,
        r.revoked_at,
        r.revoked_by,
    )


def _check_name(name: str) -> str:
    clean = name.strip()
    if not clean or len(clean) > _NAME_MAX or not clean.isprintable():
        raise ConfigError(
            f"a token's name is printable text of 1 to {_NAME_MAX} characters, not `{name}`"
        )
    return clean


def _audit(recorder: Recorder, kind: EventType, info: TokenInfo, actor: str, at: float) -> None:
    """One event of its own per change (as a stage change is): never the token or its hash."""
    data = {"actor": actor, "token_id": info.token_id, "name": info.name, "role": info.role.label}
    recorder.record(Event(kind, f"token-{info.token_id}", 0, at, data))


def create_token(
    store: Store,
    *,
    name: str,
    role: Role,
    created_by: str,
    recorder: Recorder | None = None,
) -> tuple[str, TokenInfo]:
    """A new token for ``name``: returns the token (shown once, never stored) and its row.

    The name is who the token acts as (an approval's approver, a stop's actor), so two
    active tokens may not share one. With a ``recorder``, the creation is audited; if that
    fails the token is deleted again (it was never shown) and the error raised.

    Raises:
        ConfigError: a bad or already used name.
        StoreError: the audit event could not be written.
    """
    name = _check_name(name)
    token = _PREFIX + secrets.token_urlsafe(32)
    token_id = secrets.token_hex(8)
    with store.engine.begin() as conn:
        taken = conn.execute(
            select(api_tokens.c.token_id).where(
                api_tokens.c.name == name, api_tokens.c.revoked_at.is_(None)
            )
        ).first()
        if taken is not None:
            raise ConfigError(f"an active token is already named `{name}`: revoke it first")
        conn.execute(
            insert(api_tokens).values(
                token_id=token_id,
                name=name,
                role=role.label,
                token_sha256=hash_token(token),
                created_at=time.time(),
                created_by=created_by[:256],
            )
        )
    info = _lookup(store, token_id)
    if recorder is not None:
        try:
            _audit(recorder, EventType.TOKEN_CREATED, info, created_by[:256], info.created_at)
        except Exception:
            with store.engine.begin() as conn:
                conn.execute(delete(api_tokens).where(api_tokens.c.token_id == token_id))
            raise
    return token, info


def _lookup(store: Store, token_id: str) -> TokenInfo:
    with store.engine.connect() as conn:
        row = conn.execute(select(api_tokens).where(api_tokens.c.token_id == token_id)).first()
    if row is None:
        raise ConfigError(f"no token `{token_id}`")
    return _info(row)


def list_tokens(store: Store, *, include_revoked: bool = False) -> list[TokenInfo]:
    """Tokens, oldest first (active ones only unless asked)."""
    query = select(api_tokens).order_by(api_tokens.c.created_at)
    if not include_revoked:
        query = query.where(api_tokens.c.revoked_at.is_(None))
    with store.engine.connect() as conn:
        return [_info(r) for r in conn.execute(query)]


def revoke_token(
    store: Store, which: str, *, revoked_by: str, recorder: Recorder | None = None
) -> TokenInfo:
    """Revoke the active token whose id or name is ``which``; it stops working at once
    (every request looks its token up). With a ``recorder``, the revocation is audited
    (after it took effect: a failed audit write never leaves the token working).

    Raises:
        ConfigError: no such active token.
        StoreError: the token is revoked, but the audit event could not be written.
    """
    with store.engine.begin() as conn:
        row = conn.execute(
            select(api_tokens).where(
                (api_tokens.c.token_id == which) | (api_tokens.c.name == which),
                api_tokens.c.revoked_at.is_(None),
            )
        ).first()
        if row is None:
            raise ConfigError(f"no active token with the id or name `{which}`")
        conn.execute(
            update(api_tokens)
            .where(api_tokens.c.token_id == row.token_id)
            .values(revoked_at=time.time(), revoked_by=revoked_by[:256])
        )
    info = _lookup(store, row.token_id)
    if recorder is not None:
        at = info.revoked_at if info.revoked_at is not None else time.time()
        _audit(recorder, EventType.TOKEN_REVOKED, info, revoked_by[:256], at)
    return info


def authenticate(store: Store, token: str) -> TokenInfo | None:
    """The active token ``token`` is, or None."""
    if not token.startswith(_PREFIX) or len(token) > 200:
        return None
    with store.engine.connect() as conn:
        row = conn.execute(
            select(api_tokens).where(
                api_tokens.c.token_sha256 == hash_token(token),
                api_tokens.c.revoked_at.is_(None),
            )
        ).first()
    return None if row is None else _info(row)


def token_by_id(store: Store, token_id: str) -> TokenInfo | None:
    """The active token with id ``token_id`` (a session's), or None."""
    with store.engine.connect() as conn:
        row = conn.execute(
            select(api_tokens).where(
                api_tokens.c.token_id == token_id, api_tokens.c.revoked_at.is_(None)
            )
        ).first()
    return None if row is None else _info(row)
