"""The Alerts page and its API: the rules, what fires now (`opsgate.alerts.evaluate`, read
only: a page load never sends a webhook) and the latest webhook deliveries. Viewers see;
admins create, edit and delete rules (forms with the session's CSRF token), each change
naming the token's name."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from pydantic import BaseModel, Field

from opsgate.alerts import (
    KINDS,
    SINKS,
    UNITS,
    Firing,
    Rule,
    RuleNotFound,
    create_rule,
    delete_rule,
    evaluate,
    get_rule,
    list_rules,
    recent_deliveries,
    update_rule,
    workflow_known,
)
from opsgate.policy import STAGES
from opsgate.server._auth import admin, console_of, viewer
from opsgate.server._console import ConsoleError, Principal
from opsgate.server._render import templates
from opsgate.store import Store

__all__ = ["alert_api", "alert_pages", "console_firings"]

alert_pages = APIRouter(include_in_schema=False, default_response_class=HTMLResponse)
alert_api = APIRouter(prefix="/api", tags=["console"])

Viewer = Annotated[Principal, Depends(viewer)]
Admin = Annotated[Principal, Depends(admin)]


def console_firings(store: Store) -> list[Firing]:
    """What fires now for rules with the console sink (the Overview lists them)."""
    return [f for f in evaluate(store) if "console" in f.sinks]


def _rule(store: Store, rule_id: int) -> Rule:
    """The rule, or a 404."""
    try:
        return get_rule(store, rule_id)
    except RuleNotFound as exc:
        raise ConsoleError(404, str(exc)) from None


def _unknown_note(store: Store, workflow: str) -> str:
    if workflow_known(store, workflow):
        return ""
    return (
        f"nothing is recorded for the workflow `{workflow}` yet (check its name); "
        "the rule is kept and fires once there is"
    )


#: The stages a firing rule may demote to (the highest is no demotion).
DEMOTABLE = STAGES[:-1]


def _page(request: Request, who: Principal, notice: str = "") -> Response:
    store = console_of(request).store()
    context = {
        "who": who,
        "rules": list_rules(store),
        "firing": evaluate(store),
        "deliveries": recent_deliveries(store, limit=20),
        "kinds": KINDS,
        "units": UNITS,
        "sinks": SINKS,
        "stages": DEMOTABLE,
        "notice": notice,
    }
    return templates.TemplateResponse(request, "alerts.html", context)


@alert_pages.get("/alerts")
def alerts_page(request: Request, who: Viewer) -> Response:
    return _page(request, who)


class RuleForm(BaseModel):
    """The rule form's fields: creating and editing post the same form."""

    workflow: str = Field(max_length=128)
    kind: str = Field(max_length=32)
    threshold: float
    window_days: int = 7
    sinks: list[str] = Field(default_factory=list)
    webhook_url: str = Field("", max_length=2000)
    secret_env: str = Field("", max_length=128)
    renotify_minutes: int = 60
    enabled: str = Field("", max_length=8)
    demote_to: str = Field("", max_length=32)

    def values(self) -> dict[str, Any]:
        """The rule's values, as `create_rule` and `update_rule` take them."""
        return {
            "workflow": self.workflow,
            "kind": self.kind,
            "threshold": self.threshold,
            "window_days": self.window_days,
            "sinks": self.sinks,
            "webhook_url": self.webhook_url or None,
            "webhook_secret_env": self.secret_env or None,
            "renotify_minutes": self.renotify_minutes,
            "enabled": bool(self.enabled),
            "demote_to": self.demote_to or None,
        }


@alert_pages.post("/alerts/rules")
def create_rule_page(request: Request, who: Admin, form: Annotated[RuleForm, Form()]) -> Response:
    store = console_of(request).store()
    rule = create_rule(store, created_by=who.name, **form.values())
    notes = [f"rule {rule.rule_id} created", _unknown_note(store, rule.workflow)]
    return _page(request, who, notice="; ".join(n for n in notes if n))


@alert_pages.get("/alerts/rules/{rule_id}")
def edit_rule_page(request: Request, rule_id: int, who: Admin) -> Response:
    rule = _rule(console_of(request).store(), rule_id)
    context = {
        "who": who,
        "rule": rule,
        "kinds": KINDS,
        "units": UNITS,
        "sinks": SINKS,
        "stages": DEMOTABLE,
    }
    return templates.TemplateResponse(request, "alert_rule.html", context)


@alert_pages.post("/alerts/rules/{rule_id}")
def update_rule_page(
    request: Request, rule_id: int, who: Admin, form: Annotated[RuleForm, Form()]
) -> Response:
    store = console_of(request).store()
    _rule(store, rule_id)
    update_rule(store, rule_id, updated_by=who.name, **form.values())
    return RedirectResponse("/alerts", status_code=303)


@alert_pages.post("/alerts/rules/{rule_id}/delete")
def delete_rule_page(request: Request, rule_id: int, who: Admin) -> Response:
    store = console_of(request).store()
    _rule(store, rule_id)
    delete_rule(store, rule_id, deleted_by=who.name)
    return RedirectResponse("/alerts", status_code=303)


# -- the JSON API ------------------------------------------------------------------------


class RuleBody(BaseModel):
    """An alert rule to create, or its new values."""

    workflow: str = Field(max_length=128)
    kind: str = Field(max_length=32, description=", ".join(KINDS))
    threshold: float = Field(description="in the kind's unit (points, ratio, attempts, minutes)")
    window_days: int = 7
    sinks: list[str] = Field(default_factory=lambda: ["console"], max_length=3)
    webhook_url: str | None = Field(None, max_length=2000)
    webhook_secret_env: str | None = Field(
        None, max_length=128, description="the environment variable holding the HMAC secret"
    )
    renotify_minutes: int = 60
    enabled: bool = True
    demote_to: str | None = Field(
        None,
        max_length=32,
        description="the stage `opsgate alerts check --policy P` demotes the workflow to when "
        "the rule fires (none: notify only)",
    )


@alert_api.get("/alerts")
def alerts_data(request: Request, who: Viewer) -> dict[str, Any]:
    """The rules, what fires now, and the latest webhook delivery attempts."""
    store = console_of(request).store()
    return {
        "rules": [r.as_dict() for r in list_rules(store)],
        "firing": [f.as_dict() for f in evaluate(store)],
        "deliveries": [d.as_dict() for d in recent_deliveries(store, limit=50)],
    }


@alert_api.post("/alerts/rules", status_code=201)
def alerts_create(request: Request, body: RuleBody, who: Admin) -> dict[str, Any]:
    """A new rule, as the token's name; ``note`` says when its workflow is unknown."""
    store = console_of(request).store()
    rule = create_rule(store, **body.model_dump(), created_by=who.name)
    return {**rule.as_dict(), "note": _unknown_note(store, rule.workflow)}


@alert_api.post("/alerts/rules/{rule_id}")
def alerts_update(request: Request, rule_id: int, body: RuleBody, who: Admin) -> dict[str, Any]:
    """Replace a rule's values, as the token's name."""
    store = console_of(request).store()
    _rule(store, rule_id)
    return update_rule(store, rule_id, **body.model_dump(), updated_by=who.name).as_dict()


@alert_api.post("/alerts/rules/{rule_id}/delete")
def alerts_delete(request: Request, rule_id: int, who: Admin) -> dict[str, Any]:
    """Delete a rule (its row is kept, naming who deleted it)."""
    store = console_of(request).store()
    _rule(store, rule_id)
    return delete_rule(store, rule_id, deleted_by=who.name).as_dict()
