"""`shadow:` in a workflow of the policy file: the candidate it names is loaded and compiled
with the policy (a missing or invalid one, or one without the workflow, is an error naming
the file and the key), every gateway built from the policy asks it too (unless `shadow=`
overrides it), and its disagreements reach `opsgate policy shadow-report`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from opsgate.audit import Signer
from opsgate.cli.main import app
from opsgate.errors import ConfigError, PolicyError
from opsgate.gateway import Gateway, MappingSecretStore
from opsgate.policy import load_policy
from opsgate.recorder import EventType, InMemoryRecorder
from opsgate.store import open_store
from opsgate.wiring import store_recorders
from tests.conftest import BASE_POLICY, BELT

LIVE = BASE_POLICY % {"stage": "autonomous_in_scope"}
# the candidate: the same policy, but notes need a person
CANDIDATE = LIVE.replace("note: {approval: never}", "note: {approval: always}")
runner = CliRunner(env={"COLUMNS": "200", "NO_COLOR": "1"})


def _with_shadow(text: str, shadow: str) -> str:
    return text.replace(
        "    stage: autonomous_in_scope\n",
        f"    stage: autonomous_in_scope\n    shadow: {shadow}\n",
    )


def _files(tmp_path: Path, candidate: str | None = CANDIDATE, shadow: str = "next.yaml") -> Path:
    (tmp_path / "policies").mkdir()
    live = tmp_path / "policies" / "live.yaml"
    live.write_text(_with_shadow(LIVE, shadow))
    if candidate is not None:
        (tmp_path / "policies" / "next.yaml").write_text(candidate)
    return live


def test_the_candidate_is_compiled_with_the_policy_and_leaves_its_version(
    tmp_path: Path,
) -> None:
    policy = load_policy(_files(tmp_path), BELT)
    candidate = policy.shadow("wf")
    assert candidate is not None and candidate.source.endswith("next.yaml")
    assert candidate.version == load_policy("x", BELT, text=CANDIDATE).version
    # naming a candidate does not change what the live policy means, nor its version
    assert policy.version == load_policy("x", BELT, text=LIVE).version
    assert policy.with_stage("wf", "draft").shadow("wf") is candidate
    assert load_policy("x", BELT, text=LIVE).shadow("wf") is None


@pytest.mark.parametrize(
    ("candidate", "shadow", "expected"),
    [
        (None, "next.yaml", "does not exist"),
        (CANDIDATE.replace("approval: always", "aproval: always"), "next.yaml", "aproval"),
        ("version: [", "next.yaml", "not a usable policy"),
        (CANDIDATE.replace("  wf:\n", "  other:\n"), "next.yaml", "has no workflow `wf`"),
        (CANDIDATE.replace("lookup: {}", "lookupp: {}"), "next.yaml", "lookupp"),
    ],
)
def test_a_bad_candidate_is_an_error_naming_the_file_and_the_key(
    tmp_path: Path, candidate: str | None, shadow: str, expected: str
) -> None:
    live = _files(tmp_path, candidate, shadow)
    with pytest.raises(PolicyError, match=expected) as raised:
        load_policy(live, BELT)
    assert raised.value.source.endswith("live.yaml")
    assert raised.value.location == "workflows.wf.shadow"


def test_the_command_line_says_so_with_exit_2(tmp_path: Path) -> None:
    live = _files(tmp_path, None)
    out = runner.invoke(app, ["policy", "check", str(live), "--tools", "tests.conftest"])
    assert out.exit_code == 2, out.output
    assert "workflows.wf.shadow" in out.output and "does not exist" in out.output
    assert "Traceback" not in out.output


async def test_a_gateway_of_the_policy_asks_the_candidate_and_shadow_overrides_it(
    tmp_path: Path,
) -> None:
    policy = load_policy(_files(tmp_path), BELT)
    recorder = InMemoryRecorder()
    gateway = Gateway(BELT, policy, recorder=recorder, secrets=MappingSecretStore({}))
    run = gateway.start_run("wf", invoker="ana", agent_id="bot", request="note T-1")
    assert (await gateway.call(run, "note", {"ticket": "T-1", "text": "x"})).ok  # live acts
    (event,) = [e for e in recorder.events if e.type == EventType.SHADOW_DECISION]
    assert event.data["effect"] == "needs_approval" and event.data["live_effect"] == "allow"
    assert event.data["policy_version"] == policy.shadow("wf").version  # type: ignore[union-attr]
    # `shadow=` (`--shadow`) overrides the file's candidate: the live policy agrees with itself
    quiet = InMemoryRecorder()
    same = Gateway(BELT, policy, recorder=quiet, shadow=load_policy("x", BELT, text=LIVE))
    run = same.start_run("wf", invoker="ana", agent_id="bot", request="note T-1")
    assert (await same.call(run, "note", {"ticket": "T-1", "text": "x"})).ok
    assert not [e for e in quiet.events if e.type == EventType.SHADOW_DECISION]


async def test_end_to_end_the_difference_reaches_the_shadow_report(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'o.db'}"
    policy = load_policy(_files(tmp_path), BELT)
    with open_store(url) as store:
        recorders = store_recorders(store, signer=Signer.generate())
        gateway = Gateway(BELT, policy, recorder=recorders.audit)
        run = gateway.start_run("wf", invoker="ana", agent_id="bot", request="note T-1")
        assert (await gateway.call(run, "note", {"ticket": "T-1", "text": "x"})).ok
        assert (await gateway.call(run, "lookup", {"order_id": "ORD-1"})).ok  # agreed
        gateway.finish(run)
        assert recorders.close() == []
    out = runner.invoke(app, ["policy", "shadow-report", "--db", url, "--json"])
    assert out.exit_code == 0, out.output
    report = json.loads(out.output)
    assert report["summary"]["differences"] == 1
    (difference,) = report["differences"]
    assert difference["tool"] == "note" and difference["change"] == "allow -> needs_approval"
    assert report["summary"]["candidate_versions"] == [policy.shadow("wf").version]  # type: ignore[union-attr]
    text = runner.invoke(app, ["policy", "shadow-report", "--db", url])
    assert text.exit_code == 0 and "1 shadow difference(s)" in text.output


def test_mcp_proxy_takes_the_workflows_candidate_unless_shadow_is_given(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[Path | None] = []

    def build(options: Any, **_kw: Any) -> Any:
        seen.append(options.shadow)
        raise ConfigError("stopped before serving")

    monkeypatch.setattr("opsgate.cli._mcp.build_proxy", build)
    live = _files(tmp_path)
    base = ["mcp-proxy", "--policy", str(live), "--workflow", "wf"]
    db = ["--db", f"sqlite:///{tmp_path / 'o.db'}", "--", "true"]
    out = runner.invoke(app, [*base, *db])
    assert out.exit_code == 2 and "stopped before serving" in out.output
    given = tmp_path / "other.yaml"
    runner.invoke(app, [*base, "--shadow", str(given), *db])
    assert seen == [tmp_path / "policies" / "next.yaml", given]
