"""The login form: a page with its own CSRF nonce in a short-lived signed cookie (there is
no session yet to bind it to), served on GET /login and as every anonymous 401."""

from __future__ import annotations

from fastapi import Request, Response

from opsgate.server._console import Console
from opsgate.server._render import templates
from opsgate.server._session import PRELOGIN_COOKIE, PRELOGIN_TTL_S

__all__ = ["login_page", "secure"]


def secure(request: Request, console: Console) -> bool:
    """Whether cookies get ``Secure``: as configured, else when the request came by HTTPS."""
    if console.secure_cookies is not None:
        return console.secure_cookies
    return request.url.scheme == "https"


def login_page(
    request: Request, console: Console, *, message: str = "", status: int = 200
) -> Response:
    """The login form, with a fresh signed cookie holding its CSRF nonce."""
    cookie = console.keys.prelogin()
    nonce = console.keys.prelogin_nonce(cookie) or ""
    response = templates.TemplateResponse(
        request,
        "login.html",
        {"who": None, "csrf": console.keys.csrf(nonce), "message": message},
        status_code=status,
    )
    response.set_cookie(
        PRELOGIN_COOKIE,
        cookie,
        max_age=int(PRELOGIN_TTL_S),
        httponly=True,
        samesite="strict",
        secure=secure(request, console),
        path="/login",
    )
    return response
