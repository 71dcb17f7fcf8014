"""Classifier-free guidance on digits: one conditional diffusion model, its samples swept over the guidance scale w.

The model is trained as `compare` trains its diffusion end (`budgeted_run`: the preset's config, batch, learning
rate, validation split and kept best weights) with `model.conditional=true`, on a budget of counted FLOPs at one
thread, so the weights do not depend on the machine or its load. At each w in 0, 0.5, 1, 2, 3, 4, 6, 8 it draws the
same number of samples of every class from the same noise at a fixed sampler and NFE and measures, each with its
bootstrap interval over the samples: the Fréchet distance, precision and recall against the test images (built-in
features) and the built-in feature net's class accuracy on the samples. Beside them the bound of the model w = 1
samples from, −log p(x | y), and the same weights' unconditional bound through the null class, −log p(x), each with
its interval (compare's estimator: importance-sampled t, draws for a standard error of 0.01 bits/dim).

    python benchmarks/guidance.py [--data digits] [--budget 3e12flop] [--per-class 40] [--sampler ddim --nfe 50]
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import print_table, write_results

from elbolab.data import load_data
from elbolab.evaluate.features import select_features
from elbolab.experiments.compare import CompareConfig, budgeted_run, filled_budget, with_preset
from elbolab.experiments.conditional import (
    STRONG_W,
    SWEEP_W,
    ceiling_bpd,
    contrast_trade,
    contrast_worth,
    guidance_sweep,
    sweep_rows,
)
from elbolab.experiments.runs import measure_run
from elbolab.train.api import fit_run, use_threads
from elbolab.train.budget import Budget
from elbolab.train.run import METRICS_FILE

ROOT = Path("guidance-runs")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="digits")
    parser.add_argument("--budget", default="3e12flop", help="training compute, e.g. 2e12flop or 600steps")
    parser.add_argument("--root", type=Path, default=ROOT, help="where the run is kept (reused when trained)")
    parser.add_argument("--per-class", type=int, default=40, help="samples of each class at each w")
    parser.add_argument("--sampler", default="ddim")
    parser.add_argument("--nfe", type=int, default=50)
    parser.add_argument("--replicates", type=int, default=200, help="bootstrap resamples of each figure")
    args = parser.parse_args()

    use_threads(1)
    train, test = load_data(args.data, "train"), load_data(args.data, "test")
    cfg = with_preset(CompareConfig(data=args.data, budget=Budget.parse(args.budget)), test.shape[-1])
    run_cfg = budgeted_run("diffusion", cfg, test, filled_budget(cfg), {"conditional": True})
    run_dir = args.root / args.data / f"diffusion-conditional-{args.budget}"
    if not (run_dir / METRICS_FILE).is_file():
        print(f"training a conditional diffusion model for {filled_budget(cfg)} in {run_dir}", flush=True)
        fit_run(run_cfg, run_dir, train, test, resume=(run_dir / "checkpoint.json").is_file(), progress=False)

    load = os.getloadavg()[0]
    evaluation = replace(cfg.evaluation, parts=("likelihood",))
    result, _, model = measure_run(run_dir, evaluation, test, None, print)
    m = result.measurement
    if m.bound is None or m.unconditional is None or m.classes is None:
        raise SystemExit("the model gave no conditional and unconditional bound")
    features, why_not = select_features(args.data, "builtin")
    points = guidance_sweep(
        model, test, features, SWEEP_W, args.per_class, args.sampler, args.nfe, args.replicates, log=print
    )
    rows = sweep_rows(points)
    print_table(
        [{k: r[k] for k in ("w", "fd", "fd_low", "fd_high", "precision", "recall", "accuracy")} for r in rows],
        f"{args.data}: guidance sweep, {args.per_class} samples of each class, {args.sampler} {args.nfe}",
    )
    worth = contrast_worth(m.bound, m.unconditional, m.classes, test.dims, "the same weights through the null class")
    trade = contrast_trade(*(next(p for p in points if p.w == w) for w in (1.0, STRONG_W)))
    gain = worth.effects[0]
    ceiling = ceiling_bpd(m.classes, test.dims)
    bounds = {
        "conditional_bpd": m.bound.bpd.total,
        "conditional_ci95": m.bound.bpd.ci95,
        "unconditional_bpd": m.unconditional.bpd.total,
        "unconditional_ci95": m.unconditional.bpd.ci95,
        "gain_bpd": gain.value + ceiling,
        "gain_low": gain.low + ceiling,
        "gain_high": gain.high + ceiling,
        "ceiling_bpd": ceiling,
        "estimator": m.bound.estimator,
        "n_eval": m.bound.n,
    }
    print_table([bounds], "the bound of the model w = 1 samples from, and through the null class (bits/dim, ± 95%)")
    for c in (worth, trade):
        print(f"\n{c.verdict}: {c.title}. {c.measured}")
    write_results(
        f"guidance-{args.data}",
        {
            "how": "benchmarks/guidance.py: one conditional diffusion model trained as compare trains its diffusion "
            f"end (budgeted_run, model.conditional=true, label dropout {run_cfg.model.label_dropout}) on counted "
            f"FLOPs at one thread; at each guidance w the same noise, {args.per_class} samples of each class, "
            f"{args.sampler} at NFE {args.nfe}; FD, precision and recall against the test images (built-in "
            "features) and the feature net's class accuracy, each with a percentile bootstrap interval over the "
            "samples; the bounds on the whole test split with their 95% intervals; the load is the 1-minute load "
            "average when measuring began",
            "data": args.data,
            "budget": str(filled_budget(cfg)),
            "train_steps": result.train_steps,
            "feature_net": features.name,
            "feature_net_note": why_not,
            "sampler": args.sampler,
            "nfe": args.nfe,
            "per_class": args.per_class,
            "load_before_measure": load,
            "bounds": bounds,
            "sweep": rows,
            "contrasts": [worth.to_json(), trade.to_json()],
        },
    )


if __name__ == "__main__":
    main()
