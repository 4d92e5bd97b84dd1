"""The router file: roles, fallback chains, prices, and every misconfiguration named."""

from __future__ import annotations

from pathlib import Path

import pytest

from opsgate.errors import ConfigError
from opsgate.models._router_config import (
    ROLES,
    Price,
    catalogue_date,
    load_router_config,
    price_catalogue,
)

ROOT = Path(__file__).resolve().parents[2]
ROLES_YAML = "roles: {" + ", ".join(f"{r}: {{model: small}}" for r in ROLES) + "}\n"
BASE = (
    "version: 1\n"
    "models:\n"
    "  small: {provider: embedded, model: local-0.5b, price: {input_per_1m: 0.02,"
    " output_per_1m: 0.06, estimate: true}}\n"
    "  large: {provider: openai, base_url: 'https://api.openai.com/v1', model: gpt-4.1-mini,"
    " api_key_env: OPENAI_API_KEY, fallback: small}\n"
)


def test_the_shipped_router_file_loads() -> None:
    config = load_router_config(ROOT / "config" / "router.yaml")
    assert set(config.roles) == set(ROLES)
    assert config.price_of("embedded").estimate
    assert config.budgets["support_triage"].max_cost_per_task == 0.25


def test_chains_follow_role_fallbacks_then_model_fallbacks() -> None:
    text = BASE + ROLES_YAML.replace("act: {model: small}", "act: {model: large}")
    config = load_router_config("r.yaml", text=text)
    assert config.chain("act") == ["large", "small"]
    assert config.chain("route") == ["small"]
    assert config.price_of("large") == price_catalogue()["gpt-4.1-mini"]


def test_a_role_escalates_only_to_a_model_it_does_not_start_on() -> None:
    text = BASE + ROLES_YAML.replace("act: {model: small}", "act: {model: large}")
    config = load_router_config("r.yaml", text=text + "escalation: {to: large}\n")
    assert config.escalation_for("route") == "large"
    assert config.escalation_for("act") is None  # it starts on the larger model already
    assert load_router_config("r.yaml", text=text).escalation_for("route") is None


def test_price_arithmetic() -> None:
    price = Price(input_per_1m=2.0, output_per_1m=8.0, cached_input_per_1m=0.5)
    assert price.cost(1_000_000, 0) == pytest.approx(2.0)
    assert price.cost(1000, 500, cached_input_tokens=400) == pytest.approx(
        (600 * 2.0 + 400 * 0.5 + 500 * 8.0) / 1e6
    )
    assert Price(input_per_1m=1, output_per_1m=1).cost(10, 0, cached_input_tokens=10) > 0
    assert catalogue_date() == "2025-06"


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        (
            BASE + ROLES_YAML.replace("route: {model: small}", "route: {model: huge}"),
            "role `route` names unknown model `huge`",
        ),
        (
            BASE + ROLES_YAML.replace("route: {model: small}", "ruote: {model: small}"),
            "unknown role `ruote`",
        ),
        (
            BASE.replace("fallback: small", "fallback: large") + ROLES_YAML,
            "circular fallback: large -> large",
        ),
        (
            BASE.replace(", price: {input_per_1m: 0.02, output_per_1m: 0.06, estimate: true}", "")
            + ROLES_YAML,
            "no price for `local-0.5b`",
        ),
        (
            BASE.replace("base_url: 'https://api.openai.com/v1', ", "") + ROLES_YAML,
            "needs a base_url",
        ),
        (BASE + ROLES_YAML + "colour: red\n", "unknown key `colour`"),
        (BASE + "roles: {route: {model: small}}\n", "have no model"),
        ("models: [\n", "r.yaml: line"),
    ],
)
def test_bad_router_files(text: str, needle: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_router_config("r.yaml", text=text)
    assert needle in str(info.value)
    assert str(info.value).startswith("r.yaml")


def test_missing_file() -> None:
    with pytest.raises(ConfigError, match="file not found"):
        load_router_config("/nonexistent/router.yaml")
