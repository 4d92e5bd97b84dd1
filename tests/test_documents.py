"""One YAML reader for every document: the same problems worded the same way, whoever reads
(a policy, a router file, a suite), and no other YAML loader in the code."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from opsgate.documents import DocumentProblem, read_document, read_yaml
from opsgate.errors import ConfigError, PolicyError, SuiteError
from opsgate.evals import load_suite
from opsgate.models import load_router_config
from opsgate.policy import parse_policy

SRC = Path(__file__).resolve().parents[1] / "src" / "opsgate"

POLICY = 'version: "1"\nworkflows:\n  wf:\n    stage: draft\n    tools: {}\n    colour: red\n'
ROUTER = "version: 1\nmodels: {}\nroles: {}\ncolour: red\n"
SUITE = (
    "suite: s\nversion: 1\nworkflow: w\nagent: a:b\ntools: t\npolicy: p.yaml\nworld: w:f\n"
    "colour: red\ntasks: [{id: t1, request: hi, checks: {output: {contains: [x]}}}]\n"
)


def _problem(load: object, text: str, error: type[Exception]) -> str:
    with pytest.raises(error) as caught:
        load("doc.yaml", text=text)  # type: ignore[operator]
    return str(caught.value)


@pytest.mark.parametrize(
    ("load", "error", "text", "where"),
    [
        (parse_policy, PolicyError, POLICY, "at `workflows.wf.colour`: line 6"),
        (load_router_config, ConfigError, ROUTER, "at `colour`: line 4"),
        (load_suite, SuiteError, SUITE, "at `colour`: line 8"),
    ],
)
def test_an_unknown_key_reads_the_same_in_every_document(
    load: object, error: type[Exception], text: str, where: str
) -> None:
    assert _problem(load, text, error) == f"doc.yaml {where}: unknown key `colour`"


@pytest.mark.parametrize(
    ("load", "error", "kind"),
    [
        (parse_policy, PolicyError, "policy"),
        (load_router_config, ConfigError, "router file"),
        (load_suite, SuiteError, "suite"),
    ],
)
def test_duplicate_keys_empty_and_non_mapping_documents(
    load: object, error: type[Exception], kind: str
) -> None:
    assert "line 2, column 1: found duplicate key `a`" in _problem(load, "a: 1\na: 2\n", error)
    assert _problem(load, "", error) == f"doc.yaml: the {kind} is empty"
    assert _problem(load, "- 1\n", error).endswith(", not a list")


def test_missing_files_and_bad_yaml_are_problems_with_their_place(tmp_path: Path) -> None:
    with pytest.raises(DocumentProblem, match="file not found"):
        read_document(tmp_path / "nope.yaml")
    with pytest.raises(DocumentProblem) as caught:
        read_yaml("a: [1,\n", "x.yaml")
    assert str(caught.value).startswith("x.yaml: line ")


def test_no_other_module_loads_yaml() -> None:
    loads = re.compile(r"yaml\.(safe_load|load|compose|full_load|unsafe_load)\(")
    offenders = [
        str(p.relative_to(SRC))
        for p in SRC.rglob("*.py")
        if p.name != "documents.py" and loads.search(p.read_text())
    ]
    assert not offenders, f"read YAML with opsgate.documents: {offenders}"
