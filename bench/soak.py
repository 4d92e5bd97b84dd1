"""Soak test (issue #11, "Faults and load"): many gateway workers under chaos.

    .venv/bin/python bench/soak.py --seconds 120            # `make soak`
    .venv/bin/python bench/soak.py --seconds 8 --workers 3  # what `make test` runs

For each backend (one SQLite file, one PostgreSQL database), gateway worker *processes* run
scripted agents through the real opsgate stack for a fixed time: `Gateway` + the policy of the
`support_triage` example + `AuditRecorder` (write-ahead) on the shared store +
`DurableApprovalQueue` (an approver process grants or denies through the database) + model
calls through `ModelRouter` / `OpenAICompatibleClient` to a local HTTP model server (a process
speaking OpenAI chat-completions, scripted from the conversation). First a fault-free phase,
then a chaos phase of the same length in which a chaos loop SIGKILLs workers (and the approver)
and restarts them, fills the disk holding the database (a loop-mounted ext4 file system or a
size-limited tmpfs when this process may mount; else the kind is reported as skipped),
restarts PostgreSQL (``pg_ctl restart -m fast`` / ``-m immediate``) and makes the model server
answer 429 / 500 / slowly / garbage (an unreadable body, or a tool call with cut JSON). The
disk is really filled (ENOSPC for SQLite's WAL and PostgreSQL's tablespace); the soak must
run as root to mount, and without that the disk-full kind is skipped (the table says so).
``--faults`` picks the kinds (``worker_sigkill,approver_sigkill,model,disk_full,db_restart``).

The write tools have side effects counted apart from the audit trail: each appends a line
(run, call id, arguments, and whether the call's decision was already committed in the trail
when the tool ran) to a per-process effects file, with fsync. Every event opsgate acknowledged
as committed (a `settle()` or a barrier event that returned) is journalled by the worker.
Afterwards, per backend:

- ``opsgate audit verify --public-key`` (the real CLI, a subprocess) must exit 0;
- events lost = acknowledged events missing from the trail (must be 0);
- every effect has its decision (allow, or an approval granted) in the trail, committed before
  the tool ran (write-ahead, checked by the tool itself), and its result event, or, when the
  process died (SIGKILL) or the audit store failed between the tool and its result, its run is
  ended with that call named (these are counted, not hidden);
- no call (and so no approval) executed twice; no run ended twice or resumed after it ended;
- every run is finished or resumable (pending approval), after a recovery pass that resumes
  decided approvals and ends the runs of killed workers as ``worker_lost`` (opsgate has no
  recovery of its own for a run whose process died: this pass is the soak's, through
  `Gateway.escalate`, naming the calls decided without a recorded outcome).

A failed commit stops the runs whose events it held (their trails have a hole: the recorder
refuses their next events); a worker ends those runs (``audit_unavailable``), naming the calls
they completed, and builds a fresh recorder and gateway for the runs that follow (the soak
found that a write-ahead `AuditRecorder` used to refuse everything after one failed commit).

Exit 1 when an invariant fails. ``--json PATH`` writes the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Annotated, Any, Literal

import orjson
from pydantic import Field

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # `tests._postgres`: the throwaway cluster of the tests

from opsgate.contracts import Toolbelt, ToolContext, tool  # noqa: E402
from opsgate.examples.support_triage import tools as triage  # noqa: E402

POLICY_FILE = ROOT / "src" / "opsgate" / "examples" / "support_triage" / "policy.yaml"
WORKFLOW = "support_triage"
APPROVER = "soak-approver"
PAYMENTS_KEY = "pk-soak-0123456789"
SYSTEM = "You are a support agent for a small online shop. Resolve the ticket with the tools."
OFFERED = ("get_order_status", "refund", "change_address", "add_internal_note", "escalate_to_human")
WRITE_TOOLS = frozenset({"refund", "change_address", "add_internal_note"})

# -- the tools: the support_triage contracts, with side effects counted apart -----------------

OrderId = Annotated[str, Field(pattern=r"^ORD-\d{4}$")]
TicketId = Annotated[str, Field(pattern=r"^T-\d+$")]


@dataclass
class Deps:
    """What the soak's tools get as ``ctx.deps``: the effects file and a way to look at the
    trail (to check that the decision was committed before the tool ran)."""

    effects_fd: int
    decision_durable: Callable[[str, str], bool | None]
    lock: threading.Lock = field(default_factory=threading.Lock)


def _effect(ctx: ToolContext[Deps], tool_name: str, args: dict[str, Any]) -> None:
    """The side effect: one fsynced line, written only after checking the write-ahead."""
    wa = ctx.deps.decision_durable(ctx.run_id, ctx.call_id)
    line = orjson.dumps(
        {
            "run": ctx.run_id,
            "call": ctx.call_id,
            "tool": tool_name,
            "args": args,
            "wa": wa,
            "pid": os.getpid(),
            "t": time.time(),
        }
    )
    with ctx.deps.lock:
        os.write(ctx.deps.effects_fd, line + b"\n")
        os.fsync(ctx.deps.effects_fd)


@tool(scope="read", output="trusted")
def get_order_status(ctx: ToolContext[Deps], order_id: OrderId) -> dict[str, Any]:
    """Look up an order: status, total, address, amount refunded."""
    total = 150.0 + int(order_id[-4:]) % 100
    return {
        "order_id": order_id,
        "status": "delivered",
        "total": total,
        "address": "12 Calle Mayor, Madrid",
        "refunded": 0.0,
    }


@tool(scope="write", impact="low")
def add_internal_note(
    ctx: ToolContext[Deps],
    ticket_id: TicketId,
    text: Annotated[str, Field(min_length=1, max_length=2000)],
) -> dict[str, Any]:
    """Add an internal note to a ticket (only staff see it)."""
    _effect(ctx, "add_internal_note", {"ticket_id": ticket_id, "text": text})
    return {"ticket_id": ticket_id, "noted": True}


@tool(scope="write", impact="high", secrets=["PAYMENTS_API_KEY"])
def refund(
    ctx: ToolContext[Deps],
    order_id: OrderId,
    amount: Annotated[float, Field(gt=0, description="Amount in USD.")],
    reason: Literal["damaged", "not_delivered", "wrong_item", "goodwill"],
) -> dict[str, Any]:
    """Refund part or all of an order to the original payment method."""
    if ctx.secrets.get("PAYMENTS_API_KEY") != PAYMENTS_KEY:
        raise PermissionError("the payments key was not injected")
    _effect(ctx, "refund", {"order_id": order_id, "amount": amount, "reason": reason})
    return {"order_id": order_id, "refunded": amount}


@tool(scope="write", impact="high")
def change_address(
    ctx: ToolContext[Deps],
    order_id: OrderId,
    new_address: Annotated[str, Field(min_length=5, max_length=200)],
) -> dict[str, Any]:
    """Change the shipping address of an order that has not been delivered."""
    _effect(ctx, "change_address", {"order_id": order_id, "new_address": new_address})
    return {"order_id": order_id, "after": new_address}


@tool(scope="draft")
def escalate_to_human(
    ctx: ToolContext[Deps],
    ticket_id: TicketId,
    reason: Annotated[str, Field(min_length=3, max_length=500)],
) -> dict[str, Any]:
    """Hand the ticket to a human agent, saying why."""
    return {"ticket_id": ticket_id, "escalated": True}


def soak_belt() -> Toolbelt:
    """The example's belt, with the tools the scripted agents use swapped for counted ones."""
    return Toolbelt(
        [
            triage.get_ticket,
            triage.search_kb,
            triage.draft_reply,
            triage.send_reply,
            triage.send_email,
            get_order_status,
            add_internal_note,
            refund,
            change_address,
            escalate_to_human,
        ]
    )


# -- the scripted model behind an OpenAI-compatible HTTP server --------------------------------

SCENARIOS = (
    ("small", 40.0, 4),  # refund under the approval limit: allowed
    ("large", 80.0, 3),  # refund over 50: a person approves (or denies)
    ("address", 0.0, 1),  # change_address: high impact, a person approves
    ("over", 300.0, 1),  # over the ceiling: denied, handed to a human
    ("note", 0.0, 1),  # an internal note only
)
_TAG = re.compile(r"\[soak:(\w+):([\d.]+)\]")
NEW_ADDRESS = "7 New Street, Springfield"


def scenario_request(rng: random.Random, serial: str) -> str:
    """An invoker's request (trusted) naming the order, the amount and the scenario."""
    kinds = [s for s in SCENARIOS for _ in range(s[2])]
    kind, amount, _ = rng.choice(kinds)
    order = f"ORD-{rng.randrange(1000, 10000)}"
    ticket = f"T-{rng.randrange(1, 10**6)}"
    what = {
        "small": f"the item arrived damaged; refund {amount:.2f} USD",
        "large": f"the item arrived damaged; refund {amount:.2f} USD",
        "over": f"the item arrived damaged; refund {amount:.2f} USD",
        "address": f"change the shipping address to {NEW_ADDRESS}",
        "note": "note that the customer called",
    }[kind]
    return f"Ticket {ticket}, order {order}: {what}. [soak:{kind}:{amount:.2f}] ({serial})"


def _status_of(content: str) -> str:
    try:
        data = orjson.loads(content)
    except orjson.JSONDecodeError:
        return "ok"
    if isinstance(data, dict) and "error" in data and "status" in data:
        return str(data["status"])
    return "ok"


def scripted_turn(messages: list[dict[str, Any]]) -> tuple[str | None, tuple[str, str] | None]:
    """The next turn of the scripted agent: (text, (tool, JSON arguments)), from the
    conversation alone (so a run resumed in another process goes on where it was)."""
    request = next((str(m.get("content") or "") for m in messages if m["role"] == "user"), "")
    tag = _TAG.search(request)
    order = re.search(r"ORD-\d{4}", request)
    ticket = re.search(r"T-\d+", request)
    if tag is None or order is None or ticket is None:
        return "I cannot tell what this ticket is about.", None
    kind, amount = tag.group(1), float(tag.group(2))
    names: dict[str, str] = {}
    settled: dict[str, str] = {}
    for m in messages:
        if m["role"] == "assistant":
            for call in m.get("tool_calls") or []:
                names[call["id"]] = call["function"]["name"]
        elif m["role"] == "tool":
            name = names.get(m.get("tool_call_id", ""), "")
            status = _status_of(str(m.get("content") or ""))
            if status != "refused":  # a refused call is proposed again
                settled[name] = status
    o, t = order.group(0), ticket.group(0)
    steps: list[tuple[str, dict[str, Any]]] = [("get_order_status", {"order_id": o})]
    if kind in ("small", "large", "over"):
        steps.append(("refund", {"order_id": o, "amount": amount, "reason": "damaged"}))
    elif kind == "address":
        steps.append(("change_address", {"order_id": o, "new_address": NEW_ADDRESS}))
    if kind == "over":
        steps.append(("escalate_to_human", {"ticket_id": t, "reason": "refund above the limit"}))
    else:
        write = steps[-1][0]
        outcome = settled.get(write, "pending") if write != "get_order_status" else "none"
        steps.append(("add_internal_note", {"ticket_id": t, "text": f"{kind}: {outcome}"}))
    for name, args in steps:
        if name not in settled:
            return None, (name, orjson.dumps(args).decode())
    return "Done.", None


def completion_body(messages: list[dict[str, Any]], garbage_call: bool) -> bytes:
    """A chat completion answering ``messages`` (tool calls with deterministic ids)."""
    text, call = scripted_turn(messages)
    turn = sum(1 for m in messages if m["role"] == "assistant")
    message: dict[str, Any] = {"role": "assistant", "content": text}
    if call is not None:
        name, arguments = call
        if garbage_call:
            arguments = arguments[: len(arguments) // 2]  # cut JSON: the gateway refuses it
        # unique in the run, as a provider's: the same conversation gets the same id
        digest = hashlib.sha1(orjson.dumps(messages, option=orjson.OPT_SORT_KEYS)).hexdigest()
        message["tool_calls"] = [
            {
                "id": f"call-{digest[:16]}-{turn}",
                "type": "function",
                "function": {"name": name, "arguments": arguments},
            }
        ]
    return orjson.dumps(
        {
            "id": f"chatcmpl-{turn}",
            "object": "chat.completion",
            "model": "soak-model",
            "choices": [
                {
                    "index": 0,
                    "message": message,
                    "finish_reason": "tool_calls" if call is not None else "stop",
                }
            ],
            "usage": {"prompt_tokens": 60 + 20 * len(messages), "completion_tokens": 24},
        }
    )


MODEL_FAULTS = ("429", "500", "slow", "garbage", "garbage_call")
FAULT_KINDS = {"worker_sigkill", "approver_sigkill", "model", "disk_full", "db_restart"}


class ChaosModelServer(ThreadingHTTPServer):
    """The model server; ``POST /chaos {"mode": ..., "seconds": ...}`` turns a fault on for
    a while (each request then faulty with probability ``rate``)."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int]) -> None:
        super().__init__(address, _ModelHandler)
        self.mode = "ok"
        self.until = 0.0
        self.rate = 0.6
        self.served: Counter[str] = Counter()
        self.lock = threading.Lock()
        self.rng = random.Random(7)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that gave up on a slow answer (its timeout) is no server error."""
        if not isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            super().handle_error(request, client_address)

    def fault(self) -> str:
        with self.lock:
            if self.mode == "ok" or time.monotonic() >= self.until:
                kind = "ok"
            else:
                kind = self.mode if self.rng.random() < self.rate else "ok"
            self.served[kind] += 1
            return kind


class _ModelHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: ChaosModelServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        if self.path == "/stats":
            with self.server.lock:
                self._send(200, orjson.dumps(dict(self.server.served)))
        else:
            self._send(200, b'{"ok": true}')

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path == "/chaos":
            order = orjson.loads(body)
            with self.server.lock:
                self.server.mode = str(order["mode"])
                self.server.until = time.monotonic() + float(order.get("seconds", 0))
            self._send(200, b"{}")
            return
        kind = self.server.fault()
        if kind == "429":
            self._send(429, b'{"error": {"message": "rate limited"}}', {"Retry-After": "0.1"})
            return
        if kind == "500":
            self._send(500, b'{"error": {"message": "internal error"}}')
            return
        if kind == "garbage":
            self._send(200, b"<html>\x00\xff upstream gateway ate the answer")
            return
        if kind == "slow":
            time.sleep(self.server.rng.uniform(0.3, 2.5))  # beyond 2 s: a client timeout
        try:
            messages = orjson.loads(body)["messages"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            self._send(400, b'{"error": {"message": "bad request"}}')
            return
        self._send(200, completion_body(messages, garbage_call=kind == "garbage_call"))


def serve_model(port_file: Path) -> None:
    """The model server process: serves until killed."""
    exit_with_parent()
    server = ChaosModelServer(("127.0.0.1", 0))
    port_file.write_text(str(server.server_address[1]))
    server.serve_forever(poll_interval=0.2)


# -- shared bits of the worker, approver and supervisor processes -----------------------------


@dataclass
class Spec:
    """What every child process needs (written as JSON by the supervisor)."""

    url: str
    key: str
    model_url: str
    workdir: str
    concurrency: int
    seed: int

    @classmethod
    def load(cls, path: str) -> Spec:
        return cls(**orjson.loads(Path(path).read_bytes()))


class Journal:
    """An append-only JSON-lines file written with single ``write`` calls (a SIGKILL loses
    no line that was written; the OS keeps it)."""

    def __init__(self, path: Path) -> None:
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self.lock = threading.Lock()

    def write(self, **record: Any) -> None:
        record["t"] = time.time()
        with self.lock:
            os.write(self.fd, orjson.dumps(record) + b"\n")


def read_lines(path: Path) -> Iterator[dict[str, Any]]:
    """The JSON lines of a journal (a torn last line is skipped)."""
    with contextlib.suppress(FileNotFoundError):
        for raw in path.read_bytes().splitlines():
            try:
                yield orjson.loads(raw)
            except orjson.JSONDecodeError:
                continue


def exit_with_parent() -> None:
    """Children end when the supervisor does (killed, or interrupted): a thread watches."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(3)

    threading.Thread(target=watch, daemon=True, name="soak-parent").start()


def _is_db_error(exc: BaseException) -> bool:
    from sqlalchemy.exc import DBAPIError

    from opsgate.errors import StoreError

    return isinstance(exc, (StoreError, DBAPIError, OSError))


def open_store_retrying(url: str, deadline_s: float = 60.0) -> Any:
    """`open_store` that waits for a database that is restarting or out of disk."""
    from opsgate.store import open_store

    until = time.monotonic() + deadline_s
    while True:
        try:
            return open_store(url, migrate=False)
        except Exception as exc:
            if not _is_db_error(exc) or time.monotonic() > until:
                raise
            time.sleep(0.2)


# -- the worker process ------------------------------------------------------------------------


class AckJournal:
    """Wraps the audit recorder; journals every event once opsgate said it is committed,
    to count later what the trail lost: a barrier `record` that returned covers the events
    recorded before it, a `settle` that returned the events recorded before it was called
    (not those recorded by other runs while it waited)."""

    def __init__(self, inner: Any, journal: Journal) -> None:
        from opsgate.recorder import EventType

        self.inner = inner
        self.journal = journal
        self._pending: list[tuple[int, tuple[str, str, float]]] = []
        self._next = 0
        self._lock = threading.Lock()
        self._barriers = {EventType.RUN_ENDED, EventType.ESCALATED, EventType.WRITE_PERFORMED}

    def record(self, event: Any) -> None:
        self.inner.record(event)
        with self._lock:
            self._pending.append((self._next, (event.run_id, str(event.type.value), event.at)))
            self._next += 1
            upto = self._next
        if event.type in self._barriers:
            self._ack(upto, event.run_id)

    async def settle(self, run_id: str | None = None) -> None:
        with self._lock:
            upto = self._next
        await self.inner.settle(run_id)
        self._ack(upto, run_id)

    def _ack(self, upto: int, run_id: str | None) -> None:
        """A barrier or a settle that returned vouches for the events of its own run
        recorded before it (a failed commit stops only the runs it held)."""

        def covered(i: int, ev: tuple[str, str, float]) -> bool:
            return i < upto and (run_id is None or ev[0] == run_id)

        with self._lock:
            acked = [ev for i, ev in self._pending if covered(i, ev)]
            self._pending = [(i, ev) for i, ev in self._pending if not covered(i, ev)]
        if acked:
            self.journal.write(k="ack", ev=acked)


@dataclass
class Generation:
    """One audit recorder and the gateway over it; after a store failure the worker builds a
    new generation (a clean start for the runs that follow)."""

    gateway: Any
    queue: Any
    recorder: Any
    broken: bool = False


class Worker:
    """A gateway worker: ``concurrency`` scripted agents, plus a sweeper that resumes the
    approved calls of killed workers (racing the other workers' sweepers for them)."""

    def __init__(self, spec: Spec, name: str, drain: bool) -> None:
        self.spec = spec
        self.name = name  # phase:worker:incarnation, the invoker of its runs
        self.drain = drain
        work = Path(spec.workdir)
        tag = name.replace(":", "-")
        self.journal = Journal(work / f"journal-{tag}.jsonl")
        self.effects_fd = os.open(
            work / f"effects-{tag}.jsonl", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644
        )
        self.dead_file = work / "dead.txt"
        self.rng = random.Random(f"{spec.seed}:{name}")
        self.stopping = asyncio.Event()
        self.serial = 0
        self.to_mark: list[tuple[Any, str, Generation]] = []
        self.resuming: set[str] = set()
        self.tasks: set[asyncio.Task[None]] = set()
        self.gen: Generation | None = None
        self.built_at = 0.0
        self.backoff = 0.1

    # -- set-up --

    def setup(self) -> None:
        from opsgate.audit import Signer
        from opsgate.models import ModelRouter, OpenAICompatibleClient, load_router_config
        from opsgate.policy import load_policy

        self.store = open_store_retrying(self.spec.url)
        self.signer = Signer.from_file(Path(self.spec.key), create=False)
        self.belt = soak_belt()
        self.policy = load_policy(POLICY_FILE, self.belt)
        client = OpenAICompatibleClient(
            self.spec.model_url,
            "soak-model",
            provider="openai_compatible",
            timeout_s=2.0,
            max_retries=3,
            backoff_base_s=0.05,
            backoff_max_s=1.0,
        )
        roles = "\n".join(
            f"  {r}: {{model: soak}}"
            for r in ("route", "extract", "plan", "act", "summarize", "judge")
        )
        config = load_router_config(
            "soak-router",
            text=(
                "version: 1\nmodels:\n  soak:\n    provider: openai_compatible\n"
                f"    base_url: {self.spec.model_url}\n    model: soak-model\n"
                "    price: {input_per_1m: 0.15, output_per_1m: 0.6}\n"
                f"roles:\n{roles}\n"
            ),
        )
        self.router = ModelRouter(config, clients={"soak": client})
        self.deps = Deps(self.effects_fd, self._decision_durable)

    def _decision_durable(self, run_id: str, call_id: str) -> bool | None:
        """Whether the trail already holds the decision allowing this call (an allow, or a
        granted approval): None when the database could not be asked."""
        from sqlalchemy import select

        from opsgate.store import audit_events

        try:
            with self.store.engine.connect() as conn:
                rows = conn.execute(
                    select(audit_events.c.type, audit_events.c.body).where(
                        audit_events.c.run_id == run_id,
                        audit_events.c.type.in_(("decision", "approval_granted")),
                    )
                ).all()
        except Exception:
            return None
        for kind, body in rows:
            data = orjson.loads(bytes(body))["data"]
            if data.get("call_id") != call_id:
                continue
            if kind == "approval_granted" or data.get("effect") == "allow":
                return True
        return False

    def _new_generation(self) -> Generation:
        from opsgate.audit import AuditLog, AuditRecorder
        from opsgate.gateway import DurableApprovalQueue, Gateway, MappingSecretStore

        recorder = AckJournal(
            AuditRecorder(AuditLog(self.store, self.signer), durable="write_ahead"),
            self.journal,
        )
        queue = DurableApprovalQueue(self.store, recorder=recorder, ttl_s=120.0, poll_s=0.05)
        gateway = Gateway(
            self.belt,
            self.policy,
            approver=queue,
            recorder=recorder,
            secrets=MappingSecretStore({"PAYMENTS_API_KEY": PAYMENTS_KEY}),
            approval_timeout_s=60.0,
        )
        return Generation(gateway, queue, recorder)

    async def generation(self) -> Generation:
        """A working generation: after a store failure a new one, built with a growing
        pause while new ones keep failing at once (the disk is still full)."""
        while self.gen is None or self.gen.broken:
            if self.gen is not None:
                quick = time.monotonic() - self.built_at < 1.0
                self.backoff = min(0.5, self.backoff * 2) if quick else 0.05
                await asyncio.sleep(self.backoff)
                if self.gen is not None and not self.gen.broken:
                    break  # another task rebuilt it meanwhile
            try:
                self.gen = await asyncio.to_thread(self._new_generation)
                self.built_at = time.monotonic()
                self.journal.write(k="generation")
            except Exception as exc:
                if not _is_db_error(exc):
                    raise
                await asyncio.sleep(0.2)
        return self.gen

    # -- the main loop --

    async def main(self) -> None:
        await asyncio.to_thread(self.setup)
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, self.stopping.set)
        work = Path(self.spec.workdir)
        (work / f"ready-{self.name.replace(':', '-')}").touch()
        go = work / f"go-{self.name.split(':')[0]}"
        while not self.drain and not go.exists() and not self.stopping.is_set():  # noqa: ASYNC110
            await asyncio.sleep(0.02)  # the go file comes from another process
        jobs = [asyncio.create_task(self.sweeper())]
        if not self.drain:
            jobs += [asyncio.create_task(self.agent_loop()) for _ in range(self.spec.concurrency)]
        await self.stopping.wait()
        grace = 2.0 if not self.drain else 0.0
        done, pending = await asyncio.wait(jobs + list(self.tasks), timeout=grace)
        for job in pending:
            job.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        for job in done:
            if not job.cancelled() and job.exception() is not None:
                self.unexpected(job.exception(), None)
        # runs cut short by the stop: ended, or left waiting for a person (resumable)
        await self.mark_runs(deadline=time.monotonic() + 5.0)
        if self.gen is not None and not self.gen.broken:
            with contextlib.suppress(Exception):
                await asyncio.to_thread(self.gen.recorder.inner.flush)
        self.journal.write(k="stopped")

    def unexpected(self, exc: BaseException | None, run_id: str | None) -> None:
        if exc is None:
            return
        self.journal.write(
            k="unexpected",
            run=run_id,
            type=type(exc).__name__,
            msg=str(exc)[:500],
            tb="".join(traceback.format_exception(exc))[-3000:],
        )

    async def agent_loop(self) -> None:
        from opsgate.agent import execute

        while not self.stopping.is_set():
            gen = await self.generation()
            self.serial += 1
            request = scenario_request(self.rng, f"{self.name}#{self.serial}")
            try:
                run = gen.gateway.start_run(
                    WORKFLOW,
                    invoker=self.name,
                    agent_id="soak-bot",
                    request=request,
                    deps=self.deps,
                )
            except Exception as exc:
                self.failed(gen, exc, None)
                continue
            await self.drive(
                gen,
                run,
                execute(
                    gen.gateway,
                    self.router,
                    run,
                    system=SYSTEM,
                    tools=OFFERED,
                    handoff_tools=("escalate_to_human",),
                    done_after=("add_internal_note",),
                ),
            )

    async def drive(self, gen: Generation, run: Any, job: Any) -> None:
        """Run an agent loop to its end; a store failure breaks the generation and leaves
        the run to be ended under the next one."""
        try:
            result = await job
            self.journal.write(
                k="run", run=run.run_id, status=str(result.status), why=result.reason
            )
        except asyncio.CancelledError:
            self.to_mark.append((run, "the worker stopped during the run", gen))
            raise
        except Exception as exc:
            self.failed(gen, exc, run)

    def failed(self, gen: Generation, exc: BaseException, run: Any) -> None:
        from opsgate.errors import ApprovalError, StoreError

        if isinstance(exc, StoreError):
            gen.broken = True
            self.journal.write(
                k="store_error", run=getattr(run, "run_id", None), msg=str(exc)[:300]
            )
            if run is not None:
                self.to_mark.append((run, f"the audit store failed during the run ({exc})", gen))
            return
        if isinstance(exc, ApprovalError) and run is not None:
            # the run was taken over by another process: it is not ours to end
            self.journal.write(k="taken_over", run=run.run_id, msg=str(exc)[:300])
            return
        self.unexpected(exc, getattr(run, "run_id", None))
        if run is not None:
            self.to_mark.append((run, f"the worker failed: {type(exc).__name__}: {exc}", gen))

    async def mark_runs(self, deadline: float | None = None) -> None:
        """End the runs a store failure (or a stop) cut short, under a working generation;
        a run waiting for a person is left to its durable request (resumable)."""
        from opsgate.gateway import RunStatus

        while self.to_mark:
            if deadline is not None and time.monotonic() > deadline:
                return
            gen = await self.generation()
            run, why, old = self.to_mark[0]
            try:
                if old is not gen:
                    # A failed write-ahead recorder still commits what was queued after its
                    # failure (though `record` raised): let it finish with this run first,
                    # or its late events would land after the end we record now.
                    await asyncio.to_thread(_drain_quietly, old.recorder.inner)
                if run.status is RunStatus.AWAITING_APPROVAL:
                    pass  # its request is in the queue: resumable
                elif await asyncio.to_thread(gen.queue.run_ended, run.run_id):
                    # its end was committed although the recorder said it failed (a
                    # commit whose answer was lost, or a recorder already broken)
                    self.journal.write(k="end_was_kept", run=run.run_id)
                else:
                    if not run.active:
                        run.status = RunStatus.RUNNING  # its end was not on record
                    gen.gateway.escalate(
                        run,
                        f"{why}; events of this run since its last commit may be missing; "
                        f"completed calls: {[c.call_id for c in run.completed]}",
                        reason="audit_unavailable",
                    )
                    self.journal.write(k="marked", run=run.run_id)
                self.to_mark.pop(0)
            except Exception as exc:
                if not _is_db_error(exc):
                    self.unexpected(exc, run.run_id)
                    self.to_mark.pop(0)
                    continue
                gen.broken = True
                await asyncio.sleep(0.2)

    # -- resuming what killed workers left --

    def dead(self) -> set[str]:
        try:
            return set(self.dead_file.read_text().split())
        except FileNotFoundError:
            return set()

    def _resumable(self) -> list[Any]:
        from sqlalchemy import select

        from opsgate.store import approvals

        with self.store.engine.connect() as conn:
            rows = conn.execute(
                select(approvals.c.request_id, approvals.c.invoker).where(
                    approvals.c.status != "pending", approvals.c.executed_at.is_(None)
                )
            ).all()
        dead = self.dead()
        return [r.request_id for r in rows if self.drain or r.invoker in dead]

    async def sweeper(self) -> None:
        while not self.stopping.is_set():
            await self.mark_runs(deadline=time.monotonic() + 1.0)
            try:
                found = await asyncio.to_thread(self._resumable)
            except Exception as exc:
                if not _is_db_error(exc):
                    self.unexpected(exc, None)
                found = []
            self.rng.shuffle(found)
            for request_id in found:
                if request_id not in self.resuming:
                    self.resuming.add(request_id)
                    task = asyncio.create_task(self.resume(request_id))
                    self.tasks.add(task)
                    task.add_done_callback(self.tasks.discard)
            await asyncio.sleep(0.3 if not self.drain else 0.1)

    async def resume(self, request_id: str) -> None:
        from opsgate.agent import execute
        from opsgate.errors import ApprovalError
        from opsgate.models import Message, ToolCall

        gen = await self.generation()
        try:
            run, outcome = await gen.gateway.resume(request_id, deps=self.deps)
        except ApprovalError:
            return  # another process resumed it first, or it was executed
        except Exception as exc:
            self.resuming.discard(request_id)
            self.failed(gen, exc, None)
            return
        self.journal.write(
            k="resumed", run=run.run_id, request=request_id, status=str(outcome.status)
        )
        history = [Message.user(run.request)]
        for call in run.completed:
            tc = ToolCall(call.call_id, call.tool, orjson.dumps(call.args).decode())
            history.append(Message.assistant(None, [tc]))
            history.append(Message.tool(call.call_id, orjson.dumps(call.result).decode()))
        if not outcome.ok:
            tc = ToolCall(outcome.call_id, outcome.tool, "{}")
            history.append(Message.assistant(None, [tc]))
            history.append(Message.tool(outcome.call_id, outcome.for_model()))
        await self.drive(
            gen,
            run,
            execute(
                gen.gateway,
                self.router,
                run,
                system=SYSTEM,
                messages=history,
                tools=OFFERED,
                handoff_tools=("escalate_to_human",),
                done_after=("add_internal_note",),
            ),
        )


def _drain_quietly(recorder: Any) -> None:
    with contextlib.suppress(Exception):
        recorder.flush()  # returns (or raises) once everything queued before was tried


def worker_process(spec_path: str, name: str, drain: bool) -> None:
    exit_with_parent()
    worker = Worker(Spec.load(spec_path), name, drain)
    asyncio.run(worker.main())
    os._exit(0)  # audit writer threads are daemons; nothing is left to flush


# -- the approver process ----------------------------------------------------------------------


def approver_process(spec_path: str, name: str) -> None:
    """Decides pending requests through the durable queue: ~6 in 7 approved."""
    from opsgate.audit import AuditLog, AuditRecorder, Signer
    from opsgate.errors import ApprovalError
    from opsgate.gateway import DurableApprovalQueue

    exit_with_parent()
    spec = Spec.load(spec_path)
    work = Path(spec.workdir)
    journal = Journal(work / f"journal-{name.replace(':', '-')}.jsonl")
    store = open_store_retrying(spec.url)
    signer = Signer.from_file(Path(spec.key), create=False)
    recorder: Any = None
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    (work / f"ready-{name.replace(':', '-')}").touch()
    while not stop.is_set():
        try:
            if recorder is None:
                recorder = AuditRecorder(AuditLog(store, signer))
            queue = DurableApprovalQueue(store, recorder=recorder)
            for request in queue.list("pending"):
                if time.time() - request.requested_at < 0.02:
                    continue
                approve = int(hashlib.sha1(request.request_id.encode()).hexdigest(), 16) % 7 != 0
                try:
                    done = queue.decide(
                        request.request_id,
                        approved=approve,
                        approver=APPROVER,
                        reason="soak" if approve else "soak says no",
                    )
                except ApprovalError:
                    continue
                kind = "approval_granted" if approve else "approval_denied"
                journal.write(k="ack", ev=[(done.run_id, kind, done.decided_at)])
        except Exception as exc:
            if not _is_db_error(exc):
                journal.write(
                    k="unexpected",
                    run=None,
                    type=type(exc).__name__,
                    msg=str(exc)[:500],
                    tb=traceback.format_exc()[-3000:],
                )
            journal.write(k="store_error", run=None, msg=str(exc)[:300])
            recorder = None
            time.sleep(0.2)
            continue
        time.sleep(0.03)
    os._exit(0)


# -- storage: the database, the small file system it lives on, faults -------------------------


def _run(command: list[str], timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)


class SmallFs:
    """A small file system to fill: a loop-mounted ext4 image (no reserved blocks), else a
    size-limited tmpfs; `kind` says which, or why neither could be mounted."""

    def __init__(self, where: Path, megabytes: int) -> None:
        self.where = where
        self.mounted = False
        self.kind = ""
        where.mkdir(parents=True, exist_ok=True)
        image = where.with_suffix(".img")
        errors: list[str] = []
        if os.geteuid() != 0:
            self.kind = "not mounted: not root"
            return
        try:
            with open(image, "wb") as handle:
                handle.truncate(megabytes << 20)
            made = _run(["mkfs.ext4", "-q", "-F", "-m", "0", str(image)])
            if made.returncode == 0:
                done = _run(["mount", "-o", "loop", str(image), str(where)])
                if done.returncode == 0:
                    self.mounted, self.kind = True, f"loop-mounted ext4, {megabytes} MB"
                    return
                errors.append(done.stderr.strip())
            else:
                errors.append(made.stderr.strip())
        except (OSError, subprocess.SubprocessError) as exc:
            errors.append(str(exc))
        finally:
            with contextlib.suppress(OSError):
                image.unlink()  # the mount keeps it open; gone with the unmount
        done = _run(["mount", "-t", "tmpfs", "-o", f"size={megabytes}m", "tmpfs", str(where)])
        if done.returncode == 0:
            self.mounted, self.kind = True, f"tmpfs, {megabytes} MB"
            return
        errors.append(done.stderr.strip())
        self.kind = "not mounted: " + "; ".join(e for e in errors if e)[:200]

    @contextlib.contextmanager
    def full(self, seconds: float) -> Iterator[None]:
        """Fill the file system (ENOSPC for everyone writing to it), then free it."""
        filler = self.where / "filler"
        fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            free = shutil.disk_usage(self.where).free
            for margin in (8 << 20, 1 << 20, 0):  # fallocate all of it fails (metadata)
                try:
                    os.posix_fallocate(fd, 0, max(4096, free - margin))
                    break
                except OSError:
                    continue
            os.lseek(fd, 0, os.SEEK_END)  # fill what is left after the allocated part
            chunk = b"\0" * (1 << 16)
            with contextlib.suppress(OSError):
                while True:  # what fallocate left (rounding, metadata)
                    os.write(fd, chunk)
            with contextlib.suppress(OSError):
                while True:
                    os.write(fd, b"\0" * 512)
            time.sleep(seconds)
            yield
        finally:
            os.close(fd)
            filler.unlink()

    def unmount(self) -> None:
        if self.mounted:
            if _run(["umount", str(self.where)]).returncode != 0:
                _run(["umount", "-l", str(self.where)])
            self.mounted = False


class Backend:
    """A database for the soak, with what the chaos loop can do to it."""

    name = ""
    url = ""
    fs: SmallFs

    def restart(self, mode: str) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    @property
    def restartable(self) -> bool:
        return False


class SqliteBackend(Backend):
    name = "sqlite"

    def __init__(self, work: Path) -> None:
        self.fs = SmallFs(work / "dbfs", 512)
        self.url = f"sqlite:///{self.fs.where / 'opsgate.db'}"

    def close(self) -> None:
        self.fs.unmount()


class PostgresBackend(Backend):
    """The tests' throwaway cluster, its soak database in a tablespace on the small fs."""

    name = "postgres"

    def __init__(self, work: Path) -> None:
        import psycopg
        from tests._postgres import Cluster

        self.cluster = Cluster()
        self.fs = SmallFs(work / "tsfs", 512)
        try:
            location = self.fs.where / "pg"
            location.mkdir(exist_ok=True)
            if os.geteuid() == 0:
                shutil.chown(location, "postgres", "postgres")
            with psycopg.connect(self.cluster.admin, autocommit=True) as conn:
                conn.execute(f"CREATE TABLESPACE soak_ts LOCATION '{location}'")
                conn.execute('CREATE DATABASE "soak" TABLESPACE soak_ts')
        except BaseException:
            self.close()
            raise
        self.url = f"postgresql://postgres@127.0.0.1:{self.cluster.port}/soak"

    @property
    def restartable(self) -> bool:
        return True

    def restart(self, mode: str) -> None:
        c = self.cluster
        # -l: the server must not hold our pipes (capture_output would wait for it)
        c._run(
            "pg_ctl",
            "-D",
            str(c.root / "data"),
            "-m",
            mode,
            "-w",
            "-l",
            str(c.root / "log"),
            "-o",
            f"-p {c.port} -k {c.root} -c listen_addresses=127.0.0.1 "
            "-c max_connections=200 -c shared_buffers=64MB",
            "restart",
        )

    def close(self) -> None:
        try:
            self.cluster.stop()
        finally:
            self.fs.unmount()


# -- the supervisor ----------------------------------------------------------------------------


class Children:
    """The worker and approver processes of one phase, and their incarnations."""

    def __init__(self, spec_path: Path, work: Path, phase: str, workers: int) -> None:
        self.spec_path = spec_path
        self.work = work
        self.phase = phase
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.names: dict[str, str] = {}
        self.incarnation: Counter[str] = Counter()
        self.killed: list[str] = []
        self.slots = [f"w{i}" for i in range(workers)]
        self.log = open(work / f"children-{phase}.log", "ab")  # noqa: SIM115

    def start(self, slot: str, role: str = "worker", wait: bool = False) -> str:
        self.incarnation[slot] += 1
        name = f"{self.phase}:{slot}:{self.incarnation[slot]}"
        env = dict(os.environ, OPSGATE_HOME=str(self.work / "home"))
        env.pop("OPSGATE_DATABASE_URL", None)
        command = [
            sys.executable,
            str(Path(__file__).resolve()),
            "--role",
            role,
            "--spec",
            str(self.spec_path),
            "--name",
            name,
        ]
        self.procs[slot] = subprocess.Popen(
            command, env=env, stdout=self.log, stderr=self.log, cwd=ROOT
        )
        self.names[slot] = name
        if wait:
            self.wait_ready([name])
        return name

    def wait_ready(self, names: list[str], timeout: float = 60.0) -> None:
        until = time.monotonic() + timeout
        for name in names:
            ready = self.work / f"ready-{name.replace(':', '-')}"
            while not ready.exists():
                if time.monotonic() > until:
                    raise RuntimeError(f"{name} did not start (see {self.log.name})")
                time.sleep(0.05)

    def kill(self, slot: str) -> None:
        proc = self.procs[slot]
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        self.killed.append(self.names[slot])
        with open(self.work / "dead.txt", "a") as handle:
            handle.write(self.names[slot] + "\n")

    def kill_all(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()

    def stop(self, slots: list[str], timeout: float = 20.0) -> None:
        for slot in slots:
            if self.procs[slot].poll() is None:
                self.procs[slot].send_signal(signal.SIGTERM)
        for slot in slots:
            try:
                self.procs[slot].wait(timeout)
            except subprocess.TimeoutExpired:
                self.procs[slot].kill()
                self.procs[slot].wait()
                self.killed.append(self.names[slot])
        for slot in slots:
            with open(self.work / "dead.txt", "a") as handle:
                handle.write(self.names[slot] + "\n")


@dataclass
class PhaseResult:
    name: str
    seconds: float
    started: float
    ended: float
    faults: Counter[str] = field(default_factory=Counter)
    killed: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)


def model_chaos(model_url: str, mode: str, seconds: float) -> None:
    import httpx

    base = model_url.rsplit("/v1", 1)[0]
    httpx.post(f"{base}/chaos", json={"mode": mode, "seconds": seconds}, timeout=5)


def run_phase(
    backend: Backend,
    spec_path: Path,
    spec: Spec,
    phase: str,
    seconds: float,
    workers: int,
    chaos: bool,
    rng: random.Random,
) -> PhaseResult:
    work = Path(spec.workdir)
    t0 = time.monotonic()
    children = Children(spec_path, work, phase, workers)
    try:
        return _run_phase(children, backend, spec, phase, seconds, chaos, rng, t0)
    except BaseException:
        children.kill_all()
        raise


def _run_phase(
    children: Children,
    backend: Backend,
    spec: Spec,
    phase: str,
    seconds: float,
    chaos: bool,
    rng: random.Random,
    t0: float,
) -> PhaseResult:
    work = Path(spec.workdir)
    spec_path = children.spec_path
    names = [children.start(slot) for slot in children.slots]
    names.append(children.start("approver", role="approver"))
    children.wait_ready(names)
    ready = time.monotonic()
    (work / f"go-{phase}").touch()
    result = PhaseResult(phase, seconds, time.time(), 0.0)
    end = time.monotonic() + seconds
    try:
        if chaos:
            chaos_loop(backend, children, spec, end, rng, result)
        else:
            time.sleep(max(0.0, end - time.monotonic()))
    finally:
        result.ended = time.time()
        stop_at = time.monotonic()
        model_chaos(spec.model_url, "ok", 0)
        children.stop(children.slots)
    # what killed workers left: approvals decided by the approver are resumed, then the
    # approver stops
    if _left_to_drain(spec):
        drain = Children(spec_path, work, f"{phase}-drain", 1)
        try:
            drain.wait_ready([drain.start("w0", role="drain")])
            _wait_drained(spec, timeout=15.0)
        finally:
            drain.stop(["w0"])
    children.stop(["approver"])
    result.killed = children.killed
    result.timings = {
        "start": round(ready - t0, 1),
        "stop+drain": round(time.monotonic() - stop_at, 1),
    }
    return result


def _left_to_drain(spec: Spec) -> int:
    """Approval requests still pending, or approved and not executed."""
    from sqlalchemy import func, or_, select

    from opsgate.store import approvals

    store = open_store_retrying(spec.url)
    try:
        with store.engine.connect() as conn:
            return int(
                conn.execute(
                    select(func.count())
                    .select_from(approvals)
                    .where(
                        or_(
                            approvals.c.status == "pending",
                            approvals.c.executed_at.is_(None) & (approvals.c.status == "approved"),
                        )
                    )
                ).scalar()
                or 0
            )
    finally:
        store.close()


def _wait_drained(spec: Spec, timeout: float) -> None:
    until = time.monotonic() + timeout
    while time.monotonic() < until:
        if not _left_to_drain(spec):
            time.sleep(0.5)  # the last resumed runs finish
            return
        time.sleep(0.2)


def chaos_loop(
    backend: Backend,
    children: Children,
    spec: Spec,
    end: float,
    rng: random.Random,
    result: PhaseResult,
) -> None:
    kinds = [("worker_sigkill", 6), ("approver_sigkill", 1), ("model", 4)]
    kinds = [(k, w) for k, w in kinds if k in FAULT_KINDS]
    if "disk_full" not in FAULT_KINDS:
        pass
    elif backend.fs.mounted:
        kinds.append(("disk_full", 2))
    else:
        result.faults["disk_full (skipped: " + backend.fs.kind + ")"] += 0
    if backend.restartable and "db_restart" in FAULT_KINDS:
        kinds.append(("db_restart", 2))
    elif "db_restart" in FAULT_KINDS:
        result.faults["db restart (n/a: SQLite has no server)"] += 0
    bag = [k for k, w in kinds for _ in range(w)]
    log = Journal(Path(spec.workdir) / "faults.jsonl")
    restarts = 0
    time.sleep(min(0.5, max(0.0, end - time.monotonic())))
    first = sorted({k for k, _ in kinds})
    rng.shuffle(first)  # every kind at least once, then at random by weight
    while time.monotonic() < end - 0.5:
        kind = first.pop() if first else rng.choice(bag)
        began = time.time()
        before = sum(result.faults.values())
        if kind == "worker_sigkill":
            slot = rng.choice(children.slots)
            children.kill(slot)
            result.faults["worker SIGKILL"] += 1
            time.sleep(0.2)
            children.start(slot)
        elif kind == "approver_sigkill":
            children.kill("approver")
            result.faults["approver SIGKILL"] += 1
            time.sleep(0.3)
            children.start("approver", role="approver")
        elif kind == "model":
            mode = rng.choice(MODEL_FAULTS)
            model_chaos(spec.model_url, mode, rng.uniform(1.0, 2.5))
            result.faults[f"model {mode}"] += 1
        elif kind == "disk_full":
            with backend.fs.full(rng.uniform(0.5, 1.2)):
                pass
            result.faults["disk full (ENOSPC)"] += 1
        elif kind == "db_restart":
            mode = "fast" if restarts % 2 == 0 else "immediate"
            restarts += 1
            backend.restart(mode)
            result.faults[f"db restart -m {mode}"] += 1
        if sum(result.faults.values()) > before:
            log.write(k=kind, began=began)
        time.sleep(rng.uniform(0.2, 0.7))


# -- after a phase: recovery of killed workers' runs, then the checks --------------------------


@dataclass
class Trail:
    """What the audit trail says, read once."""

    acked: set[tuple[str, str, float]]
    by_call: dict[str, list[tuple[int, str, dict[str, Any]]]]
    by_run: dict[str, list[tuple[int, str, dict[str, Any]]]]
    events: int


def read_trail(store: Any) -> Trail:
    from sqlalchemy import select

    from opsgate.store import audit_events

    acked: set[tuple[str, str, float]] = set()
    by_call: dict[str, list[tuple[int, str, dict[str, Any]]]] = defaultdict(list)
    by_run: dict[str, list[tuple[int, str, dict[str, Any]]]] = defaultdict(list)
    count = 0
    with store.engine.connect() as conn:
        query = select(
            audit_events.c.seq,
            audit_events.c.run_id,
            audit_events.c.type,
            audit_events.c.at,
            audit_events.c.body,
        ).order_by(audit_events.c.seq)
        for seq, run_id, kind, at, body in conn.execute(query):
            count += 1
            acked.add((run_id, kind, float(at)))
            data = orjson.loads(bytes(body))["data"]
            data["_run"] = run_id
            by_run[run_id].append((int(seq), kind, data))
            call = data.get("call_id")
            if isinstance(call, str):
                by_call[call].append((int(seq), kind, data))
    return Trail(acked, by_call, by_run, count)


def recover_lost_runs(
    spec: Spec, phase: str, killed: set[str], store_failed: set[str]
) -> dict[str, Any]:
    """End the runs that killed workers left running (``worker_lost``), naming the calls
    whose decision is in the trail without an outcome (the process died between). A run
    waiting for a person keeps its durable request (resumable) and is not touched."""
    from sqlalchemy import select

    from opsgate.audit import AuditLog, AuditRecorder, Signer
    from opsgate.gateway import Gateway, Run
    from opsgate.policy import load_policy
    from opsgate.store import approvals, runs

    store = open_store_retrying(spec.url)
    recorder = AuditRecorder(AuditLog(store, Signer.from_file(Path(spec.key), create=False)))
    belt = soak_belt()
    gateway = Gateway(belt, load_policy(POLICY_FILE, belt), recorder=recorder)
    counts: Counter[str] = Counter()
    details: list[dict[str, Any]] = []
    try:
        with store.engine.connect() as conn:
            phase_runs = conn.execute(select(runs).where(runs.c.invoker.like(f"{phase}:%"))).all()
            pending = {
                r.run_id
                for r in conn.execute(
                    select(approvals.c.run_id).where(approvals.c.status == "pending")
                )
            }
        trail = read_trail(store)
        # open = no end on the trail (the runs table can disagree: see check_phase)
        open_runs = [r for r in phase_runs if not _ended(trail, r.run_id)]
        for row in open_runs:
            if row.run_id in pending:
                counts["left awaiting approval (resumable)"] += 1
                continue
            events = trail.by_run.get(row.run_id, [])
            cleared = {d.get("call_id") for _, k, d in events if k in ("tool_result", "tool_error")}
            decided = [
                d.get("call_id")
                for _, k, d in events
                if (k == "decision" and d.get("effect") == "allow") or k == "approval_granted"
            ]
            unknown = [c for c in decided if isinstance(c, str) and c and c not in cleared]
            if row.invoker in killed:
                cause = "worker_lost"
            elif row.invoker in store_failed:
                cause = "store_failure"  # its start was cut by a failed commit
            else:
                cause = "orphaned"
            run = Run(
                workflow=row.workflow,
                invoker=row.invoker,
                agent_id=row.agent_id,
                policy_version=row.policy_version,
                request="",
                run_id=row.run_id,
            )
            gateway.escalate(
                run,
                f"the worker process running this run was lost ({cause}); calls decided "
                f"without a recorded outcome (they may have run): {unknown}",
                reason=cause,
            )
            counts[cause] += 1
            if cause == "orphaned":
                details.append(
                    {"run": row.run_id, "invoker": row.invoker, "events": [k for _, k, _ in events]}
                )
        recorder.flush()
    finally:
        recorder.close()
        gateway.close()
        store.close()
    out: dict[str, Any] = dict(counts)
    if details:
        out["orphans"] = details[:5]
    return out


def _ended(trail: Trail, run_id: str) -> bool:
    return any(k == "run_ended" for _, k, _ in trail.by_run.get(run_id, []))


def store_failures(work: Path, phase: str) -> set[str]:
    """The worker incarnations of ``phase`` that saw the audit store fail."""
    failed = set()
    for path in work.glob(f"journal-{phase}-*.jsonl"):
        if any(line["k"] == "store_error" for line in read_lines(path)):
            _, slot, incarnation = path.stem.rsplit("-", 2)
            failed.add(f"{phase}:{slot}:{incarnation}")
    return failed


@dataclass
class Figures:
    """The figures of one phase."""

    values: dict[str, Any] = field(default_factory=dict)
    violations: list[str] = field(default_factory=list)


def check_phase(spec: Spec, phase: PhaseResult, recovered: dict[str, Any]) -> Figures:
    from sqlalchemy import select

    from opsgate.store import approvals, runs

    work = Path(spec.workdir)
    store = open_store_retrying(spec.url)
    try:
        trail = read_trail(store)
        with store.engine.connect() as conn:
            run_rows = conn.execute(
                select(runs).where(runs.c.invoker.like(f"{phase.name}:%"))
            ).all()
            approval_rows = conn.execute(select(approvals)).all()
    finally:
        store.close()
    fig = Figures()
    v = fig.values
    prefix = phase.name
    # events the processes were told were committed, and whether the trail has them
    acked: set[tuple[str, str, float]] = set()
    unexpected: list[dict[str, Any]] = []
    journal_kinds: Counter[str] = Counter()
    for path in sorted(work.glob(f"journal-{prefix}-*.jsonl")):
        for line in read_lines(path):
            journal_kinds[line["k"]] += 1
            if line["k"] == "ack":
                acked.update((r, k, float(a)) for r, k, a in line["ev"])
            elif line["k"] == "unexpected":
                unexpected.append(line)
    lost = sorted(acked - trail.acked)
    v["events acknowledged (journalled)"] = len(acked)
    v["events lost"] = len(lost)
    if lost:
        fig.violations.append(f"{len(lost)} acknowledged events missing, e.g. {lost[:3]}")
    # runs
    ids = {r.run_id for r in run_rows}
    status = Counter(r.status for r in run_rows)
    started_in = [r for r in run_rows if phase.started <= r.started_at <= phase.ended]
    completed_in = [
        r
        for r in run_rows
        if r.status == "completed" and r.ended_at is not None and r.ended_at <= phase.ended
    ]
    v["runs started"] = len(started_in)
    v["runs completed"] = status["completed"]
    v["runs escalated"] = status["escalated"]
    v["runs failed"] = status["failed"]
    reasons = Counter(r.reason for r in run_rows if r.status != "completed")
    v["escalated/failed by reason"] = dict(reasons.most_common())
    v["runs completed in the window"] = len(completed_in)
    v["throughput (runs completed/s)"] = round(len(completed_in) / phase.seconds, 2)
    calls_in_phase = {
        c: evs for c, evs in trail.by_call.items() if any(trail_run(e) in ids for e in evs)
    }
    v["calls completed (tool_result)"] = sum(
        1 for evs in calls_in_phase.values() for _, k, _ in evs if k == "tool_result"
    )
    v["model calls"] = sum(
        1 for r in ids for _, k, _ in trail.by_run.get(r, []) if k == "model_call"
    )
    v["faults injected"] = dict(phase.faults)
    v["faults total"] = sum(phase.faults.values())
    v["worker store errors (recorder rebuilt)"] = journal_kinds["store_error"]
    v["runs resumed in another process"] = journal_kinds["resumed"]
    v["recovery"] = recovered
    if recovered.get("orphaned"):
        fig.violations.append(
            f"{recovered['orphaned']} runs left running by workers not killed: "
            f"{recovered.get('orphans')}"
        )
    pending = {a.run_id for a in approval_rows if a.status == "pending"}
    v["approvals asked"] = sum(1 for a in approval_rows if a.run_id in ids)
    # every run finished or resumable, ended once, never resumed after its end
    unresumable = [r.run_id for r in run_rows if not _ended(trail, r.run_id)]
    unresumable = [r for r in unresumable if r not in pending]
    table_disagrees = [
        r.run_id
        for r in run_rows
        if (r.status in ("completed", "escalated", "failed")) != _ended(trail, r.run_id)
    ]
    v["runs whose runs-table status disagrees with the trail"] = len(table_disagrees)
    v["runs awaiting approval (resumable)"] = sum(
        1 for r in run_rows if r.status == "awaiting_approval" and r.run_id in pending
    )
    v["unresumable runs"] = len(unresumable)
    if unresumable:
        fig.violations.append(f"{len(unresumable)} runs neither finished nor resumable")
    forked = []
    for r in ids:
        kinds = [k for _, k, _ in trail.by_run.get(r, [])]
        ends = kinds.count("run_ended")
        after_end = ends and any(
            k != "run_ended"
            for k in kinds[kinds.index("run_ended") + 1 :]
            if k not in ("approval_granted", "approval_denied")
        )
        if ends > 1 or after_end:
            forked.append(r)
    v["runs ended twice or continued after their end"] = len(forked)
    if forked:
        with open(work / f"forks-{prefix}.json", "wb") as handle:
            handle.write(
                orjson.dumps(
                    {r: trail.by_run.get(r, []) for r in forked}, option=orjson.OPT_INDENT_2
                )
            )
        fig.violations.append(
            f"{len(forked)} runs ended twice or went on after ending: {forked[:3]}"
        )
    # effects: decided before, recorded after, never twice
    effects = [
        e for path in sorted(work.glob(f"effects-{prefix}*.jsonl")) for e in read_lines(path)
    ]
    effects = [e for e in effects if e["run"] in ids]
    v["write effects (counted apart)"] = len(effects)
    per_call = Counter((e["run"], e["call"]) for e in effects)
    per_args = Counter(
        (e["run"], e["tool"], orjson.dumps(e["args"], option=orjson.OPT_SORT_KEYS)) for e in effects
    )
    doubles = sum(n - 1 for n in per_call.values() if n > 1)
    doubles_args = sum(n - 1 for n in per_args.values() if n > 1)
    v["double executions (same call)"] = doubles
    v["double executions (same write, same run)"] = doubles_args
    if doubles or doubles_args:
        fig.violations.append(f"double executions: {doubles} by call, {doubles_args} by write")
    approved_calls = {
        c for c, evs in trail.by_call.items() for _, k, _ in evs if k == "approval_granted"
    }
    executed_approved = [e for e in effects if e["call"] in approved_calls]
    v["approved calls executed"] = len({(e["run"], e["call"]) for e in executed_approved})
    v["approval grants recorded by the executing process (approver died first)"] = sum(
        1
        for r in ids
        for _, k, d in trail.by_run.get(r, [])
        if k == "approval_granted" and d.get("via") != "approval queue"
    )
    v["approvals executed twice"] = sum(
        n - 1 for (r, c), n in per_call.items() if n > 1 and c in approved_calls
    )
    no_decision = []
    wa_false = []
    wa_unknown = 0
    recorded = 0
    named_in_escalation = 0
    lost_to_kill = 0
    unrecorded = []
    for e in effects:
        evs = trail.by_call.get(e["call"], [])
        mine = [(s, k, d) for s, k, d in evs if trail_run((s, k, d)) in (e["run"], None)]
        ok = any(
            (k == "decision" and d.get("effect") == "allow") or k == "approval_granted"
            for _, k, d in mine
        )
        if not ok:
            no_decision.append(e)
        if e["wa"] is False:
            wa_false.append(e)
        elif e["wa"] is None:
            wa_unknown += 1
        if any(k == "tool_result" for _, k, _ in mine):
            recorded += 1
            continue
        ends = [d for _, k, d in trail.by_run.get(e["run"], []) if k == "escalated"]
        if any(
            e["call"] in str(d.get("message", ""))
            or e["call"] in orjson.dumps(d.get("progress", {})).decode()
            for d in ends
        ):
            if any(d.get("reason") in ("worker_lost", "store_failure") for d in ends):
                lost_to_kill += 1
            else:
                named_in_escalation += 1
            continue
        unrecorded.append(e)
    v["effects without their decision in the trail"] = len(no_decision)
    v["effects whose decision was not committed before the tool ran"] = len(wa_false)
    v["effects whose write-ahead could not be checked (database down)"] = wa_unknown
    v["effects with their result event"] = recorded
    v["effects whose result event was lost to SIGKILL (run ended naming the call)"] = lost_to_kill
    v["effects whose result commit failed (run escalated naming the call)"] = named_in_escalation
    v["effects unrecorded"] = len(unrecorded)
    if no_decision:
        fig.violations.append(f"{len(no_decision)} effects without a decision: {no_decision[:2]}")
    if wa_false:
        fig.violations.append(
            f"{len(wa_false)} effects ran before their decision was committed: {wa_false[:2]}"
        )
    if unrecorded:
        fig.violations.append(
            f"{len(unrecorded)} effects neither recorded nor named: {unrecorded[:2]}"
        )
    v["unexpected errors (tracebacks) in workers"] = len(unexpected)
    if unexpected:
        fig.violations.append(
            f"{len(unexpected)} unexpected errors, e.g. {unexpected[0]['type']}: "
            f"{unexpected[0]['msg']}\n{unexpected[0]['tb']}"
        )
    return fig


def trail_run(entry: tuple[int, str, dict[str, Any]]) -> str | None:
    """The run of an event found by call id (stored alongside; None if unknown)."""
    return entry[2].get("_run")


def audit_verify(spec: Spec, public_pem: Path) -> tuple[int, str]:
    """`opsgate audit verify` as a user runs it: the real CLI, in a subprocess."""
    cli = Path(sys.executable).with_name("opsgate")
    env = dict(
        os.environ,
        OPSGATE_DATABASE_URL=spec.url,
        OPSGATE_HOME=str(Path(spec.workdir) / "home"),
        COLUMNS="200",
    )
    done = subprocess.run(
        [str(cli), "audit", "verify", "--public-key", str(public_pem)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    return done.returncode, (done.stdout + done.stderr).strip()


def soak_backend(kind: str, args: argparse.Namespace, base: Path) -> dict[str, Any]:
    from opsgate.audit import Signer
    from opsgate.store import upgrade_store

    work = base / kind
    work.mkdir(parents=True)
    (work / "home").mkdir()
    key = work / "audit-signing.key"
    signer = Signer.from_file(key)
    public_pem = work / "audit-public.pem"
    public_pem.write_text(signer.public_pem())
    backend: Backend = SqliteBackend(work) if kind == "sqlite" else PostgresBackend(work)
    model: subprocess.Popen[bytes] | None = None
    rng = random.Random(args.seed)
    out: dict[str, Any] = {"backend": kind, "disk": backend.fs.kind}
    try:
        upgrade_store(backend.url)
        port_file = work / "model.port"
        model_log = open(work / "model.log", "ab")  # noqa: SIM115 - closed with the process
        model = subprocess.Popen(
            [
                sys.executable,
                str(Path(__file__).resolve()),
                "--role",
                "model",
                "--spec",
                str(port_file),
            ],
            cwd=ROOT,
            stdout=model_log,
            stderr=model_log,
        )
        until = time.monotonic() + 30
        while not port_file.exists() or not port_file.read_text():
            if time.monotonic() > until:
                raise RuntimeError("the model server did not start")
            time.sleep(0.05)
        spec = Spec(
            url=backend.url,
            key=str(key),
            model_url=f"http://127.0.0.1:{port_file.read_text()}/v1",
            workdir=str(work),
            concurrency=args.concurrency,
            seed=args.seed,
        )
        spec_path = work / "spec.json"
        spec_path.write_bytes(orjson.dumps(spec.__dict__))
        phases: dict[str, Figures] = {}
        for name, chaos in (("calm", False), ("chaos", True)):
            t0 = time.monotonic()
            result = run_phase(
                backend, spec_path, spec, name, args.seconds, args.workers, chaos, rng
            )
            recovered = recover_lost_runs(
                spec, name, set(result.killed), store_failures(Path(spec.workdir), name)
            )
            phases[name] = check_phase(spec, result, recovered)
            phases[name].values["phase wall time (s)"] = round(time.monotonic() - t0, 1)
            phases[name].values["phase timings (s)"] = result.timings
        code, text = audit_verify(spec, public_pem)
        out["audit verify"] = {"exit": code, "output": text}
        calm, chaos_f = phases["calm"].values, phases["chaos"].values
        base_rate = calm["throughput (runs completed/s)"]
        out["throughput ratio chaos/calm"] = (
            round(chaos_f["throughput (runs completed/s)"] / base_rate, 3) if base_rate else 0.0
        )
        out["phases"] = {n: f.values for n, f in phases.items()}
        out["violations"] = [f"{n}: {x}" for n, f in phases.items() for x in f.violations]
        if code != 0:
            out["violations"].append(f"opsgate audit verify exited {code}: {text}")
    finally:
        if model is not None:
            model.kill()
            model.wait()
        if args.keep and kind == "sqlite":
            for path in backend.fs.where.glob("opsgate.db*"):
                shutil.copy(path, work / path.name)
        backend.close()
    return out


# -- output ------------------------------------------------------------------------------------

ROWS = (
    "runs started",
    "runs completed",
    "runs escalated",
    "runs failed",
    "runs awaiting approval (resumable)",
    "throughput (runs completed/s)",
    "calls completed (tool_result)",
    "model calls",
    "approvals asked",
    "approved calls executed",
    "approval grants recorded by the executing process (approver died first)",
    "runs resumed in another process",
    "write effects (counted apart)",
    "faults total",
    "worker store errors (recorder rebuilt)",
    "events acknowledged (journalled)",
    "events lost",
    "double executions (same call)",
    "double executions (same write, same run)",
    "approvals executed twice",
    "effects without their decision in the trail",
    "effects whose decision was not committed before the tool ran",
    "effects whose write-ahead could not be checked (database down)",
    "effects with their result event",
    "effects whose result event was lost to SIGKILL (run ended naming the call)",
    "effects whose result commit failed (run escalated naming the call)",
    "effects unrecorded",
    "runs ended twice or continued after their end",
    "runs whose runs-table status disagrees with the trail",
    "unresumable runs",
    "unexpected errors (tracebacks) in workers",
)


def report(results: list[dict[str, Any]], args: argparse.Namespace) -> str:
    lines = [
        f"opsgate soak: {args.workers} workers x {args.concurrency} agents, "
        f"{args.seconds:g} s fault-free then {args.seconds:g} s chaos per backend",
    ]
    for res in results:
        calm, chaos = res["phases"]["calm"], res["phases"]["chaos"]
        lines.append("")
        lines.append(f"== {res['backend']} (database on: {res['disk']})")
        width = max(len(r) for r in ROWS)
        lines.append(f"{'':{width}}  {'fault-free':>10}  {'chaos':>10}")
        for row in ROWS:
            lines.append(f"{row:{width}}  {calm.get(row, ''):>10}  {chaos.get(row, ''):>10}")
        faults = ", ".join(f"{k}: {n}" for k, n in sorted(chaos["faults injected"].items()))
        lines.append(f"faults injected by kind: {faults}")
        lines.append(
            f"runs not completed, by reason (chaos): {chaos['escalated/failed by reason']}"
        )
        lines.append(f"recovery after chaos: {chaos['recovery']}")
        lines.append(
            f"throughput held under faults: {res['throughput ratio chaos/calm']:.2f} "
            "of the fault-free run"
        )
        verify = res["audit verify"]
        lines.append(f"opsgate audit verify: exit {verify['exit']}: {verify['output']}")
        for violation in res["violations"]:
            lines.append(f"INVARIANT FAILED: {violation}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=30.0, help="length of each phase")
    parser.add_argument("--workers", type=int, default=4, help="gateway worker processes")
    parser.add_argument("--concurrency", type=int, default=3, help="agents per worker")
    parser.add_argument("--backend", choices=("sqlite", "postgres", "both"), default="both")
    parser.add_argument("--json", type=Path, help="write the figures here")
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--keep", action="store_true", help="keep the working folder")
    parser.add_argument(
        "--faults",
        default=",".join(sorted(FAULT_KINDS)),
        help=f"fault kinds of the chaos phase (default all: {','.join(sorted(FAULT_KINDS))})",
    )
    parser.add_argument(
        "--role", choices=("model", "worker", "drain", "approver"), help=argparse.SUPPRESS
    )
    parser.add_argument("--spec", help=argparse.SUPPRESS)
    parser.add_argument("--name", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.role == "model":
        serve_model(Path(args.spec))
        return 0
    if args.role in ("worker", "drain"):
        worker_process(args.spec, args.name, drain=args.role == "drain")
        return 0
    if args.role == "approver":
        approver_process(args.spec, args.name)
        return 0
    FAULT_KINDS.intersection_update(args.faults.split(","))
    # a SIGTERM (a CI timeout) unwinds like Ctrl-C: file systems unmounted, cluster stopped
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    base = Path(tempfile.mkdtemp(prefix="opsgate-soak-"))
    base.chmod(0o755)  # the postgres user reaches its tablespace through it
    backends = ["sqlite", "postgres"] if args.backend == "both" else [args.backend]
    results = []
    started = time.time()
    try:
        for kind in backends:
            results.append(soak_backend(kind, args, base))
    finally:
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)
        else:
            print(f"working folder kept: {base}")
    print(report(results, args))
    print(
        f"\n{time.strftime('%Y-%m-%d %H:%M', time.localtime(started))}, "
        f"{time.time() - started:.0f} s: {' '.join(sys.argv)}"
    )
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_bytes(orjson.dumps({"results": results}, option=orjson.OPT_INDENT_2))
    failed = [v for r in results for v in r["violations"]]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
