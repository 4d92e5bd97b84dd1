"""Test doubles for the scorer tests: an agent that follows a script in its request, and a
world with files. What these tests are about is the scoring, not a model."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from opsgate.agent import AgentResult
from opsgate.examples.support_triage.world import World, world_for_task
from opsgate.gateway import Gateway, Run, RunStatus


@dataclass
class FilesWorld(World):
    """The support shop plus a working tree, for command checks."""

    files: dict[str, str] = field(default_factory=dict)


def world(task: Any) -> FilesWorld:
    """The shop of the support suite, with an empty working tree."""
    base = world_for_task(task)
    return FilesWorld(**vars(base))


class ScriptedAgent:
    """Does what its request (JSON) says: plan, calls, files, output."""

    def __init__(self, gateway: Gateway, router: Any) -> None:
        self.gateway = gateway
        self.router = router

    async def run(self, run: Run, text: str) -> AgentResult:
        script = orjson.loads(run.request or "{}")
        if "plan" in script:
            self.gateway.record_plan(run, [{"tool": t, "purpose": "x"} for t in script["plan"]])
        for tool, args in script.get("calls", []):
            await self.gateway.call(run, tool, args)
        world = run.deps
        for path, content in script.get("files", {}).items():
            world.files[path] = content
        output = script.get("output")
        if script.get("echo_text"):  # what the harness put in front of the agent
            output = text
        if "output_reversed" in script:  # an answer whose text the (trusted) request lacks
            output = script["output_reversed"][::-1]
        self.gateway.finish(run, status=RunStatus.COMPLETED, reason="done", output=output)
        return AgentResult(RunStatus.COMPLETED, "done", output=output)


def build(gateway: Gateway, router: Any) -> ScriptedAgent:
    """The suite's agent factory."""
    return ScriptedAgent(gateway, router)


ROLES = ("route", "extract", "plan", "act", "summarize", "judge")


def router_file(tmp_path: Path, url: str) -> Path:
    """A router file sending every role to the scripted server at ``url``."""
    path = tmp_path / "router.yaml"
    roles = ", ".join(f"{r}: {{model: m}}" for r in ROLES)
    path.write_text(
        f"version: 1\nmodels:\n  m: {{provider: openai_compatible, base_url: '{url}', "
        "model: fake-model, price: {input_per_1m: 1.0, output_per_1m: 2.0}}\n"
        f"roles: {{{roles}}}\n"
    )
    return path
