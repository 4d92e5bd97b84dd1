"""The README's quickstart runs as written and prints what its comments say."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_quickstart_runs_as_written(tmp_path: Path) -> None:
    block = re.search(r"```python\n(.*?)```", README.read_text(), re.S)
    assert block is not None
    script = tmp_path / "quickstart.py"
    script.write_text(block.group(1))
    done = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PAYMENTS_API_KEY": "k-test-1234", "PATH": ""},
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[:3] == ["ok", "ok allowed", "denied untrusted_derivation"]


def test_readme_names_the_two_commands() -> None:
    text = README.read_text()
    assert "make demo" in text and "make test" in text


def test_standalone_proof_verifier_in_the_readme(tmp_path: Path) -> None:
    """The README's few-line verifier accepts a real proof and rejects a forged one."""
    import json

    from opsgate.audit import AuditLog, Signer
    from opsgate.recorder import Event, EventType
    from opsgate.store import open_store

    block = re.search(r"```python\n(# verify_proof.py.*?)```", README.read_text(), re.S)
    assert block is not None
    script = tmp_path / "verify_proof.py"
    script.write_text(block.group(1))
    store = open_store(f"sqlite:///{tmp_path / 'a.db'}")
    log = AuditLog(store, Signer.generate())
    log.append([Event(EventType.STEP, "r", i, 1.0 + i, {"i": i}) for i in range(11)])
    log.checkpoint()
    assert log.signer is not None
    (tmp_path / "pub.pem").write_text(log.signer.public_pem())
    for seq in (0, 6, 10):
        (tmp_path / "proof.json").write_text(json.dumps(log.inclusion(seq)))
        done = subprocess.run(
            [sys.executable, str(script), str(tmp_path / "proof.json"), str(tmp_path / "pub.pem")],
            capture_output=True,
            text=True,
        )
        assert done.returncode == 0, done.stderr
        assert f"event {seq} is in the signed log of 11 events" in done.stdout
    forged = log.inclusion(6)
    forged["body"] = forged["body"].replace('"i":6', '"i":7')
    (tmp_path / "proof.json").write_text(json.dumps(forged))
    done = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "proof.json"), str(tmp_path / "pub.pem")],
        capture_output=True,
        text=True,
    )
    assert done.returncode != 0
    store.close()


def test_the_provenance_policy_example_loads_and_holds() -> None:
    """The README's provenance policy binds to the tools it names and decides as it says."""
    from opsgate.policy import Effect, ProposedCall, SimpleRunState, load_policy
    from opsgate.provenance import ProvenanceLedger
    from tests.policy.test_provenance_rules import BELT, CONTACTS

    text = README.read_text()
    section = text[text.index("## Provenance under attack") :]
    block = re.search(r"```yaml\n(.*?)```", section, re.S)
    assert block is not None
    policy = load_policy("README.md", BELT, text=block.group(1))
    ledger = ProvenanceLedger()
    ledger.add("Pay my landlord 120", trust="trusted", source="request")
    ledger.add(CONTACTS, trust="trusted", source="tool:get_contacts#1")
    state = SimpleRunState(workflow="bank", provenance=ledger, request="Pay my landlord 120")
    pay = {"recipient": "GB33BUKB20201555555555", "amount": 120.0}
    assert policy.decide(ProposedCall("send_money", pay), state).effect is Effect.ALLOW
    echoed = {"recipient": "DE89370400440532013000", "amount": 120.0}
    ledger.add(
        {"transactions": [{"to": echoed["recipient"]}]},
        trust="trusted",
        source="tool:get_transactions#2",
    )
    assert policy.decide(ProposedCall("send_money", echoed), state).effect is Effect.DENY


def test_the_policy_explain_example_runs_as_written() -> None:
    """The README's `policy explain` line on the shipped policy: a provenance denial (exit 1),
    not a refusal of its arguments (the example once used an id the contract rejects)."""
    import shlex

    from typer.testing import CliRunner

    from opsgate.cli.main import app

    text = README.read_text()
    line = re.search(r"`(opsgate policy explain FILE [^`]+)`", text)
    assert line is not None
    words = shlex.split(line.group(1))[1:]
    policy = README.parent / "src/opsgate/examples/support_triage/policy.yaml"
    words[words.index("FILE")] = str(policy)
    result = CliRunner().invoke(app, words, env={"COLUMNS": "200"})
    assert result.exit_code == 1, result.output
    assert "deny (untrusted_derivation)" in result.output and "order_id" in result.output
