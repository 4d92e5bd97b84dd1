"""Bearer tokens of the HTTP proxy: each names an invoker and an agent identity, and only
its sha256 is kept at rest (`opsgate mcp token create` shows the token once)."""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

import orjson

from opsgate.environment import home
from opsgate.errors import ConfigError

__all__ = ["TokenRecord", "TokenStore", "default_token_path"]

_PREFIX = "ogm_"


def default_token_path() -> Path:
    """``mcp-tokens.json`` in opsgate's home."""
    return home() / "mcp-tokens.json"


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()


@dataclass(frozen=True, slots=True)
class TokenRecord:
    """One token as stored: its id, hash and the identities it stands for."""

    id: str
    sha256: str
    invoker: str
    agent_id: str
    created_at: float


class TokenStore:
    """The token file (read again when it changes, so a revocation takes effect)."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path or default_token_path()
        self._records: list[TokenRecord] = []
        self._stamp: tuple[int, int] | None = None

    def _load(self) -> list[TokenRecord]:
        try:
            info = self.path.stat()
        except FileNotFoundError:
            self._records, self._stamp = [], None
            return self._records
        stamp = (info.st_mtime_ns, info.st_size)
        if stamp == self._stamp:
            return self._records
        try:
            data = orjson.loads(self.path.read_bytes())
            records = [TokenRecord(**r) for r in data["tokens"]]
        except (OSError, ValueError, TypeError, KeyError) as exc:
            raise ConfigError(f"`{self.path}` is not a token file ({exc})") from None
        self._records, self._stamp = records, stamp
        return records

    def _save(self, records: list[TokenRecord]) -> None:
        data = {"version": 1, "tokens": [_row(r) for r in records]}
        temporary = self.path.with_name(self.path.name + ".tmp")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as out:
                out.write(orjson.dumps(data, option=orjson.OPT_INDENT_2) + b"\n")
            temporary.replace(self.path)
        except OSError as exc:
            raise ConfigError(f"cannot write `{self.path}`: {exc.strerror or exc}") from None

    def create(self, invoker: str, agent_id: str) -> tuple[str, TokenRecord]:
        """A new token (returned once, never stored) and its record."""
        if not invoker or not agent_id:
            raise ConfigError("a token needs an invoker and an agent identity")
        token = _PREFIX + secrets.token_urlsafe(32)
        record = TokenRecord(
            "tok_" + secrets.token_hex(4), _digest(token), invoker, agent_id, time.time()
        )
        self._save([*self._load(), record])
        return token, record

    def revoke(self, token_id: str) -> bool:
        """Remove a token by its id; whether there was one."""
        records = self._load()
        kept = [r for r in records if r.id != token_id]
        if len(kept) == len(records):
            return False
        self._save(kept)
        return True

    def list(self) -> list[TokenRecord]:
        """Every token's record (no token can be read back from them)."""
        return list(self._load())

    def identity(self, token: str) -> TokenRecord | None:
        """The record of a presented token, or None (compared in constant time)."""
        if not token.startswith(_PREFIX):
            return None
        digest = _digest(token)
        found = None
        for record in self._load():
            if hmac.compare_digest(record.sha256, digest):
                found = record
        return found


def _row(record: TokenRecord) -> dict[str, object]:
    return {
        "id": record.id,
        "sha256": record.sha256,
        "invoker": record.invoker,
        "agent_id": record.agent_id,
        "created_at": record.created_at,
    }
