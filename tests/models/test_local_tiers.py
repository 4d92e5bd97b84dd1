"""The two local tiers: the larger model's pins, leaving an uninstalled optional model out of
a router file, and serving both models side by side (slow, where the larger one is installed)."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest

from opsgate.errors import ConfigError
from opsgate.models import (
    DEFAULT_MODEL,
    EMBEDDED_MODELS,
    LARGE_MODEL,
    EmbeddedPool,
    absent_models,
    local_models,
    model_available,
    resolve_local,
)
from opsgate.models._embedded import ModelPart, ModelSpec
from opsgate.models._router_config import ROLES, load_router_config

ROOT = Path(__file__).resolve().parents[2]
SMALL, LARGE = DEFAULT_MODEL.name, LARGE_MODEL.name


def _pins(path: Path) -> dict[str, str]:
    text = path.read_text(encoding="utf-8")
    return dict(re.findall(r"^([a-z0-9-]+)==(\S+) \\$", text, flags=re.MULTILINE))


def test_the_large_tier_is_pinned_part_by_part() -> None:
    pins = _pins(ROOT / "requirements-large.txt")
    assert pins == {p.distribution: p.version for p in LARGE_MODEL.parts}
    assert sum(p.size for p in LARGE_MODEL.parts) == LARGE_MODEL.size
    text = (ROOT / "requirements-large.txt").read_text(encoding="utf-8")
    assert text.count("--hash=sha256:") == len(LARGE_MODEL.parts) == 22
    assert "third party" in text and "third-party repack" in LARGE_MODEL.source
    assert set(EMBEDDED_MODELS) == {SMALL, LARGE}


def test_make_test_does_not_install_the_large_tier() -> None:
    lines = (ROOT / "Makefile").read_text(encoding="utf-8").splitlines()
    uses = [i for i, line in enumerate(lines) if "requirements-large.txt" in line]
    recipes = [i for i in uses if not lines[i].startswith("#")]
    assert len(recipes) == 1 and lines[recipes[0] - 1].startswith("models-large:")


def test_a_model_whose_packages_are_missing_is_not_available(tmp_path: Path) -> None:
    ghost = ModelSpec(
        name="ghost",
        sha256="0" * 64,
        size=1,
        licence="none",
        upstream="none",
        source="nowhere",
        parts=(ModelPart("opsgate-no-such-dist-part1", "1.0", "x/part01.bin", 1),),
    )
    assert not model_available(ghost, tmp_path)


def test_the_shipped_router_runs_plan_and_act_on_the_large_tier_when_installed() -> None:
    config = load_router_config(ROOT / "config" / "router.yaml")
    here = resolve_local(config, available=lambda model: True)
    assert here.chain("route")[0] == here.chain("extract")[0] == "embedded"
    assert here.chain("act") == here.chain("plan") == ["large-local", "embedded"]
    assert here.escalation.to == "large-local"


def test_without_the_large_tier_everything_falls_back_to_the_small_model() -> None:
    config = load_router_config(ROOT / "config" / "router.yaml")
    assert absent_models(config, lambda model: model == SMALL) == ["large-local"]
    here = resolve_local(config, available=lambda model: model == SMALL)
    assert "large-local" not in here.models
    assert {here.chain(role)[0] for role in ROLES} == {"embedded"}
    assert here.escalation.to is None
    # the example's router file is the shipped one
    example = ROOT / "src" / "opsgate" / "examples" / "support_triage" / "router.yaml"
    assert example.read_text(encoding="utf-8") == (ROOT / "config" / "router.yaml").read_text(
        encoding="utf-8"
    )


def test_leaving_out_the_only_model_of_a_role_is_a_clear_error() -> None:
    roles = "roles: {" + ", ".join(f"{r}: {{model: big}}" for r in ROLES) + "}\n"
    text = (
        "version: 1\nmodels:\n"
        f"  big: {{provider: embedded, model: {LARGE}, optional: true,"
        " price: {input_per_1m: 0.1, output_per_1m: 0.1, estimate: true}}\n" + roles
    )
    config = load_router_config("r.yaml", text=text)
    with pytest.raises(ConfigError, match="role `route` has no model once big is left out"):
        resolve_local(config, available=lambda model: False)


def test_an_optional_hosted_model_is_kept() -> None:
    roles = "roles: {" + ", ".join(f"{r}: {{model: hosted}}" for r in ROLES) + "}\n"
    text = (
        "version: 1\nmodels:\n"
        "  hosted: {provider: openai, base_url: 'https://api.openai.com/v1',"
        " model: gpt-4.1-mini, api_key_env: OPENAI_API_KEY, optional: true}\n" + roles
    )
    config = load_router_config("r.yaml", text=text)
    assert resolve_local(config, available=lambda model: False) is config
    with local_models(config, available=lambda model: False) as (resolved, endpoint, pool):
        assert resolved is config and endpoint is None and pool is None


def test_a_model_opsgate_cannot_serve_is_refused_before_anything_starts() -> None:
    with pytest.raises(ConfigError, match=r"cannot serve `gpt-4\.1-mini` itself"):
        EmbeddedPool([SMALL, "gpt-4.1-mini"])


@pytest.mark.slow
@pytest.mark.skipif(
    not model_available(LARGE_MODEL), reason="the larger tier is not installed (make models-large)"
)
def test_both_tiers_serve_side_by_side(tmp_path: Path) -> None:
    config = load_router_config(ROOT / "config" / "router.yaml")
    with local_models(config) as (resolved, endpoint, pool):
        assert endpoint is not None and pool is not None
        assert sorted(s.model for s in pool.servers) == sorted([SMALL, LARGE])
        assert len({s.port for s in pool.servers}) == 2
        for name in ("embedded", "large-local"):
            base_url, key, model_id = endpoint(resolved.models[name].model)
            answer = httpx.post(
                f"{base_url}/chat/completions",
                json={
                    "model": model_id,
                    "messages": [{"role": "user", "content": "Say hello."}],
                    "max_tokens": 8,
                    "temperature": 0,
                },
                headers={"Authorization": f"Bearer {key}"},
                timeout=240,
            ).json()
            assert answer["model"] == model_id
            assert answer["choices"][0]["message"]["content"].strip()
    assert not any(s.running for s in pool.servers)
