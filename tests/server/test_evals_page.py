"""The Evals pages and API: suites over time, one report (metrics, failing trials, the diff
against the baseline, the review queue read only), two reports compared as `agent-eval
compare` prints them; hostile text from reports escaped; unknown ids a clear 404."""

from __future__ import annotations

import json
from pathlib import Path

from fastapi.testclient import TestClient
from typer.testing import CliRunner

from opsgate.cli.eval_main import app as eval_app
from opsgate.evals import EvalStore
from opsgate.server import Console, Role, create_app, create_token
from opsgate.server._evals import eval_suites  # tests this module's JSON-path query
from opsgate.store import open_store
from tests.server.conftest import login
from tests.server.world import HOSTILE, World, record_evals


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_suites_over_time_with_interval_and_baseline(
    client: TestClient, tokens: dict[str, str], world: World
) -> None:
    data = client.get("/api/evals", headers=_bearer(tokens["viewer"])).json()
    (suite,) = data["suites"]
    assert suite["suite"] == "triage"
    assert [r["report_id"] for r in suite["reports"]] == world.reports[::-1]  # newest first
    assert suite["baseline"]["report_id"] == world.reports[0]
    assert suite["baseline"]["accepted_by"] == "lead-ann"
    with open_store(world.url, migrate=False) as store:
        evals = EvalStore(store)
        for row in suite["reports"]:  # the interval the report itself carries
            metrics = evals.get_report(row["report_id"])["metrics"]
            assert row["success_rate"] == metrics["success_rate"]
            assert (row["success_low"], row["success_high"]) == (
                metrics["success_low"],
                metrics["success_high"],
            )
    assert [r["unsafe_attempts"] for r in suite["reports"]] == [0, 1, 0]
    assert suite["reports"][1]["gate_passed"] is False  # 5/8 is below min_success_rate 0.7
    login(client, tokens["viewer"])
    page = client.get("/evals").text
    assert "triage" in page and "lead-ann" in page and "baseline</span>" in page
    assert "62.5%" in page and "[30.6, 86.3]" in page  # success with its 95% interval
    assert f"/evals/compare?a={world.reports[0]}&amp;b={world.reports[2]}" in page


def test_a_report_metrics_failures_and_diff_against_the_baseline(
    client: TestClient, tokens: dict[str, str], world: World
) -> None:
    middle = world.reports[1]
    data = client.get(f"/api/evals/reports/{middle}", headers=_bearer(tokens["viewer"])).json()
    assert data["suite"] == "triage" and data["metrics"]["success_rate"] == 0.625
    assert data["gate_failures"] == ["success rate 62.50% is below the minimum 70.00%"]
    assert {(t["task_id"], t["trial"]) for t in data["failing_tasks"]} == {
        ("refund", 0),
        ("lookup", 1),
        ("vip", 1),
    }
    against = data["against_baseline"]
    assert "newly failing: refund" in against["changes"]
    assert "unsafe attempts 0 -> 1" in against["notes"]
    assert data["is_baseline"] is False
    login(client, tokens["viewer"])
    page = client.get(f"/evals/reports/{middle}").text
    assert "newly failing: refund" in page and "62.5%" in page
    assert "harness errors" in page and "cost per successful task" in page
    assert HOSTILE not in page and "&lt;script&gt;alert(" in page  # failures are escaped
    baseline = client.get(f"/evals/reports/{world.reports[0]}").text
    assert "This report is the suite's accepted baseline" in baseline


def test_the_diff_is_what_agent_eval_compare_prints(
    client: TestClient, tokens: dict[str, str], world: World, tmp_path: Path
) -> None:
    old, new = world.reports[0], world.reports[1]
    files = []
    with open_store(world.url, migrate=False) as store:
        for report_id in (old, new):
            path = tmp_path / f"{report_id}.json"
            path.write_text(json.dumps(EvalStore(store).get_report(report_id)))
            files.append(str(path))
    printed = CliRunner().invoke(eval_app, ["compare", *files])
    assert printed.exit_code == 0, printed.output
    diff = client.get(
        "/api/evals/compare", params={"a": old, "b": new}, headers=_bearer(tokens["viewer"])
    ).json()
    assert diff["baseline"] == old and diff["new"] == new
    assert [line.strip() for line in printed.output.strip().splitlines()] == [
        *diff["notes"],
        *diff["changes"],
    ]
    login(client, tokens["viewer"])
    page = client.get("/evals/compare", params={"a": old, "b": new}).text
    assert all(line.replace(">", "&gt;") in page for line in diff["notes"])


def test_the_review_queue_is_shown_read_only_with_agreement_and_kappa(
    client: TestClient, tokens: dict[str, str], world: World
) -> None:
    newest = world.reports[2]
    data = client.get(f"/api/evals/reports/{newest}", headers=_bearer(tokens["viewer"])).json()
    reviews, queue = data["reviews"], data["review_queue"]
    assert reviews["reviewed"] == 2 and reviews["agreement"] == 0.5 and reviews["kappa"] == 0.0
    assert queue["trials"] == 8 and queue["unreviewed"] == 6
    assert queue["unreviewed_high_impact"] == 1  # refund trial 1 sends a reply
    assert ("refund", 0) not in {(q["task_id"], q["trial"]) for q in queue["sample"]}
    assert queue["sample"][0]["task_id"] == "refund"  # high impact comes first here
    login(client, tokens["admin"])  # even an admin only reads the queue
    page = client.get(f"/evals/reports/{newest}").text
    assert "agreement with the automated verdicts 50.0%" in page and "κ 0.00" in page
    assert "6 of 8 trials unreviewed, 1 of them high-impact" in page
    assert f"agent-eval review record --report {newest} --task refund --trial 1" in page
    assert 'method="post"' not in page.split("<h2>Human review</h2>")[1].split("</main>")[0]
    assert HOSTILE not in page and "fine &lt;script&gt;" in page  # a reviewer's notes


def test_unknown_reports_are_404_and_bad_comparisons_400(
    client: TestClient, tokens: dict[str, str], world: World
) -> None:
    viewer = _bearer(tokens["viewer"])
    missing = client.get("/api/evals/reports/nope", headers=viewer)
    assert missing.status_code == 404 and "no stored report `nope`" in missing.json()["error"]
    same = client.get(
        "/api/evals/compare", params={"a": "x", "b": world.reports[0]}, headers=viewer
    )
    assert same.status_code == 404
    no_ids = client.get("/api/evals/compare", headers=viewer)
    assert no_ids.status_code == 400 and "`a`" in no_ids.json()["error"]
    login(client, tokens["viewer"])
    page = client.get("/evals/reports/%3Cscript%3E")
    assert page.status_code == 404 and "<script>" not in page.text


def test_no_reports_yet(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    with open_store(url) as store:
        token = create_token(store, name="v", role=Role.VIEWER, created_by="t")[0]
    with TestClient(create_app(Console(url)), base_url="http://127.0.0.1") as c:
        assert c.get("/api/evals", headers=_bearer(token)).json() == {"suites": []}
        page = c.get("/evals", headers=_bearer(token))
        assert page.status_code == 200 and "No eval report is stored yet" in page.text


def test_the_intervals_are_read_on_each_backend(db_url: str) -> None:
    with open_store(db_url) as store:
        ids = record_evals(EvalStore(store))
        (suite,) = eval_suites(store)
        documents = {i: EvalStore(store).get_report(i)["metrics"] for i in ids}
    assert suite.baseline is not None and suite.baseline.report_id == ids[0]
    for row in suite.reports:
        metrics = documents[row["report_id"]]
        assert row["success_low"] == metrics["success_low"] > 0
        assert row["success_high"] == metrics["success_high"] < 1
