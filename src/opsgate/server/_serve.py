"""Serving the console with uvicorn: loopback by default, a warning when bound elsewhere;
one process, or several worker processes.

With several workers each process builds its own app from what the parent checked and
handed down (`worker_app`): the database URL, the router and policy files (loaded again
in each worker after the parent loaded them once, so a bad file still stops
``opsgate serve`` before it listens), and one session key for all, so a browser's
session cookie and CSRF token are good whichever worker answers. They travel as the
worker's start-up arguments, through the pipe `multiprocessing` starts it with (never in
an environment variable or a command line another user could read).

Each worker listens on a socket of its own, all bound to the one port with
``SO_REUSEPORT``, so the kernel spreads new connections over the workers. (On one shared
socket, uvicorn's ``--workers``, the first worker to wake accepts every connection
waiting: 16 clients connecting at once all landed on one worker, the others idle.) The
parent binds the sockets and listens before starting any worker (a port in use fails at
once; a connection made while a worker starts waits for it), restarts a worker that dies,
on its socket, and stops them all on SIGINT or SIGTERM.
"""

from __future__ import annotations

import ipaddress
import multiprocessing
import os
import secrets
import signal
import socket
from collections.abc import Callable
from multiprocessing.connection import wait
from pathlib import Path
from types import FrameType
from typing import Any

import uvicorn
from fastapi import FastAPI

from opsgate.contracts import Toolbelt
from opsgate.errors import ConfigError
from opsgate.models import load_router_config
from opsgate.policy import CompiledPolicy, load_policy
from opsgate.server._app import create_app
from opsgate.server._console import Console
from opsgate.server._session import SessionKeys

__all__ = ["DEFAULT_HOST", "DEFAULT_PORT", "MAX_WORKERS", "is_loopback", "serve", "worker_app"]

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8700
MAX_WORKERS = 64


def is_loopback(host: str) -> bool:
    """Whether ``host`` is reachable from this machine only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _policy(policy: Path | None, tools: str | None) -> CompiledPolicy | None:
    if policy is None:
        return None
    return load_policy(policy, Toolbelt.from_module(tools) if tools else None)


def serve(
    url: str | None,
    *,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    router: Path | None = None,
    policy: Path | None = None,
    tools: str | None = None,
    workers: int = 1,
    warn: Callable[[str], None] = print,
) -> None:
    """Serve the console over the database ``url`` until interrupted (``router``: the router
    file whose workflow budgets the Overview shows).

    ``policy`` (with its ``tools`` module when the policy does not name it) is the policy
    in force, for the Autonomy page. ``workers`` processes serve (1: this one).

    Raises:
        ConfigError: the router file does not load, or ``workers`` is out of range.
        PolicyError: the policy does not load.
    """
    if not 1 <= workers <= MAX_WORKERS:
        raise ConfigError(f"--workers takes 1 to {MAX_WORKERS}, not {workers}")
    settings = load_router_config(router) if router is not None else None
    if not is_loopback(host):
        warn(
            f"warning: the console is bound to `{host}`, reachable from other machines: "
            "put it behind TLS (cookies are then Secure) and give out viewer tokens by default"
        )
    compiled = _policy(policy, tools)
    if workers == 1:
        app = create_app(Console(url, router=settings, policy=compiled))
        uvicorn.run(app, host=host, port=port, log_level="warning", proxy_headers=True)
        return
    handed = {
        "url": url,
        "router": None if router is None else str(router.resolve()),
        "policy": None if policy is None else str(policy.resolve()),
        "tools": tools,
        "key": secrets.token_hex(32),
    }
    sockets = [_listening(host, port) for _ in range(workers)]
    try:
        _supervise(sockets, handed)
    finally:
        for sock in sockets:
            sock.close()


_BACKLOG = 2048  # uvicorn's
_RESTARTS = 5  # a worker that keeps dying (a file gone bad since the start): give up


def _listening(host: str, port: int) -> socket.socket:
    """A socket bound to (host, port) that other workers' sockets may share (SO_REUSEPORT).

    Raises:
        ConfigError: the address cannot be bound (in use, not this machine's).
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host.strip("[]"), port))
        sock.listen(_BACKLOG)  # from now on: connections wait for the worker, none refused
    except OSError as exc:
        sock.close()
        raise ConfigError(f"cannot listen on `{host}` port {port}: {exc.strerror}") from None
    return sock


def _worker(sock: socket.socket, handed: dict[str, Any]) -> None:
    """One worker process: the app from what the parent ``handed`` down, on its own socket."""
    config = uvicorn.Config(worker_app(handed), log_level="warning", proxy_headers=True)
    uvicorn.Server(config).run(sockets=[sock])


def _supervise(sockets: list[socket.socket], handed: dict[str, Any]) -> None:
    """Run one worker per socket until SIGINT or SIGTERM; restart one that dies.

    Raises:
        ConfigError: workers kept dying (`_RESTARTS` times).
    """
    spawn = multiprocessing.get_context("spawn")
    running: dict[int, tuple[socket.socket, multiprocessing.process.BaseProcess]] = {}
    stopping = False

    def start(sock: socket.socket) -> None:
        process = spawn.Process(target=_worker, args=(sock, handed), name="opsgate-console")
        process.start()
        assert process.sentinel is not None
        running[process.sentinel] = (sock, process)

    def stop(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        for _, process in running.values():
            if process.is_alive() and process.pid is not None:
                os.kill(process.pid, signal.SIGTERM)

    previous = {s: signal.signal(s, stop) for s in (signal.SIGINT, signal.SIGTERM)}
    deaths = 0
    try:
        for sock in sockets:
            start(sock)
        while running:
            for sentinel in wait(list(running)):
                assert isinstance(sentinel, int)
                sock, process = running.pop(sentinel)
                process.join()
                if stopping:
                    continue
                deaths += 1
                if deaths > _RESTARTS:
                    stop(signal.SIGTERM, None)
                    for _, other in running.values():
                        other.join(30)
                    raise ConfigError(
                        f"console workers kept exiting (the last with status "
                        f"{process.exitcode}): see the messages above"
                    )
                start(sock)
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


def worker_app(handed: dict[str, Any]) -> FastAPI:
    """The app of one worker process, from what `serve` ``handed`` down (database URL,
    router and policy files, tools module, the shared session key in hex).

    Raises:
        ConfigError: no session key in ``handed``; a file that no longer loads.
    """
    try:
        key = bytes.fromhex(handed["key"])
    except (KeyError, ValueError, TypeError):
        raise ConfigError(
            "a console worker needs the session key `opsgate serve` hands it"
        ) from None
    router = handed.get("router")
    policy = handed.get("policy")
    console = Console(
        handed.get("url"),
        router=load_router_config(Path(router)) if router else None,
        policy=_policy(Path(policy) if policy else None, handed.get("tools")),
        keys=SessionKeys(key),
    )
    return create_app(console)
