"""Who is asking, and may they: FastAPI dependencies every route declares.

`viewer`, `approver` and `admin` are the three gates. A request is authenticated by a
bearer token (``Authorization: Bearer ogt_…``, scripts and the API) or by the session
cookie a token logged in (browsers). A writing request (anything but GET/HEAD) that a
cookie authenticates must carry the session's CSRF token (form field ``csrf`` or header
``X-CSRF-Token``); the role is checked first, so a viewer gets 403 whatever it sends.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable

from fastapi import Request

from opsgate.server._console import Console, ConsoleError, Principal
from opsgate.server._session import SESSION_COOKIE
from opsgate.server._tokens import Role, authenticate, token_by_id

__all__ = ["admin", "approver", "console_of", "identify", "viewer"]

_SAFE = ("GET", "HEAD")


def console_of(request: Request) -> Console:
    """The app's `Console`."""
    console: Console = request.app.state.console
    return console


def identify(request: Request) -> Principal | None:
    """The principal of ``request`` (None: anonymous). Opens the store: a database out of
    reach is a 503 here, before anything else."""
    console = console_of(request)
    header = request.headers.get("authorization", "")
    if header:
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            return None
        info = authenticate(console.store(), value.strip())
        if info is None:
            return None
        return Principal(info.token_id, info.name, info.role, "bearer")
    session = console.keys.read(request.cookies.get(SESSION_COOKIE))
    if session is None:
        return None
    info = token_by_id(console.store(), session.token_id)
    if info is None:  # revoked since the login
        return None
    return Principal(
        info.token_id, info.name, info.role, "session", console.keys.csrf(session.nonce)
    )


def _gate(role: Role) -> Callable[[Request], Awaitable[Principal]]:
    async def dependency(request: Request) -> Principal:
        principal = identify(request)
        if principal is None:
            raise ConsoleError(401, "log in with a console token (`opsgate tokens create`)")
        if not principal.can(role):
            raise ConsoleError(
                403,
                f"this needs the {role.label} role; the token `{principal.name}` is "
                f"{principal.role.label}",
            )
        if request.method not in _SAFE and principal.via == "session":
            presented = request.headers.get("x-csrf-token")
            if presented is None:
                form = await request.form()
                field = form.get("csrf")
                presented = field if isinstance(field, str) else None
            if presented is None or not hmac.compare_digest(
                presented.encode("utf-8", "surrogatepass"), principal.csrf.encode()
            ):
                raise ConsoleError(403, "the form's CSRF token is missing or stale: reload")
        return principal

    return dependency


viewer = _gate(Role.VIEWER)
approver = _gate(Role.APPROVER)
admin = _gate(Role.ADMIN)
