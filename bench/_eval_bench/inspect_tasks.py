"""The bench task for inspect_ai (run by the peer's own venv, never imported by opsgate).

``lookup``: one sample per order, "What is the status of order ORD-nnnn?", scored by
``includes`` against the order id. ``-T tool=true`` gives the solver the ``lookup_order``
tool, so a model that calls it makes two model calls a sample, as opsgate's bench agent
does; ``-T mock=tool`` makes that model ``mockllm/model`` scripted like the loopback
server (a tool call, then the answer); without it, ``--model`` says which model.
"""

from __future__ import annotations

import re
from typing import Any

from inspect_ai import Task, task
from inspect_ai.dataset import Sample
from inspect_ai.model import ModelOutput, get_model
from inspect_ai.scorer import includes
from inspect_ai.solver import generate, use_tools
from inspect_ai.tool import Tool, tool

ORDER = re.compile(r"ORD-\d{4}")


@tool
def lookup_order() -> Tool:
    """The same look-up as opsgate's bench tool."""

    async def execute(order_id: str) -> str:
        """Look up an order: its status.

        Args:
            order_id: An order id, ORD-nnnn.
        """
        return f'{{"order_id": "{order_id}", "status": "shipped"}}'

    return execute


def _scripted(input: list[Any], tools: list[Any], tool_choice: Any, config: Any) -> ModelOutput:
    """The loopback server's script: call the tool once, then answer."""
    users = [m for m in input if m.role == "user"]
    found = ORDER.search(users[-1].text) if users else None
    order = found.group(0) if found else "ORD-0000"
    if tools and not any(m.role == "tool" for m in input):
        return ModelOutput.for_tool_call("mockllm/model", tools[0].name, {"order_id": order})
    return ModelOutput.from_content("mockllm/model", f"Order {order}: looked up, it has shipped.")


@task
def lookup(n: int = 10, tool: bool = False, mock: str = "") -> Task:
    """``n`` look-up samples; ``tool``: offer the tool; ``mock=tool``: the scripted mock."""
    samples = [
        Sample(input=f"What is the status of order ORD-{i:04d}?", target=f"ORD-{i:04d}")
        for i in range(1, n + 1)
    ]
    solver = [use_tools(lookup_order()), generate()] if tool else [generate()]
    model = get_model("mockllm/model", custom_outputs=_scripted) if mock == "tool" else None
    return Task(dataset=samples, solver=solver, scorer=includes(), model=model)
