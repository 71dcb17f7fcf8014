"""Classifier-free guidance: one conditional diffusion model, its samples swept over the guidance scale w.

The model is trained as `compare` trains its diffusion end (`budgeted_run`: the preset's config, batch, learning
rate, validation split and kept best weights) with `model.conditional=true`, on a budget of counted FLOPs at one
thread, so the weights do not depend on the machine or its load; beside it the same diffusion model without labels,
trained alike (the pair `compare --conditional` judges: they differ in conditioning alone). At each w in 0, 0.5,
1, 2, 3, 4, 6, 8 it draws the same number of samples of every class from the same noise at a fixed sampler and NFE
and measures, each with its bootstrap interval over the samples: the Fréchet distance, precision and recall
against the test images (built-in features) and the built-in feature net's class accuracy on the samples. Beside
them the bound of the model w = 1 samples from, −log p(x | y), that of the unconditional model trained alike,
−log p(x), and the conditional model's own null class, each with its interval (compare's estimator:
importance-sampled t, draws for a standard error of 0.01 bits/dim); conditioning's gain over the model trained
alike is judged against log₂ K / D, the null class's gain reported beside it.

    python benchmarks/guidance.py [--data digits|fashion-mnist] [--budget 3e12flop] [--per-class 40]
        [--sampler ddim --nfe 50] [--n-eval N] [--bpd-se 0.01] [--results DIR]

Without --budget the model trains on compare's budget for images of that size (the preset's: 1.75e12 counted FLOPs on
digits, 7.5e12 on 28 px on a CPU); guidance-digits.json was measured with --budget 3e12flop, and
guidance-digits-1.75e12flop.json without it (written as guidance-digits.json, renamed). A small --budget,
--per-class, --nfe, --n-eval and --bpd-se 0 with --results elsewhere check the script quickly.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, SHARED_DATA, print_table, write_results

from elbolab.data import load_data
from elbolab.data.base import ImageData
from elbolab.evaluate.features import select_features
from elbolab.experiments.compare import CompareConfig, budgeted_run, filled_budget, with_preset
from elbolab.experiments.conditional import (
    STRONG_W,
    SWEEP_W,
    bound_gain,
    ceiling_bpd,
    contrast_trade,
    contrast_worth,
    guidance_sweep,
    sweep_rows,
)
from elbolab.experiments.runs import measure_run
from elbolab.train.api import fit_run, use_threads
from elbolab.train.budget import Budget
from elbolab.train.run import CHECKPOINT_FILE, METRICS_FILE, RunConfig

ROOT = Path("guidance-runs")


def trained(run_cfg: RunConfig, run_dir: Path, train: ImageData, test: ImageData) -> Path:
    """The run in `run_dir`, trained there unless it has finished already (an interrupted one resumed)."""
    if not (run_dir / METRICS_FILE).is_file():
        print(f"training {run_dir.name} for {Budget.of(run_cfg.train)} in {run_dir}", flush=True)
        fit_run(run_cfg, run_dir, train, test, resume=(run_dir / CHECKPOINT_FILE).is_file(), progress=False)
    return run_dir


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="digits", help="digits, or a labelled data set under --data-dir")
    parser.add_argument("--data-dir", default=str(SHARED_DATA), help="where the named data sets live")
    parser.add_argument(
        "--budget", default=None, help="training compute, e.g. 3e12flop or 600steps (default: compare's)"
    )
    parser.add_argument("--root", type=Path, default=ROOT, help="where the runs are kept (reused when trained)")
    parser.add_argument("--per-class", type=int, default=40, help="samples of each class at each w")
    parser.add_argument("--sampler", default="ddim")
    parser.add_argument("--nfe", type=int, default=50)
    parser.add_argument("--replicates", type=int, default=200, help="bootstrap resamples of each figure")
    parser.add_argument("--n-eval", type=int, default=None, help="test images for the bounds (default: compare's)")
    parser.add_argument(
        "--bpd-se", type=float, default=0.01, help="draws for this standard error of a bound (0: the default draws)"
    )
    parser.add_argument("--results", type=Path, default=RESULTS, help="the folder of the JSON result file")
    args = parser.parse_args()

    use_threads(1)
    train, test = load_data(args.data, "train", args.data_dir), load_data(args.data, "test", args.data_dir)
    budget = None if args.budget is None else Budget.parse(args.budget)
    cfg = with_preset(CompareConfig(data=args.data, data_dir=args.data_dir, budget=budget), test.shape[-1])
    folder = args.root / args.data
    tag = f"{filled_budget(cfg).amount:g}{filled_budget(cfg).unit}"
    run_cfg = budgeted_run("diffusion", cfg, test, filled_budget(cfg), {"conditional": True})
    run_dir = trained(run_cfg, folder / f"diffusion-conditional-{tag}", train, test)
    base_dir = trained(
        budgeted_run("diffusion", cfg, test, filled_budget(cfg)), folder / f"diffusion-{tag}", train, test
    )

    load = os.getloadavg()[0]
    evaluation = replace(
        cfg.evaluation, parts=("likelihood",), n_eval=args.n_eval or cfg.evaluation.n_eval, bpd_se=args.bpd_se or None
    )
    result, _, model = measure_run(run_dir, evaluation, test, None, print)
    base = measure_run(base_dir, evaluation, test, None, print)[0].measurement
    m = result.measurement
    if m.bound is None or m.unconditional is None or m.classes is None or base.bound is None:
        raise SystemExit("the models gave no conditional, null-class and unconditional bound")
    features, why_not = select_features(args.data, "builtin", data_dir=args.data_dir)
    points = guidance_sweep(
        model, test, features, SWEEP_W, args.per_class, args.sampler, args.nfe, args.replicates, log=print
    )
    rows = sweep_rows(points)
    print_table(
        [{k: r[k] for k in ("w", "fd", "fd_low", "fd_high", "precision", "recall", "accuracy")} for r in rows],
        f"{args.data}: guidance sweep, {args.per_class} samples of each class, {args.sampler} {args.nfe}",
    )
    pair = (base_dir.name, run_dir.name)
    worth = contrast_worth(m.bound, base.bound, m.classes, test.dims, pair, m.unconditional)
    trade = contrast_trade(*(next(p for p in points if p.w == w) for w in (1.0, STRONG_W)))
    gain = bound_gain(base.bound, m.bound, "test images")
    null_gain = bound_gain(m.unconditional, m.bound, "test images")
    bounds = {
        "conditional_bpd": m.bound.bpd.total,
        "conditional_ci95": m.bound.bpd.ci95,
        "unconditional_bpd": base.bound.bpd.total,
        "unconditional_ci95": base.bound.bpd.ci95,
        "null_class_bpd": m.unconditional.bpd.total,
        "null_class_ci95": m.unconditional.bpd.ci95,
        "gain_bpd": gain.value,
        "gain_low": gain.low,
        "gain_high": gain.high,
        "null_class_gain_bpd": null_gain.value,
        "null_class_gain_low": null_gain.low,
        "null_class_gain_high": null_gain.high,
        "ceiling_bpd": ceiling_bpd(m.classes, test.dims),
        "estimator": m.bound.estimator,
        "n_eval": m.bound.n,
    }
    print_table(
        [bounds],
        "the bound of the model w = 1 samples from, of the unconditional model trained alike and of the null class "
        "(bits/dim, ± 95%); the gains paired over the same test images",
    )
    for c in (worth, trade):
        print(f"\n{c.verdict}: {c.title}. {c.measured}")
    write_results(
        f"guidance-{args.data}",
        {
            "how": "benchmarks/guidance.py: one conditional diffusion model trained as compare trains its diffusion "
            f"end (budgeted_run, model.conditional=true, label dropout {run_cfg.model.label_dropout}) on counted "
            "FLOPs at one thread, and the same model without labels trained alike; at each guidance w the same "
            f"noise, {args.per_class} samples of each class, {args.sampler} at NFE {args.nfe}; FD, precision and "
            "recall against the test images (built-in features) and the feature net's class accuracy, each with a "
            "percentile bootstrap interval over the samples; the bounds on the test images with their 95% "
            "intervals, the gains paired over them; the load is the 1-minute load average when measuring began",
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
        args.results,
    )


if __name__ == "__main__":
    main()
