"""The JSON API beside the pages (``/api/...``): the same reads and the same few writes,
for scripts, with a bearer token. Its OpenAPI schema is ``/api/openapi.json``."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, Field

from opsgate.server._approvals import decide, fatigue, find_request, inbox, view
from opsgate.server._auth import admin, approver, console_of, viewer
from opsgate.server._budgets import budgets_in_force
from opsgate.server._console import Principal
from opsgate.server._cost import cost_breakdown, cost_view
from opsgate.server._detail import run_records, verify_run, waterfall
from opsgate.server._filters import run_filters
from opsgate.server._overview import kpis, overview
from opsgate.server._runs import RunFilters, find_run, list_runs
from opsgate.server._stop import stop_run
from opsgate.server._timeline import timeline
from opsgate.server._tokens import Role, TokenInfo, create_token, list_tokens, revoke_token

__all__ = ["api"]

api = APIRouter(prefix="/api", tags=["console"])

Viewer = Annotated[Principal, Depends(viewer)]
Approver = Annotated[Principal, Depends(approver)]
Admin = Annotated[Principal, Depends(admin)]


class Decision(BaseModel):
    """An approver's answer."""

    approve: bool = Field(description="true approves, false denies")
    reason: str = Field("", max_length=1000, description="kept in the audit trail")


class StopRequest(BaseModel):
    """Why the run is stopped."""

    reason: str = Field("", max_length=500)


class NewToken(BaseModel):
    """A token to create."""

    name: str = Field(max_length=128, description="who it acts as (the actor of decisions)")
    role: str = Field(pattern="^(viewer|approver|admin)$")


def _token(t: TokenInfo) -> dict[str, Any]:
    return {
        "token_id": t.token_id,
        "name": t.name,
        "role": t.role.label,
        "created_at": t.created_at,
        "created_by": t.created_by,
        "revoked_at": t.revoked_at,
        "revoked_by": t.revoked_by,
    }


@api.get("/openapi.json", include_in_schema=False)
def openapi(request: Request, who: Viewer) -> dict[str, Any]:
    """This API's OpenAPI schema."""
    schema: dict[str, Any] = request.app.openapi()
    return schema


@api.get("/me")
def me(who: Viewer) -> dict[str, Any]:
    """The token's name and role."""
    return {"name": who.name, "role": who.role.label}


@api.get("/overview")
def overview_data(
    request: Request, who: Viewer, days: Annotated[int, Query(ge=1, le=365)] = 7
) -> dict[str, Any]:
    """Per workflow: success rate, cost per successful task against its budget, spend
    today against the daily budget, pending approvals; and with a policy, each workflow's
    one KPI (``kpis``: this window's value, the previous window's, the target, met or not)."""
    console = console_of(request)
    store = console.store()
    rows = overview(store, days=days, budgets=budgets_in_force(store, console.router))
    found = {} if console.policy is None else kpis(store, console.policy, days=days)
    return {
        "days": days,
        "workflows": [h.as_dict() for h in rows],
        # null without a policy (`opsgate serve --policy`); else the workflows naming a KPI
        "kpis": None if console.policy is None else [k.as_dict() for k in found.values()],
    }


@api.get("/cost")
def cost_data(
    request: Request,
    who: Viewer,
    days: Annotated[int, Query(ge=1, le=366)] = 7,
    workflow: Annotated[str | None, Query(max_length=256)] = None,
    include_eval: bool = False,
) -> dict[str, Any]:
    """Spend per UTC day, per workflow, per model, per model role, per tool, per agent and
    per invoker over the last ``days`` days; and per workflow, its last 7 days against the 7
    before (``drift``: success rate, cost per successful task, the alerts raised)."""
    store = console_of(request).store()
    view_ = cost_view(store, days=days, workflow=workflow or None, include_eval=include_eval)
    breakdown = cost_breakdown(
        store, view_, days=days, workflow=workflow or None, include_eval=include_eval
    )
    return {"days_back": days, **view_.as_dict(), **breakdown.as_dict()}


@api.get("/runs")
def runs_list(
    request: Request,
    who: Viewer,
    filters: Annotated[RunFilters, Depends(run_filters)],
    before: Annotated[str | None, Query(max_length=128, description="the `next` cursor")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> dict[str, Any]:
    """Runs, newest first, filtered; ``next`` is the ``before`` of the next page."""
    page = list_runs(console_of(request).store(), filters, before=before, limit=limit)
    return {"runs": page.rows, "next": page.next_cursor}


@api.get("/runs/{run_id}")
def run_detail(request: Request, run_id: str, who: Viewer) -> dict[str, Any]:
    """A run, its audit timeline and its spans."""
    console = console_of(request)
    store = console.store()
    run = find_run(store, run_id)
    records, broken = run_records(store, run_id, console.reader())
    return {
        "run": run,
        "integrity_error": broken,
        "timeline": [i.as_dict() for i in timeline(records)],
        "spans": [
            {
                "span_id": b.span_id,
                "name": b.name,
                "depth": b.depth,
                "status": b.status,
                "start_ms": b.start_ms,
                "duration_ms": b.duration_ms,
            }
            for b in waterfall(store, run_id)
        ],
    }


@api.get("/runs/{run_id}/verify")
def run_verify(request: Request, run_id: str, who: Viewer) -> dict[str, Any]:
    """Each event of the run checked against the latest signed checkpoint."""
    store = console_of(request).store()
    find_run(store, run_id)
    return verify_run(store, run_id).as_dict()


@api.post("/runs/{run_id}/stop", status_code=202)
def run_stop(request: Request, run_id: str, body: StopRequest, who: Approver) -> dict[str, Any]:
    """Ask a live run to stop before its next call (409 when it has ended)."""
    status = stop_run(console_of(request), run_id, who=who, reason=body.reason)
    return {"run_id": run_id, "status": status, "actor": who.name}


@api.get("/approvals")
def approvals_list(
    request: Request,
    who: Viewer,
    after: Annotated[
        str | None, Query(max_length=100, description="the next page's cursor")
    ] = None,
) -> dict[str, Any]:
    """A page of pending requests (oldest first; ``next`` is the cursor of the next page, for
    ``after``), how many wait in all, and the latest decided ones."""
    page, history = inbox(console_of(request), after=after)
    return {
        "pending": [a.as_dict() for a in page.requests],
        "pending_total": page.total,
        "next": page.next_cursor,
        "history": [a.as_dict() for a in history],
    }


@api.get("/approvals/fatigue")
def approvals_fatigue(
    request: Request, who: Viewer, days: Annotated[int, Query(ge=1, le=365)] = 30
) -> dict[str, Any]:
    """Per workflow and per tool over the last ``days`` days: requests, approved, denied,
    expired, the approval rate (approved / decided) and the median seconds to decide."""
    return fatigue(console_of(request), days).as_dict()


@api.get("/approvals/{request_id}")
def approval_detail(request: Request, request_id: str, who: Viewer) -> dict[str, Any]:
    """One request, with its context."""
    return view(
        find_request(console_of(request), request_id), console_of(request).redactor()
    ).as_dict()


@api.post("/approvals/{request_id}/decision")
def approval_decide(
    request: Request, request_id: str, body: Decision, who: Approver
) -> dict[str, Any]:
    """Approve or deny as the token's name; deciding again the same way changes nothing."""
    record, decided = decide(
        console_of(request), request_id, approved=body.approve, who=who.name, reason=body.reason
    )
    return {**view(record, console_of(request).redactor()).as_dict(), "decided_now": decided}


@api.get("/tokens")
def tokens_list(request: Request, who: Admin) -> dict[str, Any]:
    """Every token (never the token itself)."""
    tokens = list_tokens(console_of(request).store(), include_revoked=True)
    return {"tokens": [_token(t) for t in tokens]}


@api.post("/tokens", status_code=201)
def tokens_create(request: Request, body: NewToken, who: Admin) -> dict[str, Any]:
    """A new token; the response is the only place it is ever shown."""
    console = console_of(request)
    token, info = create_token(
        console.store(),
        name=body.name,
        role=Role.parse(body.role),
        created_by=who.name,
        recorder=console.recorder(),
    )
    return {**_token(info), "token": token}


@api.post("/tokens/{token_id}/revoke")
def tokens_revoke(request: Request, token_id: str, who: Admin) -> dict[str, Any]:
    """Revoke a token (by id or name); its sessions end at once."""
    console = console_of(request)
    return _token(
        revoke_token(console.store(), token_id, revoked_by=who.name, recorder=console.recorder())
    )
