"""Rich progress for a running study: trials running, done, failed, budget spent, best so far."""

from __future__ import annotations

import math
from typing import Iterable

import re
import sys
import threading
import time
from contextlib import contextmanager
from typing import Callable, Iterator

from rich.console import Console, RenderableType
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn
from rich.text import Text

from mixsearch.orchestrator import Status

_PREFIXES = {0: "", 3: "k", 6: "M", 9: "G", 12: "T", 15: "P", 18: "E", 21: "Z", 24: "Y"}


def format_cost(x: float) -> str:
    """A cost in engineering notation (FLOPs are large numbers): ``6.4e12`` -> ``6.4T``."""
    if x is None or not math.isfinite(x):
        return "-"
    if x == 0:
        return "0"
    exp = int(math.floor(math.log10(abs(x)) / 3) * 3)
    if exp not in _PREFIXES:
        return f"{x:.3g}"
    return f"{x / 10**exp:.3g}{_PREFIXES[exp]}"


def status_line(status: Status) -> str:
    """One line of trial states, budget spent and the best objective so far."""
    c = status.counts
    finished = c["done"] + c["failed"]
    parts = [f"done {c['done']}", f"running {c['running']}", f"pending {c['pending']}", f"failed {c['failed']}"]
    if status.trials_budget:
        parts.append(f"trials {finished}/{status.trials_budget}")
    if status.budget_cost:
        parts.append(f"cost {format_cost(status.spent)}/{format_cost(status.budget_cost)}")
    else:
        parts.append(f"cost {format_cost(status.spent)}")
    parts.append(f"best {status.best[0]:.4f} @ {status.best[1]}" if status.best else "best -")
    return " · ".join(parts)


class _StudyProgress(Progress):
    """A progress bar with the last finished trial written on a line below it."""

    last: str | None = None

    def get_renderables(self) -> Iterable[RenderableType]:
        yield self.make_tasks_table(self.tasks)
        if self.last:
            yield Text(f"  last: {self.last}", style="dim", overflow="ellipsis", no_wrap=True)


class RichProgress:
    """A live progress bar fed by the orchestrator's :class:`Status` updates.

    The bar tracks the budget that binds first (the larger of the cost and trial
    fractions spent); the text beside it shows trial states, the budget spent and the
    best objective so far, and a second line names the last trial that finished.
    """

    def __init__(self, study_name: str, console: Console | None = None) -> None:
        self.console = console or Console(stderr=True)
        self._progress = _StudyProgress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            TaskProgressColumn(),
            TextColumn("{task.fields[detail]}"),
            TimeElapsedColumn(),
            console=self.console,
            transient=False,
        )
        self._task = self._progress.add_task(study_name, total=None, detail="starting")

    def __enter__(self) -> "RichProgress":
        self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.stop()

    def update(self, status: Status) -> None:
        """Show ``status`` (called by the orchestrator after every event)."""
        c = status.counts
        finished = c["done"] + c["failed"]
        fractions = []
        if status.budget_cost:
            fractions.append(min(status.spent / status.budget_cost, 1.0))
        if status.trials_budget:
            fractions.append(min(finished / status.trials_budget, 1.0))
        # A bar of 1000 steps shows the fraction of whichever budget will stop the study first.
        total, completed = (1000.0, 1000.0 * max(fractions)) if fractions else (None, float(finished))
        self._progress.last = status.last
        self._progress.update(self._task, total=total, completed=completed, detail=status_line(status))


class LineProgress:
    """Progress for a log or a pipe: one full line on stderr each time a trial finishes.

    A live bar outside a terminal is cut to 80 columns and redrawn as garbage; a log wants
    whole lines it can grep. Same interface as :class:`RichProgress`.
    """

    def __init__(self, study_name: str) -> None:
        self.name = study_name
        self._finished = -1

    def __enter__(self) -> "LineProgress":
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def update(self, status: Status) -> None:
        """Print ``status`` when the number of finished trials moved."""
        finished = status.counts["done"] + status.counts["failed"]
        if finished == self._finished:
            return
        self._finished = finished
        last = f" · last: {status.last}" if status.last else ""
        print(f"{self.name}: {status_line(status)}{last}", file=sys.stderr, flush=True)


def study_progress(study_name: str, console: Console) -> "RichProgress | LineProgress":
    """A live bar in a terminal, whole lines elsewhere."""
    return RichProgress(study_name, console) if console.is_terminal else LineProgress(study_name)


Say = Callable[[str], None]

STAGE_LINE_DELAY = 1.0  # seconds a stage must last before its line is printed outside a terminal


def stage_line(seconds: float, text: str) -> str:
    """One stage's line in a log: the seconds since the command started, then the stage."""
    return f"[{seconds:6.1f} s] {text}"


def is_stage_line(line: str) -> bool:
    """Whether ``line`` is a stage's progress line (as :func:`stage_line` writes it), not a message."""
    return re.match(r"\[ *\d+\.\d s\] ", line) is not None


@contextmanager
def stages(console: Console | None = None, quiet: bool = False) -> Iterator[Say]:
    """Say what a long command is doing, stage by stage.

    In a terminal a spinner shows the current stage and its elapsed time; in a pipe or a
    log each stage that lasts :data:`STAGE_LINE_DELAY` or more is one line on stderr with the
    seconds since the command started, so a slow export or report is never silent.

    Yields:
        ``say(text)``: announce the next stage.
    """
    console = console or Console(stderr=True, soft_wrap=True)
    start = time.monotonic()
    if quiet:
        yield lambda _text: None
        return
    if console.is_terminal:
        with console.status("starting") as status:
            yield lambda text: status.update(f"{text} ({time.monotonic() - start:.0f} s)")
        return

    # A stage's line is printed only once the stage has lasted STAGE_LINE_DELAY: a command
    # that fails at once (bad input) leaves its one error line alone on stderr, and a quick
    # command prints nothing but its result.
    timer: list[threading.Timer] = []

    def line(text: str) -> None:
        for t in timer:
            t.cancel()
        stamp = stage_line(time.monotonic() - start, text)
        timer[:] = [threading.Timer(STAGE_LINE_DELAY, lambda: print(stamp, file=sys.stderr, flush=True))]
        timer[0].daemon = True
        timer[0].start()

    try:
        yield line
    finally:
        for t in timer:
            t.cancel()
