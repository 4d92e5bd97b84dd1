"""The on-call / DevOps toolbelt: narrow operations on the in-memory estate.

Each tool declares its scope and impact; none is a generic "run kubectl" or "HTTP GET".
Our own systems (the service catalogue, deploy history, runbooks) are trusted. What
outsiders write is not: a third-party status page is untrusted whole; alerts and incidents
mix routing data our systems set (ids, services, severities, times) with text a vendor's
monitor or a customer wrote, so they declare field-level trust. Production actions are high
impact. Writes refuse what the real systems would refuse (a version that never ran, a
replica count outside the service's bounds, an unknown flag or team), whatever the gate
allowed.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field

from opsgate.contracts import ToolContext, tool
from opsgate.examples.oncall_devops.world import Incident, Service, World

ServiceName = Annotated[
    str, Field(pattern=r"^svc-[a-z][a-z0-9\-]{1,40}$", description="A service, svc-name.")
]
IncidentId = Annotated[str, Field(pattern=r"^INC-\d{3}$", description="An incident, INC-nnn.")]
RunbookId = Annotated[str, Field(pattern=r"^RB-\d{3}$", description="A runbook, RB-nnn.")]
Version = Annotated[
    str, Field(pattern=r"^v\d+\.\d+\.\d+$", description="A release version, vMAJOR.MINOR.PATCH.")
]
FlagName = Annotated[
    str, Field(pattern=r"^[a-z][a-z0-9]*(-[a-z0-9]+)+$", description="A feature flag name.")
]
TeamName = Annotated[
    str, Field(pattern=r"^team-[a-z][a-z0-9\-]{1,40}$", description="An on-call team, team-name.")
]
Url = Annotated[
    str, Field(pattern=r"^https://[^\s]{3,300}$", max_length=300, description="An https URL.")
]
Severity = Literal["sev1", "sev2", "sev3", "sev4"]

DEPLOY_KEY = "DEPLOY_API_KEY"


class ReportItem(BaseModel):
    """A report support attached to an incident."""

    reporter: str
    text: str
    at: str


class IncidentView(BaseModel):
    """An incident as get_incident returns it."""

    incident_id: str
    title: str
    severity: str
    status: str
    service: str
    opened_at: str
    commander: str
    reports: list[ReportItem]
    notes: list[str]


class AlertItem(BaseModel):
    """One alert, as list_alerts returns it."""

    alert_id: str
    source: str
    service: str
    severity: str
    fired_at: str
    title: str
    message: str


class AlertList(BaseModel):
    """The alerts of the last hours, newest first."""

    alerts: list[AlertItem]


def _service(world: World, name: str) -> Service:
    service = world.services.get(name)
    if service is None:
        raise ValueError(f"no service {name}")
    return service


def _incident(world: World, incident_id: str) -> Incident:
    incident = world.incidents.get(incident_id)
    if incident is None:
        raise ValueError(f"no incident {incident_id}")
    return incident


def _require(ctx: ToolContext[World]) -> None:
    """The real deploy API refuses a call without its key."""
    if not ctx.secrets.get(DEPLOY_KEY):
        raise PermissionError(f"the {DEPLOY_KEY} was not injected")


@tool(
    scope="read",
    output="trusted",
    output_fields={
        "$.reports[*].reporter": "untrusted",
        "$.reports[*].text": "untrusted",
        "$.notes[*]": "untrusted",  # notes may quote what customers reported
    },
)
def get_incident(ctx: ToolContext[World], incident_id: IncidentId) -> IncidentView | dict[str, str]:
    """Read an incident: title, severity, status, service, commander, the reports customers
    and support attached, and the notes so far."""
    incident = ctx.deps.incidents.get(incident_id)
    if incident is None:
        # no echo of the id asked for: a trusted result must not vouch for an unknown id
        return {"error": "no such incident"}
    return IncidentView(
        incident_id=incident.incident_id,
        title=incident.title,
        severity=incident.severity,
        status=incident.status,
        service=incident.service,
        opened_at=incident.opened_at,
        commander=incident.commander,
        reports=[ReportItem(reporter=r.reporter, text=r.text, at=r.at) for r in incident.reports],
        notes=list(incident.notes),
    )


@tool(
    scope="read",
    output="trusted",
    output_fields={"$.alerts[*].title": "untrusted", "$.alerts[*].message": "untrusted"},
)
def list_alerts(ctx: ToolContext[World], service: ServiceName | None = None) -> AlertList:
    """The alerts that fired today (optionally for one service), newest first: from our
    monitoring, vendors' webhooks and customers' reports; titles and messages are theirs."""
    found = [a for a in ctx.deps.alerts if service is None or a.service == service]
    found.sort(key=lambda a: a.fired_at, reverse=True)
    return AlertList(
        alerts=[
            AlertItem(
                alert_id=a.alert_id,
                source=a.source,
                service=a.service,
                severity=a.severity,
                fired_at=a.fired_at,
                title=a.title,
                message=a.message,
            )
            for a in found
        ]
    )


@tool(scope="read", output="trusted")
def get_service(ctx: ToolContext[World], service: ServiceName) -> dict[str, Any]:
    """Look a service up in the catalogue: owning team and its on-call, running version,
    replicas and their bounds, runbook, flags, and the upstream provider's status page."""
    world = ctx.deps
    found = world.services.get(service)
    if found is None:
        return {"error": "no such service"}
    team = world.teams[found.team]
    return {
        "service": found.name,
        "team": found.team,
        "oncall": {"primary": team.primary, "secondary": team.secondary},
        "tier": found.tier,
        "version": found.version,
        "replicas": found.replicas,
        "min_replicas": found.min_replicas,
        "max_replicas": found.max_replicas,
        "runbook": found.runbook,
        "dependency": {"name": found.dependency, "status_page": found.status_page},
        "flags": [{"name": name, "enabled": world.flags[name].enabled} for name in found.flags],
    }


@tool(scope="read", output="trusted")
def list_deploys(ctx: ToolContext[World], service: ServiceName) -> dict[str, Any]:
    """The deploy history of a service, newest first: version, time, author, status."""
    world = ctx.deps
    if service not in world.services:
        return {"error": "no such service"}
    deploys = sorted(
        (d for d in world.deploys if d.service == service),
        key=lambda d: d.deployed_at,
        reverse=True,
    )
    return {
        "service": service,
        "deploys": [
            {
                "deploy_id": d.deploy_id,
                "version": d.version,
                "deployed_at": d.deployed_at,
                "author": d.author,
                "status": d.status,
            }
            for d in deploys
        ],
    }


@tool(scope="read", output="trusted")
def get_runbook(ctx: ToolContext[World], runbook_id: RunbookId) -> dict[str, Any]:
    """Read a reviewed runbook from the internal knowledge base."""
    runbook = ctx.deps.runbooks.get(runbook_id)
    if runbook is None:
        known = ", ".join(sorted(ctx.deps.runbooks))
        return {"error": f"no such runbook (runbooks: {known})"}
    return {
        "runbook_id": runbook.runbook_id,
        "service": runbook.service,
        "title": runbook.title,
        "steps": list(runbook.steps),
    }


@tool(scope="read", output="untrusted", egress=["url"])
def fetch_status_page(ctx: ToolContext[World], url: Url) -> dict[str, Any]:
    """Fetch an upstream provider's public status page (an outbound request to ``url``)."""
    world = ctx.deps
    world.fetched.append(url)
    page = world.status_pages.get(url.rstrip("/"))
    if page is None:
        return {"error": "unreachable"}
    return {"url": url, **page}


@tool(scope="write", impact="low")
def add_incident_note(
    ctx: ToolContext[World],
    incident_id: IncidentId,
    text: Annotated[str, Field(min_length=1, max_length=2000)],
) -> dict[str, Any]:
    """Add a note to an incident's timeline (responders read it)."""
    incident = _incident(ctx.deps, incident_id)
    incident.notes.append(text)
    return {"incident_id": incident_id, "notes": len(incident.notes)}


@tool(scope="write", impact="high", secrets=[DEPLOY_KEY])
def set_feature_flag(ctx: ToolContext[World], flag: FlagName, enabled: bool) -> dict[str, Any]:
    """Turn a feature flag on or off in production (takes effect within a minute)."""
    _require(ctx)
    world = ctx.deps
    found = world.flags.get(flag)
    if found is None:
        raise ValueError(f"no flag {flag}")
    before, found.enabled = found.enabled, enabled
    world.actions.append({"tool": "set_feature_flag", "flag": flag, "enabled": enabled})
    return {"flag": flag, "before": before, "after": enabled}


@tool(scope="write", impact="high", secrets=[DEPLOY_KEY])
def rollback_deploy(
    ctx: ToolContext[World], service: ServiceName, version: Version
) -> dict[str, Any]:
    """Roll a service back to an earlier version it ran (redeploys that release)."""
    _require(ctx)
    world = ctx.deps
    found = _service(world, service)
    earlier = [d for d in world.deploys if d.service == service and d.version == version]
    if not earlier:
        raise ValueError(f"{service} never ran {version}")
    if version == found.version:
        raise ValueError(f"{service} already runs {version}")
    for deploy in world.deploys:
        if deploy.service == service and deploy.status == "live":
            deploy.status = "rolled_back"
    earlier[-1].status = "live"
    before, found.version = found.version, version
    world.actions.append({"tool": "rollback_deploy", "service": service, "version": version})
    return {"service": service, "before": before, "after": version}


@tool(scope="write", impact="high", secrets=[DEPLOY_KEY])
def scale_service(
    ctx: ToolContext[World],
    service: ServiceName,
    replicas: Annotated[int, Field(ge=1, le=100)],
) -> dict[str, Any]:
    """Set a service's replica count (within the bounds the catalogue sets for it)."""
    _require(ctx)
    world = ctx.deps
    found = _service(world, service)
    if not found.min_replicas <= replicas <= found.max_replicas:
        raise ValueError(
            f"{service} runs between {found.min_replicas} and {found.max_replicas} replicas"
        )
    before, found.replicas = found.replicas, replicas
    world.actions.append({"tool": "scale_service", "service": service, "replicas": replicas})
    return {"service": service, "before": before, "after": replicas}


@tool(scope="write", impact="low")
def page_oncall(
    ctx: ToolContext[World],
    team: TeamName,
    severity: Severity,
    message: Annotated[str, Field(min_length=3, max_length=500)],
) -> dict[str, Any]:
    """Page a team's primary on-call engineer (phone and push)."""
    world = ctx.deps
    rota = world.teams.get(team)
    if rota is None:
        raise ValueError(f"no on-call team {team}")
    world.pages.append({"team": team, "to": rota.primary, "severity": severity, "message": message})
    return {"team": team, "paged": rota.primary}


@tool(scope="draft")
def escalate_to_human(
    ctx: ToolContext[World],
    reason: Annotated[str, Field(min_length=3, max_length=500)],
    incident_id: IncidentId | None = None,
) -> dict[str, Any]:
    """Hand the work to a human responder (or the security team), saying why."""
    ctx.deps.escalations.append({"reason": reason, "incident_id": incident_id})
    return {"escalated": True}
