"""A `ToolContract` from a JSON schema: tools whose arguments someone else describes (an MCP
server's ``inputSchema``), validated with the same semantics as ``@tool`` contracts.

The schema is checked once, when the contract is built; every call is then validated by
``jsonschema`` inside the contract's pydantic model (types are JSON's: ``"150"`` is no
number), and the model forbids fields the schema does not name, so wrong types, extra
fields and missing fields are ``invalid_arguments`` refusals the model can repair.
"""

from __future__ import annotations

import copy
import inspect
import re
from collections.abc import Callable, Mapping
from typing import Any

import jsonschema
import pydantic
from pydantic import BaseModel, ConfigDict, create_model, model_validator
from pydantic_core import PydanticCustomError

from opsgate.contracts._tool import SCOPES, Impact, Scope, ToolContract, Trust
from opsgate.errors import ContractError

__all__ = ["contract_from_schema"]

_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_\-]{0,63}$")
_MAX_ERRORS = 5


def contract_from_schema(
    name: str,
    description: str,
    schema: Mapping[str, Any],
    fn: Callable[..., Any],
    *,
    scope: Scope,
    impact: Impact = "low",
    output: Trust = "untrusted",
    output_fields: Mapping[str, Trust] | None = None,
) -> ToolContract:
    """Build a contract whose arguments a JSON schema (an object schema) describes.

    Args:
        fn: Called by the gateway with the validated arguments as keyword arguments
            (an optional argument the call left out arrives as ``None``).

    Raises:
        ContractError: the name is not one a model accepts, or the schema is not a valid
            JSON schema of an object whose property names can be argument names.
    """
    where = f"tool `{name}`"
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise ContractError(f"{where}: name must match {_NAME_RE.pattern}")
    if scope not in SCOPES or impact not in ("low", "high"):
        raise ContractError(f"{where}: scope or impact is not one opsgate knows")
    checked = _checked_schema(where, schema)
    properties: Mapping[str, Any] = checked.get("properties") or {}
    required = set(checked.get("required") or [])
    validator = _validator(checked)
    fields = {
        prop: (Any, ... if prop in required else None) for prop in properties
    }  # types are jsonschema's to check: pydantic keeps the JSON values as they came
    try:
        args_model = create_model(
            _model_name(name),
            __config__=ConfigDict(extra="forbid", strict=True, allow_inf_nan=False),
            __validators__={"_json_schema": model_validator(mode="before")(_check(validator))},
            **fields,  # type: ignore[call-overload]
        )
    except (TypeError, ValueError, pydantic.PydanticUserError) as exc:
        raise ContractError(f"{where}: {str(exc).splitlines()[0]}") from None
    if set(args_model.model_fields) != set(properties):
        lost = ", ".join(sorted(set(properties) - set(args_model.model_fields)))
        raise ContractError(f"{where}: argument(s) {lost} cannot be argument names")
    return ToolContract(
        name=name,
        description=description,
        scope=scope,
        impact=impact,
        secrets=(),
        output_trust=output,
        args_model=args_model,
        fn=fn,
        is_async=inspect.iscoroutinefunction(fn),
        context_param=None,
        closed_args=frozenset(p for p, s in properties.items() if _is_closed(s)),
        parameters_schema=checked,
        output_fields=dict(output_fields or {}),
    )


def _checked_schema(where: str, schema: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``schema``, refused unless it is a valid JSON schema of an object."""
    if not isinstance(schema, Mapping):
        raise ContractError(f"{where}: the input schema is not a JSON object")
    checked = copy.deepcopy(dict(schema))
    if checked.get("type", "object") != "object":
        raise ContractError(f"{where}: the input schema must describe an object")
    properties = checked.get("properties", {})
    if not isinstance(properties, Mapping):
        raise ContractError(f"{where}: `properties` of the input schema is not an object")
    for prop in properties:
        if (
            not isinstance(prop, str)
            or not prop
            or prop.startswith("_")
            or prop.startswith("model_")
        ):
            raise ContractError(f"{where}: property {prop!r} cannot be an argument name")
    try:
        jsonschema.validators.validator_for(checked).check_schema(checked)
    except jsonschema.SchemaError as exc:
        raise ContractError(f"{where}: invalid input schema: {exc.message[:200]}") from None
    required = checked.get("required", [])
    missing = [r for r in required if r not in properties]
    if missing:
        raise ContractError(f"{where}: required argument(s) {missing} are not properties")
    checked["type"] = "object"
    checked.setdefault("properties", {})
    return checked


def _validator(schema: dict[str, Any]) -> jsonschema.protocols.Validator:
    cls = jsonschema.validators.validator_for(schema)
    return cls(schema)


def _check(validator: jsonschema.protocols.Validator) -> Callable[[type[BaseModel], Any], Any]:
    """The model's before-validator: the raw JSON value against the whole schema."""

    def check(cls: type[BaseModel], value: Any) -> Any:
        if not isinstance(value, dict):
            raise PydanticCustomError("model_type", "arguments must be a JSON object")
        try:
            errors = sorted(validator.iter_errors(value), key=lambda e: list(e.path))
        except Exception as exc:  # an unresolvable $ref and the like: nothing is vouched for
            raise PydanticCustomError(
                "json_schema",
                "the tool's schema cannot check these arguments ({why})",
                {"why": type(exc).__name__},
            ) from None
        errors = [e for e in errors if e.validator != "additionalProperties"]  # said by extra
        if errors:
            raise PydanticCustomError("json_schema", "{text}", {"text": _describe(errors)})
        return value

    return check


def _describe(errors: list[jsonschema.ValidationError]) -> str:
    parts = []
    for error in errors[:_MAX_ERRORS]:
        path = ".".join(str(p) for p in error.absolute_path)
        message = error.message if len(error.message) <= 160 else error.message[:157] + "..."
        parts.append(f"`{path}`: {message}" if path else message)
    if len(errors) > _MAX_ERRORS:
        parts.append(f"and {len(errors) - _MAX_ERRORS} more")
    return "; ".join(parts)


def _is_closed(prop: Any) -> bool:
    """A value from a closed set (a boolean, an enum, a constant) carries no provenance."""
    if not isinstance(prop, Mapping):
        return False
    return "enum" in prop or "const" in prop or prop.get("type") == "boolean"


def _model_name(name: str) -> str:
    return "".join(p.capitalize() for p in re.split(r"[_\-]", name) if p) + "Args"
