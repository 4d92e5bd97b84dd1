"""Ed25519 signing of checkpoints (signed tree heads), with `cryptography`.

The signing key lives outside the database (a PEM file, mode 0600), so that someone who
can write to the database still cannot forge a checkpoint. Verifiers need only the
public key.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from opsgate.environment import AUDIT_SIGNING_KEY_ENV, home
from opsgate.errors import ConfigError

__all__ = [
    "SIGNING_KEY_ENV",
    "Signer",
    "default_key_path",
    "key_id",
    "load_public_key",
    "verify_signature",
]

#: Environment variable naming the signing key file.
SIGNING_KEY_ENV = AUDIT_SIGNING_KEY_ENV


def default_key_path() -> Path:
    """``$OPSGATE_AUDIT_SIGNING_KEY``, else ``$OPSGATE_HOME/audit-signing.key``."""
    named = os.environ.get(SIGNING_KEY_ENV)
    if named:
        return Path(named)
    return home() / "audit-signing.key"


def key_id(public: Ed25519PublicKey) -> str:
    """A short, stable name for a public key: the first 16 hex of SHA-256 of its raw bytes."""
    return hashlib.sha256(_raw(public)).hexdigest()[:16]


def _raw(public: Ed25519PublicKey) -> bytes:
    return public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


class Signer:
    """Signs checkpoint statements with one Ed25519 key."""

    def __init__(self, private_key: Ed25519PrivateKey, path: Path | None = None) -> None:
        self._key = private_key
        self.public_key = private_key.public_key()
        self.key_id = key_id(self.public_key)
        #: The key's file, when it was loaded from one (its witness file sits beside it).
        self.path = path

    @classmethod
    def generate(cls) -> Signer:
        """A signer with a fresh key (tests, throwaway logs)."""
        return cls(Ed25519PrivateKey.generate())

    @classmethod
    def from_file(cls, path: Path | None = None, *, create: bool = True) -> Signer:
        """Load the key at ``path`` (default: `default_key_path`), creating it if asked."""
        path = path or default_key_path()
        if not path.exists():
            if not create:
                raise ConfigError(f"no audit signing key at `{path}`")
            key = Ed25519PrivateKey.generate()
            pem = key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "wb") as handle:
                    handle.write(pem)
            except FileExistsError:
                pass  # another process created it first: load theirs
            except OSError as exc:
                raise ConfigError(f"cannot create the audit signing key `{path}`: {exc}") from None
        try:
            loaded = serialization.load_pem_private_key(path.read_bytes(), password=None)
        except (OSError, ValueError, TypeError) as exc:
            raise ConfigError(f"cannot read the audit signing key `{path}`: {exc}") from None
        if not isinstance(loaded, Ed25519PrivateKey):
            raise ConfigError(f"`{path}` is not an Ed25519 private key")
        return cls(loaded, path)

    def sign(self, message: bytes) -> bytes:
        """The 64-byte signature of ``message``."""
        return self._key.sign(message)

    def public_pem(self) -> str:
        """The public key as PEM text, for verifiers."""
        return self.public_key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ).decode()


def load_public_key(data: bytes | str) -> Ed25519PublicKey:
    """A public key from PEM text or 64 hex characters (raw key)."""
    if isinstance(data, str):
        data = data.strip().encode()
    try:
        if data.startswith(b"-----BEGIN"):
            key = serialization.load_pem_public_key(data)
        else:
            key = Ed25519PublicKey.from_public_bytes(bytes.fromhex(data.decode()))
    except ValueError as exc:
        raise ConfigError(f"not an Ed25519 public key: {exc}") from None
    if not isinstance(key, Ed25519PublicKey):
        raise ConfigError("not an Ed25519 public key")
    return key


def verify_signature(public: Ed25519PublicKey, signature: bytes, message: bytes) -> bool:
    """Whether ``signature`` is ``public``'s signature of ``message``."""
    try:
        public.verify(signature, message)
    except InvalidSignature:
        return False
    return True
