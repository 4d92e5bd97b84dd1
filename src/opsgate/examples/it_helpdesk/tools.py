"""The IT help-desk toolbelt: narrow operations on the in-memory department.

Each tool declares its scope and impact; none is a generic "run a command" or "write a
file". A ticket is the requester's own words and comes back untrusted (all but its id: who
it says it is from stays untrusted until the directory corroborates it); the directory,
licence system, identity callbacks and config repo are systems of record and are trusted.
Writes refuse what the real systems would refuse (a disabled account, a verification that
belongs to someone else, a pool with no seats left), whatever the gate allowed.
"""

from __future__ import annotations

import hashlib
import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field

from opsgate.contracts import ToolContext, tool
from opsgate.examples.it_helpdesk.world import Ticket, User, World

UserId = Annotated[str, Field(pattern=r"^U-\d{4}$", description="A user id, U-nnnn.")]
TicketId = Annotated[str, Field(pattern=r"^T-\d+$", description="A ticket id, T-n.")]
GroupName = Annotated[
    str, Field(pattern=r"^[a-z][a-z0-9\-]{1,40}$", description="A directory group name.")
]
Product = Annotated[
    str, Field(pattern=r"^[a-z][a-z0-9\-]{1,40}$", description="A licence product name.")
]
ConfigPath = Annotated[
    str,
    Field(
        pattern=r"^[a-z0-9_\-]+(/[a-z0-9_\-]+)*\.conf$",
        description="A file of the config repo, e.g. vpn/client.conf.",
    ),
]
ConfigKey = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,63}$")]
ConfigValue = Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[^\r\n]*$")]

DIRECTORY_KEY = "DIRECTORY_API_KEY"
LICENSE_KEY = "LICENSE_API_KEY"


def _require(ctx: ToolContext[World], secret: str) -> None:
    """The real directory and licence APIs refuse a call without their key."""
    if not ctx.secrets.get(secret):
        raise PermissionError(f"the {secret} was not injected")


def _user(world: World, user_id: str) -> User:
    user = world.users.get(user_id)
    if user is None:
        raise ValueError(f"no user {user_id} in the directory")
    return user


def _ticket(world: World, ticket_id: str) -> Ticket:
    """The ticket a draft tool writes on (a tool error when there is none)."""
    ticket = world.tickets.get(ticket_id)
    if ticket is None:
        raise ValueError(f"no ticket {ticket_id}")
    return ticket


def _record(world: World, tool_name: str, **details: Any) -> None:
    world.actions.append({"tool": tool_name, **details})


class TicketView(BaseModel):
    """A ticket as get_ticket returns it: its id, who it says it is from, and what they
    wrote."""

    ticket_id: str
    requester: str
    subject: str
    body: str


class NoTicket(BaseModel):
    """get_ticket's answer for an unknown ticket."""

    error: str


# Only the ticket id is vouched for: the requester is who the ticket says it is from, and
# stays untrusted until the directory corroborates it (lookup_user).
@tool(scope="read", output="untrusted", output_fields={"$.ticket_id": "trusted"})
def get_ticket(ctx: ToolContext[World], ticket_id: TicketId) -> TicketView | NoTicket:
    """Read a help-desk ticket: who opened it, the subject and their message."""
    ticket = ctx.deps.tickets.get(ticket_id)
    if ticket is None:
        return NoTicket(error=f"no ticket {ticket_id}")  # untrusted: it echoes the id asked
    return TicketView(
        ticket_id=ticket.ticket_id,
        requester=ticket.requester,
        subject=ticket.subject,
        body=ticket.body,
    )


@tool(scope="read", output="trusted", secrets=[DIRECTORY_KEY])
def lookup_user(
    ctx: ToolContext[World],
    query: Annotated[
        str, Field(min_length=2, max_length=120, description="User id, e-mail or name.")
    ],
) -> dict[str, Any]:
    """Look a person up in the directory: account state, manager, MFA devices, groups, laptops."""
    _require(ctx, DIRECTORY_KEY)
    world = ctx.deps
    wanted = query.strip().casefold()
    found = [
        u
        for u in world.users.values()
        if wanted in (u.user_id.casefold(), u.email.casefold(), u.name.casefold())
    ]
    if len(found) != 1:
        # never echo the query: this output is trusted, and would launder it
        return {"error": "no single user matches; give an exact user id, e-mail or full name"}
    user = found[0]
    manager = world.users.get(user.manager) if user.manager else None
    return {
        "user_id": user.user_id,
        "name": user.name,
        "email": user.email,
        "department": user.department,
        "manager": None if manager is None else {"user_id": manager.user_id, "name": manager.name},
        "status": user.status,
        "locked": user.locked,
        "locked_reason": user.locked_reason,
        "mfa_devices": list(user.mfa_devices),
        "phone_on_file": user.phone_on_file,
        "groups": list(user.groups),
        "devices": [
            {"asset_tag": d.asset_tag, "model": d.model, "status": d.status}
            for d in world.devices.values()
            if d.owner == user.user_id
        ],
    }


@tool(scope="read", output="trusted")
def list_groups(ctx: ToolContext[World]) -> list[dict[str, Any]]:
    """List the directory groups: what each grants, whether it is privileged, who owns it."""
    return [
        {
            "name": g.name,
            "description": g.description,
            "privileged": g.privileged,
            "owner": g.owner,
        }
        for g in ctx.deps.groups.values()
    ]


@tool(scope="read", output="trusted")
def check_license(ctx: ToolContext[World], product: Product) -> dict[str, Any]:
    """Check a licence pool: seats, seats free, who holds one, whether it needs approval."""
    pool = ctx.deps.licenses.get(product)
    if pool is None:
        known = ", ".join(sorted(ctx.deps.licenses))
        return {"error": f"no such licence pool (pools: {known})"}
    return {
        "product": pool.product,
        "seats": pool.seats,
        "available": pool.seats - len(pool.assigned),
        "assigned": list(pool.assigned),
        "needs_approval": pool.needs_approval,
    }


@tool(scope="read", output="trusted")
def verify_identity(
    ctx: ToolContext[World],
    user_id: UserId,
    method: Literal["callback_on_file", "manager_confirmation"],
) -> dict[str, Any]:
    """Verify that the requester is the account holder: call back the phone number on file,
    or have their manager confirm. Returns a verification id that an MFA reset needs."""
    world = ctx.deps
    user = world.users.get(user_id)
    if user is None:
        return {"verified": False, "reason": "no such user in the directory"}
    if method == "callback_on_file":
        if not user.phone_on_file:
            return {"verified": False, "reason": "no phone number on file for a callback"}
    else:
        manager = world.users.get(user.manager) if user.manager else None
        if manager is None:
            return {"verified": False, "reason": "the user has no manager on record"}
        if manager.out_of_office:
            return {
                "verified": False,
                "reason": f"manager {manager.name} ({manager.user_id}) is out of office",
            }
    digest = hashlib.sha256(f"{ctx.run_id}:{ctx.call_id}:{user_id}".encode()).hexdigest()
    verification_id = f"VER-{digest[:8].upper()}"
    world.verifications[verification_id] = user_id
    return {"verified": True, "verification_id": verification_id, "method": method}


@tool(scope="read", impact="high", output="trusted", secrets=[DIRECTORY_KEY])
def export_user_directory(
    ctx: ToolContext[World],
    destination: Annotated[str, Field(max_length=254, description="Where to send the export.")],
) -> dict[str, Any]:
    """Export every user's name, e-mail, department and manager (HR and audit only)."""
    _require(ctx, DIRECTORY_KEY)
    ctx.deps.exports.append(destination)
    return {
        "destination": destination,
        "users": [
            {"user_id": u.user_id, "name": u.name, "email": u.email, "department": u.department}
            for u in ctx.deps.users.values()
        ],
    }


@tool(scope="draft")
def draft_reply(
    ctx: ToolContext[World],
    ticket_id: TicketId,
    body: Annotated[str, Field(min_length=1, max_length=4000)],
) -> dict[str, Any]:
    """Draft a reply to the requester (an answer, or a question); a person sends it."""
    ticket = _ticket(ctx.deps, ticket_id)
    ticket.drafts.append(body)
    return {"ticket_id": ticket_id, "draft": len(ticket.drafts)}


@tool(scope="draft")
def add_internal_note(
    ctx: ToolContext[World],
    ticket_id: TicketId,
    text: Annotated[str, Field(min_length=1, max_length=2000)],
) -> dict[str, Any]:
    """Add an internal note to a ticket (only IT staff see it)."""
    ticket = _ticket(ctx.deps, ticket_id)
    ticket.notes.append(text)
    return {"ticket_id": ticket_id, "notes": len(ticket.notes)}


@tool(scope="draft")
def escalate_to_human(
    ctx: ToolContext[World],
    ticket_id: TicketId,
    reason: Annotated[str, Field(min_length=3, max_length=500)],
) -> dict[str, Any]:
    """Hand the ticket to a human IT engineer (or the security team), saying why."""
    ticket = _ticket(ctx.deps, ticket_id)
    ticket.escalated = reason
    return {"ticket_id": ticket_id, "escalated": True}


@tool(scope="write", impact="low", secrets=[DIRECTORY_KEY])
def unlock_account(ctx: ToolContext[World], user_id: UserId) -> dict[str, Any]:
    """Unlock an account locked by failed sign-ins (not a security hold, not a leaver)."""
    _require(ctx, DIRECTORY_KEY)
    user = _user(ctx.deps, user_id)
    if user.status != "active":
        raise ValueError(f"{user_id} is {user.status}; a disabled account is not unlocked")
    if user.locked_reason and user.locked_reason.startswith("security hold"):
        raise ValueError(f"{user_id} is on a security hold; only the security team lifts it")
    if not user.locked:
        return {"user_id": user_id, "locked": False, "changed": False}
    user.locked, user.locked_reason = False, None
    _record(ctx.deps, "unlock_account", user_id=user_id)
    return {"user_id": user_id, "locked": False, "changed": True}


@tool(scope="write", impact="high", secrets=[DIRECTORY_KEY])
def reset_mfa(
    ctx: ToolContext[World],
    user_id: UserId,
    verification_id: Annotated[
        str, Field(pattern=r"^VER-[0-9A-F]{8}$", description="From verify_identity.")
    ],
) -> dict[str, Any]:
    """Remove a user's MFA devices so they can enrol a new one (needs a fresh verification)."""
    _require(ctx, DIRECTORY_KEY)
    world = ctx.deps
    user = _user(world, user_id)
    if world.verifications.get(verification_id) != user_id:
        raise ValueError(f"{verification_id} is not a verification of {user_id}")
    del world.verifications[verification_id]  # one verification, one reset
    removed, user.mfa_devices = user.mfa_devices, []
    user.mfa_enrolment_pending = True
    _record(world, "reset_mfa", user_id=user_id)
    return {"user_id": user_id, "removed_devices": removed, "enrolment_pending": True}


@tool(scope="write", impact="low", secrets=[DIRECTORY_KEY])
def add_to_group(ctx: ToolContext[World], user_id: UserId, group: GroupName) -> dict[str, Any]:
    """Add a user to a directory group (privileged groups need the owner's approval)."""
    _require(ctx, DIRECTORY_KEY)
    world = ctx.deps
    user = _user(world, user_id)
    if group not in world.groups:
        raise ValueError(f"no group `{group}`")
    if user.status != "active":
        raise ValueError(f"{user_id} is {user.status}")
    if group in user.groups:
        return {"user_id": user_id, "group": group, "changed": False}
    user.groups.append(group)
    _record(world, "add_to_group", user_id=user_id, group=group)
    return {"user_id": user_id, "group": group, "changed": True}


@tool(scope="write", impact="low", secrets=[LICENSE_KEY])
def assign_license(ctx: ToolContext[World], user_id: UserId, product: Product) -> dict[str, Any]:
    """Give a user a seat of a licence pool (costly products need approval)."""
    _require(ctx, LICENSE_KEY)
    world = ctx.deps
    user = _user(world, user_id)
    pool = world.licenses.get(product)
    if pool is None:
        raise ValueError(f"no licence pool `{product}`")
    if user.status != "active":
        raise ValueError(f"{user_id} is {user.status}")
    if user_id in pool.assigned:
        return {"user_id": user_id, "product": product, "changed": False}
    if len(pool.assigned) >= pool.seats:
        raise ValueError(f"no `{product}` seats left ({pool.seats} of {pool.seats} in use)")
    pool.assigned.append(user_id)
    _record(world, "assign_license", user_id=user_id, product=product)
    return {"user_id": user_id, "product": product, "changed": True}


@tool(scope="write", impact="low")
def set_config_value(
    ctx: ToolContext[World], path: ConfigPath, key: ConfigKey, value: ConfigValue
) -> dict[str, Any]:
    """Set `key = value` in a file of the config repo (the key's line is replaced, or added)."""
    world = ctx.deps
    text = world.files.get(path)
    if text is None:
        raise ValueError(f"no file `{path}` in the config repo (files: {', '.join(world.files)})")
    line = re.compile(rf"^(\s*){re.escape(key)}\s*=.*$", re.MULTILINE)
    found = line.search(text)
    before = found.group(0).split("=", 1)[1].strip() if found else None
    if found:
        text = line.sub(lambda m: f"{m.group(1)}{key} = {value}", text, count=1)
    else:
        text = text + ("" if text.endswith("\n") or not text else "\n") + f"{key} = {value}\n"
    world.files[path] = text
    _record(world, "set_config_value", path=path, key=key, value=value)
    return {"path": path, "key": key, "before": before, "after": value}
