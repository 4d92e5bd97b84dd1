"""`@tool`: a typed tool contract built from a plain Python function.

The contract is what the gate knows about a tool without running it: the pydantic
model of its arguments (validated before any policy runs), the JSON schema a model
provider needs, its scope and impact, the secrets it needs and how far its output can
be trusted. The function itself is only ever called by the gateway.
"""

from __future__ import annotations

import enum
import inspect
import re
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, get_args, get_origin, overload

import orjson
import pydantic
from pydantic import BaseModel, ConfigDict, ValidationError, create_model

from opsgate.contracts._context import ToolContext
from opsgate.contracts._normalize import normalizers_of
from opsgate.errors import ContractError, InvalidToolCall
from opsgate.provenance import SelectorError, TrustMap

Scope = Literal["read", "draft", "write"]
Impact = Literal["low", "high"]
Trust = Literal["trusted", "untrusted"]

SCOPES: tuple[Scope, ...] = ("read", "draft", "write")
_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_\-]{0,63}$")
_SECRET_RE = re.compile(r"^[A-Z_][A-Z0-9_]*$")
_RESERVED = frozenset({"model_config", "model_fields", "model_computed_fields"})
# Keys whose values are data, not schema: never strip "title" inside them.
_DATA_KEYS = frozenset({"default", "examples", "const", "enum"})


@dataclass(frozen=True, slots=True, eq=False)
class ToolContract:
    """Everything the gate knows about one tool.

    Attributes:
        name: The name a model uses to call the tool.
        description: What the tool does, for the model (first paragraph of the docstring).
        scope: ``read``, ``draft`` (prepares something a human sends) or ``write``.
        impact: ``high`` for writes that move money, identity, production or external comms.
        secrets: Names of the secrets the gateway injects at execution (never arguments).
        output_trust: Provenance label of what the tool returns, unless policy overrides it.
        args_model: The pydantic model that validates the arguments a model proposes.
        fn: The function the gateway calls.
        is_async: Whether ``fn`` is a coroutine function.
        context_param: The name of the parameter receiving the `ToolContext`, if any.
        closed_args: Arguments whose values come from a closed set (bool, enum, literal):
            they carry no provenance of their own.
        parameters_schema: JSON schema of the arguments, without pydantic's titles.
        output_fields: Field-level trust of the result (selector → trust) over
            ``output_trust``, the default: ids the system makes are trusted while text
            outsiders write is not.
        output_schema: JSON schema of the result, from the return annotation, when it says
            more than "a dict" (field selectors are checked against it).
        egress_args: Arguments that name a destination data leaves to (a URL fetched, an
            address looked up); they are provenance targets by default, even on a read.
    """

    name: str
    description: str
    scope: Scope
    impact: Impact
    secrets: tuple[str, ...]
    output_trust: Trust
    args_model: type[BaseModel]
    fn: Callable[..., Any]
    is_async: bool
    context_param: str | None
    closed_args: frozenset[str]
    parameters_schema: dict[str, Any] = field(repr=False)
    output_fields: Mapping[str, Trust] = field(default_factory=dict)
    output_schema: dict[str, Any] | None = field(default=None, repr=False)
    egress_args: tuple[str, ...] = ()
    normalizers: Mapping[str, Callable[[Any], Any]] = field(default_factory=dict, repr=False)
    """Per argument, the function that puts a typed value in the system's form (`Normalize`)."""
    arg_names: tuple[str, ...] = ()
    """The argument names a model may pass (set from ``args_model``)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "arg_names", tuple(self.args_model.model_fields))

    @property
    def output_map(self) -> TrustMap:
        """The trust of each part of a result, as the contract says it."""
        return TrustMap.parse(self.output_trust, self.output_fields)

    def openai_schema(self) -> dict[str, Any]:
        """The tool in OpenAI's chat-completions ``tools`` format."""
        return {
            "type": "function",
            "function": {
                "name": self.name,
                "description": self.description,
                "parameters": self.parameters_schema,
            },
        }

    def normalize_args(
        self, raw: str | bytes | Mapping[str, Any] | None
    ) -> tuple[str | bytes | Mapping[str, Any] | None, dict[str, dict[str, Any]]]:
        """``raw`` with the arguments this contract normalises put in their form, and what
        changed (``{arg: {"from": ..., "to": ...}}``). Raw text that is not a JSON object
        is returned as it is (validation says why)."""
        if not self.normalizers or raw is None:
            return raw, {}
        args: Any = raw
        if isinstance(raw, str | bytes):
            try:
                args = orjson.loads(raw)
            except orjson.JSONDecodeError:
                return raw, {}
        if not isinstance(args, Mapping):
            return raw, {}
        fixed = dict(args)
        changed: dict[str, dict[str, Any]] = {}
        for name, fn in self.normalizers.items():
            if name not in fixed:
                continue
            try:
                value = fn(fixed[name])
            except Exception:  # a normaliser never decides anything by failing
                continue
            if value != fixed[name]:
                changed[name] = {"from": fixed[name], "to": value}
                fixed[name] = value
        return (fixed if changed else raw), changed

    def validate_args(self, raw: str | bytes | Mapping[str, Any] | None) -> BaseModel:
        """Parse and validate proposed arguments.

        Arguments are always validated as JSON, strictly: ``"150"`` is not a number,
        unknown fields are refused.

        Raises:
            InvalidToolCall: with code ``invalid_arguments`` and a message precise enough
                to hand back to the model.
        """
        if raw is None:
            raw = b"{}"
        if isinstance(raw, Mapping):
            try:
                raw = orjson.dumps(raw, default=_plain_mapping)
            except TypeError as exc:
                raise InvalidToolCall(
                    "invalid_arguments", f"arguments of `{self.name}` are not JSON data: {exc}"
                ) from None
        elif isinstance(raw, str):
            try:
                raw = raw.encode()
            except UnicodeEncodeError as exc:  # a lone surrogate: no JSON text holds it
                raise InvalidToolCall(
                    "invalid_arguments",
                    f"arguments of `{self.name}` are not valid Unicode "
                    f"(character {exc.start + 1}: {exc.reason})",
                ) from None
        try:
            return self.args_model.model_validate_json(raw, strict=True)
        except ValidationError as exc:
            raise InvalidToolCall(
                "invalid_arguments", _describe_validation_error(self.name, exc)
            ) from None


def _plain_mapping(value: Any) -> Any:
    if isinstance(value, Mapping):
        return dict(value)
    raise TypeError(f"Type is not JSON serializable: {type(value).__name__}")


def _describe_validation_error(tool: str, exc: ValidationError) -> str:
    parts: list[str] = []
    for err in exc.errors(include_url=False)[:5]:
        loc = ".".join(str(p) for p in err["loc"])
        if err["type"] == "json_invalid":
            parts.append(f"arguments are not valid JSON ({err['msg']})")
            continue
        if err["type"] == "model_type":
            parts.append("arguments must be a JSON object")
            continue
        got = err.get("input")
        shown = "" if err["type"] == "missing" else f" (got {_short(got)})"
        parts.append(f"`{loc}`: {err['msg']}{shown}" if loc else f"{err['msg']}{shown}")
    more = exc.error_count() - 5
    if more > 0:
        parts.append(f"and {more} more")
    return f"invalid arguments for `{tool}`: " + "; ".join(parts)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _is_context_annotation(annotation: Any) -> bool:
    return annotation is ToolContext or get_origin(annotation) is ToolContext


def _mentions_context(annotation: Any) -> bool:
    annotation = _unwrap(annotation)
    if _is_context_annotation(annotation):
        return True
    return any(_mentions_context(a) for a in get_args(annotation) if a is not type(None))


def _unwrap(annotation: Any) -> Any:
    while get_origin(annotation) is typing.Annotated:
        annotation = get_args(annotation)[0]
    return annotation


def _is_closed(annotation: Any) -> bool:
    """Whether a value of this type comes from a closed set (carries no provenance)."""
    annotation = _unwrap(annotation)
    origin = get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        members = [a for a in get_args(annotation) if a is not type(None)]
        return bool(members) and all(_is_closed(a) for a in members)
    if origin is Literal or annotation is bool:
        return True
    return isinstance(annotation, type) and issubclass(annotation, enum.Enum)


def _docstring_parts(fn: Callable[..., Any]) -> tuple[str, dict[str, str]]:
    """Split a Google-style docstring into the summary and per-argument descriptions."""
    doc = inspect.getdoc(fn) or ""
    summary_lines: list[str] = []
    arg_docs: dict[str, str] = {}
    section = "summary"
    current: str | None = None
    for line in doc.splitlines():
        stripped = line.strip()
        if stripped in ("Args:", "Arguments:", "Parameters:"):
            section, current = "args", None
            continue
        if re.match(r"^[A-Z][A-Za-z ]*:$", stripped):
            section, current = "other", None
            continue
        if section == "summary":
            if not stripped and summary_lines:
                section = "body"
            elif stripped:
                summary_lines.append(stripped)
        elif section == "args" and stripped and not line.startswith(" "):
            section, current = "body", None
        elif section == "args" and stripped:
            match = re.match(r"^(\w+)(?:\s*\(.*?\))?:\s*(.*)$", stripped)
            if match and line.startswith(" " * 4) and not line.startswith(" " * 8):
                current = match.group(1)
                arg_docs[current] = match.group(2)
            elif current:
                arg_docs[current] = (arg_docs[current] + " " + stripped).strip()
    return " ".join(summary_lines), arg_docs


def _strip_titles(schema: Any) -> Any:
    if isinstance(schema, dict):
        return {
            k: v if k in _DATA_KEYS else _strip_titles(v)
            for k, v in schema.items()
            if not (k == "title" and isinstance(v, str))
        }
    if isinstance(schema, list):
        return [_strip_titles(v) for v in schema]
    return schema


def build_contract(
    fn: Callable[..., Any],
    *,
    name: str | None = None,
    description: str | None = None,
    scope: Scope = "read",
    impact: Impact = "low",
    secrets: Sequence[str] = (),
    output: Trust = "untrusted",
    output_fields: Mapping[str, Trust] | None = None,
    egress: bool | Sequence[str] = False,
) -> ToolContract:
    """Build a `ToolContract` from a typed function (see `tool`).

    Raises:
        ContractError: the function cannot be a tool (say which parameter and why).
    """
    if not callable(fn):
        raise ContractError(f"`{fn!r}` is not callable; a tool is a function")
    tool_name = name or getattr(fn, "__name__", None)
    if not tool_name or tool_name == "<lambda>":
        raise ContractError(f"`{fn!r}` has no usable name; pass name=")
    where = f"tool `{tool_name}`"
    if not _NAME_RE.match(tool_name):
        raise ContractError(f"{where}: name must match {_NAME_RE.pattern}")
    if scope not in SCOPES:
        raise ContractError(f"{where}: scope `{scope}` is not one of read, draft, write")
    if impact not in ("low", "high"):
        raise ContractError(f"{where}: impact `{impact}` is not one of low, high")
    if output not in ("trusted", "untrusted"):
        raise ContractError(f"{where}: output `{output}` is not one of trusted, untrusted")
    if isinstance(secrets, str):
        raise ContractError(f"{where}: secrets must be a list of names, not a string")
    for secret in secrets:
        if not _SECRET_RE.match(secret):
            raise ContractError(
                f"{where}: secret name `{secret}` must be upper-case letters, digits, underscores"
            )
    try:
        hints = typing.get_type_hints(fn, include_extras=True)
    except Exception as exc:  # unresolvable forward references and the like
        raise ContractError(f"{where}: cannot resolve type hints ({exc})") from None
    summary, arg_docs = _docstring_parts(fn)
    fields: dict[str, Any] = {}
    closed: set[str] = set()
    context_param: str | None = None
    for param in inspect.signature(fn).parameters.values():
        pname = param.name
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            stars = "*" if param.kind is param.VAR_POSITIONAL else "**"
            raise ContractError(f"{where}: `{stars}{pname}` parameters are not allowed; name each")
        if param.kind is param.POSITIONAL_ONLY:
            raise ContractError(f"{where}: parameter `{pname}` is positional-only")
        if pname not in hints:
            raise ContractError(f"{where}: parameter `{pname}` has no type annotation")
        annotation = hints[pname]
        if _mentions_context(annotation) and not _is_context_annotation(_unwrap(annotation)):
            raise ContractError(
                f"{where}: parameter `{pname}` must be annotated ToolContext[...] itself "
                "(not optional, not in a union): the gateway always passes it"
            )
        if _is_context_annotation(_unwrap(annotation)):
            if context_param is not None:
                raise ContractError(f"{where}: more than one ToolContext parameter")
            context_param = pname
            continue
        if pname.startswith("_") or pname in _RESERVED:
            raise ContractError(
                f"{where}: parameter `{pname}` cannot be an argument name (leading underscore "
                "or reserved by pydantic); rename it"
            )
        default = ... if param.default is param.empty else param.default
        if pname in arg_docs:
            default = pydantic.Field(default, description=arg_docs[pname])
        fields[pname] = (annotation, default)
        if _is_closed(annotation):
            closed.add(pname)

    model_name = "".join(p.capitalize() for p in re.split(r"[_\-]", tool_name)) + "Args"
    try:
        args_model = create_model(
            model_name,
            __config__=ConfigDict(extra="forbid", strict=True, allow_inf_nan=False),
            **fields,
        )
        if set(args_model.model_fields) != set(fields):
            lost = ", ".join(sorted(set(fields) - set(args_model.model_fields)))
            raise ContractError(f"{where}: argument(s) {lost} cannot be modelled; rename them")
        schema = _strip_titles(args_model.model_json_schema())
    except (pydantic.PydanticSchemaGenerationError, pydantic.PydanticInvalidForJsonSchema) as e:
        raise ContractError(
            f"{where}: an argument type cannot be expressed as JSON schema "
            f"(use str, int, float, bool, enums, literals, lists, dicts or pydantic models): "
            f"{str(e).splitlines()[0]}"
        ) from None
    except (TypeError, ValueError, pydantic.PydanticUserError) as exc:
        raise ContractError(f"{where}: {str(exc).splitlines()[0]}") from None
    schema.setdefault("properties", {})
    schema.setdefault("required", [])
    schema.setdefault("additionalProperties", False)

    desc = description if description is not None else summary
    if not desc:
        raise ContractError(f"{where}: give it a docstring or a description; models need one")
    output_schema = _output_schema(hints.get("return"))
    fields_map = _output_fields(where, output, output_fields, output_schema)
    egress_args = _egress_args(where, egress, list(fields), closed)
    return ToolContract(
        name=tool_name,
        description=desc,
        scope=scope,
        impact=impact,
        secrets=tuple(secrets),
        output_trust=output,
        args_model=args_model,
        fn=fn,
        is_async=inspect.iscoroutinefunction(fn),
        context_param=context_param,
        closed_args=frozenset(closed),
        parameters_schema=schema,
        output_fields=fields_map,
        output_schema=output_schema,
        egress_args=egress_args,
        normalizers=normalizers_of({k: v for k, v in hints.items() if k in fields}),
    )


def _output_schema(annotation: Any) -> dict[str, Any] | None:
    """The result's JSON schema when the return type describes its shape (a model, a
    TypedDict, a dataclass, a list of them); None for ``dict``, ``Any`` or nothing."""
    if annotation is None or annotation in (Any, dict, list, object, type(None)):
        return None
    try:
        schema = pydantic.TypeAdapter(annotation).json_schema()
    except Exception:  # an annotation pydantic cannot describe says nothing about shape
        return None
    if schema.get("type") == "object" and not schema.get("properties"):
        return None
    return _strip_titles(schema)  # type: ignore[no-any-return]


def _output_fields(
    where: str,
    output: Trust,
    fields: Mapping[str, Trust] | None,
    schema: dict[str, Any] | None,
) -> dict[str, Trust]:
    if not fields:
        return {}
    if not isinstance(fields, Mapping):
        raise ContractError(f"{where}: output_fields maps selectors to trusted/untrusted")
    try:
        trust_map = TrustMap.parse(output, fields)
    except SelectorError as exc:
        raise ContractError(f"{where}: output_fields: {exc}") from None
    unmatched = trust_map.unmatched(schema)
    if unmatched:
        raise ContractError(
            f"{where}: output_fields selector(s) {', '.join(f'`{u}`' for u in unmatched)} match "
            "nothing in the result's type; fix the path or the return annotation"
        )
    return dict(fields)


def _egress_args(
    where: str, egress: bool | Sequence[str], names: list[str], closed: set[str]
) -> tuple[str, ...]:
    if egress is False:
        return ()
    if egress is True:
        return tuple(n for n in names if n not in closed)
    if isinstance(egress, str):
        raise ContractError(f"{where}: egress is true or a list of argument names")
    unknown = [a for a in egress if a not in names]
    if unknown:
        raise ContractError(
            f"{where}: egress names unknown argument(s) {', '.join(unknown)} "
            f"(arguments: {', '.join(names) or 'none'})"
        )
    return tuple(egress)


@overload
def tool(fn: Callable[..., Any], /) -> ToolContract: ...


@overload
def tool(
    *,
    name: str | None = None,
    description: str | None = None,
    scope: Scope = "read",
    impact: Impact = "low",
    secrets: Sequence[str] = (),
    output: Trust = "untrusted",
    output_fields: Mapping[str, Trust] | None = None,
    egress: bool | Sequence[str] = False,
) -> Callable[[Callable[..., Any]], ToolContract]: ...


def tool(
    fn: Callable[..., Any] | None = None,
    /,
    *,
    name: str | None = None,
    description: str | None = None,
    scope: Scope = "read",
    impact: Impact = "low",
    secrets: Sequence[str] = (),
    output: Trust = "untrusted",
    output_fields: Mapping[str, Trust] | None = None,
    egress: bool | Sequence[str] = False,
) -> ToolContract | Callable[[Callable[..., Any]], ToolContract]:
    """Turn a typed function (sync or async) into a `ToolContract`.

    Example::

        @tool(scope="write", impact="high", secrets=["PAYMENTS_KEY"])
        def refund(ctx: ToolContext[World], order_id: str,
                   amount: Annotated[float, Field(gt=0, le=1000)]) -> dict:
            "Refund part or all of an order."
            ...

    Args:
        fn: The function (when used as ``@tool`` without arguments).
        name: The name models use; defaults to the function's name.
        description: For the model; defaults to the docstring's first paragraph.
        scope: ``read``, ``draft`` or ``write``; the least the tool needs.
        impact: ``high`` for writes that need a human by default.
        secrets: Secret names injected at execution through ``ToolContext.secrets``.
        output: Provenance of the tool's result: ``untrusted`` (default, third-party
            data, customer text) or ``trusted`` (internal systems of record).
        output_fields: Field-level trust over ``output``, by selector:
            ``{"$.files[*].content": "untrusted"}`` (checked against the return type).
        egress: ``True`` (or the argument names) when the call sends data out through its
            arguments (a URL fetched, an address looked up): those are targets by default.
    """

    def decorate(f: Callable[..., Any]) -> ToolContract:
        return build_contract(
            f,
            name=name,
            description=description,
            scope=scope,
            impact=impact,
            secrets=secrets,
            output=output,
            output_fields=output_fields,
            egress=egress,
        )

    if fn is not None:
        return decorate(fn)
    return decorate
