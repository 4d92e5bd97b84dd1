"""The MCP policy proxy: an MCP server in front of other MCP servers, every tool call
through the gateway (`opsgate mcp-proxy`), their definitions pinned (`opsgate mcp lock`)."""

from opsgate.mcp._catalog import Catalog, Refusal, build_catalog, exposed_name
from opsgate.mcp._config import ProxyConfig, ToolSpec, UpstreamSpec, load_config
from opsgate.mcp._lock import LockEntry, LockFile, definition_hash
from opsgate.mcp._pin import current_pins, drift
from opsgate.mcp._proxy import Identity, McpProxy, ProxyError
from opsgate.mcp._rpc import ConnectionClosed, RpcError, StdioClient
from opsgate.mcp._serve import (
    BearerAuth,
    ProxyOptions,
    build_proxy,
    http_app,
    lock_path,
    read_config,
    resolve_upstreams,
    run_served,
    serve_http,
    serve_stdio,
    settle_heap,
)
from opsgate.mcp._tokens import TokenRecord, TokenStore, default_token_path
from opsgate.mcp._upstream import Upstream, UpstreamError, UpstreamTarget

__all__ = [
    "BearerAuth",
    "Catalog",
    "ConnectionClosed",
    "Identity",
    "LockEntry",
    "LockFile",
    "McpProxy",
    "ProxyConfig",
    "ProxyError",
    "ProxyOptions",
    "Refusal",
    "RpcError",
    "StdioClient",
    "TokenRecord",
    "TokenStore",
    "ToolSpec",
    "Upstream",
    "UpstreamError",
    "UpstreamSpec",
    "UpstreamTarget",
    "build_catalog",
    "build_proxy",
    "current_pins",
    "default_token_path",
    "definition_hash",
    "drift",
    "exposed_name",
    "http_app",
    "load_config",
    "lock_path",
    "read_config",
    "resolve_upstreams",
    "run_served",
    "serve_http",
    "serve_stdio",
    "settle_heap",
]
