"""Wiring a proxy from its options, and serving it over stdio or streamable HTTP."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Awaitable, Callable, Coroutine, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import orjson
import uvicorn
from mcp.server.stdio import stdio_server

from opsgate.errors import ConfigError
from opsgate.gateway import Approver, QuotaLedger, StageSource, StopSource
from opsgate.mcp._config import ProxyConfig, UpstreamSpec, expand_env, load_config
from opsgate.mcp._http_server import McpHttpApp
from opsgate.mcp._line_server import LineServer
from opsgate.mcp._lock import LockFile
from opsgate.mcp._proxy import IDENTITY_SCOPE_KEY, Identity, McpProxy
from opsgate.mcp._stdio import claimed_stdio, line_pipes, native_stdio
from opsgate.mcp._tokens import TokenStore
from opsgate.mcp._upstream import Upstream, UpstreamTarget
from opsgate.policy import content_version, parse_policy
from opsgate.recorder import Recorder

__all__ = [
    "ProxyOptions",
    "build_proxy",
    "resolve_upstreams",
    "run_served",
    "serve_http",
    "serve_stdio",
    "settle_heap",
]

#: The upstream given after ``--`` (no config): its tools keep their own names.
SINGLE = "upstream"

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


@dataclass(frozen=True)
class ProxyOptions:
    """What the command line says (see `opsgate mcp-proxy`)."""

    policy: Path | None
    workflow: str
    config: Path | None = None
    command: tuple[str, ...] = ()
    lock: Path | None = None
    no_lock: bool = False
    invoker: str | None = None
    agent_id: str | None = None
    shadow: Path | None = None


def read_config(options: ProxyOptions) -> ProxyConfig:
    """The config file, or the defaults when the upstream comes after ``--``."""
    config = load_config(options.config) if options.config else ProxyConfig()
    if options.command and config.upstreams:
        raise ConfigError("give the upstream after `--` or in the config's `upstreams`, not both")
    if not options.command and not config.upstreams:
        raise ConfigError("no upstream: give its command after `--`, or `upstreams` in --config")
    return config


def upstream_specs(options: ProxyOptions, config: ProxyConfig) -> dict[str, UpstreamSpec]:
    """The upstreams by name (the one after ``--`` is named `SINGLE`)."""
    if options.command:
        single = UpstreamSpec(
            command=list(options.command),
            tools=config.tools,
            client_requests=config.client_requests,
            roots=config.roots,
        )
        return {SINGLE: single}
    return dict(config.upstreams)


def resolve_upstreams(specs: dict[str, UpstreamSpec], base: Path) -> dict[str, UpstreamTarget]:
    """Targets with ``${VAR}`` expanded from the environment (credentials never in files)."""
    targets = {}
    for name, spec in specs.items():
        env = {k: expand_env(v, f"upstream `{name}` env `{k}`") for k, v in spec.env.items()}
        headers = {
            k: expand_env(v, f"upstream `{name}` header `{k}`") for k, v in spec.headers.items()
        }
        cwd = None if spec.cwd is None else str((base / expand_env(spec.cwd, "cwd")).resolve())
        targets[name] = UpstreamTarget(
            name=name,
            command=tuple(spec.command or ()),
            env=env,
            cwd=cwd,
            url=spec.url,
            headers=headers,
            client_requests=tuple(spec.client_requests),
            roots=tuple(_root_uri(root, base, name) for root in spec.roots),
        )
    return targets


def _root_uri(root: str, base: Path, upstream: str) -> str:
    """A root as a ``file://`` URI (a path: from ``base``, resolved).

    Raises:
        ConfigError: it names something else (``${VAR}`` expanded first).
    """
    root = expand_env(root, f"upstream `{upstream}` root")
    if root.startswith("file://"):
        return root
    if "://" in root:
        raise ConfigError(f"upstream `{upstream}`: a root is a `file://` URI or a path")
    return (base / root).resolve().as_uri()


def lock_path(options: ProxyOptions, config: ProxyConfig) -> Path:
    """``--lock``, else the config's ``lock``, else ``mcp.lock`` beside the config."""
    if options.lock is not None:
        return options.lock
    base = options.config.parent if options.config else Path(".")
    return base / (config.lock or "mcp.lock")


def build_proxy(
    options: ProxyOptions,
    *,
    recorder: Recorder,
    approver: Approver | None = None,
    log: TextIO | None = None,
    quotas: QuotaLedger | None = None,
    stops: StopSource | None = None,
    stages: StageSource | None = None,
) -> McpProxy:
    """A proxy from the command line's options (not started).

    Raises:
        ConfigError / PolicyError: a bad config or policy, an unknown workflow, or no lock
            without ``--no-lock`` (fail closed: nothing unpinned is served).
    """
    config = read_config(options)
    if options.policy is None:
        raise ConfigError("the proxy needs a policy (--policy)")
    document, source = parse_policy(options.policy)
    if options.workflow not in document.workflows:
        known = ", ".join(sorted(document.workflows)) or "none"
        raise ConfigError(f"the policy has no workflow `{options.workflow}` (workflows: {known})")
    shadow = None
    if options.shadow is not None:
        candidate, candidate_source = parse_policy(options.shadow)
        if options.workflow not in candidate.workflows:
            raise ConfigError(f"the shadow policy has no workflow `{options.workflow}`")
        shadow = (candidate, content_version(candidate), candidate_source)
    specs = upstream_specs(options, config)
    base = options.config.parent if options.config else Path(".")
    path = lock_path(options, config)
    lock = None if options.no_lock else LockFile.read(path)
    if lock is None and not options.no_lock:
        raise ConfigError(
            f"no lock at `{path}`: pin the upstream tools first (`opsgate mcp lock`), or pass "
            "--no-lock to pin what the upstreams list at start (for this process only)"
        )
    proxy: McpProxy | None = None

    async def changed(name: str) -> None:
        if proxy is not None:
            await proxy.tools_changed(name)

    upstreams = {
        name: Upstream(
            target,
            on_tools_changed=changed,
            connect_timeout_s=config.connect_timeout_seconds,
        )
        for name, target in resolve_upstreams(specs, base).items()
    }
    proxy = McpProxy(
        document=document,
        version=content_version(document),
        source=source,
        workflow=options.workflow,
        config=config.model_copy(update={"namespace": config.namespace and not options.command}),
        upstreams=upstreams,
        specs=specs,
        identity=default_identity(options, config),
        recorder=recorder,
        approver=approver,
        lock=lock,
        lock_path=None if options.no_lock else path,
        log=log,
        quotas=quotas,
        stops=stops,
        stages=stages,
        shadow=shadow,
    )
    return proxy


def default_identity(options: ProxyOptions, config: ProxyConfig) -> Identity:
    """Invoker and agent of a stdio session: the options, else the config, else the user
    running the proxy and ``mcp-client``."""
    import getpass

    invoker = options.invoker or config.invoker
    if not invoker:
        try:
            invoker = getpass.getuser()
        except Exception:  # no user name in this environment
            invoker = "unknown"
    agent = options.agent_id or config.agent_id or "mcp-client"
    return Identity(expand_env(invoker, "invoker"), expand_env(agent, "agent_id"))


def run_served(main: Coroutine[Any, Any, None]) -> None:
    """Run a serving coroutine to its end on uvloop where it is installed (libuv's loop
    costs the proxy less CPU a call than asyncio's own), else on asyncio's."""
    try:
        import uvloop
    except ImportError:  # no uvloop on this platform
        asyncio.run(main)
        return
    uvloop.run(main)


def settle_heap() -> None:
    """After start-up: collect once, then leave what is alive now (modules, the policy, the
    catalog) out of every later collection. A full collection otherwise walks the whole
    heap again and again: ~135 ms each, ~7% of the proxy's CPU under load (measured)."""
    gc.collect()
    gc.freeze()


async def serve_stdio(proxy: McpProxy, *, settle: bool = False) -> None:
    """Serve one client over this process's stdin and stdout until it disconnects
    (``settle``: `settle_heap` once started, in a process that only serves)."""
    await proxy.start()
    if settle:
        settle_heap()
    try:
        if native_stdio():  # pipes or sockets: the proxy's own server, on the event loop
            async with claimed_stdio(0, 1) as fds, line_pipes(*fds) as (reader, writer):
                await LineServer(proxy, reader, writer).serve()
        else:  # a file, a terminal: the SDK's transport (threads) and server
            server = proxy.server()
            async with stdio_server() as (read, write):
                await server.run(read, write, proxy.initialization_options(server))
    finally:
        await proxy.close()


class BearerAuth:
    """ASGI middleware: a valid bearer token or 401; the token's identity goes with the
    request."""

    def __init__(self, app: Any, tokens: TokenStore) -> None:
        self.app = app
        self.tokens = tokens

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.lower(): v for k, v in scope.get("headers") or []}
        auth = headers.get(b"authorization", b"").decode("latin-1")
        token = auth[7:].strip() if auth[:7].lower() == "bearer " else ""
        try:
            record = self.tokens.identity(token) if token else None
        except ConfigError:
            record = None  # an unreadable token file lets nobody in
        if record is None:
            await _unauthorized(send)
            return
        scope[IDENTITY_SCOPE_KEY] = Identity(record.invoker, record.agent_id)
        await self.app(scope, receive, send)


async def _unauthorized(send: Send) -> None:
    body = orjson.dumps({"error": "invalid_token", "error_description": "a valid bearer token"})
    await send(
        {
            "type": "http.response.start",
            "status": 401,
            "headers": [
                (b"content-type", b"application/json"),
                (b"www-authenticate", b'Bearer error="invalid_token"'),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def http_app(proxy: McpProxy, tokens: TokenStore, host: str) -> Any:
    """The ASGI app: streamable HTTP at ``/mcp`` behind the bearer check (the proxy must
    be started first)."""
    return BearerAuth(McpHttpApp(proxy, host), tokens)


async def serve_http(
    proxy: McpProxy,
    host: str,
    port: int,
    tokens: TokenStore,
    *,
    started: Callable[[], None] | None = None,
    settle: bool = False,
) -> None:
    """Serve streamable HTTP at ``http://HOST:PORT/mcp`` until interrupted (``settle``:
    `settle_heap` once started, in a process that only serves)."""
    await proxy.start()
    if settle:
        settle_heap()
    try:
        app = http_app(proxy, tokens, host)
        server = uvicorn.Server(
            uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="on")
        )
        if started is not None:
            started()
        await server.serve()
    finally:
        await proxy.close()
