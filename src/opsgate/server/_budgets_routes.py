"""The Budgets page and its API: the budget in force per workflow and where it comes from;
admins set or clear an override (forms with the session's CSRF token), audited as the
token's name."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Request, Response
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, Field

from opsgate.server._auth import admin, console_of, viewer
from opsgate.server._budgets import budgets_in_force, clear_budget, set_budget
from opsgate.server._console import ConsoleError, Principal
from opsgate.server._render import templates

__all__ = ["budget_api", "budget_pages"]

budget_pages = APIRouter(include_in_schema=False, default_response_class=HTMLResponse)
budget_api = APIRouter(prefix="/api", tags=["console"])

Viewer = Annotated[Principal, Depends(viewer)]
Admin = Annotated[Principal, Depends(admin)]


def _page(request: Request, who: Principal, notice: str = "", status: int = 200) -> Response:
    console = console_of(request)
    context = {
        "who": who,
        "budgets": list(budgets_in_force(console.store(), console.router).values()),
        "router": console.router is not None,
        "notice": notice,
    }
    return templates.TemplateResponse(request, "budgets.html", context, status_code=status)


def _amount(what: str, text: str) -> float | None:
    """A form's amount: empty is None (keep the file's), else a number (400 otherwise)."""
    text = text.strip().removeprefix("$").strip()
    if not text:
        return None
    try:
        return float(text)
    except ValueError:
        raise ConsoleError(400, f"{what} is an amount of USD such as 0.25, not `{text}`") from None


class BudgetForm(BaseModel):
    """The override form: an empty amount keeps the router file's."""

    workflow: str = Field(max_length=128)
    max_cost_per_task: str = Field("", max_length=32)
    daily_spend: str = Field("", max_length=32)


class ClearForm(BaseModel):
    """Which workflow's override to drop."""

    workflow: str = Field(max_length=128)


@budget_pages.get("/budgets")
def budgets_page(request: Request, who: Viewer) -> Response:
    return _page(request, who)


@budget_pages.post("/budgets")
def set_budget_page(request: Request, who: Admin, form: Annotated[BudgetForm, Form()]) -> Response:
    console = console_of(request)
    set_budget(
        console.store(),
        console.recorder(),
        form.workflow,
        max_cost_per_task=_amount("the max cost per task", form.max_cost_per_task),
        daily_spend=_amount("the daily spend", form.daily_spend),
        actor=who.name,
    )
    return _page(request, who, notice=f"budget of {form.workflow.strip()} set")


@budget_pages.post("/budgets/clear")
def clear_budget_page(request: Request, who: Admin, form: Annotated[ClearForm, Form()]) -> Response:
    console = console_of(request)
    name = form.workflow.strip()
    cleared = clear_budget(console.store(), console.recorder(), name, actor=who.name)
    notice = (
        f"override of {name} cleared: the router file's budget applies"
        if cleared
        else f"{name} had no override"
    )
    return _page(request, who, notice=notice)


# -- the JSON API ------------------------------------------------------------------------


class BudgetBody(BaseModel):
    """A budget override; a null limit keeps the router file's."""

    workflow: str = Field(max_length=128)
    max_cost_per_task: float | None = Field(None, description="USD per task (run)")
    daily_spend: float | None = Field(None, description="USD per UTC day")


class ClearBody(BaseModel):
    """The workflow whose override to drop."""

    workflow: str = Field(max_length=128)


@budget_api.get("/budgets")
def budgets_data(request: Request, who: Viewer) -> dict[str, Any]:
    """Per workflow: the budget in force, its source (console or router file), who set it."""
    console = console_of(request)
    found = budgets_in_force(console.store(), console.router)
    return {"budgets": [b.as_dict() for b in found.values()]}


@budget_api.post("/budgets")
def budgets_set(request: Request, body: BudgetBody, who: Admin) -> dict[str, Any]:
    """Override a workflow's budget, as the token's name (audited)."""
    console = console_of(request)
    store = console.store()
    set_budget(
        store,
        console.recorder(),
        body.workflow,
        max_cost_per_task=body.max_cost_per_task,
        daily_spend=body.daily_spend,
        actor=who.name,
    )
    return budgets_in_force(store, console.router)[body.workflow.strip()].as_dict()


@budget_api.post("/budgets/clear")
def budgets_clear(request: Request, body: ClearBody, who: Admin) -> dict[str, Any]:
    """Drop a workflow's override (audited); ``cleared`` is false when it had none."""
    console = console_of(request)
    name = body.workflow.strip()
    cleared = clear_budget(console.store(), console.recorder(), name, actor=who.name)
    return {"workflow": name, "cleared": cleared}
