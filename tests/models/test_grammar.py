"""Patterns rewritten into the subset a grammar-constrained server enforces; what cannot be is
named, and every shipped tool contract can be enforced (issue #11, fault 10: the embedded server
logged "pattern ^ORD-\\d{4}$ is not supported ... accepting any string")."""

from __future__ import annotations

import importlib
import pkgutil
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import opsgate.examples
from opsgate.contracts import Toolbelt
from opsgate.models import FINAL_ANSWER, constrained_tool_schema
from opsgate.models._grammar import enforceable_schema, grammar_pattern, unenforceable


@pytest.mark.parametrize(
    ("pattern", "rewritten"),
    [
        (r"^ORD-\d{4}$", "^ORD-[0-9]{4}$"),
        (r"^T-\d+$", "^T-[0-9]+$"),
        (r"^[\w.]+@example\.com$", r"^[a-zA-Z0-9_.]+@example\.com$"),
        (r"^[^@\s]+$", r"^[^@ \t\n\r\f\v]+$"),
        (r"^(?:a|b)\s\d$", r"^(a|b)[ \t\n\r\f\v][0-9]$"),
        (r"ORD-\d{4}", "^.*ORD-[0-9]{4}.*$"),
        (r"^[]a]$", "^[]a]$"),
    ],
)
def test_class_escapes_are_spelled_out(pattern: str, rewritten: str) -> None:
    assert grammar_pattern(pattern) == rewritten


@pytest.mark.parametrize(
    "pattern", [r"^(?=a)b$", r"^(?!x).*$", r"^(a)\1$", r"\bword\b", r"^\p{L}+$", r"^[\D]$"]
)
def test_what_the_grammar_cannot_say_is_named(pattern: str) -> None:
    assert grammar_pattern(pattern) is None
    assert unenforceable({"properties": {"x": {"type": "string", "pattern": pattern}}}) == [
        f"$.properties.x: pattern `{pattern}`"
    ]


@settings(max_examples=200, deadline=None)
@given(text=st.text(alphabet="ORD-0123456789 abc_.\t", max_size=12))
def test_property_a_rewritten_pattern_never_accepts_more(text: str) -> None:
    for pattern in (r"^ORD-\d{4}$", r"^[\w.]+$", r"^\s*\d+\s*$", r"\d{2}"):
        rewritten = grammar_pattern(pattern)
        assert rewritten is not None
        if re.fullmatch(rewritten, text):
            assert re.search(pattern, text)


def _shipped_toolbelts() -> list[Toolbelt]:
    belts = []
    for module in pkgutil.iter_modules(opsgate.examples.__path__):
        try:
            tools = importlib.import_module(f"opsgate.examples.{module.name}.tools")
        except ModuleNotFoundError:
            continue
        belts.append(Toolbelt.from_module(tools))
    return belts


def test_every_shipped_contract_can_be_enforced_by_the_grammar() -> None:
    belts = _shipped_toolbelts()
    assert len(belts) >= 4
    for belt in belts:
        schema = constrained_tool_schema(belt.openai_tools())
        assert unenforceable(schema) == [], belt.names()
        assert "\\d" not in str(schema) and "\\w" not in str(schema)


def test_data_in_a_schema_is_left_alone() -> None:
    schema = {"enum": ["\\d"], "const": "\\d", "properties": {"a": {"pattern": "\\d"}}}
    assert enforceable_schema(schema) == {
        "enum": ["\\d"],
        "const": "\\d",
        "properties": {"a": {"pattern": "^.*[0-9].*$"}},
    }


def test_a_required_call_leaves_no_final_answer_to_choose() -> None:
    belt = _shipped_toolbelts()[0]
    free = constrained_tool_schema(belt.openai_tools())["schema"]["anyOf"]
    forced = constrained_tool_schema(belt.openai_tools(), required=True)["schema"]["anyOf"]
    names = [b["properties"]["name"]["const"] for b in forced]
    assert FINAL_ANSWER not in names and len(forced) == len(free) - 1
    assert unenforceable({"anyOf": forced}) == []
