"""The bench suite's one tool: a trusted read of an order in the bench world."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field

from opsgate.contracts import ToolContext, tool

OrderId = Annotated[str, Field(pattern=r"^ORD-\d{4}$", description="An order id, ORD-nnnn.")]


@tool(scope="read", output="trusted")
def lookup_order(ctx: ToolContext[dict[str, Any]], order_id: OrderId) -> dict[str, Any]:
    """Look up an order: its status. Counts the look-up, so a suite can check it happened."""
    order = ctx.deps["orders"].get(order_id)
    if order is None:
        return {"error": f"no order {order_id}"}
    order["lookups"] += 1
    return {"order_id": order_id, "status": order["status"]}
