"""The documentation stays true (issue #12), as datasette's tests/test_docs.py does:

- `docs/cli.md`, the reference of every command and option of `opsgate` and `agent-eval`,
  is what the CLI says today (regenerate it with ``python tests/test_docs.py``);
- every command is named in the README or `docs/`;
- every `opsgate …` / `agent-eval …` command line quoted in the README names a command that
  exists and only options it has;
- every environment variable opsgate reads is documented.
"""

from __future__ import annotations

import re
import shlex
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
REFERENCE = ROOT / "docs" / "cli.md"


# typer 0.29 vendors click privately: commands are read by their attributes (a group has
# `commands`, a parameter `opts`, `secondary_opts` and `param_type_name`)
Command = Any


def _is_group(command: Command) -> bool:
    return hasattr(command, "commands")


def _apps() -> dict[str, Command]:
    from opsgate.cli.eval_main import app as eval_app
    from opsgate.cli.main import app as main_app

    return {
        "opsgate": typer.main.get_command(main_app),
        "agent-eval": typer.main.get_command(eval_app),
    }


def _walk(name: str, command: Command) -> Iterator[tuple[str, Command]]:
    yield name, command
    if _is_group(command):
        for sub in sorted(command.commands):
            yield from _walk(f"{name} {sub}", command.commands[sub])


def _leaves() -> list[tuple[str, Command]]:
    return [
        (path, command)
        for root, top in _apps().items()
        for path, command in _walk(root, top)
        if not _is_group(command)
    ]


def _options(command: Command) -> set[str]:
    return {o for p in command.params for o in (*p.opts, *p.secondary_opts) if o.startswith("-")}


def render_reference() -> str:
    """The CLI reference, from the commands themselves."""
    out = [
        "# Command-line reference",
        "",
        "Generated from the CLI by `python tests/test_docs.py`; `tests/test_docs.py` fails when",
        "it is out of date. Exit codes: 0 pass, 1 a check failed (gate, verification), 2 bad",
        "input or no verdict.",
        "",
    ]
    for path, command in _leaves():
        out += [f"## `{path}`", ""]
        doc = (command.help or "").strip()
        if doc:
            out += [doc.split("\n\n")[0].replace("\n", " "), ""]
        rows = []
        for param in command.params:
            if param.param_type_name == "argument":
                rows.append(
                    (
                        f"`{param.name.upper()}`",
                        "argument",
                        " ".join((getattr(param, "help", None) or "").split()),
                    )
                )
                continue
            if param.param_type_name != "option" or param.hidden:
                continue
            names = ", ".join(f"`{o}`" for o in (*param.opts, *param.secondary_opts))
            text = " ".join((param.help or "").split()).replace("|", "\\|")
            rows.append((names, "flag" if param.is_flag else "option", text))
        if rows:
            out += ["| name | kind | what |", "|---|---|---|"]
            out += [f"| {n} | {k} | {t} |" for n, k, t in rows]
            out.append("")
    return "\n".join(out).rstrip("\n") + "\n"


def test_the_cli_reference_is_up_to_date() -> None:
    assert REFERENCE.read_text() == render_reference(), (
        "docs/cli.md is out of date: run `python tests/test_docs.py`"
    )


def test_every_command_is_named_in_the_readme_or_docs() -> None:
    readme = README.read_text()
    guides = "".join(p.read_text() for p in (ROOT / "docs").glob("*.md") if p != REFERENCE)
    missing = [path for path, _ in _leaves() if path not in readme + guides]
    assert not missing, f"commands no guide mentions: {missing}"


def _quoted_command_lines(text: str) -> list[str]:
    lines = [m.group(1) for m in re.finditer(r"`((?:opsgate|agent-eval) [^`]+)`", text)]
    for block in re.finditer(r"```(?:sh|bash|console)\n(.*?)```", text, re.S):
        joined = block.group(1).replace("\\\n", " ")
        lines += [
            line.split("#")[0].strip()
            for line in joined.splitlines()
            if line.strip().startswith(("opsgate ", "agent-eval "))
        ]
    return lines


def _check_line(line: str, apps: dict[str, Command]) -> str | None:
    try:
        words = shlex.split(line)
    except ValueError:
        words = line.split()
    command = apps[words[0]]
    path = [words[0]]
    rest = words[1:]
    while _is_group(command) and rest and rest[0] in command.commands:
        path.append(rest[0])
        command = command.commands[rest.pop(0)]
    if _is_group(command) and rest and "|" in rest[0]:  # usage syntax: `approvals list|deny`
        alternatives = rest[0].split("|")
        missing = [a for a in alternatives if a not in command.commands]
        if missing:
            return f"`{line}`: `{' '.join(path)}` has no command {missing}"
        return None
    if _is_group(command):
        return f"`{line}`: `{' '.join(path)} {rest[0] if rest else ''}` is not a command"
    known = _options(command)
    for word in rest:
        option = word.strip("[]()").split("=")[0]
        if re.fullmatch(r"--[a-z0-9-]+", option) and option not in known:
            return f"`{line}`: `{' '.join(path)}` has no option `{option}`"
    return None


def test_every_command_line_in_the_readme_exists() -> None:
    apps = _apps()
    lines = _quoted_command_lines(README.read_text())
    assert len(lines) > 20
    problems = [p for p in (_check_line(line, apps) for line in lines) if p]
    assert not problems, "\n".join(problems)


def test_the_line_checker_catches_drift() -> None:
    apps = _apps()
    assert _check_line("opsgate audit verify --public-key pub.pem", apps) is None
    assert "no option `--pubkey`" in str(_check_line("opsgate audit verify --pubkey x", apps))
    assert "is not a command" in str(_check_line("opsgate audit verifyy", apps))


def _environment_variables() -> set[str]:
    found: set[str] = set()
    for path in (ROOT / "src" / "opsgate").rglob("*.py"):
        found |= set(re.findall(r"[\"'](OPSGATE_[A-Z0-9_]+)[\"']", path.read_text()))
    return found


def test_every_environment_variable_is_named_once_and_documented() -> None:
    from opsgate import environment
    from opsgate.models import _embedded  # tests this module: it mirrors two names

    names = _environment_variables()
    assert names == set(environment.VARIABLES) | set(environment.AGENT_VARIABLES), (
        "read a variable through opsgate.environment"
    )
    # the embedded server's file imports only the standard library, so it repeats two names
    assert _embedded.API_KEY_ENV == environment.EMBEDDED_API_KEY_ENV
    assert _embedded._HOME_ENV == environment.HOME_ENV
    documented = README.read_text() + "".join(p.read_text() for p in (ROOT / "docs").glob("*.md"))
    missing = sorted(n for n in names if n not in documented)
    assert not missing, f"environment variables no guide documents: {missing}"


@pytest.mark.parametrize("path", ["README.md", "docs/cli.md"])
def test_guides_have_no_broken_relative_links(path: str) -> None:
    text = (ROOT / path).read_text()
    base = (ROOT / path).parent
    broken = [
        target
        for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", text)
        if not (base / target).exists()
    ]
    assert not broken, f"{path} links to missing files: {broken}"


if __name__ == "__main__":
    REFERENCE.parent.mkdir(exist_ok=True)
    REFERENCE.write_text(render_reference())
    print(f"wrote {REFERENCE.relative_to(ROOT)}", file=sys.stderr)


def test_the_layout_names_every_package_and_module() -> None:
    text = README.read_text()
    layout = text[text.index("## Layout") :]
    src = ROOT / "src" / "opsgate"
    names = [p.name + "/" for p in src.iterdir() if p.is_dir() and (p / "__init__.py").exists()]
    names += [p.name for p in src.glob("*.py") if not p.name.startswith("_")]
    missing = sorted(n for n in names if f"`{n}`" not in layout)
    assert not missing, f"the README's Layout leaves out {missing}"
