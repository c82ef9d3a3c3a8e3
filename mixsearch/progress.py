"""Rich progress for a running study: trials running, done, failed, budget spent, best so far."""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn

from mixsearch.orchestrator import Status


def format_cost(x: float) -> str:
    """A cost in engineering notation (FLOPs are large numbers)."""
    return f"{x:.3g}"


class RichProgress:
    """A live progress bar fed by the orchestrator's :class:`Status` updates.

    The bar tracks whichever budget is set (cost before trials); the text beside it
    shows trial states and the best objective so far.
    """

    def __init__(self, study_name: str, console: Console | None = None) -> None:
        self.console = console or Console(stderr=True)
        self._progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            TaskProgressColumn(),
            TextColumn("{task.fields[detail]}"),
            TimeElapsedColumn(),
            console=self.console,
            transient=False,
        )
        self._task = self._progress.add_task(study_name, total=None, detail="starting")
        self._started = False

    def __enter__(self) -> "RichProgress":
        self._progress.start()
        self._started = True
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.stop()

    def update(self, status: Status) -> None:
        c = status.counts
        finished = c["done"] + c["failed"]
        if status.budget_cost:
            total, completed = status.budget_cost, min(status.spent, status.budget_cost)
            spent = f"cost {format_cost(status.spent)}/{format_cost(status.budget_cost)}"
        elif status.trials_budget:
            total, completed = float(status.trials_budget), float(finished)
            spent = f"cost {format_cost(status.spent)}"
        else:
            total, completed, spent = None, float(finished), f"cost {format_cost(status.spent)}"
        best = f"best {status.best[0]:.4f} @ {status.best[1]}" if status.best else "best -"
        detail = (
            f"done {c['done']} · running {c['running']} · pending {c['pending']} · "
            f"failed {c['failed']} · {spent} · {best}"
        )
        self._progress.update(self._task, total=total, completed=completed, detail=detail)
