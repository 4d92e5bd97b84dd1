"""The names module: every attribute and environment variable is a documented constant, the
package exports what it says, and the environment is read as documented."""

from __future__ import annotations

import ast
import inspect

import pytest

import opsgate.tracing
from opsgate.tracing import attributes as A
from opsgate.tracing import content_from_env, otlp_endpoint_from_env


def test_all_lists_exactly_the_public_names() -> None:
    # Everything public but the implementation submodules Python binds on import.
    public = {
        name
        for name, obj in vars(opsgate.tracing).items()
        if not name.startswith("_") and (not inspect.ismodule(obj) or name == "attributes")
    }
    assert sorted(opsgate.tracing.__all__) == sorted(public)
    for name in opsgate.tracing.__all__:
        obj = getattr(opsgate.tracing, name)
        if callable(obj) or inspect.ismodule(obj):
            assert obj.__doc__, f"{name} has no docstring"


def test_every_constant_is_documented() -> None:
    source = inspect.getsource(A)
    lines = source.splitlines()
    names = []
    for node in ast.parse(source).body:
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.append(node.target.id)
            comment = lines[node.lineno - 2].strip()
            assert comment.startswith("#:"), f"{node.target.id} has no `#:` doc comment"
    assert len(names) >= 60
    values = [getattr(A, n) for n in names if isinstance(getattr(A, n), str)]
    attribute_names = [v for v in values if v.startswith(("gen_ai.", "opsgate.", "error."))]
    # The names the brief and the conventions fix.
    for required in (
        "gen_ai.operation.name",
        "gen_ai.provider.name",
        "gen_ai.request.model",
        "gen_ai.usage.input_tokens",
        "gen_ai.usage.output_tokens",
        "gen_ai.tool.name",
        "gen_ai.tool.call.id",
        "gen_ai.tool.type",
        "gen_ai.tool.call.arguments",
        "gen_ai.tool.call.result",
        "gen_ai.conversation.id",
        "gen_ai.agent.id",
        "gen_ai.agent.name",
        "gen_ai.workflow.name",
        "error.type",
        "opsgate.decision",
        "opsgate.decision.reason",
        "opsgate.decision.rule",
        "opsgate.policy.version",
        "opsgate.cost.usd",
        "opsgate.run.status",
        "opsgate.invoker",
        "opsgate.provenance.trust",
        "opsgate.approval.approver",
    ):
        assert required in attribute_names, required
    assert len(set(attribute_names)) == len(attribute_names), "a name is defined twice"


def test_env_vars_are_in_the_module_doc_of_the_factory() -> None:
    doc = opsgate.tracing.tracing_recorder.__doc__ or ""
    assert "OPSGATE_TRACE_CONTENT" in doc and "OTEL_SERVICE_NAME" in doc
    endpoint_doc = otlp_endpoint_from_env.__doc__ or ""
    for var in (A.OTLP_ENDPOINT_ENV, A.OTEL_TRACES_ENDPOINT_ENV, A.OTEL_ENDPOINT_ENV):
        assert var in endpoint_doc


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, False),
        ("", False),
        ("0", False),
        ("false", False),
        ("no", False),
        ("1", True),
        ("true", True),
        (" TRUE ", True),
        ("yes", True),
        ("on", True),
    ],
)
def test_content_capture_is_off_unless_asked(value: str | None, expected: bool) -> None:
    env = {} if value is None else {A.TRACE_CONTENT_ENV: value}
    assert content_from_env(env) is expected


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, None),
        ({A.OTLP_ENDPOINT_ENV: "http://c:4318"}, "http://c:4318/v1/traces"),
        ({A.OTLP_ENDPOINT_ENV: "http://c:4318/"}, "http://c:4318/v1/traces"),
        ({A.OTLP_ENDPOINT_ENV: "http://c:4318/v1/traces"}, "http://c:4318/v1/traces"),
        ({A.OTEL_TRACES_ENDPOINT_ENV: "http://t:1/custom"}, "http://t:1/custom"),
        ({A.OTEL_ENDPOINT_ENV: "http://b:4318"}, "http://b:4318/v1/traces"),
        (
            {
                A.OTLP_ENDPOINT_ENV: "http://ours:1",
                A.OTEL_TRACES_ENDPOINT_ENV: "http://t:1/x",
                A.OTEL_ENDPOINT_ENV: "http://b:1",
            },
            "http://ours:1/v1/traces",
        ),
        (
            {A.OTEL_TRACES_ENDPOINT_ENV: "http://t:1/x", A.OTEL_ENDPOINT_ENV: "http://b:1"},
            "http://t:1/x",
        ),
        ({A.OTLP_ENDPOINT_ENV: "  "}, None),
    ],
)
def test_the_otlp_endpoint_is_resolved_in_order(env: dict[str, str], expected: str | None) -> None:
    assert otlp_endpoint_from_env(env) == expected
