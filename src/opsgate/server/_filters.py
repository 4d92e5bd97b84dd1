"""The runs list's query parameters, one declaration shared by the page and the API (so
the OpenAPI schema documents them and a malformed one is a 400 naming it)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Query

from opsgate.server._runs import RunFilters

__all__ = ["run_filters"]

_Text = Annotated[str | None, Query(max_length=256)]


def run_filters(
    workflow: _Text = None,
    status: _Text = None,
    invoker: _Text = None,
    agent: _Text = None,
    policy_version: _Text = None,
    since: Annotated[
        str | None, Query(max_length=64, description="7d, 12h, 30m or an ISO date/time")
    ] = None,
    until: Annotated[
        str | None,
        Query(max_length=64, description="started before: 1d (a day ago) or an ISO date/time"),
    ] = None,
    denied: Annotated[bool, Query(description="only runs the gate denied a call in")] = False,
    escalated: bool = False,
    waiting: Annotated[bool, Query(description="only runs waiting for approval")] = False,
    include_eval: Annotated[bool, Query(description="agent-eval trials too")] = False,
) -> RunFilters:
    """The filters of a runs query (empty text means no filter)."""
    return RunFilters(
        workflow or None,
        status or None,
        invoker or None,
        agent or None,
        policy_version or None,
        since or None,
        until or None,
        denied,
        escalated,
        waiting,
        include_eval,
    )
