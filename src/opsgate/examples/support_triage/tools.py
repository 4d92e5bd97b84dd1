"""The support-triage toolbelt: narrow operations on the in-memory shop.

Each tool declares its scope and impact; none is a generic "HTTP request". Tools that
read the customer's own words return untrusted output; the shop's records are trusted.
A ticket holds both, so get_ticket labels it per field: the ticket and customer ids are the
shop's, the subject and body the customer's.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field

from opsgate.contracts import Normalize, ToolContext, tool
from opsgate.examples.support_triage.world import World

_ORDER = re.compile(r"\s*#?\s*(?:ord(?:er)?|a)?[\s#_\-]*(\d{4})\s*", re.IGNORECASE)
_TICKET = re.compile(r"\s*#?\s*t(?:icket)?[\s#_\-]*(\d+)\s*", re.IGNORECASE)


def order_id(value: object) -> object:
    """An order id as customers write it (``a1050``, ``#A-1050``, ``ord1050``, ``1050``) in
    the shop's form, ``ORD-1050``; anything else unchanged (validation says why)."""
    found = _ORDER.fullmatch(value) if isinstance(value, str) else None
    return f"ORD-{found.group(1)}" if found else value


def ticket_id(value: object) -> object:
    """A ticket id (``t12``, ``#T-12``, ``ticket 12``) in the form ``T-12``."""
    found = _TICKET.fullmatch(value) if isinstance(value, str) else None
    return f"T-{found.group(1)}" if found else value


OrderId = Annotated[
    str,
    Normalize(order_id),
    Field(pattern=r"^ORD-\d{4}$", description="An order id, ORD-nnnn."),
]
TicketId = Annotated[
    str, Normalize(ticket_id), Field(pattern=r"^T-\d+$", description="A ticket id, T-n.")
]


class TicketView(BaseModel):
    """A ticket as get_ticket returns it: the ids the shop made, and what the customer wrote."""

    ticket_id: str
    customer_id: str
    subject: str
    body: str


class NoTicket(BaseModel):
    """get_ticket's answer for an unknown ticket."""

    error: str


@tool(
    scope="read",
    output="untrusted",
    output_fields={"$.ticket_id": "trusted", "$.customer_id": "trusted"},
)
def get_ticket(ctx: ToolContext[World], ticket_id: TicketId) -> TicketView | NoTicket:
    """Read a support ticket: subject and the customer's message."""
    ticket = ctx.deps.tickets.get(ticket_id)
    if ticket is None:
        return NoTicket(error=f"no ticket {ticket_id}")  # untrusted: it echoes the id asked
    return TicketView(
        ticket_id=ticket.ticket_id,
        customer_id=ticket.customer_id,
        subject=ticket.subject,
        body=ticket.body,
    )


@tool(scope="read", output="trusted")
def get_order_status(ctx: ToolContext[World], order_id: OrderId) -> dict[str, Any]:
    """Look up an order: status, items, total, shipping address, amount refunded."""
    order = ctx.deps.orders.get(order_id)
    if order is None:
        # no echo of the id asked for: a trusted result must not vouch for an unknown id
        return {"error": "no such order"}
    return {
        "order_id": order.order_id,
        "customer_id": order.customer_id,
        "status": order.status,
        "total": order.total,
        "items": order.items,
        "address": order.address,
        "refunded": order.refunded,
    }


@tool(scope="read", output="trusted")
def search_kb(ctx: ToolContext[World], query: Annotated[str, Field(max_length=200)]) -> list[str]:
    """Search the internal knowledge base; returns matching policy snippets."""
    words = {w for w in query.lower().split() if len(w) > 2}
    return [
        text
        for key, text in ctx.deps.kb.items()
        if key in words or any(w in text.lower() for w in words)
    ]


@tool(scope="write", impact="low")
def add_internal_note(
    ctx: ToolContext[World],
    ticket_id: TicketId,
    text: Annotated[str, Field(min_length=1, max_length=2000)],
) -> dict[str, Any]:
    """Add an internal note to a ticket (only staff see it)."""
    ticket = ctx.deps.tickets[ticket_id]
    ticket.notes.append(text)
    return {"ticket_id": ticket_id, "notes": len(ticket.notes)}


@tool(scope="draft")
def draft_reply(
    ctx: ToolContext[World],
    ticket_id: TicketId,
    body: Annotated[str, Field(min_length=1, max_length=4000)],
) -> dict[str, Any]:
    """Draft a reply to the customer; a person reviews and sends it."""
    ticket = ctx.deps.tickets[ticket_id]
    ticket.drafts.append(body)
    return {"ticket_id": ticket_id, "draft": len(ticket.drafts)}


@tool(scope="write", impact="high")
def send_reply(
    ctx: ToolContext[World],
    ticket_id: TicketId,
    body: Annotated[str, Field(min_length=1, max_length=4000)],
) -> dict[str, Any]:
    """Send a reply to the customer who opened the ticket."""
    ticket = ctx.deps.tickets[ticket_id]
    ticket.replies.append(body)
    return {"ticket_id": ticket_id, "sent": True}


@tool(scope="write", impact="high", secrets=["PAYMENTS_API_KEY"])
def refund(
    ctx: ToolContext[World],
    order_id: OrderId,
    amount: Annotated[float, Field(gt=0, description="Amount in USD.")],
    reason: Literal["damaged", "not_delivered", "wrong_item", "goodwill"],
) -> dict[str, Any]:
    """Refund part or all of an order to the original payment method."""
    if not ctx.secrets.get("PAYMENTS_API_KEY"):
        raise PermissionError("the payments key was not injected")
    order = ctx.deps.orders.get(order_id)
    if order is None:
        raise ValueError(f"no order {order_id}")
    if order.refunded + amount > order.total:
        raise ValueError(f"refund of {amount} exceeds what remains of {order.total}")
    order.refunded += amount
    ctx.deps.refunds.append({"order_id": order_id, "amount": amount, "reason": reason})
    return {"order_id": order_id, "refunded": amount, "total_refunded": order.refunded}


@tool(scope="write", impact="high")
def change_address(
    ctx: ToolContext[World],
    order_id: OrderId,
    new_address: Annotated[
        str,
        Field(
            min_length=5,
            max_length=200,
            description="The new shipping address: a street with its number, and a city.",
        ),
    ],
) -> dict[str, Any]:
    """Change the shipping address of an order that has not been delivered."""
    order = ctx.deps.orders[order_id]
    if order.status == "delivered":
        raise ValueError(f"{order_id} is already delivered")
    before, order.address = order.address, new_address
    return {"order_id": order_id, "before": before, "after": new_address}


@tool(scope="write", impact="high")
def send_email(
    ctx: ToolContext[World],
    to: Annotated[str, Field(max_length=254)],
    subject: Annotated[str, Field(max_length=200)],
    body: Annotated[str, Field(max_length=10000)],
) -> dict[str, Any]:
    """Send an e-mail from the support mailbox."""
    ctx.deps.sent_emails.append({"to": to, "subject": subject, "body": body})
    return {"to": to, "sent": True}


@tool(scope="draft")
def escalate_to_human(
    ctx: ToolContext[World],
    ticket_id: TicketId,
    reason: Annotated[str, Field(min_length=3, max_length=500)],
) -> dict[str, Any]:
    """Hand the ticket to a human agent, saying why."""
    ctx.deps.tickets[ticket_id].escalated = reason
    return {"ticket_id": ticket_id, "escalated": True}


@tool(scope="read", impact="high", output="trusted")
def export_customer_data(ctx: ToolContext[World], customer_id: str) -> dict[str, Any]:
    """Export everything known about a customer (privacy requests only)."""
    return dict(ctx.deps.customers[customer_id])
