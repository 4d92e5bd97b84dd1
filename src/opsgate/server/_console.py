"""The console's state (one per app): the store, opened on first use; the audit recorder
its decisions go through; session keys. And the errors pages and the API answer with.

Expected failures are `ConsoleError` with an HTTP status (a bad filter 400, no session
401, a role too low 403, an unknown run 404, a decided request 409, the database out of
reach 503); one handler renders them, as a page or as JSON under ``/api``. Anything
else is masked as a 500 that says nothing of the internals.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

from opsgate.audit import AuditLog, AuditRecorder, Signer
from opsgate.errors import StoreError
from opsgate.models import RouterConfig
from opsgate.policy import CompiledPolicy
from opsgate.redaction import Redactor
from opsgate.server._session import SessionKeys
from opsgate.server._tokens import Role
from opsgate.store import Store, open_store

__all__ = ["Console", "ConsoleError", "Principal"]


class ConsoleError(Exception):
    """An expected failure of a request, with the HTTP status it answers with.

    Args:
        status: The HTTP status.
        message: What went wrong and what to do, for a person (user input in backticks).
    """

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is asking: the token's name (the actor every decision records) and role.

    Attributes:
        via: ``session`` (a browser's cookie: writes need the CSRF token) or ``bearer``.
        csrf: The CSRF token forms of this session carry ("" for a bearer).
    """

    token_id: str
    name: str
    role: Role
    via: str
    csrf: str = ""

    def can(self, role: Role) -> bool:
        """Whether this principal has at least ``role``."""
        return self.role >= role

    @property
    def decides(self) -> bool:
        """May approve, deny and stop (approver or admin): the pages show those buttons."""
        return self.can(Role.APPROVER)


class Console:
    """What the app shares between requests.

    Args:
        url: The database (default: ``$OPSGATE_DATABASE_URL`` or opsgate's home).
        signing_key: The audit signing key file (default: opsgate's), for the decisions'
            audit trail (checkpoints every 1,000 events need it).
        secure_cookies: Mark cookies ``Secure`` (behind TLS); None: when the request is
            HTTPS (or says so through ``X-Forwarded-Proto`` from a trusted proxy).
        keys: Session keys (default: a random key for this process).
        router: The router file's settings, for the workflows' budgets (None: none shown).
        policy: The policy in force, for the Autonomy page (stage, preflight, blast radius;
            None: the page says how to give it).
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        signing_key: Path | None = None,
        secure_cookies: bool | None = None,
        keys: SessionKeys | None = None,
        router: RouterConfig | None = None,
        policy: CompiledPolicy | None = None,
    ) -> None:
        self.url = url
        self.router = router
        self.policy = policy
        self.signing_key = signing_key
        self.secure_cookies = secure_cookies
        self.keys = keys or SessionKeys()
        self._store: Store | None = None
        self._recorder: AuditRecorder | None = None
        self._reader: AuditLog | None = None
        self._redactor: Redactor | None = None
        self._lock = threading.Lock()

    def store(self) -> Store:
        """The open store (opened on first use, never created or migrated here).

        Raises:
            ConsoleError: 503, saying why the database cannot be used.
        """
        with self._lock:
            if self._store is None:
                try:
                    self._store = open_store(self.url, migrate=False)
                except StoreError as exc:
                    raise ConsoleError(503, str(exc)) from None
            return self._store

    def redactor(self) -> Redactor:
        """Masks what the approval queue keeps unredacted (the invoker's request) the way
        the audit trail masked it: the store's salt, so the markers match the trail's."""
        store = self.store()
        with self._lock:
            if self._redactor is None:
                salt = store.meta_value("audit_salt")
                self._redactor = Redactor(bytes.fromhex(salt) if salt else None)
            return self._redactor

    def reader(self) -> AuditLog:
        """The audit log, for reading a run's events (made on first use: making one reads
        the store's salt and log id, which never change)."""
        store = self.store()
        with self._lock:
            if self._reader is None:
                self._reader = AuditLog(store)
            return self._reader

    def recorder(self) -> AuditRecorder:
        """The audit recorder decisions are written through (made on first use)."""
        store = self.store()
        with self._lock:
            if self._recorder is None:
                signer = Signer.from_file(self.signing_key)
                self._recorder = AuditRecorder(AuditLog(store, signer))
            return self._recorder

    def close(self) -> None:
        """Flush the recorder and close the store."""
        with self._lock:
            if self._recorder is not None:
                self._recorder.close()
                self._recorder = None
            self._reader = None
            if self._store is not None:
                self._store.close()
                self._store = None
