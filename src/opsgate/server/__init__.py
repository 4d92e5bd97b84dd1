"""The web console (`opsgate serve`): runs, a run's timeline, spans and verification, the
approvals inbox, stopping a live run, cost and eval reports (charted), budgets, alerts; a
JSON API beside the pages.

It reads through the store's tables and the audit trail, and writes only approval
decisions (through `DurableApprovalQueue`, audited), stop requests
(`opsgate.store.request_stop`), tokens and budget overrides (each an audit event) and
alert rules. Access is by token (`Role`: viewer, approver, admin), stored hashed; a
browser logs in to a session cookie. See the README's Console.
"""

from opsgate.server._app import create_app
from opsgate.server._console import Console, ConsoleError, Principal
from opsgate.server._serve import DEFAULT_HOST, DEFAULT_PORT, MAX_WORKERS, is_loopback, serve
from opsgate.server._tokens import (
    Role,
    TokenInfo,
    authenticate,
    create_token,
    hash_token,
    list_tokens,
    revoke_token,
)

__all__ = [
    "DEFAULT_HOST",
    "DEFAULT_PORT",
    "MAX_WORKERS",
    "Console",
    "ConsoleError",
    "Principal",
    "Role",
    "TokenInfo",
    "authenticate",
    "create_app",
    "create_token",
    "hash_token",
    "is_loopback",
    "list_tokens",
    "revoke_token",
    "serve",
]
