"""The router file (``config/router.yaml``): models, prices, roles, budgets, validated.

Small models for routing and extraction, large ones only for the hard parts: each *role*
(``route``, ``extract``, ``plan``, ``act``, ``summarize``, ``judge``) names a model and its
ordered fallbacks; each model carries its price per 1M tokens (from the shipped catalogue,
or given here); a local model carries a compute price labelled as an estimate, so that
cost per task is measured for it too, never silently zero.

Errors name the file, the line and the key: unknown model or role, price missing,
circular fallback.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import cache
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from opsgate.documents import (
    DocumentProblem,
    line_of,
    read_document,
    read_yaml,
    validate_document,
)
from opsgate.errors import ConfigError

__all__ = [
    "ROLES",
    "Budget",
    "ModelEntry",
    "Price",
    "RoleEntry",
    "RouterConfig",
    "RouterRole",
    "load_router_config",
    "price_catalogue",
]

Role = Literal["route", "extract", "plan", "act", "summarize", "judge"]
#: A router role, as the package exports it (`Role` there is a message's).
RouterRole = Role
ROLES: tuple[Role, ...] = ("route", "extract", "plan", "act", "summarize", "judge")
Provider = Literal[
    "embedded", "openai", "openai_compatible", "vllm", "ollama", "llamacpp", "lmstudio"
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Price(_Strict):
    """USD per 1M tokens."""

    input_per_1m: float = Field(ge=0)
    output_per_1m: float = Field(ge=0)
    cached_input_per_1m: float | None = Field(None, ge=0)
    estimate: bool = Field(False, description="A compute-cost estimate (local models).")

    def cost(self, input_tokens: int, output_tokens: int, cached_input_tokens: int = 0) -> float:
        """The USD cost of one call."""
        cached = min(cached_input_tokens, input_tokens)
        cached_price = self.cached_input_per_1m
        if cached_price is None:
            cached_price = self.input_per_1m
        return (
            (input_tokens - cached) * self.input_per_1m
            + cached * cached_price
            + output_tokens * self.output_per_1m
        ) / 1_000_000


class ModelEntry(_Strict):
    """One model the router may call."""

    provider: Provider
    model: str = Field(min_length=1, description="The model id sent to the server.")
    base_url: str | None = Field(None, description="OpenAI-compatible base URL, ending in /v1.")
    api_key_env: str | None = Field(None, pattern=r"^[A-Z_][A-Z0-9_]*$")
    price: Price | None = None
    context_window: int = Field(32768, ge=256)
    timeout_s: float = Field(60.0, gt=0)
    fallback: str | None = Field(None, description="The model to use when this one fails.")
    optional: bool = Field(
        False,
        description="Used only where it can be served (an embedded model whose weights are "
        "installed: `make models-large`); elsewhere it is left out and the roles, fallbacks "
        "and escalation that name it move to what follows it.",
    )
    tool_calling: Literal["native", "json_schema"] | None = Field(
        None,
        description="native: the API's `tools`; json_schema: the call is constrained output "
        "(tool names as an enum), which always parses. Default: json_schema for the embedded "
        "model, native otherwise.",
    )

    @property
    def tool_mode(self) -> Literal["native", "json_schema"]:
        """How this model is asked for tool calls."""
        if self.tool_calling is not None:
            return self.tool_calling
        return "json_schema" if self.provider == "embedded" else "native"

    @model_validator(mode="after")
    def _needs_url(self) -> ModelEntry:
        if self.provider != "embedded" and not self.base_url:
            raise ValueError(f"provider `{self.provider}` needs a base_url")
        return self


class RoleEntry(_Strict):
    """Which model plays a role, and what to try next."""

    model: str
    fallbacks: list[str] = Field(default_factory=list)


class Budget(_Strict):
    """A workflow's spending limits."""

    max_cost_per_task: float | None = Field(None, gt=0)
    daily_spend: float | None = Field(None, gt=0)


class Escalation(_Strict):
    """When to move a step to a larger model."""

    to: str | None = Field(None, description="The larger model.")
    after_failures: int = Field(2, ge=1)
    below_confidence: float | None = Field(None, gt=0, lt=1)


class RouterConfig(_Strict):
    """A whole router file."""

    version: Annotated[int, Field(ge=1, le=1)] = 1
    models: dict[str, ModelEntry]
    roles: dict[Role, RoleEntry]
    budgets: dict[str, Budget] = Field(default_factory=dict)
    escalation: Escalation = Field(default_factory=Escalation)

    @model_validator(mode="after")
    def _references(self) -> RouterConfig:
        known = set(self.models)

        def check(name: str, where: str) -> None:
            if name not in known:
                raise ValueError(
                    f"{where} names unknown model `{name}` (models: {', '.join(sorted(known))})"
                )

        for role, entry in self.roles.items():
            check(entry.model, f"role `{role}`")
            for name in entry.fallbacks:
                check(name, f"role `{role}` fallbacks")
        for name, model in self.models.items():
            if model.fallback is not None:
                check(model.fallback, f"model `{name}` fallback")
            seen = [name]
            current = model.fallback
            while current is not None:
                if current in seen:
                    raise ValueError("circular fallback: " + " -> ".join([*seen, current]))
                seen.append(current)
                current = self.models[current].fallback
        if self.escalation.to is not None:
            check(self.escalation.to, "escalation")
        missing = [r for r in ROLES if r not in self.roles]
        if missing:
            raise ValueError(f"roles {', '.join(missing)} have no model")
        return self

    def without(self, absent: Iterable[str]) -> RouterConfig:
        """This router with the ``absent`` models left out: a role or a fallback naming one
        takes the next model of its chain instead, an escalation to one is off.

        Raises:
            ConfigError: a role would be left with no model.
        """
        gone = set(absent) & set(self.models)
        if not gone:
            return self

        def after(name: str | None) -> str | None:
            while name is not None and name in gone:
                name = self.models[name].fallback
            return name

        models = {
            name: entry.model_copy(update={"fallback": after(entry.fallback)})
            for name, entry in self.models.items()
            if name not in gone
        }
        roles: dict[Role, RoleEntry] = {}
        for role, entry in self.roles.items():
            chain = [m for m in self.chain(role) if m not in gone]
            if not chain:
                raise ConfigError(
                    f"role `{role}` has no model once {', '.join(sorted(gone))} is left out: "
                    "give it a fallback that is always there"
                )
            rest = [m for m in entry.fallbacks if m not in gone and m != chain[0]]
            roles[role] = RoleEntry(model=chain[0], fallbacks=rest)
        escalation = self.escalation
        if escalation.to in gone:  # escalating to a smaller stand-in would gain nothing
            escalation = escalation.model_copy(update={"to": None})
        return self.model_copy(update={"models": models, "roles": roles, "escalation": escalation})

    def price_of(self, name: str) -> Price:
        """The model's price: its own, else the catalogue's for its model id."""
        entry = self.models[name]
        if entry.price is not None:
            return entry.price
        found = price_catalogue().get(entry.model)
        if found is None:
            raise ConfigError(f"model `{name}` (`{entry.model}`) has no price")
        return found

    def chain(self, role: Role) -> list[str]:
        """The models to try for ``role``, in order, each followed by its own fallbacks."""
        if role not in self.roles:
            raise ConfigError(f"unknown role `{role}` (roles: {', '.join(ROLES)})")
        entry = self.roles[role]
        order: list[str] = []
        for name in [entry.model, *entry.fallbacks]:
            current: str | None = name
            while current is not None and current not in order:
                order.append(current)
                current = self.models[current].fallback
        return order

    def escalation_for(self, role: Role) -> str | None:
        """The model ``role`` escalates to: the escalation model, unless there is none or
        it is the role's first choice already (nothing larger to ask)."""
        target = self.escalation.to
        return target if target is not None and target != self.chain(role)[0] else None


@cache
def price_catalogue() -> dict[str, Price]:
    """The shipped price catalogue (``prices.yaml``), by model id."""
    path = Path(__file__).with_name("prices.yaml")
    data = read_yaml(path.read_text(encoding="utf-8"), str(path))
    return {name: Price(**entry) for name, entry in data["models"].items()}


def catalogue_date() -> str:
    """When the shipped prices were last checked."""
    path = Path(__file__).with_name("prices.yaml")
    data = read_yaml(path.read_text(encoding="utf-8"), str(path))
    return str(data["as_of"])


def load_router_config(source: str | Path, *, text: str | None = None) -> RouterConfig:
    """Read and validate a router file.

    Raises:
        ConfigError: naming the file, line and key of the first problem.
    """
    try:
        name, text = read_document(source, text)
        config = validate_document(
            RouterConfig,
            read_yaml(text, name),
            text=text,
            source=name,
            kind="router file",
            shape="a router file is a mapping with `models` and `roles`",
            wording=_router_wording,
        )
    except DocumentProblem as exc:
        raise ConfigError(str(exc)) from None
    for model_name in config.models:
        try:
            config.price_of(model_name)
        except ConfigError:
            line = line_of(text, ("models", model_name))
            raise ConfigError(
                f"{name} at `models.{model_name}`: "
                + (f"line {line}: " if line else "")
                + f"no price for `{config.models[model_name].model}` in the catalogue; give "
                "`price: {input_per_1m: …, output_per_1m: …}` (and `estimate: true` for a "
                "local model's compute cost)"
            ) from None
    return config


def _router_wording(data: Any, loc: tuple[Any, ...], err: dict[str, Any]) -> str | None:
    if err["type"] == "literal_error" and len(loc) >= 2 and loc[0] == "roles":
        return f"unknown role `{loc[1]}` (roles: {', '.join(ROLES)})"
    return None


def describe(config: RouterConfig) -> dict[str, Any]:
    """Roles → model chains with prices, for CLIs and reports."""
    return {
        role: [{"model": m, "price": config.price_of(m).model_dump()} for m in config.chain(role)]
        for role in ROLES
    }
