"""The console's pages: log in and out, the overview, cost, runs, a run, its verification,
the approvals inbox, stopping a run, tokens. Server-rendered; htmx only loads fragments.
(Alerts, evals and budgets have modules of their own.)

The pages people wait on most (the runs list, a run, the inbox) are served on the event
loop itself: each is a few indexed reads and a template, bounded by its page size (a run's
page: by the run), and a thread per request cost more than the page (SQLite gives the GIL
up on every row it steps, and each time the threads in flight trade it: ~30% of the CPU of
these pages under 16 clients, `bench/server.py`). Parallelism comes from `opsgate serve
--workers`. What may read without such a bound (the runs list's "had a denial", which
checks run after run for a denial) goes to a thread, as the other pages do.
"""

from __future__ import annotations

import time
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Form, Query, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from markupsafe import Markup
from starlette.concurrency import run_in_threadpool

from opsgate.server._alerts import console_firings
from opsgate.server._approvals import (
    approvals_version,
    decide,
    fatigue,
    find_request,
    history,
    kept_render,
    pending_page,
    pending_requests,
    view,
)
from opsgate.server._auth import admin, approver, console_of, viewer
from opsgate.server._autonomy import autonomy_view, blast_data
from opsgate.server._budgets import budgets_in_force
from opsgate.server._console import ConsoleError, Principal
from opsgate.server._cost import cost_breakdown, cost_charts, cost_view, kept_page
from opsgate.server._detail import run_records, verify_run, waterfall
from opsgate.server._filters import run_filters
from opsgate.server._login import login_page, secure
from opsgate.server._overview import kpis, overview
from opsgate.server._render import templates
from opsgate.server._runs import LIVE, RunFilters, find_run, list_runs
from opsgate.server._session import PRELOGIN_COOKIE, SESSION_COOKIE
from opsgate.server._stop import stop_run
from opsgate.server._timeline import timeline
from opsgate.server._tokens import Role, authenticate, create_token, list_tokens, revoke_token

__all__ = ["pages"]

pages = APIRouter(include_in_schema=False, default_response_class=HTMLResponse)

STATUSES = ("running", "awaiting_approval", "completed", "escalated", "failed")

Viewer = Annotated[Principal, Depends(viewer)]
Approver = Annotated[Principal, Depends(approver)]
Admin = Annotated[Principal, Depends(admin)]
Reason = Annotated[str, Form(max_length=1000)]


@pages.get("/login")
def login_form(request: Request) -> Response:
    return login_page(request, console_of(request))


@pages.post("/login")
def login(
    request: Request,
    token: Annotated[str, Form(max_length=200)],
    csrf: Annotated[str, Form(max_length=200)] = "",
) -> Response:
    console = console_of(request)
    nonce = console.keys.prelogin_nonce(request.cookies.get(PRELOGIN_COOKIE))
    if nonce is None or not console.keys.csrf_ok(nonce, csrf):
        raise ConsoleError(403, "the login form expired or did not come from this console: reload")
    info = authenticate(console.store(), token.strip())
    if info is None:
        return login_page(request, console, message="unknown or revoked token", status=401)
    response = RedirectResponse("/", status_code=303)
    response.set_cookie(
        SESSION_COOKIE,
        console.keys.issue(info.token_id),
        httponly=True,
        samesite="strict",
        secure=secure(request, console),
        path="/",
    )
    response.delete_cookie(PRELOGIN_COOKIE, path="/login")
    return response


@pages.post("/logout")
def logout(request: Request, who: Viewer) -> Response:
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


@pages.get("/")
def overview_page(
    request: Request, who: Viewer, days: Annotated[int, Query(ge=1, le=365)] = 7
) -> Response:
    console = console_of(request)
    store = console.store()
    budgets = budgets_in_force(store, console.router)
    rows = overview(store, days=days, budgets=budgets)
    view_ = cost_view(store, days=days, workflow=None, include_eval=False)
    context = {
        "who": who,
        "rows": rows,
        "days": days,
        "router": console.router is not None,
        "policy": console.policy is not None,
        "kpis": {} if console.policy is None else kpis(store, console.policy, days=days),
        "alerts": console_firings(store),
        "chart": cost_charts(
            store, view_, workflow=None, include_eval=False, daily_budget=None, per_success=False
        )["spend"],
    }
    return templates.TemplateResponse(request, "overview.html", context)


@pages.get("/autonomy")
def autonomy_page(request: Request, who: Viewer) -> Response:
    console = console_of(request)
    budgets = {
        w: b.max_cost_per_task
        for w, b in budgets_in_force(console.store(), console.router).items()
        if b.max_cost_per_task is not None
    }
    view_ = (
        None
        if console.policy is None
        else autonomy_view(console.policy, console.store(), budgets=budgets)
    )
    context = {"who": who, "view": view_, "blast_data": blast_data}
    return templates.TemplateResponse(request, "autonomy.html", context)


@pages.get("/cost")
def cost_page(
    request: Request,
    who: Viewer,
    days: Annotated[int, Query(ge=1, le=366)] = 7,
    workflow: Annotated[str | None, Query(max_length=256)] = None,
    include_eval: bool = False,
) -> Response:
    console = console_of(request)
    store = console.store()
    chosen = workflow or None
    budget = budgets_in_force(store, console.router).get(workflow or "")

    def body() -> Markup:
        view_ = cost_view(store, days=days, workflow=chosen, include_eval=include_eval)
        breakdown = cost_breakdown(
            store, view_, days=days, workflow=chosen, include_eval=include_eval
        )
        daily = budget.daily_spend if budget is not None else None
        context = {
            "view": view_,
            "breakdown": breakdown,
            "budget": budget,
            "charts": cost_charts(
                store, view_, workflow=chosen, include_eval=include_eval, daily_budget=daily
            ),
            "days": days,
            "workflow": chosen,
            "include_eval": include_eval,
        }
        return Markup(templates.get_template("_cost_body.html").render(context))

    kept = kept_page(store, ("cost", days, chosen, include_eval, budget), body)
    return templates.TemplateResponse(request, "cost.html", {"who": who, "body": kept})


@pages.get("/runs")
async def runs_page(
    request: Request,
    who: Viewer,
    filters: Annotated[RunFilters, Depends(run_filters)],
    before: Annotated[str | None, Query(max_length=128)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> Response:
    if filters.denied:  # unbounded: see the module docstring
        return await run_in_threadpool(_runs_page, request, who, filters, before, limit)
    return _runs_page(request, who, filters, before, limit)


def _runs_page(
    request: Request, who: Principal, filters: RunFilters, before: str | None, limit: int
) -> Response:
    page = list_runs(console_of(request).store(), filters, before=before, limit=limit)
    query = {**filters.query(), "limit": str(limit)}
    if page.next_cursor:
        query["before"] = page.next_cursor
    context = {
        "who": who,
        "filters": filters,
        "page": page,
        "statuses": STATUSES,
        "next_query": urlencode(query),
    }
    partial = request.headers.get("hx-request") == "true" and before is not None
    return templates.TemplateResponse(
        request, "_run_rows.html" if partial else "runs.html", context
    )


@pages.get("/runs/{run_id}")
async def run_page(request: Request, run_id: str, who: Viewer, stop: str = "") -> Response:
    console = console_of(request)
    store = console.store()
    run = find_run(store, run_id)
    records, broken = run_records(store, run_id, console.reader())
    context = {
        "who": who,
        "run": run,
        "items": timeline(records),
        "bars": waterfall(store, run_id),
        "pending": pending_requests(console, run_id),
        "live": run["status"] in LIVE,
        "broken": broken,
        "stop": {"requested": "requested", "already_requested": "already requested"}.get(stop, ""),
    }
    return templates.TemplateResponse(request, "run.html", context)


@pages.get("/runs/{run_id}/verify")
def verify_page(request: Request, run_id: str, who: Viewer) -> Response:
    store = console_of(request).store()
    find_run(store, run_id)
    result = verify_run(store, run_id)
    partial = request.headers.get("hx-request") == "true"
    return templates.TemplateResponse(
        request,
        "_verify.html" if partial else "verify.html",
        {"who": who, "v": result, "run_id": run_id},
    )


@pages.post("/runs/{run_id}/stop")
def stop_page(request: Request, run_id: str, who: Approver, reason: Reason = "") -> Response:
    status = stop_run(console_of(request), run_id, who=who, reason=reason)
    return RedirectResponse(f"/runs/{run_id}?stop={status}", status_code=303)


@pages.get("/approvals")
async def approvals_page(
    request: Request,
    who: Viewer,
    after: Annotated[
        str | None, Query(max_length=100, description="the next page's cursor")
    ] = None,
    days: Annotated[int, Query(ge=1, le=365)] = 30,
) -> Response:
    console = console_of(request)
    version = approvals_version(console)  # the expired ones marked once, for all three reads
    page = pending_page(console, after=after, version=version)

    def rest() -> Markup:  # the history and the fatigue tables: the same for everyone
        context = {
            "history": history(console, version=version),
            "fatigue": fatigue(console, days, version=version),
        }
        return Markup(templates.get_template("_approvals_rest.html").render(context))

    def cards() -> Markup:  # 50 cards: their countdowns count whole seconds
        context = {"who": who, "pending": page.requests}
        return Markup(templates.get_template("_approvals_cards.html").render(context))

    second = int(time.time())
    context = {
        "who": who,
        "page": page,
        "pending": page.requests,
        "after": after,
        "cards": kept_render(
            console,
            ("cards", after, who.decides, who.csrf, second),
            version,
            cards,
            max_age_s=1.0,
        ),
        "rest": kept_render(console, ("inbox", days), version, rest),
    }
    return templates.TemplateResponse(request, "approvals.html", context)


@pages.get("/approvals/{request_id}")
def approval_page(request: Request, request_id: str, who: Viewer) -> Response:
    console = console_of(request)
    record = find_request(console, request_id)
    records, _ = run_records(console.store(), record.run_id, console.reader())
    return templates.TemplateResponse(
        request,
        "approval.html",
        {"who": who, "a": view(record, console.redactor()), "items": timeline(records)},
    )


@pages.get("/approvals/{request_id}/story")
def approval_story(request: Request, request_id: str, who: Viewer) -> Response:
    """The run of a request so far: a fragment the inbox loads when it is opened."""
    console = console_of(request)
    record = find_request(console, request_id)
    records, _ = run_records(console.store(), record.run_id, console.reader())
    return templates.TemplateResponse(
        request, "_timeline.html", {"who": who, "items": timeline(records)}
    )


@pages.post("/approvals/{request_id}/decide")
def decide_page(
    request: Request,
    request_id: str,
    who: Approver,
    decision: Annotated[str, Form(pattern="^(approve|deny)$")],
    reason: Reason = "",
) -> Response:
    decide(
        console_of(request), request_id, approved=decision == "approve", who=who.name, reason=reason
    )
    return RedirectResponse("/approvals", status_code=303)


@pages.get("/tokens")
def tokens_page(request: Request, who: Admin) -> Response:
    tokens = list_tokens(console_of(request).store(), include_revoked=True)
    return templates.TemplateResponse(
        request, "tokens.html", {"who": who, "tokens": tokens, "created": None}
    )


@pages.post("/tokens")
def create_token_page(
    request: Request,
    who: Admin,
    name: Annotated[str, Form(max_length=128)],
    role: Annotated[str, Form(pattern="^(viewer|approver|admin)$")],
) -> Response:
    console = console_of(request)
    store = console.store()
    created = create_token(
        store,
        name=name,
        role=Role.parse(role),
        created_by=who.name,
        recorder=console.recorder(),
    )
    tokens = list_tokens(store, include_revoked=True)
    return templates.TemplateResponse(
        request, "tokens.html", {"who": who, "tokens": tokens, "created": created}
    )


@pages.post("/tokens/{token_id}/revoke")
def revoke_token_page(request: Request, token_id: str, who: Admin) -> Response:
    console = console_of(request)
    revoke_token(console.store(), token_id, revoked_by=who.name, recorder=console.recorder())
    return RedirectResponse("/tokens", status_code=303)
