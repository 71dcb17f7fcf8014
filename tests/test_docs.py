"""The documentation site: the API reference shows no undocumented public name, and the getting-started page's
commands run as written (with the two small budgets it names)."""

from __future__ import annotations

import importlib
import inspect
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from test_compare import CONTRASTS

from elbolab.registry import MODEL_KINDS

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
#: the getting-started page's budgets → the small ones its test runs (the page says so in its first paragraph):
#: optimiser steps, not seconds, so that a loaded machine trains the same models; one job at a time, since spawning
#: training processes costs more than such short runs save
SMALL = {"--budget 60": "--budget 20steps --quick --jobs 1", "--steps 2000": "--steps 20"}


def reference_modules() -> list[str]:
    """The modules the API reference renders: every `::: module` line of docs/api/*.md."""
    found = []
    for page in sorted((DOCS / "api").glob("*.md")):
        found += re.findall(r"^::: ([\w.]+)\s*$", page.read_text(), flags=re.MULTILINE)
    return found


def public_objects(module_name: str) -> list[tuple[str, object]]:
    """The module's public functions and classes: its `__all__`, or else what it defines without a leading `_`."""
    module = importlib.import_module(module_name)
    names = getattr(module, "__all__", None)
    if names is None:
        names = [
            n
            for n, o in vars(module).items()
            if not n.startswith("_") and getattr(o, "__module__", None) == module_name
        ]
    return [
        (n, getattr(module, n))
        for n in names
        if inspect.isfunction(getattr(module, n)) or inspect.isclass(getattr(module, n))
    ]


def undocumented(qualname: str, obj: object) -> list[str]:
    """`qualname` if it has no docstring of its own, and each public method or property of a class that has none."""
    own = obj.__dict__.get("__doc__") if inspect.isclass(obj) else obj.__doc__
    missing = [] if own and own.strip() else [qualname]
    if inspect.isclass(obj):
        for name, member in vars(obj).items():
            if name.startswith("_"):
                continue
            func = member.fget if isinstance(member, property) else getattr(member, "__func__", member)
            if inspect.isfunction(func) and not (func.__doc__ and func.__doc__.strip()):
                missing.append(f"{qualname}.{name}")
    return missing


def test_the_reference_covers_the_contract_and_every_model_kind():
    modules = reference_modules()
    assert {"elbolab.bounds", "elbolab.model", "elbolab.records", "elbolab.registry"} <= set(modules)
    for kind, (module, _, _) in MODEL_KINDS.items():
        assert module in modules, f"model kind {kind!r}: add a page with '::: {module}' under docs/api/"


def test_every_public_name_in_the_reference_has_a_docstring():
    missing = [
        m
        for module in reference_modules()
        for name, obj in public_objects(module)
        for m in undocumented(f"{module}.{name}", obj)
    ]
    assert not missing, "no docstring: " + ", ".join(missing)


def test_the_docstring_check_sees_a_missing_docstring():
    class Documented:
        """Documented."""

        def method(self) -> None:
            pass

    assert undocumented("Documented", Documented) == ["Documented.method"]


def command_blocks(page: Path) -> list[str]:
    """The bodies of the page's ```bash blocks, in order."""
    return re.findall(r"^```bash\n(.*?)^```", page.read_text(), flags=re.MULTILINE | re.DOTALL)


def main_command() -> str:
    """The README's main command: the line after the fence that follows its `main-command` marker."""
    lines = (ROOT / "README.md").read_text().splitlines()
    return lines[lines.index("<!-- main-command -->") + 2]


def test_the_install_block_is_the_readme_main_commands_install():
    """The install block is not run here (it needs a fresh virtualenv and the network); .ci/run runs the same
    commands, the README's, in a fresh virtualenv."""
    install = command_blocks(DOCS / "getting-started.md")[0]
    assert " && ".join(line for line in install.splitlines() if line.strip()) + " && elbolab compare" in main_command()


@pytest.mark.slow
def test_getting_started_runs_as_written(tmp_path):
    """The page's blocks after the install, in order: the main job's (`compare`, the whole job end to end through
    the command line: its report, its results with every contrast, one verdict line each), then the rest."""
    main_job, *rest = command_blocks(DOCS / "getting-started.md")[1:]
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT / "src"), os.environ.get("PYTHONPATH")) if p),
        "OMP_NUM_THREADS": "1",
    }
    for big in SMALL:
        assert big in "\n".join((main_job, *rest)), f"the page no longer has {big!r}; update SMALL in this test"

    def run(script: str) -> subprocess.CompletedProcess[str]:
        for big, small in SMALL.items():
            script = script.replace(big, small)
        done = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", script],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        return done

    assert main_job.strip().startswith("elbolab compare ")
    verdicts = run(main_job).stdout.splitlines()
    assert (tmp_path / "compare-report" / "report.html").is_file()
    results = json.loads((tmp_path / "compare-report" / "results.json").read_text())
    assert len(results["contrasts"]) == CONTRASTS
    assert sum(
        line.strip().split()[0] in ("supported", "not", "inconclusive") for line in verdicts if line.strip()
    ) == (CONTRASTS)
    done = run("\n".join(rest))
    for image in ("samples.png", "interpolation.png", "vae-samples.png"):
        assert (tmp_path / image).stat().st_size > 0
    assert '"bpd"' in done.stdout and "bits/dim" in done.stdout
