"""The public surface is real (issue #12): each package exports what others use from its
`__init__`, and no module imports another package's `_private` module.

A package's own tests (`tests/<package>/`) may import its private modules, and so may a line
that says it tests that module (``# tests this module``).
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "opsgate"
PACKAGES = sorted(p.name for p in SRC.iterdir() if (p / "__init__.py").exists())
PRIVATE = re.compile(r"^\s*(?:from|import) opsgate\.(\w+)\.(_\w+)[^\n]*", re.M)

#: private imports waiting on work in progress elsewhere (to be emptied, never grown)
PENDING: set[tuple[str, str]] = set()


def _violations() -> list[tuple[str, str, str]]:
    found = []
    for base in ("src/opsgate", "tests", "bench"):
        for path in (ROOT / base).rglob("*.py"):
            rel = path.relative_to(ROOT)
            for match in PRIVATE.finditer(path.read_text()):
                package = match.group(1)
                owner = rel.parts[2] if base == "src/opsgate" and len(rel.parts) > 3 else None
                tests_of = rel.parts[1] if base == "tests" and len(rel.parts) > 2 else None
                if package in (owner, tests_of) or "# tests this module" in match.group(0):
                    continue
                found.append((str(rel), package, match.group(0).strip()))
    return found


def test_no_module_imports_another_packages_private_modules() -> None:
    found = [v for v in _violations() if (v[0], v[1]) not in PENDING]
    assert not found, "import these from the package instead:\n" + "\n".join(
        f"{path}: {line}" for path, _, line in found
    )


def test_the_pending_list_only_shrinks() -> None:
    still = {(path, package) for path, package, _ in _violations()}
    stale = sorted(PENDING - still)
    assert not stale, f"fixed: remove from PENDING {stale}"


@pytest.mark.parametrize("package", PACKAGES)
def test_each_package_exports_what_it_lists(package: str) -> None:
    module = importlib.import_module(f"opsgate.{package}")
    exported = getattr(module, "__all__", None)
    assert exported is not None, f"opsgate.{package} has no __all__"
    assert len(set(exported)) == len(exported), f"opsgate.{package}.__all__ repeats a name"
    missing = [name for name in exported if not hasattr(module, name)]
    assert not missing, f"opsgate.{package}.__all__ names what it does not have: {missing}"
    assert not [n for n in exported if n.startswith("_")], "a private name is exported"
