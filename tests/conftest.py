"""Shared fixtures: the real data beside the repository, and the command line run in-process."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"

if os.environ.get("PYTEST_XDIST_WORKER"):
    torch.set_num_threads(1)  # one core per worker: the workers share the machine


@pytest.fixture(autouse=True)
def _seed_and_threads():
    """Every test starts from the same global seed."""
    torch.manual_seed(0)
    yield


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture
def run_cli(capsys):
    """Run `elbolab ARGS...` in this process; returns (exit code, stdout, stderr)."""
    from elbolab.cli import main

    def run(*args: str) -> tuple[int, str, str]:
        with pytest.raises(SystemExit) as exc:
            main([str(a) for a in args])
        out, err = capsys.readouterr()
        return int(exc.value.code or 0), out, err

    return run


@pytest.fixture(scope="session")
def browser():
    """One headless Chromium per test process; where none starts, the test is skipped with the reason (pytest's
    -rs, on by default, prints it)."""
    from cdp import BrowserError, Chromium, find_chromium

    exe = find_chromium()
    if exe is None:
        pytest.skip("no Chromium found (install Debian's chromium, or set ELBOLAB_CHROMIUM to a browser)")
    try:
        b = Chromium(exe)
    except BrowserError as exc:
        pytest.skip(f"Chromium could not be started: {exc}")
    yield b
    b.close()


def eval_json(run_cli, run, n: int, *extra: str) -> dict:
    """`elbolab eval RUN --json --only-bound` on the first n test images, as the JSON object it prints."""
    import json

    code, out, err = run_cli("eval", run, "--json", "--only-bound", "--n", str(n), *extra)
    assert code == 0, err
    return json.loads(out)
