"""Fuzzing the three YAML documents opsgate reads (issue #11): policies, eval suites and
router files. Each shipped document is mutated one field at a time, and arbitrary YAML text is
thrown at each loader. The invariant: the document loads, or the loader raises its own clear
error (`PolicyError`, `SuiteError`, `ConfigError`) with a message; never a `KeyError`, a
`RecursionError`, a yaml or unicode error leaking through. A mutated policy that loads must
then answer `decide` for each of its tools (a value, never a raise)."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import example, given, settings
from hypothesis import strategies as st

from opsgate.errors import ConfigError, PolicyError, SuiteError, UserError
from opsgate.evals import Harness, Suite, load_suite
from opsgate.models import RouterConfig, describe, load_router_config
from opsgate.policy import CompiledPolicy, ProposedCall, SimpleRunState, load_policy
from tests.fuzz._hostile import arbitrary_yaml_text, mutated_yaml, nested_list, outcome_of, scaled

EXAMPLES = Path(__file__).resolve().parents[2] / "src" / "opsgate" / "examples"
POLICIES = sorted(EXAMPLES.glob("*/policy.yaml"))
SUITES = sorted(
    p for p in EXAMPLES.glob("*/*.yaml") if p.name not in ("policy.yaml", "router.yaml")
)
ROUTERS = [Path(__file__).resolve().parents[2] / "config" / "router.yaml"]

#: Tasks kept per suite: the mutations explore one task's structure as well as sixty's, and a
#: shorter document keeps each example (and the error's line lookup) cheap.
_TASKS_KEPT = 4


@functools.cache
def _document(path: Path, *, tasks: int | None = None) -> Any:
    """The shipped document as data (`mutated` works on a copy)."""
    data = yaml.load(path.read_text(encoding="utf-8"), Loader=yaml.CSafeLoader)
    if tasks is not None:
        data["tasks"] = data["tasks"][:tasks]
    return data


def _exercise(policy: CompiledPolicy) -> None:
    """What `opsgate policy check` and the gateway do with a policy that loaded."""
    for workflow, spec in policy.document.workflows.items():
        policy.stage_table(workflow)
        for agent in [None, *spec.agents]:
            state = SimpleRunState(workflow=workflow, agent_id=agent or "agent")
            for tool in policy.allowed_tools(workflow, agent):
                decision = policy.decide(ProposedCall(tool, {}, f"{tool}:{{}}"), state)
                assert decision.message


def test_the_shipped_documents_are_found() -> None:
    """Guards the tests below against fuzzing nothing (a moved examples folder)."""
    assert len(POLICIES) >= 4 and len(SUITES) >= 4 and ROUTERS[0].is_file()


# -- policies --------------------------------------------------------------------------------


@pytest.mark.parametrize("path", POLICIES, ids=lambda p: p.parent.name)
@settings(max_examples=scaled(1 / len(POLICIES)))  # the policies share one test's budget
@given(data=st.data())
@example(data=None)  # the shipped policy itself
def test_a_mutated_policy_loads_or_says_why(path: Path, data: st.DataObject | None) -> None:
    """One field off in a real policy: the mistakes people make, with the structure intact."""
    text = path.read_text() if data is None else data.draw(mutated_yaml(_document(path)))
    loaded = outcome_of(lambda: load_policy(path, text=text), PolicyError)
    if isinstance(loaded, CompiledPolicy):
        _exercise(loaded)
    else:
        assert data is not None, f"the shipped policy does not load: {loaded}"


#: A policy of the support shop whose `refund` tool has the condition given (YAML text).
_CONDITION_POLICY = (
    "version: '1'\ntoolbelt: opsgate.examples.support_triage.tools\nworkflows:\n  wf:\n"
    "    stage: draft\n    tools:\n      refund: {deny_when: '%s'}\n"
)


#: A policy whose run may retry this many times.
_CAPS_POLICY = "version: '1'\ndefaults: {caps: {max_retries: %d}}\nworkflows: {}"


# What fuzzing found, each once a traceback (see the fixes in src/opsgate):
@example(text="version: " + "[" * 500 + "]" * 500 + "\nworkflows: {}")  # RecursionError
@example(text="version: '1'\nworkflows: {}\n\ud800")  # UnicodeEncodeError
@example(text="version: '1'\nworkflows: {? [a, b] : c}")  # TypeError: unhashable key
@example(text="version: '1'\ntoolbelt: ''\nworkflows: {}")  # ValueError: empty module name
@example(text="version: '1'\ntoolbelt: .tools\nworkflows: {}")  # TypeError: relative import
@example(text=POLICIES[0].read_text() + "'[': {}\n")  # IndexError: a key with `[`
@example(text=_CAPS_POLICY % 2**64)  # TypeError hashing the document: an int past 64 bits
@example(text=_CONDITION_POLICY % ("1 + " + "a" * 70_000 + " é"))  # the CEL parser panics
@example(text=_CONDITION_POLICY % ("args" + ".a" * 20_000))  # the CEL parser segfaults
@given(text=arbitrary_yaml_text)
def test_any_text_as_a_policy_loads_or_says_why(text: str) -> None:
    """Text that is barely a policy, or YAML at its strangest."""
    loaded = outcome_of(lambda: load_policy("fuzz.yaml", text=text), PolicyError)
    if isinstance(loaded, CompiledPolicy):
        _exercise(loaded)


# -- suites ----------------------------------------------------------------------------------


@pytest.mark.parametrize("path", SUITES, ids=lambda p: p.stem)
@settings(max_examples=scaled(1 / len(SUITES)))  # the suites share one test's budget
@given(data=st.data())
@example(data=None)
def test_a_mutated_suite_loads_or_says_why(path: Path, data: st.DataObject | None) -> None:
    """One field off in a real suite; a suite that loads is then imported as `run` does."""
    document = _document(path, tasks=_TASKS_KEPT)
    text = yaml.safe_dump(document) if data is None else data.draw(mutated_yaml(document))
    loaded = outcome_of(lambda: load_suite(path, text=text), SuiteError)
    if isinstance(loaded, Suite):
        # what `agent-eval run` does next: import the tools, world and agent it names
        harness = outcome_of(lambda: Harness.load(loaded), UserError)
        assert data is not None or isinstance(harness, Harness), harness
    else:
        assert data is not None, f"the shipped suite does not load: {loaded}"


#: A suite with one task whose forbidden call has the argument matcher given (YAML text).
_MATCHER_SUITE = (
    "suite: s\nversion: 1\nworkflow: w\nagent: 'a:b'\ntools: t\npolicy: p\nworld: 'w:x'\n"
    "tasks:\n  - id: t1\n    request: hi\n    checks:\n"
    "      forbidden_calls: [{tool: x, args: {y: %s}}]\n"
)


@example(text=_MATCHER_SUITE % "{null: 1}")  # TypeError: a key that is not text
@example(text=_MATCHER_SUITE % ("{bogus: " + "[" * 300 + "]" * 300 + "}"))  # nested too deep
@example(text=SUITES[0].read_text() + "'[': {}\n")  # IndexError: a key with `[`
@given(text=arbitrary_yaml_text)
def test_any_text_as_a_suite_loads_or_says_why(text: str) -> None:
    """Text that is barely a suite, or YAML at its strangest."""
    outcome_of(lambda: load_suite(EXAMPLES / "fuzz.yaml", text=text), SuiteError)


# -- router files ----------------------------------------------------------------------------


@pytest.mark.parametrize("path", ROUTERS, ids=lambda p: p.name)
@settings(max_examples=scaled(0.5))  # each loads and prices a router: milliseconds
@given(data=st.data())
@example(data=None)
def test_a_mutated_router_file_loads_or_says_why(path: Path, data: st.DataObject | None) -> None:
    """One field off in the shipped router file; one that loads is priced role by role."""
    text = path.read_text() if data is None else data.draw(mutated_yaml(_document(path)))
    loaded = outcome_of(lambda: load_router_config(path, text=text), ConfigError)
    if isinstance(loaded, RouterConfig):
        describe(loaded)  # `opsgate model check`: every role's chain, priced
    else:
        assert data is not None, f"the shipped router file does not load: {loaded}"


@example(text=ROUTERS[0].read_text() + "'[': {}\n")  # IndexError: a key with `[`
@given(text=arbitrary_yaml_text)
def test_any_text_as_a_router_file_loads_or_says_why(text: str) -> None:
    """Text that is barely a router file, or YAML at its strangest."""
    loaded = outcome_of(lambda: load_router_config("fuzz.yaml", text=text), ConfigError)
    if isinstance(loaded, RouterConfig):
        describe(loaded)


@pytest.mark.xfail(
    strict=True,
    raises=TypeError,
    reason="src/opsgate/evals/_runner.py (not ours to change here): `json_text`, which quotes "
    "a matcher's value in `Harness.load`'s errors, raises orjson's TypeError for a value "
    "nested past 254 levels. Found through a mutated suite; `load_suite` now refuses such "
    "matcher arguments, so only a `Suite` built without validation still reaches it.",
)
def test_a_matcher_value_is_quoted_whatever_its_depth() -> None:
    """Pins the bug in a file owned elsewhere, until it is fixed there."""
    from opsgate.evals._runner import json_text  # tests this module

    assert json_text(nested_list(300)).startswith("[[")
