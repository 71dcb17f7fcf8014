"""compare's worker pool (`in_processes`): tasks start in their order once what they wait on has finished, at most
`jobs` at once; an error in a task, or tasks that cannot start, are raised in the parent."""

import operator

import pytest

from elbolab.experiments.compare import Task, in_processes


def test_tasks_wait_for_what_they_follow_and_keep_their_order_otherwise():
    """With one process the order of finishing is the order of starting: a task listed first that waits on a
    later one starts after it; the results reach `done` by name."""
    tasks = {
        "sum": Task(operator.add, (2, 3), after=("product",)),
        "product": Task(operator.mul, (4, 5)),
        "power": Task(operator.pow, (2, 10)),
    }
    seen: list[tuple[str, int]] = []
    in_processes(tasks, 1, lambda name, result: seen.append((name, result)))
    assert seen == [("product", 20), ("sum", 5), ("power", 1024)]


def test_two_processes_run_every_task_once():
    tasks = {f"n{i}": Task(operator.neg, (i,), after=(f"n{i - 1}",) if i % 2 else ()) for i in range(6)}
    seen: dict[str, int] = {}
    in_processes(tasks, 2, seen.__setitem__)
    assert seen == {f"n{i}": -i for i in range(6)}


def test_an_error_in_a_task_is_raised_and_what_follows_it_never_runs():
    tasks = {"broken": Task(operator.truediv, (1, 0)), "after": Task(operator.add, (1, 1), after=("broken",))}
    seen: list[str] = []
    with pytest.raises(ZeroDivisionError):
        in_processes(tasks, 1, lambda name, _: seen.append(name))
    assert seen == []


@pytest.mark.parametrize(
    "tasks, message",
    [
        ({"a": Task(operator.neg, (1,), after=("missing",))}, "not there"),
        ({"a": Task(operator.neg, (1,), after=("b",)), "b": Task(operator.neg, (2,), after=("a",))}, "each other"),
    ],
)
def test_tasks_that_cannot_start_are_refused(tasks, message):
    with pytest.raises(ValueError, match=message):
        in_processes(tasks, 1, lambda *_: None)
