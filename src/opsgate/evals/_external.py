"""External agents: evaluate an agent opsgate did not build, gated and scored as its own.

Teams will not rewrite their agent to evaluate it. Per task, the harness builds the task's
world as for an opsgate agent, serves it as an MCP server on loopback (`_world_mcp`), puts
the opsgate MCP proxy in front of it with the suite's policy, approvals and the run's
recorders (streamable HTTP on 127.0.0.1 behind a one-off bearer token), and asks the agent:

- ``--agent-cmd``: a process per task, the task's input on stdin, the proxy in
  ``OPSGATE_MCP_URL`` / ``OPSGATE_MCP_TOKEN`` (and, when asked, a model server in
  ``OPENAI_BASE_URL`` / ``OPENAI_API_KEY`` / ``OPSGATE_MODEL``); its stdout is the answer,
  or a JSON object ``{"output": ..., "needs_clarification": true}`` for a question.
- ``--agent-url``: a POST of ``{"task_id", "input", "mcp_url", "mcp_token"}``; the JSON
  reply's ``output`` is the answer (and ``needs_clarification: true`` makes it a question).

The calls the proxy gated and recorded are what the scorers read: the same events, metrics
and report as for an opsgate agent. A timeout (the process group is killed), a crash, an
unreadable reply, an agent that never reached the proxy or an unreachable URL is that
trial's counted failure with its reason; the rest of the suite still runs.

An MCP client cannot end its run, so the answer says how it ended: ``handed_off`` after a
successful hand-off tool (as the opsgate loop ends it), ``needs_clarification`` when the
agent said its answer is a question for the requester (no tool needed: the run is opened
for it, with the task's context read, as an opsgate agent's would be), ``done`` otherwise.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import shlex
import signal
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import httpx
import orjson

from opsgate import environment
from opsgate.errors import ConfigError, ModelError, SuiteError
from opsgate.evals._evaluate import Evaluation
from opsgate.evals._report import build_report, check_rate
from opsgate.evals._result import TaskResult
from opsgate.evals._runner import (
    Harness,
    _Answers,
    apply_judge,
    patch_world,
    run_command_check,
    run_suite,
    select_tasks,
    task_input,
)
from opsgate.evals._score import Trial, score
from opsgate.evals._suite import Suite, Task, resolve_file
from opsgate.evals._world_mcp import WorldServer, serve_loopback
from opsgate.gateway import CallbackApprover, InMemoryQuotaLedger, Run, RunStatus
from opsgate.mcp import (
    Identity,
    McpProxy,
    ProxyConfig,
    TokenStore,
    ToolSpec,
    Upstream,
    UpstreamSpec,
    UpstreamTarget,
    http_app,
)
from opsgate.models import EmbeddedServer, RouterConfig
from opsgate.policy import PolicyDocument, content_version, parse_policy
from opsgate.provenance import ContextItem
from opsgate.recorder import Event, EventType, FanOutRecorder, InMemoryRecorder, Recorder
from opsgate.store import Store
from opsgate.wiring import model_router, store_recorders

__all__ = [
    "AGENT_MODELS",
    "AgentAnswer",
    "AgentFailure",
    "ExternalAgent",
    "ModelEndpoint",
    "evaluate_external",
    "run_external_task",
]

#: Tools whose success hands the run to a person (as the opsgate agent loop's default).
HANDOFF_TOOLS = frozenset({"escalate_to_human"})
#: What ``--agent-model`` takes: a model server opsgate starts for the agent.
AGENT_MODELS = ("embedded",)
#: The most of an agent's answer (and of its stderr) kept: an agent cannot fill the memory.
MAX_OUTPUT_BYTES = 1 << 20
_STDERR_KEEP = 4000
_WORLD = "world"


class AgentFailure(Exception):
    """The external agent failed this trial (its reason goes in the report)."""


@dataclass(frozen=True)
class ModelEndpoint:
    """An OpenAI-compatible server the agent is pointed at (``OPENAI_BASE_URL`` …)."""

    base_url: str
    api_key: str
    model: str


@dataclass(frozen=True)
class ExternalAgent:
    """How to reach the agent: a command run per task, or an HTTP endpoint."""

    command: tuple[str, ...] = ()
    url: str | None = None
    model: ModelEndpoint | None = None

    @classmethod
    def from_options(cls, command: str | None, url: str | None) -> ExternalAgent:
        """From ``--agent-cmd`` (shell words) or ``--agent-url``.

        Raises:
            SuiteError: both or neither, an empty or unparsable command, a URL not http(s).
        """
        if (command is None) == (url is None):
            raise SuiteError("give the agent as --agent-cmd or --agent-url (one of them)")
        if command is not None:
            try:
                argv = tuple(shlex.split(command))
            except ValueError as exc:
                raise SuiteError(f"--agent-cmd cannot be read as a command: {exc}") from None
            if not argv:
                raise SuiteError("--agent-cmd is empty")
            return cls(command=argv)
        assert url is not None
        if not url.startswith(("http://", "https://")):
            raise SuiteError(f"--agent-url must be an http:// or https:// URL, not `{url}`")
        return cls(url=url)

    @property
    def shown(self) -> str:
        """How the report names the agent."""
        if self.url is not None:
            return f"agent-url: {self.url}"
        return "agent-cmd: " + shlex.join(self.command)


@dataclass(frozen=True)
class AgentAnswer:
    """The agent's final answer (what the output checks read), and whether it is a
    question for the requester rather than a result."""

    output: str
    needs_clarification: bool = False


def read_answer(stdout: str) -> AgentAnswer:
    """A command's answer: its stdout, or the ``output`` of the JSON object it printed
    (with ``needs_clarification``); text that is not such an object is the answer as is."""
    stripped = stdout.strip()
    if stripped.startswith("{"):
        try:
            data = orjson.loads(stripped)
        except orjson.JSONDecodeError:
            data = None
        if isinstance(data, dict) and isinstance(data.get("output"), str):
            return AgentAnswer(data["output"], data.get("needs_clarification") is True)
    return AgentAnswer(stdout)


# -- asking the agent --------------------------------------------------------------------


async def ask_agent(
    agent: ExternalAgent, task: Task, text: str, mcp_url: str, token: str
) -> AgentAnswer:
    """The agent's answer to one task (no time limit here: the caller's).

    Raises:
        AgentFailure: it could not start or be reached, crashed, or answered nothing usable.
    """
    if agent.url is not None:
        return await _ask_url(agent.url, task, text, mcp_url, token)
    # The team's agent keeps its own environment (keys, paths), but not opsgate's: its
    # database URL, audit signing key and model key are none of the agent's business.
    env = {k: v for k, v in os.environ.items() if k not in environment.VARIABLES}
    env.update(
        {
            environment.MCP_URL_ENV: mcp_url,
            environment.MCP_TOKEN_ENV: token,
            environment.TASK_ENV: task.id,
        }
    )
    if agent.model is not None:
        env.update(
            {
                "OPENAI_BASE_URL": agent.model.base_url,
                "OPENAI_API_KEY": agent.model.api_key,
                environment.MODEL_ENV: agent.model.model,
            }
        )
    return read_answer(await _ask_command(agent.command, text, env))


async def _ask_command(argv: Sequence[str], text: str, env: Mapping[str, str]) -> str:
    try:
        process = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=dict(env),
            start_new_session=True,  # its own group: killed whole, children too
        )
    except OSError as exc:
        raise AgentFailure(
            f"the agent command could not start: {exc.strerror or type(exc).__name__}"
        ) from None
    try:
        assert process.stdin and process.stdout and process.stderr
        _, out, err, _ = await asyncio.gather(
            _feed(process.stdin, text.encode("utf-8", "replace")),
            _read_bounded(process.stdout, MAX_OUTPUT_BYTES),
            _read_bounded(process.stderr, MAX_OUTPUT_BYTES),
            process.wait(),
        )
    finally:  # the whole group, whatever happened (a timeout cancels us): nothing outlives it
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await asyncio.shield(process.wait())
    code = process.returncode
    if code != 0:
        said = _last_line(err)
        how = f"was killed by signal {-code}" if code is not None and code < 0 else f"exited {code}"
        raise AgentFailure(f"the agent {how}" + (f": {said}" if said else ""))
    return out.decode("utf-8", "replace")


async def _feed(stdin: asyncio.StreamWriter, data: bytes) -> None:
    """Write the input and close stdin; an agent that does not read it is no failure."""
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        stdin.write(data)
        await stdin.drain()
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        stdin.close()


async def _read_bounded(stream: asyncio.StreamReader, limit: int) -> bytes:
    """Everything up to ``limit`` bytes; the rest is read and dropped (never blocking it)."""
    kept = bytearray()
    while chunk := await stream.read(65536):
        if len(kept) < limit:
            kept += chunk[: limit - len(kept)]
    return bytes(kept)


def _last_line(err: bytes) -> str:
    lines = err[-_STDERR_KEEP:].decode("utf-8", "replace").strip().splitlines()
    return lines[-1][:300] if lines else ""


async def _ask_url(url: str, task: Task, text: str, mcp_url: str, token: str) -> AgentAnswer:
    body = {"task_id": task.id, "input": text, "mcp_url": mcp_url, "mcp_token": token}
    try:
        async with httpx.AsyncClient(timeout=None) as client:
            response = await client.post(url, json=body)
    except httpx.HTTPError as exc:
        raise AgentFailure(
            f"the agent at {url} could not be reached ({type(exc).__name__})"
        ) from None
    if not response.is_success:
        raise AgentFailure(f"the agent at {url} answered HTTP {response.status_code}")
    try:
        reply = orjson.loads(response.content[:MAX_OUTPUT_BYTES])
    except orjson.JSONDecodeError:
        reply = None
    output = reply.get("output") if isinstance(reply, dict) else None
    if not isinstance(output, str):
        raise AgentFailure(
            f"the agent at {url} did not reply with a JSON object whose `output` is a text"
        )
    return AgentAnswer(output, reply.get("needs_clarification") is True)


# -- the proxy of one trial --------------------------------------------------------------


class _EvalRuns:
    """A recorder that marks each run started as an eval trial (the proxy starts its runs
    as production's), so production roll-ups leave them out as they do opsgate's own."""

    def __init__(self, inner: Recorder) -> None:
        self.inner = inner

    def record(self, event: Event) -> None:
        if event.type == EventType.RUN_STARTED:
            event = replace(event, data={**event.data, "purpose": "eval"})
        self.inner.record(event)

    async def settle(self, run_id: str | None = None) -> None:
        await self.inner.settle(run_id)


class _TrialProxy(McpProxy):
    """The proxy of one trial: each run a client session starts reads the task's context
    (as an opsgate agent's run does), and stays open until the harness ends it with the
    agent's answer (a client closing its session does not end it)."""

    def __init__(self, *, context: Sequence[ContextItem], **options: Any) -> None:
        super().__init__(**options)
        self.context = list(context)
        self.runs: list[Run] = []

    def session(self, ctx: Any) -> Any:
        found = super().session(ctx)
        run: Run = found.run
        if not any(r is run for r in self.runs):
            self.runs.append(run)
            for item in self.context:
                self.gateway.observe(run, item.text, trust=item.trust, source=item.source)
        return found

    def end_session(self, key: str) -> None:
        """Left to `finish_runs`: the run ends with the agent's answer, not its goodbye."""

    def open_run(self) -> None:
        """The trial's run when the agent answered without a tool (a question needs none)."""
        self.session(None)

    def finish_runs(self, answer: AgentAnswer | None, error: str | None) -> None:
        """End every run of the trial: done (handed off, or asking) with the answer, or
        failed."""
        for run in self.runs:
            if not run.active:
                continue
            if error is not None:
                self.gateway.finish(run, status=RunStatus.FAILED, reason="harness_error")
                continue
            output = None if answer is None else answer.output
            if any(c.tool in HANDOFF_TOOLS for c in run.completed):
                reason = "handed_off"
            elif answer is not None and answer.needs_clarification:
                reason = "needs_clarification"
            else:
                reason = "done"
            self.gateway.finish(run, reason=reason, output=output)


@dataclass(frozen=True)
class ProxyPolicy:
    """The suite's policy as the proxy takes it (read once per evaluation)."""

    document: PolicyDocument
    version: str
    source: str

    @classmethod
    def of(cls, harness: Harness) -> ProxyPolicy:
        """Read the suite's policy file."""
        document, source = parse_policy(resolve_file(harness.suite.policy, harness.base))
        return cls(document, content_version(document), source)


def _proxy(
    harness: Harness,
    task: Task,
    policy: ProxyPolicy,
    world: WorldServer,
    world_port: int,
    recorder: Recorder,
    context: Sequence[ContextItem],
) -> _TrialProxy:
    suite = harness.suite
    spec = UpstreamSpec(
        url=f"http://127.0.0.1:{world_port}/mcp",
        headers={"Authorization": f"Bearer {world.key}"},
        tools={  # what the suite's contracts say, not MCP's defaults
            c.name: ToolSpec(scope=c.scope, impact=c.impact, output=c.output_trust)
            for c in harness.toolbelt
        },
    )
    config = ProxyConfig(namespace=False, request=task.request_text(), upstreams={_WORLD: spec})
    target = UpstreamTarget(name=_WORLD, url=spec.url, headers=dict(spec.headers))
    return _TrialProxy(
        context=context,
        document=policy.document,
        version=policy.version,
        source=policy.source,
        workflow=suite.workflow,
        config=config,
        upstreams={_WORLD: Upstream(target, connect_timeout_s=config.connect_timeout_seconds)},
        specs={_WORLD: spec},
        identity=Identity(suite.invoker, suite.agent_id),
        recorder=recorder,
        approver=CallbackApprover(_Answers(suite.approvals, dict(task.approvals))),
        log=io.StringIO(),  # the operator's lines stay out of the eval's output
        quotas=InMemoryQuotaLedger(),  # a trial's own, as for an opsgate agent
    )


async def run_external_task(
    harness: Harness,
    task: Task,
    trial: int,
    agent: ExternalAgent,
    recorders: Sequence[Recorder] = (),
    timeout_s: float = 600.0,
    *,
    router: Any = None,
    policy: ProxyPolicy | None = None,
) -> TaskResult:
    """Run one trial of one task with an external agent and score it; never raises for
    the agent's failures (nor for the harness's own: a counted failure with its reason).

    Args:
        router: For the suite's judge (None: no judge).
        policy: The suite's policy as read for the proxy (default: read now).
    """
    memory = InMemoryRecorder()
    world = harness.make_world(task)
    if task.world:
        patch_world(world, task.world)
    secrets = {
        name: f"eval-secret-{name.lower()}-0000"
        for contract in harness.toolbelt
        for name in contract.secrets
    }
    text, context = task_input(task)
    started = time.perf_counter()
    answer: AgentAnswer | None = None
    error: str | None = None
    proxy: _TrialProxy | None = None
    try:
        async with contextlib.AsyncExitStack() as stack:
            server = WorldServer(harness.toolbelt, world, secrets, harness.suite.workflow)
            stack.callback(server.close)
            world_port = await stack.enter_async_context(serve_loopback(server.app()))
            recorder = _EvalRuns(FanOutRecorder(*recorders, memory))
            proxy = _proxy(
                harness,
                task,
                policy or ProxyPolicy.of(harness),
                server,
                world_port,
                recorder,
                context,
            )
            await proxy.start()
            stack.push_async_callback(proxy.close)
            folder = stack.enter_context(tempfile.TemporaryDirectory(prefix="agent-eval-mcp-"))
            tokens = TokenStore(Path(folder) / "tokens.json")
            token, _ = tokens.create(harness.suite.invoker, harness.suite.agent_id)
            port = await stack.enter_async_context(
                serve_loopback(http_app(proxy, tokens, "127.0.0.1"))
            )
            try:
                async with asyncio.timeout(timeout_s):
                    answer = await ask_agent(
                        agent, task, text, f"http://127.0.0.1:{port}/mcp", token
                    )
            except TimeoutError:
                error = f"timeout after {timeout_s:g}s: the agent was stopped"
            except AgentFailure as exc:
                error = str(exc)
            except Exception as exc:  # ours, while asking: the trial's failure all the same
                error = f"{type(exc).__name__}: {exc}"
            finally:  # before the proxy closes: each run ends with the answer, or failed
                if error is None and not proxy.runs and answer and answer.needs_clarification:
                    proxy.open_run()
                if error is None and not proxy.runs:
                    error = (
                        "the agent never reached the MCP proxy (OPSGATE_MCP_URL): it listed "
                        "and called no tool"
                    )
                proxy.finish_runs(answer, error)
    except Exception as exc:  # the harness could not set the trial up (or take it down)
        error = error or f"{type(exc).__name__}: {exc}"
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
            proxy.runs[0] if proxy is not None and proxy.runs else None,
            memory.events,
            world,
            answer,
            error,
            latency,
            secrets,
            command,
        ),
    )
    await apply_judge(harness, task, result, router)
    return result


# -- a whole evaluation ------------------------------------------------------------------


@contextlib.contextmanager
def _agent_model(name: str | None) -> Any:
    """The model server the agent is pointed at (``--agent-model``), for the evaluation."""
    if name is None:
        yield None
        return
    if name not in AGENT_MODELS:
        raise SuiteError(f"--agent-model takes {', '.join(AGENT_MODELS)}, not `{name}`")
    try:
        server = EmbeddedServer().start()
    except (ConfigError, ModelError) as exc:
        raise ConfigError(f"the embedded model cannot start: {exc}") from None
    try:
        yield ModelEndpoint(server.base_url, server.api_key, server.model)
    finally:
        server.stop()


def evaluate_external(
    suite: Suite,
    agent: ExternalAgent,
    store: Store,
    *,
    router: RouterConfig | None = None,
    agent_model: str | None = None,
    tasks: Sequence[Task] | None = None,
    trials: int = 1,
    concurrency: int = 1,
    timeout_s: float = 600.0,
    max_cost_per_task: float | None = None,
    min_success_rate: float | None = None,
    shard: str | None = None,
    on_done: Callable[[TaskResult], None] | None = None,
) -> Evaluation:
    """`opsgate.evals.evaluate` for an external agent: the same runs, records and report.

    Args:
        router: For the suite's judge only (the agent brings its own model).
        agent_model: ``"embedded"``: start the embedded model and point the agent at it.

    Raises:
        SuiteError: no task, a threshold out of range, a suite that cannot load, an
            ``--agent-model`` opsgate does not know or given with ``--agent-url``.
        ConfigError: the embedded model cannot start.
    """
    check_rate("min_success_rate", min_success_rate)
    if agent_model is not None and agent.url is not None:
        raise SuiteError("--agent-model is for --agent-cmd (an HTTP agent brings its own model)")
    harness = Harness.load(suite)
    policy = ProxyPolicy.of(harness)
    chosen = list(select_tasks(suite) if tasks is None else tasks)
    if not chosen:
        raise SuiteError("no task matches the filters")
    started = time.time()
    with _agent_model(agent_model) as endpoint:
        pointed = replace(agent, model=endpoint) if endpoint is not None else agent
        recorders = store_recorders(store, durable="write_ahead", checkpoint_on_run_end=False)

        async def run_all() -> list[TaskResult]:
            with contextlib.ExitStack() as stack:
                live = None if router is None else stack.enter_context(model_router(router))

                async def one(task: Task, trial: int) -> TaskResult:
                    return await run_external_task(
                        harness,
                        task,
                        trial,
                        pointed,
                        recorders.all,
                        timeout_s,
                        router=live,
                        policy=policy,
                    )

                return await run_suite(
                    harness,
                    chosen,
                    live,
                    trials=trials,
                    concurrency=concurrency,
                    on_done=on_done,
                    run_one=one,
                )

        try:
            results = asyncio.run(run_all())
        finally:
            problems = recorders.close()
    report = build_report(
        suite.suite,
        suite.version,
        results,
        trials=trials,
        model_router=agent.shown,
        started_at=started,
        ended_at=time.time(),
        thresholds={"max_cost_per_task": max_cost_per_task, "min_success_rate": min_success_rate},
        shard=shard,
        suite_tasks=len(suite.tasks),
    )
    return Evaluation(report, problems)
