"""The models between the paradigms side by side: every point of compare's full design at one training compute.

Each model of DESIGN.md's "design space" table (the VAE, the same-size VAE, the hierarchical VAE, one-step
diffusion, discrete chains of more steps, continuous-time diffusion, DiffEnc, latent diffusion) is trained exactly
as `compare --design full` trains it (`point_run`: the same configs, budget, validation split and kept best weights),
then measured: test bits/dim with its 95% interval and Monte-Carlo error, parameters, and sampling time per image at
the model's own sampler. Budgets are counted FLOPs, so the bounds do not depend on the machine or its load; the
sampling times do, so `measure` records the load beside them and is meant for an idle machine.

    python benchmarks/bridge.py train --data digits [--budget 3e12flop] [--jobs 2]
    python benchmarks/bridge.py measure --data digits     # writes benchmarks/results/bridge-digits.json
    python benchmarks/bridge.py plot                      # bridge.json and bridge.png from every data set measured
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, print_table, write_results

from elbolab.bounds import LN2
from elbolab.data import load_data
from elbolab.experiments.compare import CompareConfig, point_run, with_preset
from elbolab.experiments.design import design_points
from elbolab.experiments.runs import measure_run
from elbolab.train.api import fit_run
from elbolab.train.budget import Budget

ROOT = Path("bridge-runs")


def points() -> list[Any]:
    """The full design's models, without the β-sweep and the shorter objective pair (they are compare's extras)."""
    return [p for p in design_points("full") if not p.role and p.budget == 1]


def config(args: argparse.Namespace) -> CompareConfig:
    """compare's configuration for these data and budget, its preset filled in."""
    cfg = CompareConfig(data=args.data, budget=Budget.parse(args.budget) if args.budget else None, design="full")
    test = load_data(args.data, "test")
    return with_preset(cfg, test.shape[-1])


def train_one(args: argparse.Namespace) -> None:
    """Train one point (in its own process: one thread, as compare trains)."""
    cfg = config(args)
    train, test = load_data(args.data, "train"), load_data(args.data, "test")
    point = next(p for p in points() if p.name == args.point)
    run_dir = args.root / args.data / point.name
    if (run_dir / "metrics.json").is_file():
        print(f"{point.name}: trained already")
        return
    fit_run(
        point_run(point, cfg, test),
        run_dir,
        train,
        test,
        resume=(run_dir / "checkpoint.json").is_file(),
        progress=False,
    )


def train_all(args: argparse.Namespace) -> None:
    """Every point, `--jobs` processes at a time."""
    names = [p.name for p in points()]
    pending, running = list(names), []
    while pending or running:
        while pending and len(running) < args.jobs:
            name = pending.pop(0)
            cmd = [
                sys.executable,
                __file__,
                "train-one",
                "--data",
                args.data,
                "--root",
                str(args.root),
                "--point",
                name,
                *(["--budget", args.budget] if args.budget else []),
            ]
            print(f"train {name}", flush=True)
            running.append((name, subprocess.Popen(cmd)))
        time.sleep(1)
        for name, proc in list(running):
            if proc.poll() is not None:
                running.remove((name, proc))
                if proc.returncode != 0:
                    raise SystemExit(f"{name}: training failed (rc {proc.returncode})")


def measure(args: argparse.Namespace) -> None:
    """Bound with its interval and Monte-Carlo error, parameters, sampling time per image, for every trained point."""
    cfg = config(args)
    test = load_data(args.data, "test")
    evaluation = replace(
        cfg.evaluation,
        parts=("likelihood", "speed"),
        n_eval=args.n_eval or cfg.evaluation.n_eval,
        nfe=tuple(sorted({1, 10, args.nfe})),
    )
    rows, load = [], os.getloadavg()[0]
    for point in points():
        run_dir = args.root / args.data / point.name
        if not (run_dir / "metrics.json").is_file():
            print(f"{point.name}: not trained, skipped")
            continue
        result, _, model = measure_run(run_dir, evaluation, test, None, print)
        m, metrics = result.measurement, json.loads((run_dir / "metrics.json").read_text())
        # the model's own sampler at the most steps up to --nfe that it takes (a one-step chain: 1)
        speed = max((row for row in m.speed if row.nfe <= args.nfe), key=lambda row: row.nfe, default=None)
        design, bound = model.capabilities.design, m.bound
        if bound is None:
            raise SystemExit(f"{point.name}: no bound was measured")
        rows.append(
            {
                "model": point.name,
                "kind": point.kind,
                "changes": dict(point.changes),
                "encoder": design.encoder if design else None,
                "steps": None if design is None else design.encoder_steps,
                "latent_fraction": design.latent_fraction if design else None,
                "objective": design.objective if design else None,
                "bpd": bound.bpd.total,
                "ci95": bound.bpd.ci95,
                "mc_stderr_bpd": bound.mean_stderr_bpd,
                "estimator": bound.estimator,
                "n_eval": bound.n,
                "parameters": sum(p.numel() for p in model.parameters()),
                "train_steps": metrics.get("step"),
                "kept_step": metrics.get("kept_step"),
                "train_flops": metrics.get("train_flops"),
                "sampler": None if speed is None else speed.sampler,
                "nfe": None if speed is None else speed.nfe,
                "sample_seconds_per_image": None if speed is None else speed.seconds_per_image,
            }
        )
    print_table(
        [
            {
                k: r[k]
                for k in (
                    "model",
                    "bpd",
                    "ci95",
                    "mc_stderr_bpd",
                    "parameters",
                    "train_steps",
                    "kept_step",
                    "nfe",
                    "sample_seconds_per_image",
                )
            }
            for r in rows
        ],
        f"{args.data}: every model of the design at {cfg.budget} each",
    )
    write_results(
        f"bridge-{args.data}",
        {
            "how": "benchmarks/bridge.py: each point of compare's full design trained as compare trains it (point_run: "
            "its config, budget, 10% validation split, best weights kept), one thread per process, then its test "
            f"bound and its sampling time at NFE {args.nfe} (a one-pass model: 1); the load is the 1-minute load "
            "average when measuring began",
            "data": args.data,
            "budget": str(cfg.budget),
            "n_eval": evaluation.n_eval,
            "load_before_measure": load,
            "bits_per_nat_per_dim": 1 / LN2,
            "rows": rows,
        },
    )


def plot(args: argparse.Namespace) -> None:
    """bridge.json (every data set's rows) and bridge.png: bits/dim with its interval against sampling time."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    found = {p.stem.removeprefix("bridge-"): json.loads(p.read_text()) for p in sorted(RESULTS.glob("bridge-*.json"))}
    if not found:
        raise SystemExit("no bridge-*.json under benchmarks/results: run measure first")
    fig, axes = plt.subplots(1, len(found), figsize=(6 * len(found), 4.5), squeeze=False)
    for ax, (data, result) in zip(axes[0], found.items()):
        for row in result["rows"]:
            x = row["sample_seconds_per_image"] or float("nan")
            ax.errorbar(x, row["bpd"], yerr=row["ci95"], fmt="o", capsize=3)
            ax.annotate(row["model"], (x, row["bpd"]), textcoords="offset points", xytext=(4, 4), fontsize=8)
        ax.set_xscale("log")
        ax.set_xlabel("sampling seconds per image (log)")
        ax.set_ylabel("test bits/dim (95% interval)")
        ax.set_title(f"{data}, {result['budget']} per model")
    fig.tight_layout()
    fig.savefig(RESULTS / "bridge.png", dpi=120)
    write_results("bridge", {"how": "the rows of every bridge-<data>.json; plot in bridge.png", "by_data": found})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=("train", "train-one", "measure", "plot"))
    parser.add_argument("--data", default="digits")
    parser.add_argument("--budget", help="per model (default: compare's preset), e.g. 3e12flop or 800steps")
    parser.add_argument("--root", type=Path, default=ROOT, help="where the runs are kept")
    parser.add_argument("--jobs", type=int, default=2, help="training processes at once (one thread each)")
    parser.add_argument("--point", help="train-one: the design point")
    parser.add_argument("--n-eval", type=int, help="test images for the bound (default: compare's)")
    parser.add_argument("--nfe", type=int, default=50, help="network evaluations for the sampling time")
    args = parser.parse_args()
    {"train": train_all, "train-one": train_one, "measure": measure, "plot": plot}[args.action](args)


if __name__ == "__main__":
    main()
