"""`McpProxy`: an MCP server in front of upstream MCP servers, every tool call through the
gateway.

One client session is one run. ``tools/list`` shows what the policy allows at the
workflow's stage; ``tools/call`` passes `Gateway.call` (validation, decision, approval,
execution with timeout, provenance, audit, caps). Resources and prompts pass through
read-only, their content entering the run as untrusted context. Anything that goes wrong
inside the proxy denies the call with a tool error: nothing passes unchecked.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import os
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TextIO

import mcp_types
import orjson
from mcp.server.lowlevel import NotificationOptions, Server
from mcp.server.models import InitializationOptions

from opsgate.gateway import (
    Approver,
    Gateway,
    InMemoryQuotaLedger,
    QuotaLedger,
    Run,
    StageSource,
    StopSource,
    ToolOutcome,
)
from opsgate.mcp._asks import (
    CLIENT_REQUESTS,
    ClientChannel,
    SdkClientChannel,
    SdkSession,
    answer_text,
    asked_text,
    relayed_params,
)
from opsgate.mcp._catalog import (
    Catalog,
    Refusal,
    ToolRunner,
    build_catalog,
    exposed_name,
    narrowed,
)
from opsgate.mcp._config import ProxyConfig, UpstreamSpec
from opsgate.mcp._handlers import build_server
from opsgate.mcp._lock import LockEntry, LockFile, definition_hash
from opsgate.mcp._progress import ClientProgress, ProgressChannel, ProgressRelay
from opsgate.mcp._results import as_data, error_result, from_data, text_of
from opsgate.mcp._rpc import RpcError
from opsgate.mcp._subscriptions import Subscriptions
from opsgate.mcp._text import one_line
from opsgate.mcp._upstream import Upstream, UpstreamError
from opsgate.policy import STAGE_SCOPES, CompiledPolicy, PolicyDocument, Reason
from opsgate.recorder import Event, EventType, Recorder

__all__ = ["Identity", "McpProxy", "Notifier", "ProxyError", "RequestContext"]

#: The session of the call being executed and its client's progress token (read by the
#: upstream runner, in the call's task).
_CURRENT_CALL: contextvars.ContextVar[tuple[_Session, ClientProgress | None] | None] = (
    contextvars.ContextVar("opsgate_mcp_call", default=None)
)
#: An upstream's log lines the proxy's log takes a minute (`McpProxy._logged`).
LOG_LINES_PER_MINUTE = 60
_LOG_CHARS = 1000
#: Suggested values relayed for an argument (MCP's own bound), each cut to so many characters.
_COMPLETIONS, _COMPLETION_CHARS = 100, 1000
#: Where the identity of an HTTP request is kept by the bearer-token check.
IDENTITY_SCOPE_KEY = "opsgate.identity"


class ProxyError(Exception):
    """Something inside the proxy failed: the call it concerns is denied."""


@dataclass(frozen=True, slots=True)
class Identity:
    """Who a run is for: the invoker (a person, a service) and the agent identity."""

    invoker: str
    agent_id: str


class Notifier(ProgressChannel, Protocol):
    """Where a client session hears of changes and of its calls' progress (the SDK's
    `ServerSession` methods)."""

    async def send_tool_list_changed(self) -> None: ...

    async def send_resource_list_changed(self) -> None: ...

    async def send_prompt_list_changed(self) -> None: ...

    async def send_resource_updated(self, uri: str) -> None: ...


class RequestContext(Protocol):
    """What the proxy reads of a request: the SDK's `ServerRequestContext` (HTTP, with the
    HTTP request) or the stdio server's (no request: one session)."""

    @property
    def session(self) -> Notifier: ...

    @property
    def request(self) -> Any: ...


@dataclass
class _Session:
    key: str
    run: Run
    identity: Identity
    last_used: float = field(default_factory=time.monotonic)
    notifier: Notifier | None = None
    subscriptions: set[str] = field(default_factory=set)


class McpProxy:
    """The proxy's state and handlers; `server()` gives the MCP server to run.

    Args:
        lock: The pins; None pins what the upstreams list at `start` (``--no-lock``).
        lock_path: Re-read when an upstream's tools change, so a new lock takes effect.
    """

    def __init__(
        self,
        *,
        document: PolicyDocument,
        version: str,
        source: str,
        workflow: str,
        config: ProxyConfig,
        upstreams: Mapping[str, Upstream],
        specs: Mapping[str, UpstreamSpec],
        identity: Identity,
        recorder: Recorder,
        approver: Approver | None = None,
        lock: LockFile | None = None,
        lock_path: Path | None = None,
        log: TextIO | None = None,
        quotas: QuotaLedger | None = None,
        stops: StopSource | None = None,
        stages: StageSource | None = None,
        shadow: tuple[PolicyDocument, str, str] | None = None,
    ) -> None:
        if workflow not in document.workflows:
            known = ", ".join(sorted(document.workflows)) or "none"
            raise ProxyError(f"the policy has no workflow `{workflow}` (workflows: {known})")
        self.document, self.version, self.source = document, version, source
        self.workflow = workflow
        self.config = config
        self.upstreams = dict(upstreams)
        self.specs = dict(specs)
        self.identity = identity
        self.recorder = recorder
        self.approver = approver
        self.quotas = quotas if quotas is not None else InMemoryQuotaLedger()
        self.stops = stops
        self.stages = stages
        self.shadow = shadow
        """A candidate policy (document, version, source) deciding beside the live one."""
        self.lock = lock
        self.lock_path = lock_path
        self.log = log or sys.stderr
        self.counts: Counter[str] = Counter()
        """Calls by outcome and proxy failures (``internal_error``), for reports."""
        self._listings: dict[str, list[mcp_types.Tool]] = {}
        self._down: dict[str, str] = {}
        self._sessions: dict[str, _Session] = {}
        self._rebuilding = asyncio.Lock()
        self._resource_routes: dict[str, str] = {}
        self._template_routes: dict[str, str] = {}
        self._subscriptions = Subscriptions(self.upstreams, self.say)
        self._pending: set[asyncio.Task[None]] = set()
        self._calling: dict[str, Counter[str]] = {}
        """Upstream → the keys of the sessions whose calls it is running."""
        self._progress = ProgressRelay(self.counts)
        self._log_minutes: dict[str, tuple[float, int]] = {}
        """Upstream → (when its minute of log lines began, lines in it)."""
        for upstream in self.upstreams.values():
            upstream.listen(self.upstream_notified, self.upstream_asked)
        self._catalog: Catalog | None = None
        self._gateway: Gateway | None = None
        self._broken: str | None = None

    # -- start and stop ------------------------------------------------------------------

    async def start(self) -> None:
        """List every upstream, pin (without a lock), bind the policy, make the gateway."""
        await asyncio.gather(*(self._list(name) for name in self.upstreams))
        if self.lock is None:
            self.lock = self._pins_now()
        catalog = self._build()
        self._gateway = Gateway(
            catalog.toolbelt,
            catalog.policy,
            approver=self.approver,
            recorder=self.recorder,
            approval_timeout_s=self.config.approval_timeout_seconds,
            quotas=self.quotas,
            stops=self.stops,
            stages=self.stages,
            shadow=self._shadow_of(catalog),
        )
        self._catalog = catalog
        for name, refusal in sorted(catalog.refused.items()):
            self.say(f"`{name}` is refused: {refusal.reason}: {refusal.message}")

    async def close(self) -> None:
        """End every open run (completed) and stop the upstreams."""
        for session in list(self._sessions.values()):
            self.end_session(session.key)
        if self._pending:
            await asyncio.gather(*self._pending, return_exceptions=True)
        for upstream in self.upstreams.values():
            failures = ", ".join(f"{k} {v}" for k, v in sorted(upstream.counts.items()) if v)
            if failures:
                self.say(f"upstream `{upstream.name}`: {failures}")
            try:
                await upstream.close()
            except Exception as exc:  # stopping one must not keep the others running
                self.say(f"upstream `{upstream.name}` did not stop cleanly: {type(exc).__name__}")
        if self._gateway is not None:
            self._gateway.close()

    def end_session(self, key: str) -> None:
        """End the run of a client session that closed."""
        session = self._sessions.pop(key, None)
        if session is None:
            return
        for uri in sorted(session.subscriptions):
            self._later(self._release(session, uri))
        if self._gateway is None:
            return
        try:
            self._gateway.finish(session.run, reason="mcp session closed")
        except Exception as exc:  # the record is out of reach: said, not raised at close
            self.say(f"the end of run {session.run.run_id} was not recorded: {exc}")

    @property
    def gateway(self) -> Gateway:
        """The gateway (after `start`)."""
        if self._gateway is None:
            raise ProxyError("the proxy has not started")
        return self._gateway

    @property
    def catalog(self) -> Catalog:
        """The tools in force (after `start`; none while they cannot be checked)."""
        if self._catalog is None:
            raise ProxyError("the proxy has not started")
        if self._broken is not None:
            raise ProxyError(self._broken)
        return self._catalog

    # -- the catalog ---------------------------------------------------------------------

    async def _list(self, name: str) -> None:
        try:
            self._listings[name] = await self.upstreams[name].list_tools()
            self._down.pop(name, None)
        except UpstreamError as exc:
            self._listings[name] = []
            self._down[name] = str(exc)
            self.say(f"upstream `{name}`: {exc}")

    def _pins_now(self) -> LockFile:
        """Without a lock: pin each listed tool as it is now (changes later are drift)."""
        pins: dict[str, LockEntry] = {}
        for upstream, tools in self._listings.items():
            for tool in tools:
                name = exposed_name(upstream, tool.name, self.config.namespace)
                if name is not None and name not in pins:
                    pins[name] = LockEntry(upstream, tool.name, definition_hash(tool))
        return LockFile(pins)

    def _shadow_of(self, catalog: Catalog) -> CompiledPolicy | None:
        """The candidate policy bound to the tools the catalog serves (those it names)."""
        if self.shadow is None:
            return None
        document, version, source = self.shadow
        if self.workflow not in document.workflows:
            return None
        usable = set(catalog.toolbelt.names()) & set(document.workflows[self.workflow].tools)
        return CompiledPolicy(
            narrowed(document, self.workflow, usable),
            catalog.toolbelt,
            version=version,
            source=source,
        )

    def _build(self) -> Catalog:
        assert self.lock is not None
        return build_catalog(
            document=self.document,
            version=self.version,
            source=self.source,
            workflow=self.workflow,
            listings=self._listings,
            down=self._down,
            specs=self.specs,
            lock=self.lock,
            namespace=self.config.namespace,
            make_runner=self._runner,
        )

    async def tools_changed(self, upstream: str) -> None:
        """An upstream's tools changed (or it restarted): list them again, re-read the lock,
        rebind, audit what is now refused, and tell the clients."""
        try:
            catalog, before = await self._rebind(upstream)
        except Exception as exc:  # fail closed: no tool is served on a catalog not rebuilt
            self._broken = f"the tools could not be checked again ({type(exc).__name__})"
            self.say(f"{self._broken}: {one_line(exc)}; refusing every call until they are")
            return
        self._broken = None
        for name, refusal in sorted(catalog.refused.items()):
            if before is None or before.refused.get(name) != refusal:
                self.say(f"`{name}` is refused: {refusal.reason}: {refusal.message}")
                self._audit_refusal(name, refusal)
        await self._notify_clients()

    async def _rebind(self, upstream: str) -> tuple[Catalog, Catalog | None]:
        async with self._rebuilding:
            await self._list(upstream)
            if self.lock_path is not None:
                try:
                    fresh = LockFile.read(self.lock_path)
                except Exception as exc:  # a broken lock pins nothing new: the old pins hold
                    self.say(f"the lock cannot be read again ({exc}); keeping the pins in force")
                    fresh = None
                if fresh is not None:
                    self.lock = fresh
            before = self._catalog
            catalog = self._build()
            gateway = self.gateway
            gateway.toolbelt, gateway.policy = catalog.toolbelt, catalog.policy
            gateway.shadow = self._shadow_of(catalog)
            self._catalog = catalog
        return catalog, before

    def _audit_refusal(self, tool: str, refusal: Refusal) -> None:
        for session in list(self._sessions.values()):
            if session.run.active:
                self._record_decision(session.run, "", tool, refusal)

    async def _notify_clients(self) -> None:
        await _tell(self._notifiers(), lambda n: n.send_tool_list_changed())

    # -- sessions ------------------------------------------------------------------------

    def session(self, ctx: RequestContext | None) -> _Session:
        """The run of the client session a request belongs to (started on first use).

        Raises:
            ProxyError: an HTTP request without an authenticated identity, or another
                identity than the one that started the session.
        """
        key, identity = self._who(ctx)
        found = self._sessions.get(key)
        if found is not None:
            if found.identity != identity:
                raise ProxyError("this MCP session belongs to another identity")
            found.last_used = time.monotonic()
        else:
            run = self.gateway.start_run(
                self.workflow,
                invoker=identity.invoker,
                agent_id=identity.agent_id,
                request=self.config.request,
            )
            found = self._sessions[key] = _Session(key, run, identity)
        if ctx is not None:
            found.notifier = ctx.session
        return found

    def _who(self, ctx: RequestContext | None) -> tuple[str, Identity]:
        request = None if ctx is None else ctx.request
        if request is None:  # stdio (or in process): one session, the configured identity
            return "stdio", self.identity
        scope = getattr(request, "scope", None) or {}
        identity = scope.get(IDENTITY_SCOPE_KEY)
        if not isinstance(identity, Identity):
            raise ProxyError("the request carries no authenticated identity")
        headers = getattr(request, "headers", None) or {}
        key = headers.get("mcp-session-id") or f"request-{os.urandom(8).hex()}"
        return f"http:{key}", identity

    # -- tools ---------------------------------------------------------------------------

    def visible_tools(self, session: _Session) -> list[mcp_types.Tool]:
        """What the policy allows this run at its stage, as MCP definitions."""
        catalog, policy = self.catalog, self.gateway.policy
        agent = session.identity.agent_id
        scopes = STAGE_SCOPES[policy.stage(self.workflow, agent)]
        shown = []
        for name in policy.allowed_tools(self.workflow, agent):
            tool, contract = catalog.tools.get(name), catalog.toolbelt.find(name)
            if tool is None or contract is None or contract.scope not in scopes:
                continue
            hints = tool.annotations
            shown.append(
                mcp_types.Tool(
                    name=name,
                    title=tool.title,
                    description=tool.description,
                    input_schema=contract.parameters_schema,
                    annotations=mcp_types.ToolAnnotations(
                        read_only_hint=contract.scope == "read",
                        destructive_hint=contract.impact == "high",
                        open_world_hint=None if hints is None else hints.open_world_hint,
                    ),
                )
            )
        return shown

    async def call(
        self,
        ctx: RequestContext | None,
        name: str,
        arguments: Any,
        *,
        progress: str | int | None = None,
    ) -> mcp_types.CallToolResult:
        """One ``tools/call``, through the gate; any failure in here denies it.
        ``progress``: the client's progress token (its upstream's progress is relayed)."""
        outcome: ToolOutcome | None = None
        try:
            session = self.session(ctx)
            refusal = self.catalog.refused.get(name)
            if refusal is not None and refusal.reason == "upstream_unavailable":
                await self._retry_upstream(name)
                refusal = self.catalog.refused.get(name)
            if refusal is not None:
                self._record_decision(session.run, os.urandom(8).hex(), name, refusal, arguments)
                self.counts["refused"] += 1
                return error_result(
                    f"opsgate refused `{name}` ({refusal.reason}): {refusal.message}",
                    {"status": "refused", "reason": refusal.reason},
                )
            client = None if progress is None else ClientProgress(progress)
            token = _CURRENT_CALL.set((session, client))
            try:
                outcome = await self.gateway.call(session.run, name, arguments)
            finally:
                _CURRENT_CALL.reset(token)
            self.counts[outcome.status.value] += 1
            return self._answer(outcome)
        except Exception as exc:  # fail closed: a bug, the store, the policy, anything
            return self._internal_error(name, exc, ran=outcome is not None and outcome.ok)

    async def _retry_upstream(self, name: str) -> None:
        assert self.lock is not None
        entry = self.lock.tools.get(name)
        if entry is not None and entry.upstream in self.upstreams:
            await self.tools_changed(entry.upstream)

    def _answer(self, outcome: ToolOutcome) -> mcp_types.CallToolResult:
        if outcome.ok:
            return from_data(outcome.result)
        reason = outcome.decision.reason
        meta = {
            "status": outcome.status.value,
            "reason": str(reason),
            "rule": outcome.decision.rule,
            "call_id": outcome.call_id,
        }
        if outcome.status.value == "error":
            text = f"`{outcome.tool}` failed: {outcome.message}"
        else:
            message = outcome.message.removeprefix("denied: ")
            text = f"opsgate {outcome.status.value} `{outcome.tool}` ({reason}): {message}"
        return error_result(text, meta)

    def _internal_error(self, name: str, exc: Exception, *, ran: bool) -> mcp_types.CallToolResult:
        self.counts["internal_error"] += 1
        kind = type(exc).__name__
        self.say(f"internal error on `{name}`: {kind}: {one_line(exc)}")
        why = one_line(exc) if isinstance(exc, ProxyError) else kind  # our own words only
        if ran:
            text = f"`{name}` ran, but opsgate could not return its result ({why})"
        else:
            text = (
                f"opsgate denied `{name}` (internal_error): the proxy could not check this call "
                f"({why}); nothing ran"
            )
        return error_result(text, {"status": "denied", "reason": "internal_error"})

    def _record_decision(
        self, run: Run, call_id: str, tool: str, refusal: Refusal, arguments: Any = None
    ) -> None:
        """A refusal the proxy makes before the gateway (a tool not pinned, not listed),
        recorded like the gateway's own: proposed (for a call), then the decision."""
        rule = "mcp.lock" if refusal.reason == "tool_definition_changed" else "mcp"
        if call_id:  # a call: proposed, then denied, counted and capped like the gate's own
            self.gateway.refuse(
                run,
                tool,
                arguments if isinstance(arguments, dict) else {},
                reason=Reason(refusal.reason),
                rule=rule,
                message=refusal.message,
                call_id=call_id,
            )
            return
        # no call: the run's record says what changed in its tools
        self._record_own_decision(run, tool, "deny", refusal.reason, rule, refusal.message)

    def _record_own_decision(
        self, run: Run, tool: str, effect: str, reason: str, rule: str, message: str, **more: Any
    ) -> None:
        """A decision the proxy makes on no tool call (a tool's definition changed, an
        upstream's request to the client), in the run's record like the gate's own."""
        data = {
            "call_id": "",
            "tool": tool,
            **more,
            "effect": effect,
            "reason": reason,
            "rule": rule,
            "message": message,
            "policy_version": self.version,
        }
        event = Event(EventType.DECISION, run.run_id, run.next_seq(), time.time(), data)
        self.recorder.record(event)

    def _runner(self, upstream: str, tool: str) -> ToolRunner:
        """The function a contract calls: the upstream tool, its result as JSON data."""

        async def run_tool(**arguments: Any) -> Any:
            sent = {k: v for k, v in arguments.items() if v is not None}  # left out: absent
            session, client = _CURRENT_CALL.get() or (None, None)
            calling = self._calling.setdefault(upstream, Counter())
            key = "" if session is None else session.key
            calling[key] += 1  # whose client the upstream may ask in mid-call
            try:
                if client is None or session is None:
                    result = await self.upstreams[upstream].call_tool(tool, sent)
                else:
                    result = await self._with_progress(session, client, upstream, tool, sent)
            finally:
                calling[key] -= 1
                if calling[key] <= 0:
                    del calling[key]
            if result.is_error:
                text = text_of(result)
                if session is not None:  # its words reach the model: they are untrusted context
                    self.gateway.observe(
                        session.run,
                        text,
                        trust="untrusted",
                        source=f"tool:{upstream}.{tool}#error",
                    )
                raise UpstreamError("UpstreamToolError", f"upstream tool error: {text}")
            return as_data(result, self.config.max_result_bytes)

        return run_tool

    async def _with_progress(
        self,
        session: _Session,
        client: ClientProgress,
        upstream: str,
        tool: str,
        sent: dict[str, Any],
    ) -> mcp_types.CallToolResult:
        """Call the upstream tool with a progress token of the proxy's own, its progress
        relayed to ``session`` under the client's token (`opsgate.mcp._progress`)."""
        source = f"tool:{upstream}.{tool}#progress"

        def observe(message: str) -> None:
            self.gateway.observe(session.run, message, trust="untrusted", source=source)

        with self._progress.call(upstream, client, session.notifier, observe) as meta:
            return await self.upstreams[upstream].call_tool(tool, sent, meta)

    # -- resources and prompts (read-only) -----------------------------------------------

    async def list_resources(self) -> list[mcp_types.Resource]:
        """Every upstream's resources (an upstream that has none, or fails, adds none)."""
        found: list[mcp_types.Resource] = []
        for name, upstream in self.upstreams.items():
            try:
                page = await upstream.request("resources/list", lambda s: s.list_resources())
            except UpstreamError:
                continue
            for resource in page.resources:
                self._resource_routes.setdefault(str(resource.uri), name)
                found.append(resource)
        return found

    async def list_resource_templates(self) -> list[mcp_types.ResourceTemplate]:
        """Every upstream's resource templates."""
        found: list[mcp_types.ResourceTemplate] = []
        for upstream in self.upstreams.values():
            try:
                page = await upstream.request(
                    "resources/templates/list", lambda s: s.list_resource_templates()
                )
            except UpstreamError:
                continue
            found.extend(page.resource_templates)
            for template in page.resource_templates:
                self._template_routes[template.uri_template] = upstream.name
        return found

    async def read_resource(
        self, ctx: RequestContext | None, uri: str
    ) -> mcp_types.ReadResourceResult:
        """Read a resource from its upstream; its text enters the run as the policy's
        provenance says (`trusted_resources`, `untrusted_resources`), else as the config
        says of that upstream's resources (untrusted by default)."""
        session = self.session(ctx)
        name = self._resource_upstream(uri)
        result: mcp_types.ReadResourceResult = await self.upstreams[name].request(
            "resources/read", lambda s: s.read_resource(uri)
        )
        said = self.document.workflows[self.workflow].provenance.resource_trust(uri)
        trust = said or self.specs[name].resources
        for content in result.contents:
            text = getattr(content, "text", None)
            shown = text if isinstance(text, str) else f"<binary resource {uri}>"
            self.gateway.observe(session.run, shown, trust=trust, source=f"resource:{name}:{uri}")
        return result

    def _resource_upstream(self, uri: str) -> str:
        name = self._resource_routes.get(uri)
        if name is None and len(self.upstreams) == 1:
            name = next(iter(self.upstreams))
        if name is None:
            raise ProxyError("unknown resource; list the resources first")
        return name

    async def subscribe(self, ctx: RequestContext | None, uri: str) -> None:
        """Subscribe a session to a resource's updates (relayed to it from its upstream)."""
        session = self.session(ctx)
        if uri not in session.subscriptions:
            await self._subscriptions.add(session.key, uri, self._resource_upstream(uri))
            session.subscriptions.add(uri)

    async def unsubscribe(self, ctx: RequestContext | None, uri: str) -> None:
        """End a session's subscription (the upstream's, when it was the last)."""
        session = self.session(ctx)
        if uri in session.subscriptions:
            await self._release(session, uri)

    async def _release(self, session: _Session, uri: str) -> None:
        session.subscriptions.discard(uri)
        await self._subscriptions.remove(session.key, uri)

    async def upstream_notified(self, upstream: str, method: str, params: Any) -> None:
        """Relay an upstream's notifications to the sessions they concern: a resource's
        update to those subscribed to its URI (from that upstream only), a changed list to
        every session, a call's progress to the session whose call it is; its log messages
        go to the proxy's log (`_logged`). Anything else is not relayed."""
        if method == "notifications/resources/updated":
            uri = params.get("uri") if isinstance(params, dict) else None
            if not isinstance(uri, str):
                return
            keys = self._subscriptions.keys_for(uri, upstream)
            notifiers = [self._sessions[k].notifier for k in keys if k in self._sessions]
            await _tell(notifiers, lambda n: n.send_resource_updated(uri))
        elif method == "notifications/resources/list_changed":
            await _tell(self._notifiers(), lambda n: n.send_resource_list_changed())
        elif method == "notifications/prompts/list_changed":
            await _tell(self._notifiers(), lambda n: n.send_prompt_list_changed())
        elif method == "notifications/progress":
            await self._progress.relay(upstream, params)
        elif method == "notifications/message":
            self._logged(upstream, params)

    async def upstream_asked(self, upstream: str, method: str, params: Any) -> Any:
        """An upstream's request to the client (sampling, elicitation), in mid-call:
        relayed to the one session whose call it is running, when the config lets that
        upstream ask and the client can answer; decided and recorded in that session's
        run first, what it asks and what it is told entering the run as untrusted.

        Raises:
            RpcError: refused (the upstream hears why) or the client's own error.
        """
        kind = CLIENT_REQUESTS.get(method)
        if kind is None:
            raise RpcError(-32601, f"the proxy does not serve {method}")
        keys = [key for key in self._calling.get(upstream, ()) if key in self._sessions]
        session = self._sessions[keys[0]] if len(keys) == 1 else None
        channel: Any = session.notifier if session is not None else None
        if isinstance(channel, SdkSession) and not isinstance(channel, ClientChannel):
            channel = SdkClientChannel(channel)  # the SDK's server (a file or terminal stdin)
        if kind not in self.specs[upstream].client_requests:
            reason, why = "client_request_not_allowed", f"`{upstream}` may not ask for {kind}"
        elif session is None:
            reason = "no_calling_session"
            why = f"{kind} is relayed only in mid-call of one session ({len(keys)} calling)"
        elif not isinstance(channel, ClientChannel) or not channel.asks.can(kind):
            reason, why = "client_cannot", f"the client did not announce {kind}"
        else:
            reason, why = "allowed", f"relayed to the client of run {session.run.run_id}"
        if session is not None:  # before anything is relayed (write-ahead, as a tool call's)
            effect = "allow" if reason == "allowed" else "deny"
            rule = f"mcp.upstreams.{upstream}.client_requests"
            self._record_own_decision(
                session.run, method, effect, reason, rule, why, upstream=upstream
            )
        if reason != "allowed" or session is None or not isinstance(channel, ClientChannel):
            self.counts[f"{kind}_refused"] += 1
            self.say(f"upstream `{upstream}` asked for {kind}: refused ({reason}): {why}")
            raise RpcError(-32601 if reason == "client_request_not_allowed" else -32603, why)
        sent = relayed_params(kind, params)
        self.gateway.observe(
            session.run, asked_text(kind, sent), trust="untrusted", source=f"{kind}:{upstream}"
        )
        await self.recorder.settle(session.run.run_id)  # write-ahead: kept before it is asked
        async with asyncio.timeout(self.config.approval_timeout_seconds):
            answer = await channel.ask(method, sent)
        shown = answer_text(kind, answer)
        self.gateway.observe(
            session.run, shown, trust="untrusted", source=f"{kind}:{upstream}#answer"
        )
        self.counts[f"{kind}_relayed"] += 1
        return answer

    def _logged(self, upstream: str, params: Any) -> None:
        """An upstream's log message, on the operator's log (the proxy's stderr), never a
        client's: an upstream several sessions share would tell one of another's calls.
        At most `LOG_LINES_PER_MINUTE` lines an upstream; the rest are counted."""
        if not isinstance(params, dict):
            return
        now = time.monotonic()
        since, lines = self._log_minutes.get(upstream, (now, 0))
        if now - since >= 60:
            since, lines = now, 0
        self._log_minutes[upstream] = (since, lines + 1)
        if lines >= LOG_LINES_PER_MINUTE:
            self.counts["log_dropped"] += 1
            if lines == LOG_LINES_PER_MINUTE:
                self.say(f"upstream `{upstream}` logs more than {lines} lines a minute: dropped")
            return
        said = _log_text(params.get("data"))
        logger = params.get("logger")
        where = f" {logger}" if isinstance(logger, str) else ""
        self.say(f"upstream `{upstream}` log {params.get('level')}{where}: {said}")

    def _notifiers(self) -> list[Notifier | None]:
        return [session.notifier for session in list(self._sessions.values())]

    def _later(self, work: Coroutine[Any, Any, None]) -> None:
        """Run ``work`` in a task of its own, awaited at `close`."""
        try:
            task = asyncio.get_running_loop().create_task(work)
        except RuntimeError:  # no loop (a session ended outside one): nothing to tell
            work.close()
            return
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def list_prompts(self) -> list[mcp_types.Prompt]:
        """Every upstream's prompts, under exposed names."""
        found: list[mcp_types.Prompt] = []
        for name, upstream in self.upstreams.items():
            try:
                page = await upstream.request("prompts/list", lambda s: s.list_prompts())
            except UpstreamError:
                continue
            for prompt in page.prompts:
                exposed = exposed_name(name, prompt.name, self.config.namespace)
                if exposed is not None:
                    found.append(prompt.model_copy(update={"name": exposed}))
        return found

    async def get_prompt(
        self, ctx: RequestContext | None, name: str, arguments: dict[str, str]
    ) -> mcp_types.GetPromptResult:
        """A prompt from its upstream; its messages enter the run as context."""
        session = self.session(ctx)
        upstream, prompt = self._prompt_route(name)
        result: mcp_types.GetPromptResult = await self.upstreams[upstream].request(
            "prompts/get", lambda s: s.get_prompt(prompt, arguments)
        )
        trust = self.specs[upstream].resources
        for message in result.messages:
            text = getattr(message.content, "text", None)
            shown = text if isinstance(text, str) else "<non-text prompt content>"
            self.gateway.observe(
                session.run, shown, trust=trust, source=f"prompt:{upstream}:{prompt}"
            )
        return result

    async def complete(
        self, ctx: RequestContext | None, params: mcp_types.CompleteRequestParams
    ) -> mcp_types.Completion:
        """Suggested values for an argument of a prompt or a resource template, from its
        upstream (for the client's person to pick from; none when it has none or fails)."""
        self.session(ctx)
        ref = params.ref
        asked: dict[str, Any] = params.model_dump(
            by_alias=True, mode="json", exclude_none=True, exclude={"meta"}
        )
        try:
            if isinstance(ref, mcp_types.PromptReference):
                upstream, name = self._prompt_route(ref.name)
                asked["ref"] = {"type": "ref/prompt", "name": name}
            else:
                upstream = self._template_routes.get(ref.uri) or self._resource_upstream(ref.uri)
            result: mcp_types.CompleteResult = await self.upstreams[upstream].request(
                "completion/complete", lambda s: s.complete(asked)
            )
        except (ProxyError, UpstreamError, RpcError):
            self.counts["completion_failed"] += 1
            return mcp_types.Completion(values=[])
        found = result.completion
        values = [value[:_COMPLETION_CHARS] for value in found.values[:_COMPLETIONS]]
        more = found.has_more or len(found.values) > _COMPLETIONS
        return mcp_types.Completion(values=values, total=found.total, has_more=more or None)

    def _prompt_route(self, name: str) -> tuple[str, str]:
        if not self.config.namespace:
            if len(self.upstreams) != 1:
                raise ProxyError("prompts of several upstreams need namespaced names")
            return next(iter(self.upstreams)), name
        upstream, _, prompt = name.partition("__")
        if upstream not in self.upstreams or not prompt:
            raise ProxyError("no upstream has that prompt")
        return upstream, prompt

    # -- the MCP server ------------------------------------------------------------------

    def server(self) -> Server[Any]:
        """The low-level MCP server whose handlers are this proxy's."""
        return build_server(self)

    @staticmethod
    def initialization_options(server: Server[Any]) -> InitializationOptions:
        """What the proxy announces: tools may change (pins, restarts), and resources and
        prompts as their upstreams say."""
        changes = NotificationOptions(
            prompts_changed=True, resources_changed=True, tools_changed=True
        )
        return server.create_initialization_options(changes)

    def say(self, text: str) -> None:
        """One line for the operator on stderr (outside text made printable)."""
        with contextlib.suppress(Exception):  # a closed stderr never stops the proxy
            print(f"opsgate mcp-proxy: {one_line(text, 500)}", file=self.log, flush=True)


def _log_text(data: Any) -> str:
    """A log message's data as text, cut before anything else is done with it (a line
    may be megabytes): what `McpProxy.say` prints is cut at 500 characters anyway."""
    if isinstance(data, str):
        return data[:_LOG_CHARS]
    try:
        return orjson.dumps(data)[:_LOG_CHARS].decode(errors="replace")
    except orjson.JSONEncodeError:  # nested past orjson's limit
        return f"<{type(data).__name__} that cannot be shown>"


async def _tell(
    notifiers: list[Notifier | None], send: Callable[[Notifier], Awaitable[None]]
) -> None:
    """Send a notification to each session that has a channel (one that fails is
    skipped: the client lists or reads again itself)."""
    for notifier in notifiers:
        if notifier is not None:
            with contextlib.suppress(Exception):
                await send(notifier)
