"""`mcp.yaml`: the upstream MCP servers a proxy fronts, and what the proxy knows of their tools.

Scope and impact of each tool can be declared here, where the policy does not say them (the
policy decides which tools a workflow may use and at which stage; an MCP server's annotations
are defaults only). Values of
``env`` and ``headers`` may name environment variables as ``${NAME}``: secrets stay out of
the file.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)

from opsgate.contracts import Impact, Scope, Trust
from opsgate.errors import ConfigError, PolicyError
from opsgate.policy import read_yaml

__all__ = ["ProxyConfig", "ToolSpec", "UpstreamSpec", "expand_env", "load_config"]

_UPSTREAM_NAME = r"^[a-z][a-z0-9]{0,15}(?:_[a-z0-9]+)*$"
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
#: What an upstream may ask the proxy's client for, in mid-call (relayed, audited).
ClientRequest = Literal["sampling", "elicitation"]
_CLIENT_REQUESTS_HELP = (
    "What the server may ask the client for (sampling: a message from the client's model; "
    "elicitation: an answer from its person). None unless listed."
)
_ROOTS_HELP = (
    "The filesystem roots this server is told of when it asks (`roots/list`): `file://` URIs "
    "or paths (relative to this file's folder). The proxy answers; a client's own roots are "
    "never relayed. None (the default): the server hears the proxy has no roots to give."
)


def _roots(roots: list[str]) -> list[str]:
    for root in roots:
        if "://" in root and not root.startswith("file://"):
            raise ValueError(f"a root is a `file://` URI or a path, not `{root}`")
    return roots


Roots = Annotated[list[str], AfterValidator(_roots)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ToolSpec(_Strict):
    """What the proxy declares of one upstream tool (over the server's annotations)."""

    scope: Scope | None = None
    impact: Impact | None = None
    output: Trust | None = Field(None, description="Default trust of the tool's results.")


class UpstreamSpec(_Strict):
    """One upstream MCP server: a stdio command or a streamable-HTTP URL."""

    command: list[str] | None = Field(None, min_length=1)
    env: dict[str, str] = Field(default_factory=dict)
    cwd: str | None = None
    url: str | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    output: Trust = Field("untrusted", description="Default trust of this server's tool results.")
    resources: Trust = Field("untrusted", description="Trust of its resources and prompts.")
    tools: dict[str, ToolSpec] = Field(default_factory=dict)
    client_requests: list[ClientRequest] = Field(
        default_factory=list, description=_CLIENT_REQUESTS_HELP
    )
    roots: Roots = Field(default_factory=list, description=_ROOTS_HELP)

    @model_validator(mode="after")
    def _one_transport(self) -> UpstreamSpec:
        if (self.command is None) == (self.url is None):
            raise ValueError("an upstream has either `command` (stdio) or `url` (HTTP)")
        if self.url is not None and not re.match(r"^https?://", self.url):
            raise ValueError("`url` must be an http:// or https:// URL")
        if self.url is not None and (self.env or self.cwd):
            raise ValueError("`env` and `cwd` are for stdio upstreams (`command`)")
        if self.command is not None and self.headers:
            raise ValueError("`headers` are for HTTP upstreams (`url`)")
        return self


class ProxyConfig(_Strict):
    """The whole ``mcp.yaml``."""

    invoker: str | None = None
    agent_id: str | None = None
    request: str = "MCP session through opsgate mcp-proxy"
    lock: str | None = Field(None, description="The lock file (default: mcp.lock beside).")
    approval_timeout_seconds: float = Field(300.0, gt=0)
    connect_timeout_seconds: float = Field(15.0, gt=0)
    max_result_bytes: int = Field(262_144, ge=1024)
    namespace: bool = Field(True, description="Tool names as `<upstream>__<tool>`.")
    upstreams: dict[Annotated[str, Field(pattern=_UPSTREAM_NAME)], UpstreamSpec] = Field(
        default_factory=dict
    )
    tools: dict[str, ToolSpec] = Field(
        default_factory=dict, description="Tool specs of the single upstream given after `--`."
    )
    client_requests: list[ClientRequest] = Field(
        default_factory=list, description="`client_requests` of the upstream after `--`."
    )
    roots: Roots = Field(default_factory=list, description="`roots` of the upstream after `--`.")


def load_config(path: Path) -> ProxyConfig:
    """Read and validate ``mcp.yaml``.

    Raises:
        ConfigError: unreadable, not YAML, or not a valid config (naming the key).
    """
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read `{path}`: {exc}") from None
    try:
        data = read_yaml(text, str(path))
    except PolicyError as exc:  # the YAML reader's error, with file and line
        raise ConfigError(str(exc)) from None
    try:
        return ProxyConfig.model_validate(data or {})
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(p) for p in first["loc"]) or "(top)"
        raise ConfigError(f"`{path}`: {where}: {first['msg']}") from None


def expand_env(value: str, where: str) -> str:
    """``${NAME}`` replaced by the environment variable (a missing one is an error that
    names the variable, never a value)."""

    def one(match: re.Match[str]) -> str:
        name = match.group(1)
        found = os.environ.get(name)
        if found is None:
            raise ConfigError(f"{where} needs environment variable `{name}`, which is not set")
        return found

    return _VAR.sub(one, value)
