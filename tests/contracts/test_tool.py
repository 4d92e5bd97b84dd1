"""Tool contracts: `tool`, `build_contract`, `ToolContract` and `Toolbelt`.

No ``from __future__ import annotations`` here on purpose: several tests define enums and
classes inside the test function, and `typing.get_type_hints` could not resolve them
from string annotations.
"""

import enum
import functools
import json
import types
from collections.abc import Callable
from typing import Annotated, Any, Literal, Optional

import pytest
from pydantic import BaseModel, Field

from opsgate.contracts import SCOPES, Toolbelt, ToolContext, ToolContract, build_contract, tool
from opsgate.errors import ContractError, InvalidToolCall, OpsgateError, UserError
from opsgate.examples.support_triage import tools as example_tools


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


class Deps:
    """A stand-in for whatever a run's dependencies are."""


def _props(contract: ToolContract) -> dict[str, Any]:
    return contract.parameters_schema["properties"]


def _invalid(contract: ToolContract, raw: Any) -> InvalidToolCall:
    with pytest.raises(InvalidToolCall) as info:
        contract.validate_args(raw)
    assert info.value.code == "invalid_arguments"
    return info.value


# ---------------------------------------------------------------------------------------
# Building contracts from sync and async functions
# ---------------------------------------------------------------------------------------


def test_sync_function_becomes_a_contract_with_defaults() -> None:
    def get_order(order_id: str) -> dict[str, str]:
        """Look up an order."""
        return {"order_id": order_id}

    contract = tool(get_order)

    assert isinstance(contract, ToolContract)
    assert contract.name == "get_order"
    assert contract.description == "Look up an order."
    assert contract.scope == "read"
    assert contract.impact == "low"
    assert contract.secrets == ()
    assert contract.output_trust == "untrusted"
    assert contract.is_async is False
    assert contract.context_param is None
    assert contract.arg_names == ("order_id",)
    assert contract.fn is get_order
    assert contract.fn("ORD-1") == {"order_id": "ORD-1"}


async def test_async_function_becomes_an_async_contract() -> None:
    async def fetch(n: int) -> int:
        """Fetch a number, asynchronously."""
        return n * 2

    contract = tool(scope="read")(fetch)

    assert contract.is_async is True
    assert contract.arg_names == ("n",)
    assert await contract.fn(21) == 42


def test_decorator_with_options_sets_every_field() -> None:
    @tool(
        name="pay-out",
        description="Pay a vendor.",
        scope="write",
        impact="high",
        secrets=["PAY_KEY", "AUDIT_TOKEN_2"],
        output="trusted",
    )
    def pay(vendor: str, amount: float) -> None:
        """Ignored: the description wins."""

    assert pay.name == "pay-out"
    assert pay.description == "Pay a vendor."
    assert pay.scope == "write"
    assert pay.impact == "high"
    assert pay.secrets == ("PAY_KEY", "AUDIT_TOKEN_2")
    assert pay.output_trust == "trusted"
    assert pay.openai_schema()["function"]["name"] == "pay-out"


def test_build_contract_equals_decorator() -> None:
    def f(a: int) -> None:
        """Doc."""

    via_build = build_contract(f, scope="draft")
    via_tool = tool(scope="draft")(f)
    assert via_build.parameters_schema == via_tool.parameters_schema
    assert via_build.scope == via_tool.scope == "draft"


def test_scopes_constant() -> None:
    assert SCOPES == ("read", "draft", "write")


# ---------------------------------------------------------------------------------------
# JSON schema: constraints, OpenAI shape, docstrings
# ---------------------------------------------------------------------------------------


def _constrained() -> ToolContract:
    @tool
    def refund(
        order_id: Annotated[str, Field(pattern=r"^ORD-\d{4}$")],
        amount: Annotated[float, Field(gt=0, le=1000)],
        reason: Literal["damaged", "goodwill"],
        color: Color = Color.RED,
        count: Annotated[int, Field(ge=1, lt=10)] = 1,
        note: Annotated[str, Field(min_length=2, max_length=5)] = "ok",
        tags: Annotated[list[str], Field(min_length=1, max_length=3)] = ["x"],  # noqa: B006
    ) -> None:
        """Refund an order."""

    return refund


def test_annotated_constraints_appear_in_schema() -> None:
    props = _props(_constrained())

    assert props["order_id"] == {"type": "string", "pattern": r"^ORD-\d{4}$"}
    assert props["amount"] == {"type": "number", "exclusiveMinimum": 0, "maximum": 1000}
    assert props["reason"] == {"type": "string", "enum": ["damaged", "goodwill"]}
    assert props["count"]["minimum"] == 1
    assert props["count"]["exclusiveMaximum"] == 10
    assert props["count"]["type"] == "integer"
    assert (props["note"]["minLength"], props["note"]["maxLength"]) == (2, 5)
    assert (props["tags"]["minItems"], props["tags"]["maxItems"]) == (1, 3)
    assert props["tags"]["items"] == {"type": "string"}
    # The enum class lands in $defs; it is reachable from the property.
    color_schema = json.dumps(_constrained().parameters_schema)
    assert '"red"' in color_schema and '"blue"' in color_schema


def test_schema_shape_is_closed_object_without_titles() -> None:
    schema = _constrained().parameters_schema

    assert schema["type"] == "object"
    assert schema["additionalProperties"] is False
    assert schema["required"] == ["order_id", "amount", "reason"]
    assert '"title"' not in json.dumps(schema)


def test_schema_of_tool_without_arguments_still_has_properties_and_required() -> None:
    @tool
    def ping() -> str:
        """Say pong."""
        return "pong"

    schema = ping.parameters_schema
    assert schema["properties"] == {}
    assert schema["required"] == []
    assert schema["additionalProperties"] is False
    assert ping.validate_args(None).model_dump() == {}


def test_optional_argument_schema_and_default() -> None:
    @tool
    def find(query: str, limit: int | None = None) -> None:
        """Find things."""

    props = _props(find)
    assert props["limit"]["anyOf"] == [{"type": "integer"}, {"type": "null"}]
    assert props["limit"]["default"] is None
    assert find.parameters_schema["required"] == ["query"]


@pytest.mark.parametrize(
    ("raw", "arg"),
    [
        ({"order_id": "ORD-12", "amount": 5, "reason": "damaged"}, "order_id"),
        ({"order_id": "ORD-1234", "amount": 0, "reason": "damaged"}, "amount"),
        ({"order_id": "ORD-1234", "amount": 1000.5, "reason": "damaged"}, "amount"),
        ({"order_id": "ORD-1234", "amount": 5, "reason": "bored"}, "reason"),
        ({"order_id": "ORD-1234", "amount": 5, "reason": "damaged", "color": "green"}, "color"),
        ({"order_id": "ORD-1234", "amount": 5, "reason": "damaged", "count": 10}, "count"),
        ({"order_id": "ORD-1234", "amount": 5, "reason": "damaged", "count": 0}, "count"),
        ({"order_id": "ORD-1234", "amount": 5, "reason": "damaged", "note": "x"}, "note"),
        ({"order_id": "ORD-1234", "amount": 5, "reason": "damaged", "note": "toolong"}, "note"),
        ({"order_id": "ORD-1234", "amount": 5, "reason": "damaged", "tags": []}, "tags"),
        (
            {"order_id": "ORD-1234", "amount": 5, "reason": "damaged", "tags": ["a"] * 4},
            "tags",
        ),
    ],
)
def test_validate_args_enforces_annotated_constraints(raw: dict[str, Any], arg: str) -> None:
    error = _invalid(_constrained(), raw)
    assert f"`{arg}`" in str(error)
    assert str(error).startswith("invalid arguments for `refund`: ")


def test_validate_args_accepts_values_at_the_boundaries() -> None:
    model = _constrained().validate_args(
        {
            "order_id": "ORD-1234",
            "amount": 1000,
            "reason": "goodwill",
            "color": "blue",
            "count": 9,
            "note": "abcde",
            "tags": ["a", "b", "c"],
        }
    )
    data = model.model_dump()
    assert data["amount"] == 1000.0
    assert isinstance(data["amount"], float)
    assert data["color"] is Color.BLUE
    assert model.model_dump(mode="json")["color"] == "blue"
    assert data["count"] == 9
    assert data["tags"] == ["a", "b", "c"]


def test_openai_schema_shape() -> None:
    contract = _constrained()
    assert contract.openai_schema() == {
        "type": "function",
        "function": {
            "name": "refund",
            "description": "Refund an order.",
            "parameters": contract.parameters_schema,
        },
    }
    # JSON-serialisable as is (providers receive it as JSON).
    assert json.loads(json.dumps(contract.openai_schema())) == contract.openai_schema()


def test_docstring_summary_and_google_args_land_in_schema() -> None:
    @tool
    def refund(ctx: ToolContext[Deps], order_id: str, amount: float, n: int = 1) -> None:
        """Refund part of an order
        to the original payment method.

        A longer body that is not part
        of the summary.

        Args:
            ctx: The context (never shown to the model).
            order_id: The order to refund.
            amount (float): How much,
                in USD.

        Returns:
            Nothing worth knowing.

        Raises:
            ValueError: never.
        """

    assert refund.description == "Refund part of an order to the original payment method."
    props = _props(refund)
    assert props["order_id"]["description"] == "The order to refund."
    assert props["amount"]["description"] == "How much, in USD."
    assert "description" not in props["n"]  # not documented
    assert "ctx" not in props
    assert "Nothing worth knowing" not in json.dumps(refund.parameters_schema)
    assert "never" not in json.dumps(refund.parameters_schema)
    assert refund.openai_schema()["function"]["description"] == refund.description


def test_docstring_arguments_and_parameters_headers_are_recognised() -> None:
    @tool
    def a(x: int) -> None:
        """A.

        Arguments:
            x: the x.
        """

    @tool
    def b(y: int) -> None:
        """B.

        Parameters:
            y: the y.
        """

    assert _props(a)["x"]["description"] == "the x."
    assert _props(b)["y"]["description"] == "the y."


def test_explicit_description_wins_over_docstring_summary() -> None:
    @tool(description="Explicit.")
    def f(x: int) -> None:
        """From the docstring.

        Args:
            x: still documented.
        """

    assert f.description == "Explicit."
    assert _props(f)["x"]["description"] == "still documented."


def test_function_without_docstring_but_with_description_is_fine() -> None:
    def f(x: int) -> None:
        pass

    assert build_contract(f, description="Does f.").description == "Does f."


def test_paragraph_after_args_section_is_not_part_of_an_argument() -> None:
    @tool
    def refund(amount: float) -> None:
        """Refund.

        Args:
            amount: The amount.

        Refunds are final and cannot be undone.
        """

    assert _props(refund)["amount"]["description"] == "The amount."


# ---------------------------------------------------------------------------------------
# ToolContext
# ---------------------------------------------------------------------------------------


def test_tool_context_parameter_is_excluded_and_recorded() -> None:
    @tool
    def refund(order_id: str, ctx: ToolContext[Deps], amount: float) -> None:
        """Refund."""

    assert refund.context_param == "ctx"
    assert refund.arg_names == ("order_id", "amount")
    assert "ctx" not in _props(refund)
    assert "ctx" not in refund.parameters_schema["required"]
    assert "ToolContext" not in json.dumps(refund.openai_schema())
    # The model may not pass it either.
    error = _invalid(refund, {"order_id": "o", "amount": 1, "ctx": {}})
    assert "`ctx`" in str(error)


@pytest.mark.parametrize(
    "annotation",
    [ToolContext, ToolContext[Deps], Annotated[ToolContext[Deps], "meta"]],
    ids=["bare", "generic", "annotated"],
)
def test_tool_context_recognised_in_every_spelling(annotation: Any) -> None:
    def f(context: Any, x: int) -> None:
        """F."""

    f.__annotations__["context"] = annotation
    contract = build_contract(f)
    assert contract.context_param == "context"
    assert contract.arg_names == ("x",)


def test_two_tool_context_parameters_are_refused() -> None:
    def f(a: ToolContext[Deps], b: ToolContext[Deps]) -> None:
        """F."""

    with pytest.raises(ContractError, match="more than one ToolContext parameter"):
        build_contract(f)


def test_optional_tool_context_is_not_offered_to_the_model() -> None:
    def f(ctx: Optional[ToolContext[dict[str, Any]]], x: int) -> None:  # noqa: UP045
        """F."""

    try:
        contract = build_contract(f)
    except ContractError as exc:
        assert "ToolContext" in str(exc)  # refusing it outright is an acceptable fix
        return
    assert "ctx" not in _props(contract)
    assert contract.context_param == "ctx"


# ---------------------------------------------------------------------------------------
# closed_args
# ---------------------------------------------------------------------------------------


def test_closed_args_for_bool_literal_enum_and_optional_literal() -> None:
    @tool
    def f(
        flag: bool,
        kind: Literal["a", "b"],
        color: Color,
        maybe_kind: Optional[Literal["x", "y"]] = None,  # noqa: UP045
        maybe_flag: bool | None = None,
        annotated_kind: Annotated[Literal[1, 2], Field(description="one or two")] = 1,
        text: str = "",
        number: float = 0.0,
        ident: int = 0,
        mixed: Literal["a"] | str = "a",
        kinds: list[Literal["a", "b"]] = [],  # noqa: B006
        nothing: Optional[str] = None,  # noqa: UP045
    ) -> None:
        """F."""

    assert f.closed_args == frozenset(
        {"flag", "kind", "color", "maybe_kind", "maybe_flag", "annotated_kind"}
    )


def test_tool_without_closed_args() -> None:
    @tool
    def f(a: str, b: int) -> None:
        """F."""

    assert f.closed_args == frozenset()


# ---------------------------------------------------------------------------------------
# Contract errors
# ---------------------------------------------------------------------------------------


def test_contract_error_is_a_user_error() -> None:
    assert issubclass(ContractError, UserError)
    assert issubclass(ContractError, OpsgateError)


def test_var_positional_refused() -> None:
    def f(*args: int) -> None:
        """F."""

    with pytest.raises(ContractError, match=r"tool `f`: `\*args` parameters are not allowed"):
        build_contract(f)


def test_var_keyword_refused() -> None:
    def f(a: int, **kwargs: int) -> None:
        """F."""

    with pytest.raises(ContractError, match="kwargs` parameters are not allowed; name each"):
        build_contract(f)


def test_var_keyword_message_shows_two_stars() -> None:
    def f(**kwargs: int) -> None:
        """F."""

    with pytest.raises(ContractError, match=r"`\*\*kwargs`"):
        build_contract(f)


def test_missing_annotation_refused() -> None:
    def f(a: int, b) -> None:  # type: ignore[no-untyped-def]
        """F."""

    with pytest.raises(ContractError, match="tool `f`: parameter `b` has no type annotation"):
        build_contract(f)


def test_positional_only_refused() -> None:
    def f(a: int, /, b: int) -> None:
        """F."""

    with pytest.raises(ContractError, match="parameter `a` is positional-only"):
        build_contract(f)


class Plain:
    """A class pydantic knows nothing about."""


@pytest.mark.parametrize(
    "annotation",
    [Plain, Callable[[int], int]],
    ids=["plain-class", "callable"],
)
def test_unsupported_type_refused(annotation: Any) -> None:
    def f(x: Any) -> None:
        """F."""

    f.__annotations__["x"] = annotation
    with pytest.raises(ContractError, match="an argument type cannot be expressed as JSON schema"):
        build_contract(f)


def test_unresolvable_forward_reference_refused() -> None:
    def f(x: "NoSuchType") -> None:  # type: ignore[name-defined]  # noqa: F821
        """F."""

    with pytest.raises(ContractError, match="cannot resolve type hints"):
        build_contract(f)


def test_no_docstring_and_no_description_refused() -> None:
    def f(x: int) -> None:
        pass

    with pytest.raises(ContractError, match="give it a docstring or a description"):
        build_contract(f)


def test_docstring_with_only_an_args_section_has_no_summary() -> None:
    def f(x: int) -> None:
        """Args:
        x: the x.
        """

    with pytest.raises(ContractError, match="give it a docstring or a description"):
        build_contract(f)


def test_bad_scope_refused() -> None:
    def f(x: int) -> None:
        """F."""

    with pytest.raises(ContractError, match="scope `admin` is not one of read, draft, write"):
        build_contract(f, scope="admin")  # type: ignore[arg-type]


def test_bad_impact_refused() -> None:
    def f(x: int) -> None:
        """F."""

    with pytest.raises(ContractError, match="impact `medium` is not one of low, high"):
        build_contract(f, impact="medium")  # type: ignore[arg-type]


def test_bad_output_trust_refused() -> None:
    def f(x: int) -> None:
        """F."""

    with pytest.raises(ContractError, match="output `maybe` is not one of trusted, untrusted"):
        build_contract(f, output="maybe")  # type: ignore[arg-type]


def test_secrets_as_a_string_refused() -> None:
    def f(x: int) -> None:
        """F."""

    with pytest.raises(ContractError, match="secrets must be a list of names, not a string"):
        build_contract(f, secrets="PAY_KEY")


@pytest.mark.parametrize("secret", ["pay_key", "PAY-KEY", "1KEY", "", "PAY KEY"])
def test_bad_secret_names_refused(secret: str) -> None:
    def f(x: int) -> None:
        """F."""

    with pytest.raises(ContractError, match="must be upper-case letters, digits, underscores"):
        build_contract(f, secrets=[secret])


@pytest.mark.parametrize("secret", ["PAY_KEY", "_INTERNAL", "K2"])
def test_good_secret_names_accepted(secret: str) -> None:
    def f(x: int) -> None:
        """F."""

    assert build_contract(f, secrets=[secret]).secrets == (secret,)


@pytest.mark.parametrize("name", ["has space", "1starts_with_digit", "x" * 65, "dot.ted"])
def test_bad_tool_names_refused(name: str) -> None:
    def f(x: int) -> None:
        """F."""

    with pytest.raises(ContractError, match="name must match"):
        build_contract(f, name=name)


def test_lambda_name_refused() -> None:
    with pytest.raises(ContractError, match="no usable name"):
        build_contract(lambda: None, description="L.")


def test_not_callable_refused_when_named() -> None:
    with pytest.raises(ContractError, match="is not callable"):
        build_contract(42, name="answer", description="A.")  # type: ignore[arg-type]


_NO_NAME = (
    "bug: build_contract reads fn.__name__ before its callable check, so an object without "
    "__name__ raises AttributeError instead of ContractError"
)


def test_non_callable_without_name_raises_contract_error() -> None:
    with pytest.raises(ContractError, match="is not callable"):
        build_contract(42)  # type: ignore[arg-type]


class _CallableObject:
    def __call__(self, a: int) -> None:
        """Call me."""


@pytest.mark.parametrize("make", ["partial", "callable-object"])
def test_callables_without_a_name_do_not_crash(make: str) -> None:
    def f(a: int, b: str) -> None:
        """F."""

    target: Any = functools.partial(f, b="x") if make == "partial" else _CallableObject()
    try:
        contract = build_contract(target)
    except ContractError:
        return  # refusing (say, "pass name=") is an acceptable fix
    assert isinstance(contract, ToolContract)  # so is deriving a name


@pytest.mark.parametrize("pname", ["_hidden", "model_config"])
def test_parameters_pydantic_cannot_hold_are_refused(pname: str) -> None:
    namespace: dict[str, Any] = {}
    exec(f'def f({pname}: int) -> None:\n    """F."""\n', namespace)
    with pytest.raises(ContractError, match=pname):
        build_contract(namespace["f"])


def test_schema_keeps_title_keys_inside_default_values() -> None:
    @tool
    def f(meta: dict[str, str] = {"title": "Dr"}) -> None:  # noqa: B006
        """F."""

    assert _props(f)["meta"]["default"] == {"title": "Dr"}


def test_argument_named_title_is_kept() -> None:
    @tool
    def f(title: str) -> None:
        """F."""

    assert _props(f) == {"title": {"type": "string"}}
    assert f.parameters_schema["required"] == ["title"]


# ---------------------------------------------------------------------------------------
# validate_args
# ---------------------------------------------------------------------------------------


def _amount_tool() -> ToolContract:
    @tool
    def charge(order_id: str, amount: float, note: str = "") -> None:
        """Charge."""

    return charge


@pytest.mark.parametrize(
    "raw",
    [
        '{"order_id": "ORD-1", "amount": 150.5}',
        b'{"order_id": "ORD-1", "amount": 150.5}',
        {"order_id": "ORD-1", "amount": 150.5},
    ],
    ids=["str", "bytes", "mapping"],
)
def test_validate_args_accepts_text_bytes_and_mappings(raw: Any) -> None:
    model = _amount_tool().validate_args(raw)
    assert isinstance(model, BaseModel)
    assert model.model_dump() == {"order_id": "ORD-1", "amount": 150.5, "note": ""}


def test_int_is_accepted_for_a_float() -> None:
    assert _amount_tool().validate_args('{"order_id": "o", "amount": 150}').model_dump()[
        "amount"
    ] == pytest.approx(150.0)


def test_non_json_text_refused() -> None:
    error = _invalid(_amount_tool(), '{"order_id": "ORD-1"')
    assert "arguments are not valid JSON" in str(error)
    assert str(error).startswith("invalid arguments for `charge`: ")


def test_non_utf8_bytes_refused() -> None:
    assert "not valid JSON" in str(_invalid(_amount_tool(), b"\xff\xfe"))


@pytest.mark.parametrize("raw", ["[]", '["ORD-1", 150]', "null", '"text"', "42"])
def test_json_non_objects_refused(raw: str) -> None:
    assert "arguments must be a JSON object" in str(_invalid(_amount_tool(), raw))


@pytest.mark.parametrize(
    ("raw", "arg", "got"),
    [
        ('{"order_id": "o", "amount": "150"}', "amount", "(got '150')"),
        ('{"order_id": "o", "amount": true}', "amount", "(got True)"),
        ('{"order_id": 1003, "amount": 1}', "order_id", "(got 1003)"),
        ({"order_id": "o", "amount": "150.00"}, "amount", "(got '150.00')"),
    ],
)
def test_wrong_types_refused_strictly(raw: Any, arg: str, got: str) -> None:
    message = str(_invalid(_amount_tool(), raw))
    assert f"`{arg}`" in message
    assert got in message


def test_extra_fields_refused() -> None:
    message = str(_invalid(_amount_tool(), {"order_id": "o", "amount": 1, "admin": True}))
    assert "`admin`" in message
    assert "Extra inputs are not permitted" in message


def test_missing_required_refused_without_got() -> None:
    message = str(_invalid(_amount_tool(), {"order_id": "o"}))
    assert "`amount`" in message
    assert "Field required" in message
    assert "got" not in message


def test_none_means_no_arguments() -> None:
    @tool
    def f(limit: int = 10, flag: bool = False) -> None:
        """F."""

    assert f.validate_args(None).model_dump() == {"limit": 10, "flag": False}
    message = str(_invalid(_amount_tool(), None))
    assert "`order_id`" in message and "`amount`" in message


def test_long_inputs_are_shortened_in_messages() -> None:
    message = str(_invalid(_amount_tool(), {"order_id": "o", "amount": "9" * 200}))
    assert "9" * 200 not in message
    assert "..." in message


def test_only_five_errors_are_described() -> None:
    @tool
    def f(a: int, b: int, c: int, d: int, e: int, g: int, h: int) -> None:
        """F."""

    message = str(_invalid(f, {}))
    for name in "abcde":
        assert f"`{name}`" in message
    assert "`g`" not in message and "`h`" not in message
    assert message.endswith("and 2 more")


def test_nested_errors_name_the_path() -> None:
    @tool
    def f(items: list[int]) -> None:
        """F."""

    assert "`items.1`" in str(_invalid(f, {"items": [1, "2"]}))


@pytest.mark.parametrize(
    "raw",
    [{1: "x"}, {"order_id": object(), "amount": 1}],
    ids=["non-str-key", "non-json-value"],
)
def test_mapping_that_is_not_json_data_refused(raw: dict[Any, Any]) -> None:
    message = str(_invalid(_amount_tool(), raw))
    assert "arguments of `charge` are not JSON data" in message


def test_validate_args_accepts_any_mapping() -> None:
    raw = types.MappingProxyType({"order_id": "o", "amount": 1.0})
    assert _amount_tool().validate_args(raw).model_dump()["amount"] == 1.0


@pytest.mark.parametrize("token", ["NaN", "Infinity", "-Infinity"])
def test_non_json_number_tokens_refused(token: str) -> None:
    _invalid(_amount_tool(), '{"order_id": "o", "amount": ' + token + "}")


# ---------------------------------------------------------------------------------------
# Toolbelt
# ---------------------------------------------------------------------------------------


def _small_belt() -> Toolbelt:
    @tool
    def alpha(x: int) -> None:
        """Alpha."""

    @tool
    def beta(y: str) -> None:
        """Beta."""

    @tool(name="gamma")
    def third(z: bool) -> None:
        """Gamma."""

    return Toolbelt([beta, alpha, third])


def test_toolbelt_basics() -> None:
    belt = _small_belt()
    assert belt.names() == ["beta", "alpha", "gamma"]
    assert [c.name for c in belt] == ["beta", "alpha", "gamma"]
    assert len(belt) == 3
    assert "alpha" in belt and "third" not in belt
    assert belt["gamma"].name == "gamma"
    assert belt.get("alpha") is belt["alpha"]


def test_toolbelt_refuses_duplicate_names() -> None:
    @tool(name="alpha")
    def other(q: int) -> None:
        """Other."""

    belt = _small_belt()
    with pytest.raises(ContractError, match="two tools are named `alpha`"):
        belt.add(other)
    assert belt["alpha"].arg_names == ("x",)  # the original is kept
    with pytest.raises(ContractError, match="two tools are named `alpha`"):
        Toolbelt([other, belt["alpha"]])


def test_toolbelt_refuses_plain_functions() -> None:
    def plain(x: int) -> None:
        """Plain."""

    with pytest.raises(ContractError, match="decorate the function with @tool"):
        Toolbelt([plain])  # type: ignore[list-item]


@pytest.mark.parametrize("name", ["delete_everything", ["alpha"]], ids=["str", "unhashable"])
def test_unknown_tool_lists_available_tools(name: Any) -> None:
    with pytest.raises(InvalidToolCall) as info:
        _small_belt().get(name)
    assert info.value.code == "unknown_tool"
    assert "available tools: alpha, beta, gamma" in str(info.value)
    with pytest.raises(InvalidToolCall):
        _small_belt()[name]


def test_find_returns_none_for_unknown_or_non_string_names() -> None:
    belt = _small_belt()
    assert belt.find("alpha") is belt["alpha"]
    assert belt.find("nope") is None
    assert belt.find(["alpha"]) is None  # type: ignore[arg-type]


def test_unknown_tool_in_an_empty_belt() -> None:
    with pytest.raises(InvalidToolCall, match="available tools: none"):
        Toolbelt().get("x")


def test_openai_tools_all_and_subset() -> None:
    belt = _small_belt()
    every = belt.openai_tools()
    assert [t["function"]["name"] for t in every] == ["beta", "alpha", "gamma"]
    assert all(t["type"] == "function" for t in every)
    subset = belt.openai_tools(["gamma", "alpha"])
    assert subset == [belt["gamma"].openai_schema(), belt["alpha"].openai_schema()]
    assert belt.openai_tools([]) == []
    with pytest.raises(InvalidToolCall) as info:
        belt.openai_tools(["alpha", "nope"])
    assert info.value.code == "unknown_tool"


EXAMPLE_TOOLS = [
    "get_ticket",
    "get_order_status",
    "search_kb",
    "add_internal_note",
    "draft_reply",
    "send_reply",
    "refund",
    "change_address",
    "send_email",
    "escalate_to_human",
    "export_customer_data",
]


@pytest.mark.parametrize(
    "module", [example_tools, "opsgate.examples.support_triage.tools"], ids=["object", "path"]
)
def test_from_module_on_the_example_tools(module: Any) -> None:
    belt = Toolbelt.from_module(module)
    assert belt.names() == EXAMPLE_TOOLS
    refund = belt["refund"]
    assert (refund.scope, refund.impact, refund.secrets) == ("write", "high", ("PAYMENTS_API_KEY",))
    assert refund.context_param == "ctx"
    assert refund.closed_args == frozenset({"reason"})
    assert belt["get_order_status"].output_trust == "trusted"
    assert belt["get_ticket"].output_trust == "untrusted"
    assert _props(belt["get_order_status"])["order_id"]["description"] == "An order id, ORD-nnnn."
    # The example contracts validate like any other.
    with pytest.raises(InvalidToolCall, match="`order_id`"):
        refund.validate_args({"order_id": "1001", "amount": 5, "reason": "damaged"})


def test_from_module_without_tools() -> None:
    empty = types.ModuleType("no_tools_here")
    empty.helper = lambda: None  # type: ignore[attr-defined]
    with pytest.raises(ContractError, match="module `no_tools_here` defines no @tool functions"):
        Toolbelt.from_module(empty)
    with pytest.raises(ContractError, match="defines no @tool functions"):
        Toolbelt.from_module("opsgate.errors")


def test_from_module_that_does_not_import() -> None:
    with pytest.raises(ContractError, match=r"cannot import tools module `opsgate\.no_such_mod`"):
        Toolbelt.from_module("opsgate.no_such_mod")


def test_from_module_tolerates_an_alias_of_the_same_contract() -> None:
    module = types.ModuleType("aliased_tools")
    module.refund = example_tools.refund  # type: ignore[attr-defined]
    module.refund_v1 = example_tools.refund  # type: ignore[attr-defined]
    assert Toolbelt.from_module(module).names() == ["refund"]
