"""The CRM / sales-ops toolbelt: narrow operations on the in-memory CRM.

Each tool declares its scope and impact; none is a generic "query the CRM" or "call the
billing API". The CRM's own records (accounts, contacts, deals) are trusted; what outsiders
write is not: an inbound e-mail is untrusted whole (even its sender address can be anyone's),
and a list of activities mixes system fields (ids, dates, the matched contact) with
subjects and bodies customers wrote, so it declares field-level trust. Writes refuse what
the real systems would refuse (a closed deal, an account on hold, an unknown record),
whatever the gate allowed.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field

from opsgate.contracts import ToolContext, tool
from opsgate.examples.crm_sales.world import Account, Activity, Deal, World

AccountId = Annotated[str, Field(pattern=r"^ACC-\d{4}$", description="An account id, ACC-nnnn.")]
DealId = Annotated[str, Field(pattern=r"^DEAL-\d{4}$", description="A deal id, DEAL-nnnn.")]
EmailId = Annotated[str, Field(pattern=r"^EM-\d{4}$", description="An inbound e-mail, EM-nnnn.")]
RecordId = Annotated[
    str,
    Field(pattern=r"^(ACC|DEAL)-\d{4}$", description="The account or deal a note belongs on."),
]
Address = Annotated[
    str,
    Field(
        pattern=r"^[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(\.[A-Za-z0-9\-]+)+$",
        max_length=254,
        description="An e-mail address.",
    ),
]
Stage = Literal[
    "prospecting", "qualification", "proposal", "negotiation", "closed_won", "closed_lost"
]
CreditReason = Literal[
    "billing_error", "service_outage", "late_delivery", "goodwill", "renewal_incentive"
]
Start = Annotated[
    str,
    Field(
        pattern=r"^\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01]) ([01]\d|2[0-3]):[0-5]\d$",
        description="Start, local time: YYYY-MM-DD HH:MM (24-hour clock).",
    ),
]

BILLING_KEY = "BILLING_API_KEY"
_CLOSED = ("closed_won", "closed_lost")


class ActivityItem(BaseModel):
    """One logged touch, as list_activities returns it."""

    activity_id: str
    kind: str
    at: str
    deal_id: str | None
    contact_id: str | None
    author: str
    subject: str
    body: str


class ActivityList(BaseModel):
    """The activity of an account (newest first)."""

    account_id: str
    activities: list[ActivityItem]


def _account(world: World, account_id: str) -> Account:
    account = world.accounts.get(account_id)
    if account is None:
        raise ValueError(f"no account {account_id}")
    return account


def _deal(world: World, deal_id: str) -> Deal:
    deal = world.deals.get(deal_id)
    if deal is None:
        raise ValueError(f"no deal {deal_id}")
    return deal


def _contact_view(world: World, contact_id: str) -> dict[str, Any]:
    contact = world.contacts[contact_id]
    return {
        "contact_id": contact.contact_id,
        "name": contact.name,
        "title": contact.title,
        "email": contact.email,
        "account_id": contact.account_id,
        "account_name": world.accounts[contact.account_id].name,
    }


@tool(scope="read", output="trusted")
def search_contacts(
    ctx: ToolContext[World],
    query: Annotated[
        str,
        Field(min_length=2, max_length=120, description="A name, e-mail, domain or company."),
    ],
) -> dict[str, Any]:
    """Find contacts by name, e-mail address, e-mail domain or company name."""
    world = ctx.deps
    wanted = query.strip().casefold()
    matches = []
    for contact in world.contacts.values():
        account = world.accounts[contact.account_id]
        fields = (contact.name, contact.email, account.name, account.domain)
        if any(wanted in f.casefold() for f in fields):
            matches.append(_contact_view(world, contact.contact_id))
    # never echo the query: this output is trusted, and would launder it
    return {"matches": matches, "count": len(matches)}


@tool(scope="read", output="trusted")
def get_account(ctx: ToolContext[World], account_id: AccountId) -> dict[str, Any]:
    """Look up an account: status, owner, billing contact, contacts, open and won deals,
    credit balance."""
    world = ctx.deps
    account = world.accounts.get(account_id)
    if account is None:
        # no echo of the id asked for: a trusted result must not vouch for an unknown id
        return {"error": "no such account"}
    contacts = [
        _contact_view(world, c.contact_id)
        for c in world.contacts.values()
        if c.account_id == account_id
    ]
    billing = world.contacts[account.billing_contact]
    return {
        "account_id": account.account_id,
        "name": account.name,
        "domain": account.domain,
        "tier": account.tier,
        "status": account.status,
        "owner": account.owner,
        "credit_balance": account.credit_balance,
        "billing_contact": {
            "contact_id": billing.contact_id,
            "name": billing.name,
            "email": billing.email,
        },
        "contacts": contacts,
        "deals": [
            {"deal_id": d.deal_id, "name": d.name, "stage": d.stage, "amount": d.amount}
            for d in world.deals.values()
            if d.account_id == account_id
        ],
    }


@tool(scope="read", output="trusted")
def get_deal(ctx: ToolContext[World], deal_id: DealId) -> dict[str, Any]:
    """Look up a deal: account, stage, amount, owner, expected close date."""
    deal = ctx.deps.deals.get(deal_id)
    if deal is None:
        return {"error": "no such deal"}
    return {
        "deal": {
            "deal_id": deal.deal_id,
            "account_id": deal.account_id,
            "account_name": ctx.deps.accounts[deal.account_id].name,
            "name": deal.name,
            "stage": deal.stage,
            "amount": deal.amount,
            "owner": deal.owner,
            "close_date": deal.close_date,
        }
    }


@tool(
    scope="read",
    output="trusted",
    output_fields={
        "$.activities[*].subject": "untrusted",
        "$.activities[*].body": "untrusted",
    },
)
def list_activities(
    ctx: ToolContext[World], account_id: AccountId, deal_id: DealId | None = None
) -> ActivityList:
    """The activity logged on an account (optionally one deal), newest first: notes, calls,
    meetings, e-mails in and out. Subjects and bodies are often the customer's own words."""
    world = ctx.deps
    if account_id not in world.accounts:
        return ActivityList(account_id="", activities=[])
    found: list[Activity] = [
        a
        for a in world.activities
        if a.account_id == account_id and (deal_id is None or a.deal_id == deal_id)
    ]
    found.sort(key=lambda a: a.at, reverse=True)
    return ActivityList(
        account_id=account_id,
        activities=[
            ActivityItem(
                activity_id=a.activity_id,
                kind=a.kind,
                at=a.at,
                deal_id=a.deal_id,
                contact_id=a.contact_id,
                author=a.author,
                subject=a.subject,
                body=a.body,
            )
            for a in found
        ],
    )


@tool(scope="read", output="untrusted")
def read_inbound_email(ctx: ToolContext[World], email_id: EmailId) -> dict[str, Any]:
    """Read a message from the shared sales inbox: sender, subject, body. Anyone can write
    one, under any name and address."""
    email = ctx.deps.inbox.get(email_id)
    if email is None:
        return {"error": "no such e-mail"}
    return {
        "email_id": email.email_id,
        "from": email.sender,
        "from_name": email.sender_name,
        "to": email.to,
        "subject": email.subject,
        "body": email.body,
        "received_at": email.received_at,
    }


@tool(scope="write", impact="low")
def add_note(
    ctx: ToolContext[World],
    record_id: RecordId,
    text: Annotated[str, Field(min_length=1, max_length=2000)],
) -> dict[str, Any]:
    """Log an internal note on an account or a deal (only our staff see it)."""
    world = ctx.deps
    if record_id.startswith("DEAL-"):
        deal = _deal(world, record_id)
        account_id, deal_id = deal.account_id, deal.deal_id
    else:
        account_id, deal_id = _account(world, record_id).account_id, None
    activity_id = f"ACT-{4001 + len(world.activities)}"
    world.activities.append(
        Activity(
            activity_id,
            account_id,
            "note",
            "2026-05-12 16:00",
            "Note",
            text,
            deal_id=deal_id,
            author="crm-bot",
        )
    )
    return {"activity_id": activity_id, "record_id": record_id}


@tool(scope="write", impact="low")
def update_deal_stage(ctx: ToolContext[World], deal_id: DealId, stage: Stage) -> dict[str, Any]:
    """Move a deal to another pipeline stage (a closed deal stays closed)."""
    world = ctx.deps
    deal = _deal(world, deal_id)
    if deal.stage in _CLOSED:
        raise ValueError(f"{deal_id} is already {deal.stage}; reopen it in the CRM by hand")
    before, deal.stage = deal.stage, stage
    world.stage_changes.append({"deal_id": deal_id, "from": before, "to": stage})
    return {"deal_id": deal_id, "before": before, "after": stage}


@tool(scope="draft")
def draft_email(
    ctx: ToolContext[World],
    to: Address,
    subject: Annotated[str, Field(min_length=1, max_length=200)],
    body: Annotated[str, Field(min_length=1, max_length=8000)],
) -> dict[str, Any]:
    """Draft an e-mail for a rep to review and send."""
    ctx.deps.drafts.append({"to": to, "subject": subject, "body": body})
    return {"draft": len(ctx.deps.drafts)}


@tool(scope="write", impact="high")
def send_email(
    ctx: ToolContext[World],
    to: Address,
    subject: Annotated[str, Field(min_length=1, max_length=200)],
    body: Annotated[str, Field(min_length=1, max_length=8000)],
) -> dict[str, Any]:
    """Send an e-mail from the sales mailbox (it leaves the company)."""
    ctx.deps.sent_emails.append({"to": to, "subject": subject, "body": body})
    return {"to": to, "sent": True}


@tool(scope="write", impact="high", secrets=[BILLING_KEY])
def apply_credit(
    ctx: ToolContext[World],
    account_id: AccountId,
    amount: Annotated[float, Field(gt=0, le=100000, description="Amount in USD.")],
    reason: CreditReason,
) -> dict[str, Any]:
    """Apply a billing credit to an account; it comes off the next invoice."""
    if not ctx.secrets.get(BILLING_KEY):
        raise PermissionError("the billing key was not injected")
    world = ctx.deps
    account = _account(world, account_id)
    if account.status != "active":
        raise ValueError(f"{account_id} is {account.status}; billing changes are blocked")
    account.credit_balance = round(account.credit_balance + amount, 2)
    world.credits.append({"account_id": account_id, "amount": amount, "reason": reason})
    return {"account_id": account_id, "credited": amount, "balance": account.credit_balance}


@tool(scope="write", impact="low")
def schedule_meeting(
    ctx: ToolContext[World],
    title: Annotated[str, Field(min_length=3, max_length=200)],
    start: Start,
    duration_minutes: Literal[15, 30, 45, 60],
    attendees: Annotated[list[Address], Field(min_length=1, max_length=10)],
) -> dict[str, Any]:
    """Book a video meeting and send the invitations to the attendees."""
    world = ctx.deps
    meeting_id = f"MTG-{6001 + len(world.meetings)}"
    world.meetings.append(
        {
            "meeting_id": meeting_id,
            "title": title,
            "start": start,
            "duration_minutes": duration_minutes,
            "attendees": list(attendees),
        }
    )
    return {"meeting_id": meeting_id, "invited": len(attendees)}


@tool(scope="draft")
def escalate_to_human(
    ctx: ToolContext[World],
    reason: Annotated[str, Field(min_length=3, max_length=500)],
    record_id: Annotated[
        str, Field(pattern=r"^(ACC|DEAL|CON|EM)-\d{4}$", description="The record it is about.")
    ]
    | None = None,
) -> dict[str, Any]:
    """Hand the request to a person in sales ops (or legal, or finance), saying why."""
    ctx.deps.escalations.append({"reason": reason, "record_id": record_id})
    return {"escalated": True}
