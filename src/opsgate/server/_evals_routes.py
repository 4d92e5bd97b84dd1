"""The Evals pages and their API (viewer role, read only): suites over time, one report, the
diff of two reports. Verdicts on the review queue are given with `agent-eval review record`."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from fastapi.responses import HTMLResponse

from opsgate.server._auth import console_of, viewer
from opsgate.server._console import Principal
from opsgate.server._evals import compare_reports, eval_suites, report_view
from opsgate.server._render import templates

__all__ = ["eval_api", "eval_pages"]

eval_pages = APIRouter(include_in_schema=False, default_response_class=HTMLResponse)
eval_api = APIRouter(prefix="/api", tags=["console"])

Viewer = Annotated[Principal, Depends(viewer)]
ReportId = Annotated[str, Path(max_length=64)]
CompareId = Annotated[str, Query(min_length=1, max_length=64)]


@eval_pages.get("/evals")
def evals_page(request: Request, who: Viewer) -> Response:
    suites = eval_suites(console_of(request).store())
    return templates.TemplateResponse(request, "evals.html", {"who": who, "suites": suites})


@eval_pages.get("/evals/compare")
def compare_page(request: Request, who: Viewer, a: CompareId, b: CompareId) -> Response:
    diff = compare_reports(console_of(request).store(), a, b)
    return templates.TemplateResponse(request, "eval_compare.html", {"who": who, "diff": diff})


@eval_pages.get("/evals/reports/{report_id}")
def report_page(request: Request, report_id: ReportId, who: Viewer) -> Response:
    view = report_view(console_of(request).store(), report_id)
    return templates.TemplateResponse(request, "eval_report.html", {"who": who, "r": view})


@eval_api.get("/evals")
def evals_data(request: Request, who: Viewer) -> dict[str, Any]:
    """Per suite: the latest reports' headline metrics (success rate with its 95% interval,
    cost per successful task, unsafe attempts) and the accepted baseline."""
    return {"suites": [s.as_dict() for s in eval_suites(console_of(request).store())]}


@eval_api.get("/evals/compare")
def compare_data(request: Request, who: Viewer, a: CompareId, b: CompareId) -> dict[str, Any]:
    """The differences of report ``b`` against report ``a``, as `agent-eval compare a b`."""
    return compare_reports(console_of(request).store(), a, b).as_dict()


@eval_api.get("/evals/reports/{report_id}")
def report_data(request: Request, report_id: ReportId, who: Viewer) -> dict[str, Any]:
    """One report: metrics, failing trials, the diff against the suite's baseline, the human
    review verdicts (agreement, Cohen's kappa) and a sample of what is left to review."""
    return report_view(console_of(request).store(), report_id).as_dict()
