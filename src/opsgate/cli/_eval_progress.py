"""What `agent-eval run` shows while it runs: a Rich bar on a terminal, one line per finished
trial otherwise (a CI log must not sit silent for minutes, and a bar redrawn into a file is
noise)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from opsgate.cli._safe import clean, shown
from opsgate.evals import TaskResult

__all__ = ["progress_line", "trial_progress"]


def progress_line(done: int, total: int, result: TaskResult, elapsed_s: float) -> str:
    """One finished trial, as plain text (the task id came from a suite file: cleaned)."""
    if result.model_unavailable:
        verdict = "MODEL UNAVAILABLE"
    elif result.error:
        verdict = "ERROR"
    else:
        verdict = "pass" if result.passed else "FAIL"
    width = len(str(total))
    line = (
        f"[{done:>{width}}/{total}] {verdict:<4} {clean(result.task_id)} #{result.trial} "
        f"{result.status} in {result.latency_s:.1f}s, ${result.cost_usd:.6f} "
        f"(elapsed {elapsed_s:.0f}s)"
    )
    if not result.passed and result.failures:
        line += f": {clean(result.failures[0])[:160]}"
    elif result.error:
        line += f": {clean(result.error)[:160]}"
    return line


@contextmanager
def trial_progress(
    console: Console, lines: Console, title: str, total: int
) -> Iterator[Callable[[TaskResult], None]]:
    """Yield the callback the runner calls after each trial.

    Args:
        console: Where the bar goes, when it is a terminal.
        lines: Where the per-trial lines go otherwise (stderr: stdout may be a report).
        title: The suite's name (hostile: shown as text).
        total: Trials to run.
    """
    if console.is_terminal:
        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            transient=True,
        ) as progress:
            # TextColumn parses the description as markup; the suite's name is from its file
            bar = progress.add_task(shown(title), total=total)
            yield lambda _result: progress.advance(bar)
        return
    started = time.monotonic()
    done = 0

    def report(result: TaskResult) -> None:
        nonlocal done
        done += 1
        text = progress_line(done, total, result, time.monotonic() - started)
        lines.print(text, markup=False, highlight=False, soft_wrap=True)

    lines.print(f"running {clean(title)}: {total} trials", markup=False, soft_wrap=True)
    yield report
