"""`opsgate mcp-proxy`, `opsgate mcp lock` and `opsgate mcp token`: the MCP policy proxy."""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer

from opsgate.cli._common import EXIT_FAILED, cli_errors, console, err_console
from opsgate.cli._safe import shown
from opsgate.errors import ConfigError
from opsgate.gateway import (
    DurableApprovalQueue,
    StoreQuotaLedger,
    StoreStageSource,
    StoreStopSource,
)
from opsgate.mcp import (
    LockFile,
    ProxyOptions,
    TokenStore,
    build_proxy,
    current_pins,
    drift,
    lock_path,
    read_config,
    run_served,
    serve_http,
    serve_stdio,
)
from opsgate.policy import parse_policy, shadow_file
from opsgate.recorder import FanOutRecorder
from opsgate.store import open_store
from opsgate.wiring import store_recorders

mcp_app = typer.Typer(help="Pinned MCP tool definitions and proxy tokens.", no_args_is_help=True)
token_app = typer.Typer(help="Bearer tokens of `opsgate mcp-proxy --http`.", no_args_is_help=True)
mcp_app.add_typer(token_app, name="token")

PolicyOption = Annotated[Path, typer.Option("--policy", help="The policy file.")]
WorkflowOption = Annotated[str, typer.Option("--workflow", help="The workflow the runs are under.")]
ConfigOption = Annotated[
    Path | None, typer.Option("--config", help="mcp.yaml: upstreams, identities, tool scopes.")
]
LockOption = Annotated[
    Path | None, typer.Option("--lock", help="The lock file (default: mcp.lock beside --config).")
]
CommandArgument = Annotated[
    list[str] | None,
    typer.Argument(help="After `--`: the command of one upstream MCP server (stdio)."),
]
TokensOption = Annotated[
    Path | None,
    typer.Option("--tokens", help="Token file (default: $OPSGATE_HOME/mcp-tokens.json)."),
]
DbOption = Annotated[
    str | None,
    typer.Option("--db", help="Database URL (default: $OPSGATE_DATABASE_URL or .opsgate/)."),
]


def register(app: typer.Typer) -> None:
    """Add the MCP commands to `opsgate`."""
    app.command("mcp-proxy")(mcp_proxy)
    app.add_typer(mcp_app, name="mcp")


@cli_errors
def mcp_proxy(
    policy: PolicyOption,
    workflow: WorkflowOption,
    command: CommandArgument = None,
    config: ConfigOption = None,
    lock: LockOption = None,
    no_lock: Annotated[
        bool,
        typer.Option("--no-lock", help="No lock: pin what the upstreams list at start."),
    ] = False,
    http: Annotated[
        str | None,
        typer.Option("--http", help="Serve streamable HTTP at HOST:PORT (bearer token required)."),
    ] = None,
    tokens: TokensOption = None,
    invoker: Annotated[str | None, typer.Option("--invoker", help="Invoker of stdio runs.")] = None,
    agent: Annotated[
        str | None, typer.Option("--agent", help="Agent identity of stdio runs.")
    ] = None,
    shadow: Annotated[
        Path | None,
        typer.Option(
            "--shadow",
            help="A candidate policy deciding every call too, never acting "
            "(its differences are recorded: `opsgate policy shadow-report`); default: the "
            "workflow's `shadow` in the policy file.",
        ),
    ] = None,
    db: DbOption = None,
) -> None:
    """Serve MCP in front of upstream MCP servers; every tool call passes the gate."""
    if shadow is None:  # the policy file's candidate for the workflow, unless --shadow
        shadow = shadow_file(*parse_policy(policy), workflow)
    options = ProxyOptions(
        policy=policy,
        workflow=workflow,
        config=config,
        command=tuple(command or ()),
        lock=lock,
        no_lock=no_lock,
        invoker=invoker,
        agent_id=agent,
        shadow=shadow,
    )
    address = _address(http) if http else None
    with _recorded(db) as (recorder, approver, quotas, stops, stages):
        proxy = build_proxy(
            options,
            recorder=recorder,
            approver=approver,
            quotas=quotas,
            stops=stops,
            stages=stages,
        )
        if address is None:
            run_served(serve_stdio(proxy, settle=True))
            return
        host, port = address
        store = TokenStore(tokens)
        if not store.list():
            raise ConfigError(
                f"no tokens in `{store.path}`: create one with `opsgate mcp token create`"
            )

        def started() -> None:
            err_console.print(f"opsgate mcp-proxy: serving http://{host}:{port}/mcp", markup=False)

        with contextlib.suppress(KeyboardInterrupt):
            run_served(serve_http(proxy, host, port, store, started=started, settle=True))


@contextlib.contextmanager
def _recorded(
    db: str | None,
) -> Iterator[
    tuple[FanOutRecorder, DurableApprovalQueue, StoreQuotaLedger, StoreStopSource, StoreStageSource]
]:
    """The store's recorders (audit write-ahead, traces, costs), its approval queue, its
    quota ledger, its stop requests (`opsgate runs stop`, the console's Stop) and the stages
    set with `opsgate autonomy`."""
    store = open_store(db)
    recorders = store_recorders(store, durable="write_ahead")
    stops, stages = StoreStopSource(store), StoreStageSource(store)
    try:
        yield (
            FanOutRecorder(*recorders.all),
            DurableApprovalQueue(store),
            StoreQuotaLedger(store),
            stops,
            stages,
        )
    finally:
        stops.close()
        stages.close()
        for problem in recorders.close():
            err_console.print(f"opsgate mcp-proxy: {shown(problem)}", markup=False)
        store.close()


def _address(text: str) -> tuple[str, int]:
    match = re.fullmatch(r"(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.\-]+):(\d{1,5})", text)
    if not match or not 0 < int(match.group(2)) < 65536:
        raise ConfigError(f"--http takes HOST:PORT, such as 127.0.0.1:8765, not `{text}`")
    return match.group(1).strip("[]"), int(match.group(2))


@mcp_app.command("lock")
@cli_errors
def lock_command(
    command: CommandArgument = None,
    policy: Annotated[
        Path | None, typer.Option("--policy", help="Pin only the workflow's tools.")
    ] = None,
    workflow: Annotated[str, typer.Option("--workflow", help="The workflow of --policy.")] = "",
    config: ConfigOption = None,
    lock: LockOption = None,
    check: Annotated[
        bool, typer.Option("--check", help="Write nothing; exit 1 when the upstreams drifted.")
    ] = False,
) -> None:
    """Pin the upstream tools' definitions (sha256) in mcp.lock, or check them."""
    if policy is not None and not workflow:
        raise ConfigError("--policy needs --workflow")
    options = ProxyOptions(
        policy=policy, workflow=workflow, config=config, command=tuple(command or ()), lock=lock
    )
    path = lock_path(options, read_config(options))
    now = asyncio.run(current_pins(options))
    if check:
        lines = drift(LockFile.read(path), now)
        for line in lines:
            console.print(shown(line), soft_wrap=True)
        if lines:
            raise typer.Exit(EXIT_FAILED)
        console.print(f"{len(now.tools)} tools match `{shown(str(path))}`")
        return
    now.write(path)
    console.print(f"pinned {len(now.tools)} tools in `{shown(str(path))}`")


@token_app.command("create")
@cli_errors
def token_create(
    invoker: Annotated[str, typer.Option("--invoker", help="Who the runs are for.")],
    agent: Annotated[str, typer.Option("--agent", help="The agent identity of the runs.")],
    tokens: TokensOption = None,
) -> None:
    """Create a token (shown once; only its sha256 is stored)."""
    token, record = TokenStore(tokens).create(invoker, agent)
    console.print(token, markup=False)
    err_console.print(
        f"token {record.id} for invoker {shown(invoker)}, agent {shown(agent)}: shown once"
    )


@token_app.command("list")
@cli_errors
def token_list(tokens: TokensOption = None) -> None:
    """The tokens (ids and identities; no token can be read back)."""
    for record in TokenStore(tokens).list():
        console.print(f"{record.id}  {shown(record.invoker)}  {shown(record.agent_id)}")


@token_app.command("revoke")
@cli_errors
def token_revoke(
    token_id: Annotated[str, typer.Argument(help="The token's id (tok_…).")],
    tokens: TokensOption = None,
) -> None:
    """Revoke a token (a running proxy refuses it from its next request)."""
    if not TokenStore(tokens).revoke(token_id):
        raise ConfigError(f"no token `{token_id}`")
    console.print(f"revoked {shown(token_id)}")
