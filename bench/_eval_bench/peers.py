"""The peers, installed outside the project's venv, and their configurations for the bench.

- promptfoo (npm) and js-tiktoken in ``bench/.peers/node_modules``;
- inspect_ai and openai in ``bench/.peers/venv``;
- tiktoken's ``o200k_base`` (inspect's mock model counts tokens with it and would download
  it at run time) rebuilt offline from js-tiktoken's copy into ``bench/.peers/tiktoken``,
  accepted only when its sha256 is the one tiktoken expects.

Versions are pinned so that two runs compare the same peers. `ensure_promptfoo` and
`ensure_inspect` install what is missing (saying what they do) and return a reason instead
of raising when they cannot, so that the bench skips that peer with one clear line.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from _eval_bench.suites import BENCH_DIR

PEERS = BENCH_DIR / ".peers"
NODE_MODULES = PEERS / "node_modules"
VENV = PEERS / "venv"
TIKTOKEN_DIR = PEERS / "tiktoken"
PROMPTFOO_VERSION = "0.121.20"  # the newest that still runs on Node 20.20 (0.122 wants 22.22)
JS_TIKTOKEN_VERSION = "1.0.21"
INSPECT_VERSION = "0.3.285"
OPENAI_VERSION = "3.57.0"
MIN_NODE = (20, 20)
O200K_URL = "https://openaipublic.blob.core.windows.net/encodings/o200k_base.tiktoken"
O200K_SHA256 = "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d"
INSPECT_TASKS = Path(__file__).resolve().parent / "inspect_tasks.py"

Say = Callable[[str], None]


@dataclass(frozen=True)
class Promptfoo:
    """How to run the installed promptfoo."""

    node: str
    entrypoint: Path
    version: str
    node_version: str


@dataclass(frozen=True)
class Inspect:
    """How to run the installed inspect_ai."""

    python: Path
    inspect: Path
    version: str
    tiktoken_dir: Path


def _run(argv: list[str], say: Say, timeout: float = 900) -> str | None:
    """Run an install step, printing it; the failure's last line, or None when it worked."""
    say("  $ " + " ".join(argv))
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"{argv[0]}: {exc}"
    if done.returncode != 0:
        lines = [line for line in (done.stderr + done.stdout).splitlines() if "WARNING" not in line]
        return (lines[-1] if lines else f"exit {done.returncode}")[:300]
    return None


def _installed_version(package_json: Path) -> str | None:
    try:
        return str(json.loads(package_json.read_text())["version"])
    except (OSError, ValueError, KeyError):
        return None


def node_version(node: str) -> tuple[int, ...] | None:
    """``node --version`` as numbers (None if it does not run)."""
    try:
        out = subprocess.run([node, "--version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    found = re.match(r"v(\d+)\.(\d+)\.(\d+)", out.stdout.strip())
    return tuple(int(x) for x in found.groups()) if found else None


def ensure_promptfoo(say: Say) -> Promptfoo | str:
    """promptfoo and js-tiktoken under ``bench/.peers`` (installed if missing), or why not."""
    node = shutil.which("node")
    npm = shutil.which("npm")
    if node is None or npm is None:
        return "node/npm not found (Debian: apt-get install nodejs npm)"
    version = node_version(node)
    if version is None or version[:2] < MIN_NODE:
        return f"promptfoo {PROMPTFOO_VERSION} needs Node >= 20.20, found {version}"
    wanted = {"promptfoo": PROMPTFOO_VERSION, "js-tiktoken": JS_TIKTOKEN_VERSION}
    have = {name: _installed_version(NODE_MODULES / name / "package.json") for name in wanted}
    if have != wanted:
        say(f"installing promptfoo {PROMPTFOO_VERSION} and js-tiktoken into {PEERS} (npm)")
        PEERS.mkdir(parents=True, exist_ok=True)
        failed = _run(
            [
                npm,
                "install",
                "--prefix",
                str(PEERS),
                "--no-audit",
                "--no-fund",
                "--loglevel=error",
                *(f"{name}@{v}" for name, v in wanted.items()),
            ],
            say,
        )
        if failed:
            return f"npm install failed: {failed}"
    package = json.loads((NODE_MODULES / "promptfoo" / "package.json").read_text())
    bin_field = package["bin"]
    entry = bin_field if isinstance(bin_field, str) else bin_field["promptfoo"]
    return Promptfoo(
        node,
        NODE_MODULES / "promptfoo" / entry,
        str(package["version"]),
        ".".join(str(x) for x in version),
    )


def o200k_from_js_tiktoken(ranks_file: Path) -> bytes:
    """tiktoken's ``o200k_base.tiktoken`` (``<base64 token> <rank>`` lines), rebuilt from
    js-tiktoken's compressed ranks (``<name> <first rank> <token> <token>...`` lines)."""
    text = ranks_file.read_text(encoding="utf-8")
    data = json.loads(text[text.index("{") : text.rindex("}") + 1])
    ranks: dict[str, int] = {}
    for line in data["bpe_ranks"].split("\n"):
        if not line:
            continue
        _name, offset, *tokens = line.split(" ")
        for i, token in enumerate(tokens):
            ranks[token] = int(offset) + i
    return "".join(f"{t} {r}\n" for t, r in sorted(ranks.items(), key=lambda x: x[1])).encode()


def tiktoken_cache_file(folder: Path = TIKTOKEN_DIR) -> Path:
    """Where tiktoken looks for o200k_base under ``TIKTOKEN_CACHE_DIR``: sha1 of its URL."""
    return folder / hashlib.sha1(O200K_URL.encode()).hexdigest()


def ensure_o200k(say: Say, folder: Path = TIKTOKEN_DIR) -> str | None:
    """The o200k_base file in tiktoken's cache folder, checked; None, or why it is missing."""
    target = tiktoken_cache_file(folder)
    if target.is_file() and hashlib.sha256(target.read_bytes()).hexdigest() == O200K_SHA256:
        return None
    ranks = NODE_MODULES / "js-tiktoken" / "dist" / "ranks" / "o200k_base.cjs"
    if not ranks.is_file():
        return f"no {ranks} to rebuild tiktoken's o200k_base from (npm install js-tiktoken)"
    say(f"rebuilding tiktoken o200k_base offline from js-tiktoken into {folder}")
    content = o200k_from_js_tiktoken(ranks)
    digest = hashlib.sha256(content).hexdigest()
    if digest != O200K_SHA256:
        return f"o200k_base rebuilt from js-tiktoken has sha256 {digest}, not {O200K_SHA256}"
    folder.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".partial")
    partial.write_bytes(content)
    os.replace(partial, target)
    return None


def ensure_inspect(say: Say) -> Inspect | str:
    """inspect_ai in ``bench/.peers/venv`` (created if missing) and o200k_base, or why not."""
    python = VENV / "bin" / "python"
    if not python.exists():
        say(f"creating {VENV} for inspect_ai")
        failed = _run([sys.executable, "-m", "venv", str(VENV)], say)
        if failed:
            return f"python -m venv failed: {failed}"
    probe = subprocess.run(
        [str(python), "-c", "import inspect_ai, openai; print(inspect_ai.__version__)"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    version = probe.stdout.strip() if probe.returncode == 0 else None
    if version != INSPECT_VERSION:
        say(f"installing inspect_ai {INSPECT_VERSION} and openai {OPENAI_VERSION} (pip)")
        failed = _run(
            [
                str(python),
                "-m",
                "pip",
                "install",
                "-q",
                "--disable-pip-version-check",
                f"inspect_ai=={INSPECT_VERSION}",
                f"openai=={OPENAI_VERSION}",
            ],
            say,
        )
        if failed:
            return f"pip install inspect_ai failed: {failed}"
    expected = _tiktoken_expected_hash(python)
    if expected is not None and expected != O200K_SHA256:
        return f"this tiktoken expects o200k_base sha256 {expected}, the bench knows {O200K_SHA256}"
    why = ensure_o200k(say)
    if why:
        return f"inspect's mock model needs tiktoken o200k_base offline: {why}"
    return Inspect(python, VENV / "bin" / "inspect", INSPECT_VERSION, TIKTOKEN_DIR)


def _tiktoken_expected_hash(python: Path) -> str | None:
    """The o200k_base sha256 that the peer venv's tiktoken checks, read from its source."""
    found = list((python.parent.parent / "lib").glob("python*/site-packages/tiktoken_ext"))
    if not found:
        return None
    source = (found[0] / "openai_public.py").read_text(encoding="utf-8")
    match = re.search(r'o200k_base\.tiktoken",\s*expected_hash="([0-9a-f]{64})"', source)
    return match.group(1) if match else None


# -- configurations -------------------------------------------------------------------------------


def promptfoo_config(n: int, provider: str | dict[str, object]) -> dict[str, object]:
    """``n`` look-up tests, each asserting that the answer names its order."""
    tests = [
        {
            "vars": {"order": f"ORD-{i:04d}"},
            "assert": [{"type": "contains", "value": f"ORD-{i:04d}"}],
        }
        for i in range(1, n + 1)
    ]
    return {
        "description": f"bench lookup x{n}",
        "prompts": ["What is the status of order {{order}}?"],
        "providers": [provider],
        "tests": tests,
    }


def promptfoo_server_provider(base_url: str) -> dict[str, object]:
    """promptfoo's OpenAI chat provider on the loopback server."""
    return {
        "id": "openai:chat:bench-model",
        "config": {"apiBaseUrl": base_url, "apiKey": "bench-key"},
    }


PROMPTFOO_RESULT = re.compile(r"([\d,]+) passed.*?([\d,]+) failed.*?([\d,]+) errors", re.S)


def promptfoo_counts(output: str) -> tuple[int, int, int] | None:
    """(passed, failed, errors) from promptfoo's summary."""
    found = PROMPTFOO_RESULT.search(output)
    if found is None:
        return None
    passed, failed, errors = (int(g.replace(",", "")) for g in found.groups())
    return passed, failed, errors


INSPECT_LOG_SUMMARY = """
import glob, json, sys
from inspect_ai.log import read_eval_log
logs = sorted(glob.glob(sys.argv[1] + "/*.eval"))
log = read_eval_log(logs[-1])
r = log.results
print(json.dumps({"status": log.status,
                  "completed": r.completed_samples if r else 0,
                  "accuracy": r.scores[0].metrics["accuracy"].value if r and r.scores else None}))
"""
