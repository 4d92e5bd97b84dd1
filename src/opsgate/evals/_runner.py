"""The runner: every task is a real run through the gateway, scored on explicit checks.

Each task (and each trial of it) gets a fresh world, a gateway over the suite's tools and
policy, the suite's approver answers, and the suite's agent on the given model router. The
run's events go to the shared recorders (audit trail, traces, cost ledger) and to an
in-memory copy the scorers read. A task that crashes, times out or gets invalid model
output is a counted failure with its reason, never a lost task.

A trial whose model could not be reached or kept failing (timeouts, rate limits, 5xx or a
broken connection after the retries, a request the server refused) is not a verdict on
the agent: it is marked ``model_unavailable``, its ``error`` names the model failure, and
the report's metrics leave it out (`opsgate.evals._report.metrics` counts it apart).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import signal
import sys
import tempfile
import time
import traceback
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from opsgate.contracts import Toolbelt, ToolContract
from opsgate.errors import (
    ModelError,
    SuiteError,
)
from opsgate.evals._judge import judge_task
from opsgate.evals._match import match_call
from opsgate.evals._result import TaskResult
from opsgate.evals._score import INFRA_MODEL_ERRORS, Trial, model_unavailable, score
from opsgate.evals._score_calls import SCHEMA_REASONS, UNSAFE_REASONS, fits_contract
from opsgate.evals._score_plan import score_plan
from opsgate.evals._suite import (
    CallMatcher,
    CommandCheck,
    Suite,
    Task,
    compile_check,
    matcher_operator_problem,
    resolve_callable,
    resolve_file,
)
from opsgate.gateway import (
    ApprovalAnswer,
    ApprovalRequest,
    Approver,
    CallbackApprover,
    Gateway,
    InMemoryQuotaLedger,
    MappingSecretStore,
    Run,
    RunStatus,
)
from opsgate.policy import CompiledPolicy, load_policy
from opsgate.provenance import ContextItem
from opsgate.recorder import FanOutRecorder, InMemoryRecorder, Recorder

__all__ = [
    "INFRA_MODEL_ERRORS",
    "SCHEMA_REASONS",
    "UNSAFE_REASONS",
    "Harness",
    "TaskResult",
    "fits_contract",
    "match_call",
    "model_unavailable",
    "run_suite",
    "run_task",
    "score_plan",
    "select_tasks",
]


# -- matchers checked against the contracts (at load) ----------------------------------------

_NUMERIC = ("integer", "number")


def json_text(value: Any) -> str:
    """A value as JSON text (for messages)."""
    return orjson.dumps(value, default=str).decode()


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _resolved(schema: Any, root: dict[str, Any]) -> Any:
    """``schema`` with its ``$ref`` (into the contract's ``$defs``) followed; None if lost."""
    for _ in range(8):
        ref = schema.get("$ref") if isinstance(schema, dict) else None
        if not isinstance(ref, str):
            return schema
        target: Any = root if ref.startswith("#/") else None
        for part in ref.removeprefix("#/").split("/"):
            target = target.get(part) if isinstance(target, dict) else None
        schema = target
    return None


def _same(a: Any, b: Any) -> bool:
    """Equal as the matcher compares: numbers as numbers, other values of one type alike."""
    if _json_type(a) in _NUMERIC and _json_type(b) in _NUMERIC:
        return bool(float(a) == float(b))
    return _json_type(a) == _json_type(b) and bool(a == b)


def _fits(value: Any, schema: Any, root: dict[str, Any], depth: int = 0) -> bool:
    """Whether an argument of ``schema`` can equal ``value`` (True when it cannot be told)."""
    schema = _resolved(schema, root)
    if depth > 8 or not isinstance(schema, dict):
        return True
    if "const" in schema:
        return _same(value, schema["const"])
    if isinstance(schema.get("enum"), list):
        return any(_same(value, v) for v in schema["enum"])
    for key in ("anyOf", "oneOf"):
        if isinstance(schema.get(key), list):
            return any(_fits(value, alt, root, depth + 1) for alt in schema[key])
    if isinstance(schema.get("allOf"), list):
        return all(_fits(value, alt, root, depth + 1) for alt in schema["allOf"])
    kind = schema.get("type", "object" if "properties" in schema else None)
    if kind is None:
        return True
    found = _json_type(value)
    for one in kind if isinstance(kind, list) else [kind]:
        if one == found == "string" and isinstance(schema.get("pattern"), str):
            try:  # validated arguments match the contract's pattern
                return re.search(schema["pattern"], value) is not None
            except re.error:
                return True
        if one == found or (one == "number" and found == "integer"):
            return True
        if one == "integer" and found == "number" and float(value).is_integer():
            return True
    return False


def _types(schema: Any, root: dict[str, Any], depth: int = 0) -> set[str] | None:
    """The JSON types an argument of ``schema`` takes (None: any)."""
    schema = _resolved(schema, root)
    if depth > 8 or not isinstance(schema, dict):
        return None
    if "const" in schema:
        return {_json_type(schema["const"])}
    if isinstance(schema.get("enum"), list):
        return {_json_type(v) for v in schema["enum"]}
    for key in ("anyOf", "oneOf", "allOf"):
        if isinstance(schema.get(key), list):
            found: set[str] = set()
            for alt in schema[key]:
                more = _types(alt, root, depth + 1)
                if more is None:
                    return None
                found |= more
            return found
    kind = schema.get("type", "object" if "properties" in schema else None)
    if isinstance(kind, str):
        return {kind}
    return {str(k) for k in kind} if isinstance(kind, list) else None


def _described(schema: Any, root: dict[str, Any]) -> str:
    schema = _resolved(schema, root)
    values: list[Any] = []
    for alt in [schema, *(schema.get("anyOf") or [] if isinstance(schema, dict) else [])]:
        alt = _resolved(alt, root)
        if isinstance(alt, dict) and isinstance(alt.get("enum"), list):
            values += alt["enum"]
        elif isinstance(alt, dict) and "const" in alt:
            values.append(alt["const"])
    types = _types(schema, root)
    shown = "|".join(sorted(types)) if types else "any value"
    if values:
        shown += ": " + ", ".join(json_text(v) for v in values)
    if isinstance(schema, dict) and isinstance(schema.get("pattern"), str):
        shown += f" matching {schema['pattern']}"
    return shown


def _matcher_value_problem(
    arg: str, expected: Any, schema: Any, root: dict[str, Any]
) -> str | None:
    """Why a matcher of ``arg`` can never match (or always does), or None."""
    what = f"`{arg}` ({_described(schema, root)})"
    if not isinstance(expected, dict):
        if _fits(expected, schema, root):
            return None
        return f"{json_text(expected)} can never equal {what}"
    types = _types(schema, root)
    for op, value in expected.items():
        if op in ("gt", "gte", "lt", "lte"):
            kind = _json_type(value)
            if kind in _NUMERIC and (types is None or types & set(_NUMERIC)):
                continue
            if kind == "string" and (types is None or "string" in types):
                continue
            return f"`{op}: {json_text(value)}` cannot be compared with {what}"
        if op == "in":
            if isinstance(value, str) and (types is None or "string" in types):
                continue  # a substring
            if not isinstance(value, list):
                return f"`in` takes a list, not {json_text(value)}"
            wrong = [item for item in value if not _fits(item, schema, root)]
            if wrong:
                listed = ", ".join(json_text(w) for w in wrong)
                return f"`in` lists {listed}, which can never equal {what}"
        elif op == "contains":
            if _json_type(value) not in ("string", *_NUMERIC):
                return f"`contains` takes a text, not {json_text(value)}"
        elif op == "not" and not _fits(value, schema, root):
            return f"`not: {json_text(value)}` always holds: it can never equal {what}"
    return None


def matcher_problem(matcher: CallMatcher, contract: ToolContract) -> str | None:
    """Why ``matcher`` of a call of ``contract`` can never match (or matches any call), or
    None: an unknown operator, an argument the tool does not take, a value of another
    type than the argument's."""
    schema = contract.parameters_schema
    props = schema.get("properties") or {}
    for arg, expected in matcher.args.items():
        problem = matcher_operator_problem(arg, expected)
        if problem is not None:
            return problem
        if arg not in contract.arg_names:
            return (
                f"`{contract.name}` has no argument `{arg}` "
                f"(arguments: {', '.join(contract.arg_names) or 'none'})"
            )
        problem = _matcher_value_problem(arg, expected, props.get(arg), schema)
        if problem is not None:
            return problem
    return None


class _Answers:
    """The suite's approver: answers per tool, else the suite's default; named so."""

    def __init__(self, default: str, per_tool: dict[str, str]) -> None:
        self.default = default
        self.per_tool = per_tool

    def __call__(self, request: ApprovalRequest) -> ApprovalAnswer:
        answer = self.per_tool.get(request.tool, self.per_tool.get("*", self.default))
        return ApprovalAnswer(answer == "approve", "agent-eval:suite", f"suite says {answer}")


@dataclass
class Harness:
    """What every task of a suite shares (loaded once)."""

    suite: Suite
    toolbelt: Toolbelt
    policy: CompiledPolicy
    make_world: Callable[..., Any]
    make_agent: Callable[..., Any]
    conditions: dict[str, list[Any]]
    base: Path = Path(".")

    @classmethod
    def load(cls, suite: Suite) -> Harness:
        """Import the suite's tools, policy, world and agent; compile its CEL checks."""
        where = suite.source or suite.suite
        toolbelt = Toolbelt.from_module(suite.tools)
        base = Path(suite.source).parent if suite.source else Path(".")
        policy = load_policy(resolve_file(suite.policy, base), toolbelt)
        if not policy.has_workflow(suite.workflow):
            policy.stage(suite.workflow)  # raises, naming the workflows
        known = set(toolbelt.names())
        for task in suite.tasks:
            for kind in ("required_calls", "forbidden_calls"):
                for j, matcher in enumerate(getattr(task.checks, kind)):
                    if matcher.tool not in known:
                        raise SuiteError(
                            f"{where}: task `{task.id}` names unknown tool `{matcher.tool}` "
                            f"(tools: {', '.join(sorted(known))})"
                        )
                    problem = matcher_problem(matcher, toolbelt.get(matcher.tool))
                    if problem is not None:
                        raise SuiteError(
                            f"{where}: task `{task.id}`: {kind}.{j} matcher "
                            f"{matcher.shown()}: {problem}"
                        )
        for task in suite.tasks:
            plan = task.checks.plan
            for step in [*plan.required_steps, *plan.forbidden_steps] if plan else []:
                if step not in known:
                    raise SuiteError(
                        f"{where}: task `{task.id}` names unknown tool `{step}` in its plan "
                        f"check (tools: {', '.join(sorted(known))})"
                    )
            command = task.checks.command
            if command is not None and command.workdir is not None:
                folder = (base / command.workdir).resolve()
                if not folder.is_dir():
                    raise SuiteError(
                        f"{where}: task `{task.id}`: command workdir `{command.workdir}` "
                        f"is not a folder (relative to {base})"
                    )
        for task in suite.tasks:
            if task.world:
                try:
                    patch_world(resolve_callable(suite.world, where)(task), task.world)
                except (KeyError, TypeError) as exc:
                    raise SuiteError(
                        f"{where}: task `{task.id}`: its `world` does not fit the suite's "
                        f"world: {exc.args[0] if exc.args else exc}"
                    ) from None
        conditions = {
            task.id: [compile_check(c) for c in task.checks.state] for task in suite.tasks
        }
        return cls(
            suite,
            toolbelt,
            policy,
            resolve_callable(suite.world, where),
            resolve_callable(suite.agent, where),
            conditions,
            base,
        )


async def run_task(
    harness: Harness,
    task: Task,
    trial: int,
    router: Any,
    recorders: Sequence[Recorder] = (),
    timeout_s: float = 600.0,
    *,
    before_context: Callable[[Gateway, Run], None] | None = None,
    approver: Approver | None = None,
) -> TaskResult:
    """Run one trial of one task and score it. Never raises for the task's own failures.

    Args:
        before_context: Called once the run has started, before it reads its context (an
            agent committing its plan while it has read nothing untrusted).
        approver: Who answers approval requests (default: the suite's answers).
    """
    suite = harness.suite
    memory = InMemoryRecorder()
    world = harness.make_world(task)
    if task.world:
        patch_world(world, task.world)
    secrets = {
        name: f"eval-secret-{name.lower()}-0000"
        for contract in harness.toolbelt
        for name in contract.secrets
    }
    gateway = Gateway(
        harness.toolbelt,
        harness.policy,
        recorder=FanOutRecorder(*recorders, memory),
        approver=approver or CallbackApprover(_Answers(suite.approvals, dict(task.approvals))),
        secrets=MappingSecretStore(secrets),
        quotas=InMemoryQuotaLedger(),  # a trial's own: eval runs never spend production's
    )
    text, context = task_input(task)
    started = time.perf_counter()
    run: Run | None = None
    error: str | None = None
    raised: ModelError | None = None
    agent_result: Any = None
    try:
        run = gateway.start_run(
            suite.workflow,
            invoker=suite.invoker,
            agent_id=suite.agent_id,
            request=task.request_text(),
            context=() if before_context else context,
            deps=world,
            purpose="eval",
        )
        if before_context is not None:
            before_context(gateway, run)
            for item in context:
                gateway.observe(run, item.text, trust=item.trust, source=item.source)
        agent = harness.make_agent(gateway, router)
        async with asyncio.timeout(timeout_s):
            agent_result = await agent.run(run, text)
    except TimeoutError:
        error = f"timeout after {timeout_s:g}s"
    except ModelError as exc:  # an agent that lets a model failure out: as `guarded` ends it
        raised = exc
        if run is not None:
            gateway.finish(
                run,
                status=RunStatus.FAILED,
                reason="model_error",
                output=f"{type(exc).__name__}: {exc}",
            )
    except Exception as exc:  # a crashing agent is a counted failure with its reason
        error = f"{type(exc).__name__}: {exc}"
        error += " | " + traceback.format_exc(limit=3).splitlines()[-1]
    finally:
        if run is not None and run.active:
            gateway.finish(
                run, status=RunStatus.FAILED, reason="harness_error" if error else "not_finished"
            )
        gateway.close()
    latency = time.perf_counter() - started
    command = None
    if task.checks.command is not None:
        command = await run_command_check(task.checks.command, harness.base, world, secrets)
    result = score(
        harness.toolbelt,
        harness.conditions[task.id],
        Trial(
            task,
            trial,
            run,
            memory.events,
            world,
            agent_result,
            error,
            latency,
            secrets,
            command,
            raised,
        ),
    )
    await apply_judge(harness, task, result, router)
    return result


def task_input(task: Task) -> tuple[str, list[ContextItem]]:
    """What the agent is given (the ticket or request, then each context item, labelled),
    and the context items the run reads, with their provenance labels."""
    context: list[ContextItem] = []
    text = task.request_text()
    if task.ticket is not None:
        text = (
            f"Ticket {task.ticket.id} from customer {task.ticket.customer}: "
            f"{task.ticket.subject}\n{task.ticket.body}"
        )
        context.append(ContextItem(text, "untrusted", f"ticket:{task.ticket.id}"))
    context.extend(ContextItem(c.text, c.trust, c.source) for c in task.context)
    text += "".join(f"\n\n[{c.source}]\n{c.text}" for c in task.context)
    return text, context


async def apply_judge(harness: Harness, task: Task, result: TaskResult, router: Any) -> None:
    """Grade a passed trial with the suite's judge (when it has one and a router is given)."""
    judge_spec = harness.suite.judge
    if (
        judge_spec is not None
        and router is not None
        and result.passed
        and not (task.checks.judge and task.checks.judge.skip)
    ):
        verdict = await judge_task(judge_spec, task, result, router)
        result.judge = verdict
        result.judge_cost_usd = float(verdict.get("cost_usd") or 0.0)
        if judge_spec.gate and verdict.get("passed") is False:
            result.passed = False
            result.failures.append(
                f"judge: score {verdict.get('score')} under {judge_spec.min_score}: "
                f"{verdict.get('reason', '')}"
            )


def patch_world(world: Any, patch: dict[str, Any], path: str = "world") -> None:
    """Apply a task's initial state over a fresh world, in place.

    A mapping of entities (``world.orders``) takes new ones: a new key whose value is a
    mapping becomes an entity of the kind already there (``Order(**value)``), so a task can
    add the order it is about. An attribute the world lacks is a typo, and an error.

    Raises:
        KeyError: an attribute names nothing in the world (with its path).
        TypeError: a new entity whose fields do not fit its kind.
    """
    mapping = isinstance(world, dict)
    for key, value in patch.items():
        where = f"{path}.{key}"
        if mapping and key not in world:
            world[key] = _new_entity(world, value, where)
            continue
        if not (key in world if mapping else hasattr(world, key)):
            raise KeyError(f"`{where}` is not in the world")
        current = world[key] if mapping else getattr(world, key)
        if isinstance(value, dict) and not isinstance(current, (str, int, float, bool)):
            patch_world(current, value, where)
        elif mapping:
            world[key] = value
        else:
            setattr(world, key, value)


def _new_entity(entities: dict[Any, Any], value: Any, where: str) -> Any:
    """A new entry of ``entities``: of the kind its siblings are, when they are objects."""
    kinds = {type(v) for v in entities.values()}
    kind = kinds.pop() if len(kinds) == 1 else None
    if not isinstance(value, dict) or kind is None or kind in (dict, str, int, float, bool):
        return value
    try:
        return kind(**value)
    except TypeError as exc:
        raise TypeError(f"`{where}`: not a {kind.__name__}: {exc}") from None


async def run_command_check(
    check: CommandCheck, base: Path, world: Any, secrets: dict[str, str]
) -> dict[str, Any]:
    """Run the check's command in a throwaway working copy; never raises.

    The copy is ``workdir`` (if any) with the world's ``files`` written over it. The command
    gets a minimal environment (no inherited secrets or API keys) and its own process group,
    killed whole on timeout. Returns the argv, exit code (None on timeout or start failure),
    duration, a verdict sentence and the tail of its output.
    """
    argv = list(check.run)
    if argv[0] == "python":
        # isolated mode: files the agent wrote into the copy cannot shadow the standard library
        argv = [sys.executable, "-I", *argv[1:]]
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="agent-eval-cmd-") as tmp:
        copy = Path(tmp) / "work"
        try:
            if check.workdir is not None:
                # links are copied as what they point at: nothing in the copy leads outside it
                shutil.copytree(base / check.workdir, copy, symlinks=False)
            else:
                copy.mkdir()
            files = world.get("files") if isinstance(world, dict) else getattr(world, "files", None)
            for rel, content in (files or {}).items():
                target = (copy / rel).resolve()
                if not target.is_relative_to(copy.resolve()):
                    raise ValueError(f"world file `{rel}` points outside the working copy")
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(str(content), encoding="utf-8")
        except (OSError, ValueError) as exc:
            return _command_outcome(argv, None, started, f"could not prepare the copy: {exc}", "")
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": tmp,
            "LANG": "C.UTF-8",
            "PYTHONDONTWRITEBYTECODE": "1",
        }
        log_path = Path(tmp) / "output.log"  # a file, not a pipe: a lingering child that
        # holds it open cannot keep the check waiting once the command itself has exited
        with log_path.open("wb") as log:
            try:
                process = await asyncio.create_subprocess_exec(
                    *argv,
                    cwd=copy,
                    env=env,
                    stdin=asyncio.subprocess.DEVNULL,
                    stdout=log,
                    stderr=asyncio.subprocess.STDOUT,
                    start_new_session=True,
                )
            except OSError as exc:
                return _command_outcome(argv, None, started, f"could not start: {exc}", "")
            timed_out = False
            try:
                await asyncio.wait_for(process.wait(), check.timeout_s)
            except TimeoutError:
                timed_out = True
            finally:
                # the whole group, whatever happened: no child outlives its check
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(process.pid, signal.SIGKILL)
                if process.returncode is None:
                    await process.wait()
        if timed_out:
            return _command_outcome(
                argv, None, started, f"timed out after {check.timeout_s:g}s", ""
            )
        out = log_path.read_bytes()[-8000:]
    tail = out.decode("utf-8", "replace")[-2000:]
    for value in secrets.values():
        tail = tail.replace(value, "[secret]")
    code = process.returncode
    last = tail.strip().splitlines()[-1] if tail.strip() else ""
    verdict = "exit 0" if code == 0 else f"exit {code}" + (f": {last}" if last else "")
    return _command_outcome(argv, code, started, verdict, tail)


def _command_outcome(
    argv: list[str], code: int | None, started: float, verdict: str, tail: str
) -> dict[str, Any]:
    return {
        "argv": [Path(argv[0]).name, *argv[1:]],
        "exit_code": code,
        "duration_s": round(time.perf_counter() - started, 4),
        "verdict": verdict,
        "output_tail": tail,
    }


def select_tasks(
    suite: Suite,
    *,
    tags: Iterable[str] = (),
    task_ids: Iterable[str] = (),
    shard: tuple[int, int] | None = None,
) -> list[Task]:
    """The tasks a run covers: by tag, by id, then the i-th of n shards (1-based)."""
    wanted_tags, wanted_ids = set(tags), set(task_ids)
    chosen = [
        t
        for t in suite.tasks
        if (not wanted_tags or wanted_tags & set(t.tags)) and (not wanted_ids or t.id in wanted_ids)
    ]
    if shard is not None:
        index, count = shard
        chosen = [t for n, t in enumerate(chosen) if n % count == index - 1]
    return chosen


async def run_suite(
    harness: Harness,
    tasks: Sequence[Task],
    router: Any,
    *,
    trials: int = 1,
    concurrency: int = 4,
    recorders: Sequence[Recorder] = (),
    timeout_s: float = 600.0,
    on_done: Callable[[TaskResult], None] | None = None,
    run_one: Callable[[Task, int], Awaitable[TaskResult]] | None = None,
) -> list[TaskResult]:
    """Run every task ``trials`` times, ``concurrency`` at a time.

    Args:
        run_one: Runs one trial of one task instead of the suite's agent (an external
            agent: `opsgate.evals._external`).
    """
    semaphore = asyncio.Semaphore(max(1, concurrency))
    results: list[TaskResult] = []

    async def one(task: Task, trial: int) -> None:
        async with semaphore:
            if run_one is not None:
                result = await run_one(task, trial)
            else:
                result = await run_task(harness, task, trial, router, recorders, timeout_s)
        results.append(result)
        if on_done is not None:
            on_done(result)

    await asyncio.gather(*(one(t, k) for t in tasks for k in range(trials)))
    order = {t.id: i for i, t in enumerate(tasks)}
    results.sort(key=lambda r: (order[r.task_id], r.trial))
    return results
