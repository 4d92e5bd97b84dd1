"""Run a module under cProfile in every thread; at exit, write the merged stats.

    python bench/_profiled.py OUT.prof MODULE [ARGS...]
    python bench/_profiled.py --gc-only [--freeze] OUT.prof MODULE [ARGS...]

cProfile (Python 3.11) sees only the thread that enabled it, and a proxy's work is spread
over its event loop and its recorders' threads (audit writer, tracing worker, span batch
processors, cost ledger): each thread gets a profiler of its own, started in
`threading.Thread.run` and timed by the thread's own CPU clock (time spent blocked on a
lock, a queue or the GIL is not counted). At exit (SIGTERM included) every thread's stats
are merged into ``OUT.prof`` (read it with `pstats`, or ``python bench/_profiled.py --show
OUT.prof``); per-thread CPU totals go to ``OUT.prof.threads`` (``name<TAB>seconds``).
``--gc-only`` profiles nothing and writes only the garbage collector's runs and CPU time
(the ``gc generation`` lines), at the program's own speed; ``--freeze`` also moves every
object alive at SIGUSR1 to the collector's permanent generation (`gc.freeze`), to measure
what freezing a started proxy's heap saves.

Only what runs after SIGUSR1 is timed (calls before it are counted, in no time): the
program's start (imports, the upstreams' listing) stays out of the figures.
`bench/mcp_proxy.py --profile-proxy` starts its HTTP proxy through this file and signals
it when the load begins.
"""

from __future__ import annotations

import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _HERE]

import atexit  # noqa: E402
import cProfile  # noqa: E402
import gc  # noqa: E402
import pstats  # noqa: E402
import runpy  # noqa: E402
import signal  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from typing import Any  # noqa: E402

_PROFILES: list[tuple[str, cProfile.Profile]] = []
_LOCK = threading.Lock()
_ON = False  # set by SIGUSR1
_BASE = threading.local()  # each thread's CPU clock when timing began
_GC: dict[int, list[float]] = {0: [0, 0.0], 1: [0, 0.0], 2: [0, 0.0]}  # collections, seconds
_GC_START = [0.0]


def _gc_timed(phase: str, info: dict[str, Any]) -> None:
    """Count the collector's runs and CPU once timing began (a collection runs on
    whichever thread allocated, inside whatever it was doing)."""
    if not _ON:
        return
    if phase == "start":
        _GC_START[0] = time.thread_time()
    else:
        spent = _GC[info["generation"]]
        spent[0] += 1
        spent[1] += time.thread_time() - _GC_START[0]


def _timer() -> float:
    """The thread's CPU seconds since timing began (0 before): a frame entered before and
    left after counts only its time after."""
    if not _ON:
        return 0.0
    now = time.thread_time()
    base: float | None = getattr(_BASE, "t", None)
    if base is None:
        _BASE.t = base = now
    return now - base


def _install() -> None:
    original = threading.Thread.run

    def run(self: threading.Thread) -> None:
        profile = cProfile.Profile(_timer)
        with _LOCK:
            _PROFILES.append((self.name, profile))
        profile.enable()
        try:
            original(self)
        finally:
            profile.disable()

    threading.Thread.run = run  # type: ignore[method-assign]


def _write(out: str) -> None:
    with _LOCK:
        profiles = list(_PROFILES)
    stats: pstats.Stats | None = None
    totals = []
    for name, profile in profiles:
        try:
            one = pstats.Stats(profile)
        except TypeError:  # a thread that never ran anything profiled
            continue
        totals.append((name, one.total_tt))  # type: ignore[attr-defined]
        if stats is None:
            stats = one
        else:
            stats.add(one)
    if stats is not None:
        stats.dump_stats(out)
    with open(out + ".threads", "w") as f:
        for name, seconds in sorted(totals, key=lambda t: -t[1]):
            f.write(f"{name}\t{seconds:.3f}\n")
        for generation, (count, seconds) in _GC.items():
            f.write(f"gc generation {generation}: {count:.0f} collections\t{seconds:.3f}\n")


def show(path: str, limit: int = 40) -> None:
    """The heaviest functions of a merged profile, by own time and by cumulative time."""
    stats = pstats.Stats(path)
    stats.sort_stats("tottime").print_stats(limit)
    stats.sort_stats("cumulative").print_stats(limit)


def main() -> None:
    if sys.argv[1] == "--show":
        show(sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else 40)
        return
    flags = {"--gc-only", "--freeze"}
    given = [a for a in sys.argv[1:3] if a in flags]
    gc_only, freeze = "--gc-only" in given, "--freeze" in given
    out, module, *args = sys.argv[1 + len(given) :]
    gc.callbacks.append(_gc_timed)
    main_profile = cProfile.Profile(_timer)
    if not gc_only:
        _install()
        _PROFILES.append(("MainThread", main_profile))

    def on_term(signum: int, frame: Any) -> None:
        raise SystemExit(0)

    def on_usr1(signum: int, frame: Any) -> None:
        global _ON
        _ON = True
        if freeze:
            gc.freeze()

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGUSR1, on_usr1)
    atexit.register(_write, out)  # registered first: runs after the program's own hooks
    sys.argv = [module, *args]
    if not gc_only:
        main_profile.enable()
    try:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    finally:
        main_profile.disable()


if __name__ == "__main__":
    main()
