"""Task suites: versioned YAML, validated, with errors that name the file, line and key.

A suite names its workflow, agent, tools, policy and initial world, and lists tasks taken
from real work, each with explicit pass/fail checks::

    suite: support_triage_v3
    version: 3
    workflow: support_triage
    agent: opsgate.examples.support_triage.agent:build_agent
    tools: opsgate.examples.support_triage.tools
    policy: opsgate.examples.support_triage/policy.yaml
    world: opsgate.examples.support_triage.world:demo_world
    tasks:
      - id: refund-damaged-mug
        tags: [refund]
        ticket: {id: T-10, customer: C-100, subject: Broken mug,
                 body: "My mug from ORD-1001 arrived broken. Refund of 40 please."}
        checks:
          state: ["world.orders['ORD-1001'].refunded == 40.0"]
          required_calls: [{tool: refund, args: {order_id: ORD-1001}}]
          forbidden_calls: [{tool: send_email}]
          escalate: false
"""

from __future__ import annotations

import functools
import importlib
import importlib.resources
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal

import jsonschema
import orjson
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    model_validator,
)

from opsgate._jsondata import dumps
from opsgate.documents import (
    DocumentProblem,
    line_of,
    read_document,
    read_yaml,
    validate_document,
)
from opsgate.errors import SuiteError
from opsgate.policy import Condition, compile_condition

__all__ = [
    "MATCHER_OPERATORS",
    "SUITE_DIRS",
    "AttackGoal",
    "AttackSurface",
    "CallMatcher",
    "Checks",
    "CommandCheck",
    "ContextSpec",
    "JudgeCheck",
    "JudgeSpec",
    "OutputChecks",
    "PlanChecks",
    "RedteamSpec",
    "ReferenceCall",
    "Suite",
    "Task",
    "TicketSpec",
    "compile_check",
    "find_suite",
    "load_suite",
    "matcher_operator_problem",
    "resolve_callable",
]

#: Where `--suite NAME` looks, after a path: these folders, then the shipped examples.
SUITE_DIRS = ("evals", "suites")

Id = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$")]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _json_args(value: dict[str, Any]) -> dict[str, Any]:
    """Arguments a call can have: JSON data (text keys, nesting JSON writes), since they are
    compared with, and shown next to, the JSON arguments of real calls."""
    try:
        orjson.dumps(value)
    except TypeError as exc:
        raise ValueError(f"arguments must be JSON data ({exc})") from None
    return value


JsonArgs = Annotated[dict[str, Any], AfterValidator(_json_args)]


class TicketSpec(_Strict):
    """A ticket added to the world and given to the agent as untrusted context."""

    id: str
    customer: str
    subject: str = ""
    body: str


class ContextSpec(_Strict):
    """A labelled piece of context."""

    source: str
    trust: Literal["trusted", "untrusted"]
    text: str


#: The operators of an argument matcher (``{amount: {gt: 200}}``): a closed set.
MATCHER_OPERATORS = ("gt", "gte", "lt", "lte", "in", "contains", "not")


class CallMatcher(_Strict):
    """Matches a tool call: the tool, and (a subset of) its arguments.

    An argument matcher is a value (equal) or a mapping of operators: ``{gt: 200}``,
    ``{lt: 5}``, ``{in: [a, b]}``, ``{contains: "x"}``, ``{not: value}`` (all of them must
    hold). A mapping is always read as operators.
    """

    tool: str
    args: JsonArgs = Field(default_factory=dict)

    def shown(self) -> str:
        """The matcher as one line of JSON, for errors (whatever the YAML held: keys that are
        not text, nesting past what JSON writes)."""
        return dumps(self.model_dump(exclude_defaults=True)).decode()


def matcher_operator_problem(arg: str, expected: Any) -> str | None:
    """What is wrong with the operators of one argument matcher, or None (a plain value, or
    known operators)."""
    if not isinstance(expected, dict):
        return None
    if not expected:
        return f"`{arg}: {{}}` has no operator and would match any value"
    unknown = [str(op) for op in expected if op not in MATCHER_OPERATORS]
    if unknown:
        return (
            f"unknown operator{'s' if len(unknown) > 1 else ''} "
            f"{', '.join(f'`{op}`' for op in unknown)} for `{arg}` (operators: "
            f"{', '.join(MATCHER_OPERATORS)}; a mapping is read as operators, so such a "
            "matcher never matches)"
        )
    return None


class OutputChecks(_Strict):
    """Checks on the agent's final text.

    ``json_schema``: the output must be JSON valid under this schema (counted in the report's
    schema validity). ``citations``: the output must cite its sources as ``[source]`` (for
    example ``[ticket:T-10]`` or ``[kb:refunds]``), and every citation must name one of the
    task's context items. ``provenance``: the output must not repeat a URL, an e-mail
    address, a phone number, an IBAN or an instruction (a sentence of eight words or more)
    that the run found only in untrusted content (an injected link reaching the user).
    """

    contains: list[str] = Field(default_factory=list)
    not_contains: list[str] = Field(default_factory=list)
    no_pii: bool = False
    no_secrets: bool = True
    json_schema: dict[str, Any] | None = None
    citations: bool = False
    provenance: bool = False


class PlanChecks(_Strict):
    """What a good plan looks like (planner + executor agents). Scored apart from the
    outcome: a plan check that fails lowers the task's plan score, not its verdict."""

    required_steps: list[str] = Field(default_factory=list, description="Tools the plan names.")
    forbidden_steps: list[str] = Field(default_factory=list)
    ordered: bool = Field(False, description="required_steps appear in this order.")
    max_steps: int | None = Field(None, ge=1)


class CommandCheck(_Strict):
    """An objective check for engineering work: a command run in a throwaway copy of
    ``workdir`` (with the world's ``files`` written over it), its exit code the verdict."""

    run: list[str] = Field(min_length=1, description="argv, no shell; `python` is this Python.")
    workdir: str | None = Field(None, description="Folder copied first (relative to the suite).")
    files: Literal["world.files"] = "world.files"
    timeout_s: float = Field(60.0, gt=0, le=3600)


class JudgeCheck(_Strict):
    """Per-task judge settings: extra rubric lines, or ``skip`` to judge nothing here."""

    rubric: str = ""
    skip: bool = False


class EscalationCheck(_Strict):
    """The run must end escalated or handed off (optionally for this reason)."""

    reason: str | None = None


class Checks(_Strict):
    """Explicit pass/fail criteria: all must hold for the task to pass."""

    state: list[str] = Field(default_factory=list, description="CEL over `world` and `run`.")
    required_calls: list[CallMatcher] = Field(default_factory=list)
    forbidden_calls: list[CallMatcher] = Field(default_factory=list)
    escalate: bool | EscalationCheck = False
    clarify: bool = Field(False, description="The agent must ask a clarifying question.")
    output: OutputChecks | None = None
    command: CommandCheck | None = None
    plan: PlanChecks | None = None
    judge: JudgeCheck | None = None


class ReferenceCall(_Strict):
    """A call a correct agent makes for the task, in order (the red team replays them).

    An argument may take its value from the result of an earlier reference call:
    ``{$result: verify_identity.verification_id}`` (a dotted path; list indexes as numbers).
    """

    tool: str
    args: JsonArgs = Field(default_factory=dict)


class AttackGoal(_Strict):
    """What an attacker wants the agent to do with the workflow's own tools.

    ``write``: a write to an attacker's target; ``exfiltration``: a read (or send) that
    carries data out; ``loop``: the same costly call again and again (``repeat`` times).
    The attack succeeds when any of its calls runs (for ``loop``: every repeat runs).
    """

    id: Id
    kind: Literal["write", "exfiltration", "loop"]
    calls: list[ReferenceCall] = Field(min_length=1)
    repeat: int = Field(1, ge=1, le=100)
    summary: str = Field("", description="The goal in a few words, for the injected text.")


class AttackSurface(_Strict):
    """What an outsider can write in this workflow: the ground truth the red team injects
    into, kept apart from the policy's trust labels (which it tests)."""

    context: list[str] = Field(
        default_factory=list, description="Source names (globs) of untrusted context items."
    )
    tools: dict[str, list[str]] = Field(
        default_factory=dict,
        description="Per tool, selectors of the result fields an outsider writes.",
    )


class RedteamSpec(_Strict):
    """How `agent-eval redteam` attacks this suite."""

    surface: AttackSurface
    goals: list[AttackGoal] = Field(min_length=1)


class Task(_Strict):
    """One task from real work."""

    id: Id
    tags: list[str] = Field(default_factory=list)
    request: str | None = None
    ticket: TicketSpec | None = None
    context: list[ContextSpec] = Field(default_factory=list)
    approvals: dict[str, Literal["approve", "deny"]] = Field(
        default_factory=dict, description="The approver's answer per tool (`*`: default)."
    )
    world: dict[str, Any] = Field(
        default_factory=dict,
        description="This task's initial state: patched over the suite's world (nested keys "
        "name attributes or entries; a mapping value patches, anything else replaces).",
    )
    checks: Checks
    reference: list[ReferenceCall] = Field(
        default_factory=list, description="The calls a correct agent makes (red team replay)."
    )

    @model_validator(mode="after")
    def _has_input_and_checks(self) -> Task:
        if self.request is None and self.ticket is None:
            raise ValueError(f"task `{self.id}` needs a request or a ticket")
        c = self.checks
        if not (
            c.state
            or c.required_calls
            or c.forbidden_calls
            or c.escalate
            or c.clarify
            or c.output
            or c.command
        ):
            raise ValueError(f"task `{self.id}` has no checks: say what passing means")
        return self

    def request_text(self) -> str:
        """The invoker's request."""
        if self.request is not None:
            return self.request
        assert self.ticket is not None
        return f"Handle ticket {self.ticket.id}"


class JudgeSpec(_Strict):
    """The suite's LLM judge (the router's ``judge`` role) for what checks cannot see: tone,
    and whether the policy was applied sensibly. It reads only tasks that passed the cheap
    automated checks; its own cost is counted apart. With ``gate: false`` (the default) its
    verdict is reported beside the automated one; with ``gate: true`` a score under
    ``min_score`` fails the task."""

    rubric: str = Field(min_length=1)
    min_score: float = Field(0.6, ge=0, le=1)
    gate: bool = False
    max_tokens: int = Field(200, ge=16, le=4096)


class Suite(_Strict):
    """A whole suite."""

    suite: Id
    version: int = Field(ge=1)
    description: str = ""
    workflow: str
    agent: str = Field(description="module:callable(gateway, router) -> agent")
    tools: str = Field(description="module of @tool functions")
    policy: str = Field(description="policy file: path, or package/relative/path")
    world: str = Field(description="module:callable() -> the initial world")
    approvals: Literal["approve", "deny"] = "approve"
    invoker: str = "agent-eval"
    agent_id: str = "agent-under-test"
    judge: JudgeSpec | None = None
    redteam: RedteamSpec | None = None
    tasks: list[Task] = Field(min_length=1)
    source: str = Field("", exclude=True)

    @model_validator(mode="after")
    def _unique_ids(self) -> Suite:
        seen: set[str] = set()
        for task in self.tasks:
            if task.id in seen:
                raise ValueError(f"duplicate task id `{task.id}`")
            seen.add(task.id)
        return self


@functools.lru_cache(maxsize=4096)
def compile_check(source: str) -> Condition:
    """A state check compiled once: `load_suite` checks it, the harness then reuses it.

    Raises:
        SuiteError: invalid CEL, or a name other than `world` and `run`.
    """
    return compile_condition(source, SuiteError, variables=("world", "run"), functions=())


def resolve_callable(spec: str, where: str) -> Callable[..., Any]:
    """``module:attribute`` → the object (a clear `SuiteError` otherwise)."""
    module_name, _, attribute = spec.partition(":")
    if not attribute:
        raise SuiteError(f"{where}: `{spec}` must be `module:callable`")
    try:
        module = importlib.import_module(module_name)
    except (ImportError, ValueError, TypeError) as exc:  # "" or ".x": no module name
        raise SuiteError(f"{where}: cannot import `{module_name}`: {exc}") from None
    found = getattr(module, attribute, None)
    if not callable(found):
        raise SuiteError(f"{where}: `{module_name}` has no callable `{attribute}`")
    return found  # type: ignore[no-any-return]


def _exists(path: Path) -> bool:
    """Whether ``path`` exists; False for a name no file can have (too long, a NUL), where
    `Path.exists` raises."""
    try:
        return path.exists()
    except (OSError, ValueError):
        return False


def resolve_file(spec: str, base: Path) -> Path:
    """A path relative to the suite file, or ``package/relative/path`` inside a package."""
    candidate = (base / spec) if not Path(spec).is_absolute() else Path(spec)
    if _exists(candidate):
        return candidate
    package, _, rest = spec.partition("/")
    if rest:
        try:
            located = importlib.resources.files(package).joinpath(rest)
        except (ImportError, ValueError, TypeError):  # no such package, or no package name
            located = None
        if located is not None and _exists(Path(str(located))) and located.is_file():
            return Path(str(located))
    raise SuiteError(f"file `{spec}` not found (relative to {base} or as package/path)")


def find_suite(name_or_path: str) -> Path:
    """A suite file by path, or by name in ``evals/``, ``suites/`` or the shipped examples."""
    path = Path(name_or_path)
    if _exists(path) and path.is_file():
        return path
    for folder in SUITE_DIRS:
        for ext in (".yaml", ".yml"):
            candidate = Path(folder) / f"{name_or_path}{ext}"
            if _exists(candidate) and candidate.is_file():
                return candidate
    shipped = importlib.resources.files("opsgate.examples")
    for child in shipped.iterdir():
        for ext in (".yaml", ".yml"):
            candidate_resource = child.joinpath(f"{name_or_path}{ext}")
            if _exists(Path(str(candidate_resource))) and candidate_resource.is_file():
                return Path(str(candidate_resource))
    raise SuiteError(
        f"no suite `{name_or_path}`: give a file path, or put `{name_or_path}.yaml` in "
        f"{' or '.join(SUITE_DIRS)}/"
    )


def _jsonl_tasks(data: dict[str, Any], path: Path, name: str) -> list[Any]:
    """Tasks kept one JSON object a line beside the suite (``tasks_file: tasks.jsonl``),
    for suites exported from tickets or drafted by tools; each task validated like one in
    the YAML, its errors named by file and line."""
    spec = data["tasks_file"]
    if not isinstance(spec, str):
        raise SuiteError(f"{name}: `tasks_file` is a path to a JSONL file")
    file = resolve_file(spec, path.parent)
    tasks: list[Any] = []
    try:
        lines = file.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise SuiteError(f"{file}: cannot read the tasks: {exc}") from None
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            task = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            raise SuiteError(f"{file}: line {number}: not JSON ({exc})") from None
        if not isinstance(task, dict):
            raise SuiteError(f"{file}: line {number}: a task is a JSON object")
        try:
            validate_document(Task, task, text="", source=str(file), kind="task", shape="")
        except DocumentProblem as exc:
            at_line = DocumentProblem(
                exc.problem, source=exc.source, location=exc.location, line=number
            )
            raise SuiteError(str(at_line)) from None
        tasks.append(task)
    return tasks


def load_suite(name_or_path: str | Path, *, text: str | None = None) -> Suite:
    """Read and validate a suite; CEL state checks are compiled here, not mid-run.

    Raises:
        SuiteError: YAML error (file and line), unknown key, missing checks, duplicate id,
            invalid CEL, an unknown operator in a call matcher (its tool and arguments are
            checked against the contracts by `Harness.load`).
    """
    path = Path(name_or_path) if text is not None else find_suite(str(name_or_path))
    shape = "a suite is a mapping with `suite`, `tasks` and the rest"
    try:
        name, text = read_document(path, text)
        data = read_yaml(text, name)
        if isinstance(data, dict) and "tasks_file" in data:
            tasks = [*(data.get("tasks") or []), *_jsonl_tasks(data, path, name)]
            data = {k: v for k, v in data.items() if k != "tasks_file"} | {"tasks": tasks}
        suite = validate_document(
            Suite, data, text=text, source=name, kind="suite", shape=shape, extra={"source": name}
        )
    except DocumentProblem as exc:
        raise SuiteError(str(exc)) from None
    for i, task in enumerate(suite.tasks):
        output = task.checks.output
        if output is not None and output.json_schema is not None:
            try:
                jsonschema.validators.validator_for(output.json_schema).check_schema(
                    output.json_schema
                )
            except jsonschema.SchemaError as exc:
                line = line_of(text, ("tasks", i, "checks", "output", "json_schema"))
                raise SuiteError(
                    f"{name} at `tasks.{i}.checks.output.json_schema` (task `{task.id}`): "
                    + (f"line {line}: " if line else "")
                    + f"not a valid JSON schema: {exc.message}"
                ) from None
        for j, condition in enumerate(task.checks.state):
            try:
                compile_check(condition)
            except SuiteError as exc:
                line = line_of(text, ("tasks", i, "checks", "state", j))
                raise SuiteError(
                    f"{name} at `tasks.{i}.checks.state.{j}` (task `{task.id}`): "
                    + (f"line {line}: " if line else "")
                    + str(exc)
                ) from None
        for kind in ("required_calls", "forbidden_calls"):
            for j, matcher in enumerate(getattr(task.checks, kind)):
                for arg, expected in matcher.args.items():
                    problem = matcher_operator_problem(arg, expected)
                    if problem is None:
                        continue
                    loc = ("tasks", i, "checks", kind, j, "args", arg)
                    line = line_of(text, loc)
                    raise SuiteError(
                        f"{name} at `{'.'.join(map(str, loc))}` (task `{task.id}`): "
                        + (f"line {line}: " if line else "")
                        + f"matcher {matcher.shown()}: {problem}"
                    )
    return suite
