"""Console benchmark (issue #14): the pages people wait on, over a store of 100,000 runs.

Run: ``.venv/bin/python bench/server.py`` (``--quick`` for a smoke run, ``--postgresql``
for PostgreSQL too). For each size (``--sizes``, default 10,000 and 100,000 runs of ~20
events each, with their spans, cost entries and a few hundred pending approvals), it fills
a store (cached under ``out/bench-server/``: a re-run skips the fill), serves it with the
real ``opsgate serve --workers N`` (``--workers``, default one per CPU core) in a child
process on 127.0.0.1, and drives it with 16 concurrent clients holding a viewer token (one
asyncio loop on kept-alive HTTP/1.1 connections, lean: it shares the cores with the
server, and says how much CPU it used): p50/p95 and requests/s of the runs
page, a run's page, the approvals inbox and the cost page, beside two floors of the same
server in the same run (a static file, and the login page: a template and no query), which
separate the framework's cost from our queries'. It also reads the server processes' CPU
time per request from /proc: on a machine shared with other work the latencies queue behind
that work, the CPU per request much less (on PostgreSQL the queries' own CPU is spent in
the database's processes, not counted there). Extra rows, without goals: a page deep in the
runs list, two filters, and the Cost page over 98 distinct windows (nothing served from its
kept views).

Goals: p95 < 100 ms for each page at the largest size; the runs page at the largest size
≤ 1.3x its time at the smallest.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import math
import os
import platform
import random
import shutil
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


def _load_fill() -> Any:
    spec = importlib.util.spec_from_file_location("_server_fill", HERE / "_server_fill.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["_server_fill"] = module
    spec.loader.exec_module(module)
    return module


import httpx  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402
from sqlalchemy import func, select, text  # noqa: E402

from opsgate.server import Role, create_token, revoke_token  # noqa: E402
from opsgate.store import DEFAULT_DIR_ENV, open_store, runs  # noqa: E402

_fill = _load_fill()
WORKFLOWS = _fill.WORKFLOWS
FillReport = _fill.FillReport
Sizes = _fill.Sizes
fill = _fill.fill

console = Console()
ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / "out" / "bench-server"
#: A cached SQLite fill is reused while younger than this: its pending approvals expire
#: 24 h after the fill, and the cost page's window moves on.
MAX_AGE_S = 12 * 3600.0
GOAL_P95_MS = 100.0
GOAL_RATIO = 1.3


# -- stores -----------------------------------------------------------------------------


def _show(path: Path) -> str:
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def _fresh(path: Path) -> bool:
    return path.exists() and time.time() - path.stat().st_mtime < MAX_AGE_S


def _announce(sizes: Sizes, where: str) -> None:
    console.print(f"filling {where}: {sizes.runs:,} runs x ~{sizes.events_per_run} events ...")


def _report_fill(report: FillReport) -> dict[str, Any]:
    console.print(
        f"  filled in {report.seconds:.1f} s: {report.events:,} events "
        f"({report.events / report.seconds:,.0f}/s), {report.spans:,} spans, "
        f"{report.cost_entries:,} cost entries, {report.pending} pending and "
        f"{report.decided} decided approvals"
    )
    return {
        "seconds": round(report.seconds, 1),
        "runs": report.runs,
        "events": report.events,
        "spans": report.spans,
        "cost_entries": report.cost_entries,
        "pending_approvals": report.pending,
        "decided_approvals": report.decided,
    }


def sqlite_store(sizes: Sizes, cache: Path, refill: bool) -> tuple[str, dict[str, Any] | None]:
    """The URL of a filled SQLite store (filled now unless a fresh one is cached), and the
    fill's figures (None: reused)."""
    path = cache / f"sqlite-{sizes.key()}.db"
    if _fresh(path) and not refill:
        age = (time.time() - path.stat().st_mtime) / 3600
        console.print(f"reusing {_show(path)} (filled {age:.1f} h ago)")
        open_store(f"sqlite:///{path}").close()  # migrated, as `opsgate db upgrade` would
        return f"sqlite:///{path}", None
    cache.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".filling")
    for stale in (
        path,
        partial,
        *(Path(f"{p}{x}") for p in (path, partial) for x in ("-wal", "-shm")),
    ):
        stale.unlink(missing_ok=True)
    _announce(sizes, _show(path))
    store = open_store(f"sqlite:///{partial}")
    try:
        report = fill(store, sizes)
    finally:
        store.close()
    with sqlite3.connect(partial) as conn:  # fold the WAL in: the file alone is the store
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    partial.rename(path)
    for suffix in ("-wal", "-shm"):
        Path(f"{partial}{suffix}").unlink(missing_ok=True)
    return f"sqlite:///{path}", _report_fill(report)


class PgCluster:
    """A PostgreSQL cluster of the bench's own, started and stopped by it; its data folder
    is kept under the cache (the fills are reused) and nothing else is touched.

    Uses the machine's server binaries (``/usr/lib/postgresql/*/bin``, as the tests do).
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.data = folder / "data"
        self.bindir = self._bindir()
        self.as_postgres = os.geteuid() == 0  # initdb refuses root: run as `postgres`
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = int(s.getsockname()[1])
        self.admin = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    @staticmethod
    def _bindir() -> Path:
        for candidate in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
            if (candidate / "initdb").exists():
                return candidate
        raise SystemExit("PostgreSQL server binaries not found (`make postgres` installs them)")

    def _run(self, tool: str, *args: str) -> None:
        command = [str(self.bindir / tool), *args]
        if self.as_postgres:
            command = ["runuser", "-u", "postgres", "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, timeout=300)
        if done.returncode != 0:
            raise SystemExit(f"{tool} failed: {done.stderr or done.stdout}")

    def start(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        if self.as_postgres:
            shutil.chown(self.folder, "postgres", "postgres")
        if not (self.data / "PG_VERSION").exists():
            shutil.rmtree(self.data, ignore_errors=True)
            self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "-E", "UTF8")
        self._run(
            "pg_ctl",
            "-D",
            str(self.data),
            "-l",
            str(self.folder / "log"),
            "-w",
            "-o",
            f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 "
            "-c max_connections=100 -c shared_buffers=256MB",
            "start",
        )

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "stop")

    def database(self, name: str, *, fresh: bool) -> str:
        """The URL of database ``name``, created (empty) when missing or ``fresh``."""
        import psycopg

        with psycopg.connect(self.admin, autocommit=True) as conn:
            exists = conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (name,)
            ).fetchone()
            if exists and fresh:
                conn.execute(f'DROP DATABASE "{name}"')
            if not exists or fresh:
                conn.execute(f'CREATE DATABASE "{name}"')
        return f"postgresql://postgres@127.0.0.1:{self.port}/{name}"


def pg_store(cluster: PgCluster, sizes: Sizes, refill: bool) -> tuple[str, dict[str, Any] | None]:
    """As `sqlite_store`, in the bench's PostgreSQL cluster (a marker file says a fill
    completed, and when)."""
    name = "bench_" + sizes.key().replace("-", "_")
    marker = cluster.folder / f"{name}.done"
    if _fresh(marker) and not refill:
        console.print(f"reusing PostgreSQL database {name}")
        url = cluster.database(name, fresh=False)
        open_store(url).close()  # migrated, as `opsgate db upgrade` would
        return url, None
    marker.unlink(missing_ok=True)
    url = cluster.database(name, fresh=True)
    _announce(sizes, f"PostgreSQL database {name}")
    store = open_store(url)
    try:
        report = fill(store, sizes)
        with store.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM ANALYZE"))  # what autovacuum does after a bulk load
    finally:
        store.close()
    marker.write_text(json.dumps({"filled_at": time.time()}))
    return url, _report_fill(report)


# -- the server -------------------------------------------------------------------------


@contextmanager
def serving(url: str, home: Path, workers: int) -> Iterator[tuple[str, str, int]]:
    """``opsgate serve --workers N`` over ``url`` in a child process; yields (base URL,
    viewer token, the server's pid). The token is created for the run and revoked after it."""
    store = open_store(url, migrate=False)
    name = f"bench-viewer-{os.getpid()}-{int(time.time())}"
    token, _ = create_token(store, name=name, role=Role.VIEWER, created_by="bench/server.py")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    opsgate = Path(sys.executable).with_name("opsgate")
    command = [str(opsgate), "serve", "--db", url, "--host", "127.0.0.1", "--port", str(port)]
    command += ["--workers", str(workers)]
    env = {**os.environ, DEFAULT_DIR_ENV: str(home)}
    env.pop("OPSGATE_DATABASE_URL", None)
    server = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if server.poll() is not None:
                err = server.stderr.read().decode() if server.stderr else ""
                raise SystemExit(f"`opsgate serve` exited: {err[-2000:]}")
            try:
                if httpx.get(base + "/login", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit("`opsgate serve` did not answer within 60 s")
            time.sleep(0.1)
        yield base, token, server.pid
    finally:
        server.terminate()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        revoke_token(store, name, revoked_by="bench/server.py")
        store.close()


# -- measuring --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Figures:
    """Latencies of one page under load."""

    page: str
    n: int
    p50_ms: float
    p95_ms: float
    rps: float
    bytes: int
    cpu_ms: float | None  # the server processes' CPU time per request (None: not on Linux)
    client_cpu_ms: float  # the load generator's own CPU time per request
    load: float  # the machine's load average (1 min) when the timed requests ended

    def as_dict(self) -> dict[str, Any]:
        return {
            "page": self.page,
            "n": self.n,
            "p50_ms": round(self.p50_ms, 2),
            "p95_ms": round(self.p95_ms, 2),
            "rps": round(self.rps, 1),
            "bytes": self.bytes,
            "server_cpu_ms": None if self.cpu_ms is None else round(self.cpu_ms, 2),
            "client_cpu_ms": round(self.client_cpu_ms, 2),
            "load_average": round(self.load, 2),
        }


def _stat(pid: int) -> list[str] | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None


def cpu_seconds(pid: int) -> float | None:
    """CPU time (user + system) the process ``pid`` and its descendants (the server's
    worker processes) have used, from /proc (None elsewhere)."""
    fields = _stat(pid)
    if fields is None:
        return None
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (found := _stat(int(entry.name))) is not None:
            parents[int(entry.name)] = int(found[1])
    family, grew = {pid}, True
    while grew:
        more = {child for child, parent in parents.items() if parent in family} - family
        family |= more
        grew = bool(more)
    ticks = 0
    for member in family:
        found = fields if member == pid else _stat(member)
        if found is not None:
            ticks += int(found[11]) + int(found[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def percentile(values: list[float], q: float) -> float:
    """The ``q`` quantile (0..1) of ``values``, nearest rank."""
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1))
    return ordered[rank]


class _Answer(Exception):
    """A request the load generator could not complete."""


async def _response(reader: asyncio.StreamReader) -> tuple[int, int]:
    """Read one HTTP/1.1 response: its status and body length (Content-Length or chunked)."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split(b" ", 2)[1])
    length, chunked = 0, False
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"transfer-encoding" and b"chunked" in value.lower():
            chunked = True
    if not chunked:
        await reader.readexactly(length)
        return status, length
    total = 0
    while True:
        size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
        await reader.readexactly(size + 2)
        total += size
        if size == 0:
            return status, total


async def load(
    base: str, token: str, page: str, paths: list[str], clients: int, warmup: list[str], pid: int
) -> Figures:
    """Request ``paths`` with ``clients`` concurrent clients, after the ``warmup`` requests
    (not counted); every answer must be a 200.

    The clients are one asyncio loop writing HTTP/1.1 on kept-alive connections and reading
    the answers' bytes, no more: the load generator shares the machine's cores with the
    server, so it must cost little (its own CPU time per request is reported beside the
    server's, both read from the kernel: figures the machine's other load barely moves).
    """
    host, port = base.removeprefix("http://").rsplit(":", 1)
    size = 0

    async def drive(queue: list[str], out: list[float] | None) -> None:
        async def client() -> None:
            nonlocal size
            reader, writer = await asyncio.open_connection(host, int(port))
            try:
                while queue:
                    path = queue.pop()
                    t0 = time.perf_counter()
                    writer.write(
                        f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
                        f"Authorization: Bearer {token}\r\n\r\n".encode()
                    )
                    status, size = await _response(reader)
                    if out is not None:
                        out.append(time.perf_counter() - t0)
                    if status != 200:
                        raise _Answer(f"{page}: GET {path} answered {status}")
            finally:
                writer.close()

        await asyncio.gather(*(client() for _ in range(clients)))

    try:
        await drive(list(warmup), None)
        timings: list[float] = []
        cpu0, own0 = cpu_seconds(pid), time.process_time()
        t0 = time.perf_counter()
        await drive(list(reversed(paths)), timings)
        wall = time.perf_counter() - t0
        cpu1, own1 = cpu_seconds(pid), time.process_time()
    except (OSError, asyncio.IncompleteReadError, ValueError, _Answer) as exc:
        raise SystemExit(f"{page}: {exc}") from None
    return Figures(
        page,
        len(timings),
        statistics.median(timings) * 1e3,
        percentile(timings, 0.95) * 1e3,
        len(timings) / wall,
        size,
        None if cpu0 is None or cpu1 is None else (cpu1 - cpu0) / len(timings) * 1e3,
        (own1 - own0) / len(timings) * 1e3,
        os.getloadavg()[0],
    )


def targets(url: str, n: int, rng: random.Random) -> dict[str, list[str]]:
    """Per page, the paths to request (``n`` of each)."""
    store = open_store(url, migrate=False)
    try:
        with store.engine.connect() as conn:
            ids = list(conn.execute(select(runs.c.run_id).order_by(runs.c.run_id)).scalars())
            count = conn.execute(select(func.count()).select_from(runs)).scalar() or 0
            middle = conn.execute(
                select(runs.c.started_at, runs.c.run_id)
                .where(runs.c.purpose == "production")
                .order_by(runs.c.started_at.desc(), runs.c.run_id.desc())
                .offset(int(count * 0.45))
                .limit(1)
            ).first()
    finally:
        store.close()
    picked = [rng.choice(ids) for _ in range(n)]
    cursor = f"{middle[0]!r}:{middle[1]}" if middle else ""
    return {
        "floor: static file": ["/static/console.css"] * n,
        "floor: login page": ["/login"] * n,
        "runs": ["/runs"] * n,
        "run detail": [f"/runs/{r}" for r in picked],
        "approvals inbox": ["/approvals"] * n,
        "cost (7 days)": ["/cost"] * n,
        "runs, deep page (keyset)": [f"/runs?before={cursor}"] * n,
        "runs, workflow + escalated": ["/runs?workflow=refunds&status=escalated"] * n,
        "runs, had a denial": ["/runs?denied=1"] * max(n // 4, 16),
        # distinct windows (days 1-14, each workflow or all): nothing served from a cache
        "cost, distinct windows": [
            f"/cost?days={d}" + (f"&workflow={w}" if w else "")
            for d in range(1, 15)
            for w in ("", *WORKFLOWS)
        ][:n],
    }


#: Warm-up requests where the timed ones must not be served from what the warm-up cached.
WARMUP = {
    "cost, distinct windows": [f"/cost?days={d}&include_eval=1" for d in range(1, 15)] * 3,
}
GOAL_PAGES = ("runs", "run detail", "approvals inbox", "cost (7 days)")


def bench_backend(
    backend: str, stores: list[tuple[Sizes, str]], args: argparse.Namespace, home: Path
) -> dict[int, list[Figures]]:
    """Every page at every size of one backend."""
    out: dict[int, list[Figures]] = {}
    for sizes, url in stores:
        rng = random.Random(sizes.seed)
        paths = targets(url, args.requests, rng)
        with serving(url, home, args.workers) as (base, token, pid):
            found = []
            for page, wanted in paths.items():
                warmup = WARMUP.get(page, wanted)[: 2 * args.clients]
                figures = asyncio.run(load(base, token, page, wanted, args.clients, warmup, pid))
                cpu = "—" if figures.cpu_ms is None else f"{figures.cpu_ms:.1f} ms"
                console.print(
                    f"  {backend} {sizes.runs:>7,} runs  {page:<28} p50 {figures.p50_ms:7.1f} ms  "
                    f"p95 {figures.p95_ms:7.1f} ms  {figures.rps:6.1f} req/s  server CPU {cpu}/req"
                    f"  client CPU {figures.client_cpu_ms:.2f} ms/req  load {figures.load:.1f}"
                )
                found.append(figures)
        out[sizes.runs] = found
    return out


def table(
    backend: str, results: dict[int, list[Figures]], args: argparse.Namespace
) -> tuple[Table, dict[str, Any]]:
    """The figures of one backend, with the goals judged at the largest size."""
    sizes = sorted(results)
    largest, smallest = sizes[-1], sizes[0]
    grid = Table(
        title=f"opsgate console, {backend}: {args.clients} concurrent clients on loopback, "
        f"`opsgate serve --workers {args.workers}`"
    )
    columns = (
        "page",
        *(f"{s:,} runs p50 / p95 ms" for s in sizes),
        "req/s",
        "server CPU ms/req",
        "client CPU ms/req",
        "goal",
    )
    for column in columns:
        grid.add_column(column)
    verdicts: dict[str, Any] = {}
    by_page = {s: {f.page: f for f in results[s]} for s in sizes}
    for page in by_page[largest]:
        big = by_page[largest][page]
        goal = "—"
        if page in GOAL_PAGES:
            ok = big.p95_ms < GOAL_P95_MS
            goal = f"p95 < {GOAL_P95_MS:.0f} ms {'yes' if ok else 'NO'}"
            verdicts[page] = ok
        cells = [f"{by_page[s][page].p50_ms:.1f} / {by_page[s][page].p95_ms:.1f}" for s in sizes]
        cpu = "—" if big.cpu_ms is None else f"{big.cpu_ms:.1f}"
        grid.add_row(page, *cells, f"{big.rps:.0f}", cpu, f"{big.client_cpu_ms:.2f}", goal)
    if largest != smallest:
        big, small = by_page[largest]["runs"], by_page[smallest]["runs"]
        ratio = big.p50_ms / small.p50_ms
        cpu_ratio = (big.cpu_ms / small.cpu_ms) if big.cpu_ms and small.cpu_ms else None
        ok = ratio <= GOAL_RATIO
        verdicts["runs ratio"] = {
            "ratio": round(ratio, 2),
            "server_cpu_ratio": None if cpu_ratio is None else round(cpu_ratio, 2),
            "met": ok,
        }
        cpu_text = "" if cpu_ratio is None else f"; server CPU per request {cpu_ratio:.2f}x"
        grid.caption = (
            f"runs page p50 at {largest:,} runs / at {smallest:,}: {ratio:.2f}x "
            f"(goal ≤ {GOAL_RATIO}x: {'yes' if ok else 'NO'}){cpu_text}. Columns after the "
            f"sizes: at {largest:,} runs."
        )
    return grid, verdicts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10000,100000", help="runs per store, comma-separated")
    parser.add_argument("--events-per-run", type=int, default=20)
    parser.add_argument("--runs-per-day", type=int, default=1000)
    parser.add_argument("--requests", type=int, default=400, help="timed requests per page")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument(
        "--workers",
        type=int,
        default=os.cpu_count() or 1,
        help="`opsgate serve --workers` (default: one per CPU core)",
    )
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    parser.add_argument("--postgresql", action="store_true", help="PostgreSQL too")
    parser.add_argument("--refill", action="store_true", help="ignore the cached fills")
    parser.add_argument("--cache", type=Path, default=CACHE, help="where fills are kept")
    args = parser.parse_args()
    try:
        numbers = sorted({int(s) for s in args.sizes.split(",") if s.strip()})
    except ValueError:
        parser.error(f"--sizes takes numbers separated by commas, not `{args.sizes}`")
    if args.quick:
        numbers, args.requests = [300, 1500], min(args.requests, 48)
    if not numbers or min(numbers) < 50 or args.events_per_run < 8:
        parser.error("each size needs at least 50 runs, and --events-per-run at least 8")
    pending = 20 if args.quick else 300
    all_sizes = [
        Sizes(n, args.events_per_run, runs_per_day=args.runs_per_day, pending=pending)
        for n in numbers
    ]
    if not 1 <= args.workers <= 64 or args.clients < 1:
        parser.error("--workers takes 1 to 64, --clients at least 1")
    report: dict[str, Any] = {
        "quick": args.quick,
        "clients": args.clients,
        "workers": args.workers,
        "backends": {},
    }
    console.print(
        f"machine: Python {platform.python_version()}, {os.cpu_count()} CPUs, "
        f"{platform.platform()}; sqlite {sqlite3.sqlite_version}; load {os.getloadavg()[0]:.2f}; "
        f"`opsgate serve --workers {args.workers}`, {args.clients} clients"
    )
    with tempfile.TemporaryDirectory(prefix="opsgate-bench-home-") as home:
        fills: dict[str, Any] = {}
        stores = []
        for sizes in all_sizes:
            url, filled = sqlite_store(sizes, args.cache, args.refill)
            stores.append((sizes, url))
            fills[f"sqlite {sizes.runs}"] = filled
        backends = {"SQLite": bench_backend("sqlite", stores, args, Path(home))}
        if args.postgresql:
            cluster = PgCluster(args.cache / "pg")
            cluster.start()
            try:
                stores = []
                for sizes in all_sizes:
                    url, filled = pg_store(cluster, sizes, args.refill)
                    stores.append((sizes, url))
                    fills[f"postgresql {sizes.runs}"] = filled
                backends["PostgreSQL"] = bench_backend("postgresql", stores, args, Path(home))
            finally:
                cluster.stop()
    report["fills"] = fills
    for backend, results in backends.items():
        grid, verdicts = table(backend, results, args)
        console.print(grid)
        report["backends"][backend] = {
            "results": {str(s): [f.as_dict() for f in found] for s, found in results.items()},
            "goals": verdicts,
        }
    print(json.dumps(report))


if __name__ == "__main__":
    main()
