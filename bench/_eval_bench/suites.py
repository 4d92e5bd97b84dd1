"""The bench suite and router files, written for a given size and server.

Each task asks for one order's status; its checks are the ones a real suite has: the
look-up ran with the right order (required call), the world shows it (a CEL state check)
and the answer names the order (output check). With the loopback server every task passes,
so a failing task in a bench run is a bug, and `bench/evals.py` stops on it.
"""

from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).resolve().parent
BENCH_DIR = HERE.parent  # on PYTHONPATH of every `agent-eval` the bench runs
POLICY = HERE / "policy.yaml"
CALLS_PER_TASK = 2  # the tool call, then the final answer
ROLES = ("route", "extract", "plan", "act", "summarize", "judge")


def order_ids(n: int) -> list[str]:
    """The orders of an ``n``-task suite, one per task."""
    if not 1 <= n <= 9999:
        raise ValueError(f"a bench suite has 1..9999 tasks, not {n}")
    return [f"{i:04d}" for i in range(1, n + 1)]


def suite_text(n: int, name: str = "bench_lookup") -> str:
    """The YAML of an ``n``-task suite."""
    lines = [
        f"suite: {name}",
        "version: 1",
        "description: Look an order up and say its status (two model calls a task).",
        "workflow: bench_lookup",
        "agent: _eval_bench.agent:build_agent",
        "tools: _eval_bench.tools",
        f"policy: {POLICY}",
        "world: _eval_bench.agent:world_for_task",
        "tasks:",
    ]
    for order in order_ids(n):
        lines += [
            f"  - id: lookup-{order}",
            "    tags: [lookup]",
            f"    request: What is the status of order ORD-{order}?",
            "    checks:",
            f"      required_calls: [{{tool: lookup_order, args: {{order_id: ORD-{order}}}}}]",
            f"      state: [\"world.orders['ORD-{order}'].lookups == 1\"]",
            f"      output: {{contains: [ORD-{order}]}}",
        ]
    return "\n".join(lines) + "\n"


def router_text(base_url: str) -> str:
    """A router file sending every role to the loopback server."""
    roles = ", ".join(f"{r}: {{model: bench}}" for r in ROLES)
    return (
        "version: 1\nmodels:\n"
        f"  bench: {{provider: openai_compatible, base_url: '{base_url}', model: bench-model, "
        "price: {input_per_1m: 1.0, output_per_1m: 2.0}}\n"
        f"roles: {{{roles}}}\n"
    )


def write_suite(folder: Path, n: int) -> Path:
    """``folder/bench_lookup_<n>.yaml``."""
    path = folder / f"bench_lookup_{n}.yaml"
    path.write_text(suite_text(n, f"bench_lookup_{n}"), encoding="utf-8")
    return path


def write_router(folder: Path, base_url: str, name: str = "router") -> Path:
    """``folder/<name>.yaml``."""
    path = folder / f"{name}.yaml"
    path.write_text(router_text(base_url), encoding="utf-8")
    return path
