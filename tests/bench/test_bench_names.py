"""No script in bench/ takes the name of an installed package: `python bench/x.py` puts
bench/ first on the path, and a `bench/mcp.py` once made every bench that imports opsgate
(which imports the `mcp` SDK) fail with "'mcp' is not a package"."""

from __future__ import annotations

import importlib.util
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench"


def _installed(name: str) -> bool:
    """Whether ``name`` imports from outside this checkout (site-packages, the stdlib)."""
    spec = importlib.util.find_spec(name)
    if spec is None:
        return False
    places = [spec.origin or "", *(spec.submodule_search_locations or [])]
    root = str(BENCH.parent)
    return any(
        place and ("site-packages" in place or not place.startswith(root)) for place in places
    )


def test_no_bench_script_shadows_an_installed_module() -> None:
    shadowing = [s.name for s in sorted(BENCH.glob("*.py")) if _installed(s.stem)]
    assert shadowing == [], f"rename these: they shadow installed modules: {shadowing}"
