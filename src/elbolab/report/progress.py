"""Live progress of the whole `compare` job: the stage (training which model, measuring what), the step,
the loss, the time elapsed and the time left for the job as a whole.

On a terminal: one rich display that redraws itself. Otherwise (a log file, a pipe, CI): plain lines,
one per stage and at most one per `every` seconds within a stage.

The time left is the training budgets of the stages to come plus what remains of the current one
(training stops at its wall-clock budget; each budget is scaled by the time the finished trainings
took over theirs, final evaluation and a first stage's overhead included), plus the measurements to
come at the mean time the finished ones took; before any measurement has finished it is shown as a
lower bound ("at least").
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from typing_extensions import Self

from elbolab.experiments.compare import JobEvent

Clock = Callable[[], float]


def clock_text(seconds: float) -> str:
    """Seconds as m:ss (h:mm:ss from an hour)."""
    s = round(max(seconds, 0.0))
    h, rest = divmod(s, 3600)
    return f"{h}:{rest // 60:02d}:{rest % 60:02d}" if h else f"{rest // 60}:{rest % 60:02d}"


class JobClock:
    """The job's plan and where it stands: the current stage, its step and loss, elapsed and time left."""

    def __init__(self, clock: Clock = time.monotonic) -> None:
        self.clock = clock
        self.started = clock()
        self.plan: tuple[tuple[str, str, float], ...] = ()
        self.index = -1  # the current stage in the plan
        self.stage_started = self.started
        self.measure_seconds: list[float] = []
        self.train_ratios: list[float] = []  # time each finished training stage took over its budget
        self.step: int | None = None
        self.loss: float | None = None
        self.detail = ""
        self.done = False

    def update(self, event: JobEvent) -> bool:
        """Take an event; True when a new stage began."""
        if event.stage == "plan":
            self.plan = event.plan
            return False
        if event.stage == "done":
            self._finish_stage()
            self.done, self.index = True, len(self.plan)
            return True
        key = (event.stage, event.name)
        current = self.plan[self.index][:2] if 0 <= self.index < len(self.plan) else None
        if key != current:
            self._finish_stage()
            later = [i for i, s in enumerate(self.plan) if s[:2] == key and i > self.index]
            self.index = later[0] if later else self.index
            self.stage_started, self.step, self.loss, self.detail = self.clock(), None, None, ""
            new = True
        else:
            new = False
        if event.step is not None:
            self.step, self.loss = event.step, event.loss
        if event.detail:
            self.detail = event.detail
        return new

    def _finish_stage(self) -> None:
        if not 0 <= self.index < len(self.plan):
            return
        stage, _, budget = self.plan[self.index]
        took = self.clock() - self.stage_started
        if stage == "measure":
            self.measure_seconds.append(took)
        elif self.step is not None and budget > 0:  # trained (not reused): its time against its budget
            self.train_ratios.append(took / budget)

    def elapsed(self) -> float:
        """Seconds since the job started."""
        return self.clock() - self.started

    def left(self) -> tuple[float, bool]:
        """(seconds left for the whole job, whether that is exact up to the budgets: False means "at least")."""
        if self.done:
            return 0.0, True
        per_measure = sum(self.measure_seconds) / len(self.measure_seconds) if self.measure_seconds else None
        ratio = sum(self.train_ratios) / len(self.train_ratios) if self.train_ratios else 1.0
        in_stage = self.clock() - self.stage_started
        total, known = 0.0, True
        for i, (stage, _, budget) in enumerate(self.plan):
            if i < self.index:
                continue
            expected = budget * ratio if stage == "train" else per_measure
            if expected is None:
                known = False
                continue
            total += max(expected - in_stage, 0.0) if i == self.index else expected
        return total, known

    def fraction(self) -> float:
        """Share of the job done, by expected time (0 before the plan is known)."""
        left, _ = self.left()
        elapsed = self.elapsed()
        return 1.0 if self.done else elapsed / (elapsed + left) if elapsed + left > 0 else 0.0

    def stage_text(self) -> str:
        """ "stage 3 of 8: training diffusion, step 1,200, loss 0.0423" (or measuring what)."""
        if self.done:
            return "judging the contrasts and writing the report"
        if not 0 <= self.index < len(self.plan):
            return "loading data"
        stage, name, budget = self.plan[self.index]
        text = f"stage {self.index + 1} of {len(self.plan)}: "
        if stage == "train":
            text += f"training {name} ({budget:.0f} s)"
            if self.step is not None:
                text += f", step {self.step:,}, loss {self.loss:.4g}"
        else:
            text += f"measuring {name}" + (f": {self.detail.split(': ', 1)[-1]}" if self.detail else "")
        return text

    def time_text(self) -> str:
        """ "elapsed 1:02, about 3:40 left" ("at least 3:40 left" until a measurement has been timed)."""
        left, known = self.left()
        if not known and left < 1:
            return f"elapsed {clock_text(self.elapsed())}, time left known once a measurement has finished"
        return f"elapsed {clock_text(self.elapsed())}, {'about' if known else 'at least'} {clock_text(left)} left"


class PlainProgress:
    """Plain log lines: one per stage, then at most one every `every` seconds."""

    def __init__(self, stream: TextIO | None = None, every: float = 10.0, clock: Clock = time.monotonic) -> None:
        self.stream = stream
        self.job = JobClock(clock)
        self.every = every
        self.last = -float("inf")

    def _line(self, text: str) -> None:
        print(f"[compare] {text}", file=self.stream or sys.stderr, flush=True)

    def __call__(self, event: JobEvent) -> None:
        new = self.job.update(event)
        now = self.job.clock()
        if event.stage == "plan":
            return
        if new or now - self.last >= self.every:
            self.last = now
            self._line(f"{self.job.stage_text()}; {self.job.time_text()}")

    def log(self, message: str) -> None:
        """A message of the job (measurements are shown as stages)."""
        if not (0 <= self.job.index < len(self.job.plan) and self.job.plan[self.job.index][0] == "measure"):
            self._line(message)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


class RichProgress:
    """One live display on a terminal: the stage line and a bar for the whole job with elapsed and time left."""

    def __init__(self, console: Any = None, clock: Clock = time.monotonic) -> None:
        from rich.console import Console
        from rich.live import Live

        self.job = JobClock(clock)
        self.console = console or Console(stderr=True)
        self.live = Live(console=self.console, get_renderable=self.render, refresh_per_second=4, transient=False)

    def render(self) -> Any:
        """The display: stage line over the job's bar and times."""
        from rich.progress_bar import ProgressBar
        from rich.table import Table

        grid = Table.grid(padding=(0, 1))
        grid.add_row("[bold]elbolab compare[/]", self.job.stage_text())
        bar = Table.grid(padding=(0, 1))
        bar.add_row(
            ProgressBar(total=1.0, completed=self.job.fraction(), width=36),
            f"{100 * self.job.fraction():3.0f}%",
            self.job.time_text(),
        )
        grid.add_row("", bar)
        return grid

    def __call__(self, event: JobEvent) -> None:
        self.job.update(event)

    def log(self, message: str) -> None:
        """A message of the job, printed above the display (measurements are shown in it)."""
        if not (0 <= self.job.index < len(self.job.plan) and self.job.plan[self.job.index][0] == "measure"):
            self.console.print(f"[dim]\\[compare][/] {message}", highlight=False)

    def __enter__(self) -> Self:
        self.live.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.live.stop()


def job_progress(stream: TextIO | None = None) -> PlainProgress | RichProgress:
    """The rich display where `stream` (default stderr) is a terminal, plain lines otherwise."""
    stream = stream or sys.stderr
    return RichProgress() if stream.isatty() else PlainProgress(stream)
