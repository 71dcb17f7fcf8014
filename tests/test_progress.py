"""The compare job's progress display: stages, steps, loss, elapsed and time left, as plain lines off a terminal."""

import io

import pytest

from elbolab.experiments.compare import CompareConfig, JobEvent, job_plan, planned_points
from elbolab.report.progress import JobClock, PlainProgress, RichProgress, clock_text, job_progress


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


PLAN = (("train", "vae", 60.0), ("train", "diffusion", 60.0), ("measure", "vae", 0.0), ("measure", "diffusion", 0.0))


def test_the_plan_lists_every_training_and_measurement_with_its_budget():
    cfg = CompareConfig(budget=40.0, beta_sweep=(4.0,), sweep_budget_fraction=0.25, objective_budget_fraction=0.1)
    plan = job_plan(cfg)
    names = [p.name for p in planned_points(cfg)]
    assert names[:3] == ["vae", "diffusion", "latent-diffusion"] and {"vae-beta4", "diffusion-simple"} <= set(names)
    assert [s[:2] for s in plan] == [("train", n) for n in names] + [("measure", n) for n in names]
    budgets = dict(s[1:] for s in plan[: len(names)])
    assert (budgets["vae"], budgets["vae-beta4"], budgets["diffusion-simple"]) == (40.0, 10.0, 4.0)
    assert all(s[2] == 0 for s in plan[len(names) :])


def test_time_left_counts_budgets_then_measurements_at_their_mean():
    clock = FakeClock()
    job = JobClock(clock)
    job.update(JobEvent("plan", plan=PLAN))
    job.update(JobEvent("train", "vae"))
    clock.now += 15
    job.update(JobEvent("train", "vae", step=300, loss=0.25))
    assert job.left() == (45.0 + 60.0, False)  # measurements not timed yet: a lower bound
    assert "stage 1 of 4: training vae (60 s), step 300, loss 0.25" == job.stage_text()
    clock.now += 57  # the final evaluation runs over: 72 s for 60 s
    job.update(JobEvent("train", "diffusion"))
    clock.now += 12
    assert job.left() == (60 * 1.2 - 12, False)  # the next budget scaled by 72 / 60
    clock.now += 70
    assert job.left() == (0.0, False)
    job.update(JobEvent("measure", "vae", detail="vae: sampling speed"))
    assert job.stage_text() == "stage 3 of 4: measuring vae: sampling speed"
    clock.now += 20
    job.update(JobEvent("measure", "diffusion", detail="diffusion: bound on 360 test images"))
    clock.now += 5
    assert job.left() == (15.0, True)  # one measurement took 20 s: 20 − 5 left of this one
    assert job.elapsed() == 179.0 and 0 < job.fraction() < 1
    job.update(JobEvent("done"))
    assert job.left() == (0.0, True) and job.fraction() == 1.0


def test_plain_mode_writes_a_line_per_stage_and_throttles_steps():
    clock, out = FakeClock(), io.StringIO()
    display = PlainProgress(out, every=10.0, clock=clock)
    display(JobEvent("plan", plan=PLAN))
    display.log("loading")
    display(JobEvent("train", "vae"))
    for step in range(1, 41):  # 40 steps over 20 s: two lines more, not forty
        clock.now += 0.5
        display(JobEvent("train", "vae", step=step, loss=1.0 / step))
    display(JobEvent("measure", "vae", detail="vae: information"))
    display.log("vae: information")  # shown as the stage, not repeated
    display(JobEvent("done"))
    lines = out.getvalue().splitlines()
    assert all(line.startswith("[compare] ") for line in lines)
    assert lines[0] == "[compare] loading"
    assert lines[1] == "[compare] stage 1 of 4: training vae (60 s); elapsed 0:00, at least 2:00 left"
    assert (
        lines[2] == "[compare] stage 1 of 4: training vae (60 s), step 20, loss 0.05; elapsed 0:10, at least 1:50 left"
    )
    assert lines[3].startswith("[compare] stage 1 of 4: training vae (60 s), step 40, loss 0.025; elapsed 0:20")
    assert (
        lines[4] == "[compare] stage 3 of 4: measuring vae: information; elapsed 0:20, time left known once a "
        "measurement has finished"
    )
    assert lines[5] == "[compare] judging the contrasts and writing the report; elapsed 0:20, about 0:00 left"
    assert len(lines) == 6


def test_off_a_terminal_the_display_is_plain_and_on_one_it_is_rich():
    assert isinstance(job_progress(io.StringIO()), PlainProgress)

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    assert isinstance(job_progress(Tty()), RichProgress)


def test_the_rich_display_shows_stage_and_times():
    from rich.console import Console

    console = Console(file=io.StringIO(), width=120, force_terminal=False)
    clock = FakeClock()
    display = RichProgress(console, clock=clock)
    display(JobEvent("plan", plan=PLAN))
    display(JobEvent("train", "diffusion", step=12, loss=0.5))
    console.print(display.render())
    text = console.file.getvalue()
    assert "training diffusion (60 s), step 12, loss 0.5" in text and "left" in text


@pytest.mark.parametrize("seconds, text", [(0, "0:00"), (59.6, "1:00"), (125, "2:05"), (3725, "1:02:05")])
def test_clock_text(seconds, text):
    assert clock_text(seconds) == text
