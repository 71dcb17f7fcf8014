"""Bits/dim against training seconds on digits: the VAE, the discrete DDPM on L_simple, the discrete model with
a learned variance (hybrid loss), and continuous-time diffusion with learned end points trained on the ELBO
and on L_simple. Each point: the test-set bound with its Monte-Carlo standard error and the estimator's cost
in network passes per image. Then the T-step check: one model's Monte-Carlo estimate of its T-step bound
against the exact T-sum on the same images, at the cost of today's default estimator.

    PYTHONPATH=src python benchmarks/likelihood.py --budgets 15 60 [--threads 1] [--out likelihood]

Not a timed test; the machine it ran on (with its load average) is recorded in the JSON. Runs train with
compare's presets (`sized_for`) plus each variant's keys, so the continuous-time variants differ from
compare's diffusion only where their keys say.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from common import RESULTS, machine, print_table, write_results
from elbolab.bounds import Estimator, nats_to_bpd
from elbolab.data import load_data
from elbolab.evaluate.run import EvalConfig, summarize
from elbolab.experiments.compare import CompareConfig, budgeted_run
from elbolab.train.api import fit_run
from elbolab.train.run import METRICS_FILE, load_run

#: (name, kind, --set keys); the estimator each is read with follows from the model (see `estimator_for`)
VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    "vae": ("vae", {}),
    "ddpm-simple": ("diffusion", {"model.time": "discrete", "model.schedule": "cosine", "model.loss": "simple"}),
    "ddpm-hybrid": ("diffusion", {"model.time": "discrete", "model.schedule": "cosine", "model.loss": "hybrid",
                                  "model.variance": "learned"}),
    "vdm-elbo": ("diffusion", {}),  # compare's preset: continuous time, linear γ, learned end points, ELBO
    "vdm-elbo-cosine": ("diffusion", {"model.schedule": "cosine"}),
    "vdm-simple-cosine": ("diffusion", {"model.schedule": "cosine", "model.loss": "simple"}),
}
BPD_SE = 0.01


def train(name: str, budget: float, threads: int, root: Path, train_data, test_data) -> Path:
    kind, keys = VARIANTS[name]
    overrides = {kind: {**keys, "train.threads": threads}}
    run_cfg = budgeted_run(kind, CompareConfig(budget=budget, overrides=overrides), test_data, budget)
    run_dir = root / f"{name}-{budget:g}s"
    fit_run(run_cfg, run_dir, train_data, test_data, progress=False)
    return run_dir


def evaluate(run_dir: Path, train_data, test_data) -> dict[str, Any]:
    """The test-set bound: exact or IWAE-free ELBO for the VAE, the model's MC estimator for the discrete chain,
    importance-sampled t with draws for BPD_SE for continuous time."""
    run_cfg, model = load_run(run_dir, device="cpu")
    continuous = model.kind == "diffusion" and model.config.time == "continuous"
    proposal = "importance" if continuous else None  # the discrete chain: its default estimator (today's)
    cfg = EvalConfig(proposal=proposal, bpd_se=BPD_SE if proposal else None)
    s = summarize(model, test_data, None, None, 0, cfg, train_data)
    steps = json.loads((run_dir / METRICS_FILE).read_text())["step"]
    return {"steps": steps, "bpd": s.bpd.total, "ci95": s.bpd.ci95, "mc_se_bpd": s.mean_stderr_bpd, "spread_bpd": s.per_image_sd_bpd,
            "passes": s.passes_per_image, "estimator": s.estimator, "eval_s": s.seconds,
            "objective": model.objective, "parameters": sum(p.numel() for p in model.parameters()),
            "gamma_ends": model.diffusion.schedule.ends.tolist() if continuous else None}


@torch.no_grad()
def t_step_check(run_dir: Path, train_data, test_data, n: int, draws: int) -> list[dict[str, Any]]:
    """Exact T-sum vs Monte-Carlo estimates of the same T-step bound on n test images at `draws` passes:
    the discrete chain's iid draw (today's default) and its pilot-fitted importance draw; in continuous time
    the importance draw of its T-step form."""
    _, model = load_run(run_dir, device="cpu")
    x = test_data.model_range(slice(0, n))
    g = torch.Generator().manual_seed(0)
    T = model.config.T
    continuous = model.config.time == "continuous"
    exact = model.elbo(x, Estimator("exact", steps=T if continuous else None), g)
    if continuous:
        estimators = [Estimator("mc", draws, "importance", T)]
    else:  # two passes per draw (a step and L_0)
        estimators = [Estimator("mc", draws // 2), Estimator("mc", draws // 2, "importance")]
    rows = []
    for estimator in estimators:
        if estimator.proposal == "importance":
            model.prepare_estimator(estimator, train_data.model_range(slice(0, 64)), g)
        mc = model.elbo(x, estimator, g)
        diff = (mc.total - exact.total).mean().item()
        se = mc.extras["stderr"].pow(2).sum().sqrt().item() / n
        rows.append({"T": T, "n": n, "estimator": estimator.describe(), "passes": mc.extras["passes"].mean().item(),
                     "exact_nats": exact.total.mean().item(), "mc_nats": mc.total.mean().item(),
                     "mc_minus_exact": diff, "se_of_mean": se, "z": diff / se,
                     "per_image_se_nats": mc.extras["stderr"].mean().item(),
                     "exact_bpd": nats_to_bpd(exact.total.mean().item(), exact.dims)})
    return rows


def plot(points: list[dict[str, Any]], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for name in VARIANTS:
        row = sorted((p for p in points if p["model"] == name), key=lambda p: p["budget_s"])
        if row:
            ax.errorbar([p["budget_s"] for p in row], [p["bpd"] for p in row],
                        yerr=[2 * (p["mc_se_bpd"] or 0) for p in row], marker="o", capsize=3, label=name)
    ax.set_xscale("log")
    ax.set_xlabel("training seconds (CPU, loaded machine)")
    ax.set_ylabel("test bound, bits/dim")
    ax.set_title("digits: bound vs training budget (bars: ±2 MC s.e.)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    print(f"wrote {path}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--budgets", type=float, nargs="+", default=[15.0, 60.0])
    ap.add_argument("--models", nargs="+", default=list(VARIANTS))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--check-n", type=int, default=16)
    ap.add_argument("--check-draws", type=int, default=32)
    ap.add_argument("--out", default="likelihood")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    train_data, test_data = load_data("digits", "train"), load_data("digits", "test")
    started = machine()
    points, checks = [], []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for budget in args.budgets:
            for name in args.models:
                t0 = time.perf_counter()
                run_dir = train(name, budget, args.threads, root, train_data, test_data)
                point = {"model": name, "budget_s": budget, **evaluate(run_dir, train_data, test_data),
                         "wall_s": time.perf_counter() - t0}
                points.append(point)
                print_table([point], f"{name} after {budget:g} s")
                if budget == max(args.budgets) and name in ("ddpm-simple", "vdm-elbo"):
                    rows = t_step_check(run_dir, train_data, test_data, args.check_n, args.check_draws)
                    checks.extend({"model": name, **row} for row in rows)
                    print_table(checks[-len(rows):], "T-step check")
                write_results(args.out, {"started": started, "points": points, "t_step_checks": checks,
                                         "bpd_se_target": BPD_SE, "args": vars(args)})
    print_table(points, "bits/dim vs training seconds")
    print_table(checks, "Monte-Carlo estimate vs exact T-sum")
    plot(points, RESULTS / f"{args.out}.png")


if __name__ == "__main__":
    main()
