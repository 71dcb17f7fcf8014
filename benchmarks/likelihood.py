"""Bits/dim against training seconds on digits (or Fashion-MNIST, `--data fashion-mnist`): the VAE, the
discrete DDPM on L_simple, the discrete model with a learned variance (hybrid loss), and continuous-time
diffusion with learned end points trained on the ELBO and on L_simple, with a learned shape, or at the VAE's
parameter count (the variants in VARIANTS). Each point: the test-set bound with its Monte-Carlo standard
error and the estimator's cost in network passes per image. Then the T-step check: one model's Monte-Carlo
estimates of its T-step bound against the exact T-sum on the same images (averaged over two draws of its
noise), at equal network passes.

    PYTHONPATH=src python benchmarks/likelihood.py --budgets 15 60 [--threads 1] [--out likelihood]
    PYTHONPATH=src python benchmarks/likelihood.py --data fashion-mnist --budgets 60 600 1800 --out likelihood-fashion
    # one process per model side by side (one thread each), then joined into one file and plot
    PYTHONPATH=src python benchmarks/likelihood.py --data fashion-mnist --models vae --budgets 60 1800 --out lf-vae &
    PYTHONPATH=src python benchmarks/likelihood.py --data fashion-mnist --models vdm-elbo-matched --budgets 60 1800 \
        --out lf-vdm
    PYTHONPATH=src python benchmarks/likelihood.py --merge lf-vae lf-vdm --out likelihood-fashion
    # only the T-step check (its models at the largest budget), replacing its rows in an existing --out JSON;
    # --runs keeps the trained runs in a folder and reuses them
    PYTHONPATH=src python benchmarks/likelihood.py --checks-only --budgets 60 --models ddpm-simple --runs /tmp/lk

Not a timed test; the machine it ran on (with its load average) is recorded in the JSON. Runs train with
compare's presets (`sized_for`) plus each variant's keys, so the continuous-time variants differ from
compare's diffusion only where their keys say.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from common import RESULTS, SHARED_DATA, machine, print_table, write_results

from elbolab.bounds import Estimator, nats_to_bpd
from elbolab.data import load_data
from elbolab.evaluate.run import EvalConfig, Pilot, summarize
from elbolab.experiments.compare import CompareConfig, budgeted_run, model_classes
from elbolab.train.api import apply_overrides, fit_run
from elbolab.train.config import TrainConfig
from elbolab.train.run import METRICS_FILE, load_run

#: (name, kind, --set keys); the estimator each is read with follows from the model (see `estimator_for`)
VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    "vae": ("vae", {}),
    "ddpm-simple": ("diffusion", {"model.time": "discrete", "model.schedule": "cosine", "model.loss": "simple"}),
    "ddpm-hybrid": (
        "diffusion",
        {"model.time": "discrete", "model.schedule": "cosine", "model.loss": "hybrid", "model.variance": "learned"},
    ),
    "vdm-elbo": ("diffusion", {}),  # compare's preset: continuous time, linear γ, learned end points, ELBO
    # the same, its UNet's width chosen so that its parameter count is the nearest to the VAE's (`matched_keys`)
    "vdm-elbo-matched": ("diffusion", {}),
    "vdm-elbo-cosine": ("diffusion", {"model.schedule": "cosine"}),
    "vdm-elbo-learned": ("diffusion", {"model.schedule": "learned"}),  # VDM's monotone network for γ's shape
    "vdm-simple-cosine": ("diffusion", {"model.schedule": "cosine", "model.loss": "simple"}),
}
BPD_SE = 0.01
#: the models the T-step check runs on (at the largest budget)
CHECKED = ("ddpm-simple", "vdm-elbo")


def parameters(kind: str, keys: dict[str, Any], test_data) -> int:
    """The parameter count of compare's `kind` for these images with `keys` set."""
    cfg_cls, model_cls = model_classes(kind)
    model_cfg, _ = apply_overrides(cfg_cls.sized_for(test_data.shape[-1], "cpu"), TrainConfig(), keys)
    return sum(p.numel() for p in model_cls(model_cfg, tuple(test_data.shape), test_data.levels).parameters())


def matched_keys(test_data) -> dict[str, Any]:
    """model.unet.channels for which compare's diffusion UNet has the parameter count nearest the VAE's."""
    target = parameters("vae", {}, test_data)
    count = lambda c: parameters("diffusion", {"model.unet.channels": c}, test_data)
    width = min(range(8, 65), key=lambda c: abs(count(c) - target))
    return {"model.unet.channels": width}


def train(name: str, budget: float, threads: int, root: Path, train_data, test_data, data_dir: str | None) -> Path:
    """Train one variant for `budget` seconds into root (a finished run of the same name is reused)."""
    kind, keys = VARIANTS[name]
    if name.endswith("-matched"):
        keys = {**keys, **matched_keys(test_data)}
    overrides = {kind: {**keys, "train.threads": threads}}
    compare = CompareConfig(data=test_data.name, data_dir=data_dir, budget=budget, overrides=overrides)
    run_cfg = budgeted_run(kind, compare, test_data, budget)
    run_dir = root / f"{test_data.name}-{name}-{budget:g}s"
    if not (run_dir / METRICS_FILE).is_file():
        fit_run(run_cfg, run_dir, train_data, test_data, progress=False)
    return run_dir


def evaluate(run_dir: Path, train_data, test_data, n: int | None = None) -> dict[str, Any]:
    """The test-set bound: the VAE's one-sample ELBO, the discrete chain's default estimator (importance-sampled
    steps), importance-sampled t with draws for BPD_SE for continuous time."""
    _run_cfg, model = load_run(run_dir, device="cpu")
    continuous = model.kind == "diffusion" and model.config.time == "continuous"
    proposal = "importance" if continuous else None
    cfg = EvalConfig(proposal=proposal, bpd_se=BPD_SE if proposal else None)
    s = summarize(model, test_data, n, None, 0, cfg, Pilot(train_data))
    steps = json.loads((run_dir / METRICS_FILE).read_text())["step"]
    return {
        "steps": steps,
        "bpd": s.bpd.total,
        "ci95": s.bpd.ci95,
        "mc_se_bpd": s.mean_stderr_bpd,
        "spread_bpd": s.per_image_sd_bpd,
        "passes": s.passes_per_image,
        "estimator": s.estimator,
        "eval_s": s.seconds,
        "objective": model.objective,
        "parameters": sum(p.numel() for p in model.parameters()),
        "gamma_ends": model.diffusion.schedule.ends.tolist() if continuous else None,
    }


@torch.no_grad()
def t_step_check(run_dir: Path, train_data, test_data, n: int, passes: int, repeats: int) -> list[dict[str, Any]]:
    """Exact T-sum vs Monte-Carlo estimates of the same T-step bound on n test images at `passes` network
    passes per image: the discrete chain's uniform iid draw (K = passes/2 steps, each with its L_0) and its
    default, pilot-fitted importance draw (K = passes − 4 steps, L_0 in each of 4 replicates); in continuous
    time the importance draw of its T-step form. The exact sum is one draw of x_i per step, so it is averaged
    over two draws and its own standard error (from their difference) enters z. `repeats` more estimates tell
    bias from bad luck: their mean against the exact sum, and their observed spread against the reported error."""
    _, model = load_run(run_dir, device="cpu")
    x = test_data.model_range(slice(0, n))
    g = torch.Generator().manual_seed(0)
    T = model.config.T
    continuous = model.config.time == "continuous"
    exact_estimator = Estimator("exact", steps=T if continuous else None)
    a, b = (model.elbo(x, exact_estimator, g).total for _ in range(2))
    exact, exact_se_image = (a + b) / 2, (a - b).abs() / 2  # per image: sd/√2 of the mean of two, sd² ≈ (a−b)²/2
    exact_se = exact_se_image.pow(2).sum().sqrt().item() / n
    if continuous:
        estimators = [Estimator("mc", passes, "importance", T)]
    else:
        estimators = [Estimator("mc", passes // 2), Estimator("mc", passes - 4, "importance")]
    rows = []
    for estimator in estimators:
        if estimator.proposal == "importance":
            model.prepare_estimator(estimator, train_data.model_range(slice(0, 64)), g)
        mc = model.elbo(x, estimator, g)
        diff = (mc.total - exact).mean().item()
        more = torch.stack([model.elbo(x, estimator, g).total for _ in range(repeats)])  # [repeats, n]
        spread = more.std(0)  # per image, over repeats
        repeat_se = math.hypot((spread.pow(2).mean() / (repeats * n)).sqrt().item(), exact_se)
        se = mc.extras["stderr"].pow(2).sum().sqrt().item() / n
        rows.append(
            {
                "T": T,
                "n": n,
                "estimator": estimator.describe(),
                "passes": mc.extras["passes"].mean().item(),
                "exact_nats": exact.mean().item(),
                "exact_se_of_mean": exact_se,
                "exact_per_image_se_nats": exact_se_image.pow(2).mean().sqrt().item() * math.sqrt(2),
                "mc_nats": mc.total.mean().item(),
                "mc_minus_exact": diff,
                "se_of_mean": se,
                "z": diff / math.hypot(se, exact_se),
                "per_image_se_nats": mc.extras["stderr"].mean().item(),
                "repeats": repeats,
                "repeats_mean_minus_exact": (more.mean() - exact.mean()).item(),
                "repeats_z": (more.mean() - exact.mean()).item() / repeat_se,
                "per_image_spread_over_repeats_nats": spread.pow(2).mean().sqrt().item(),
                "exact_bpd": nats_to_bpd(exact.mean().item(), x[0].numel()),
            }
        )
    return rows


def plot(points: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for name in VARIANTS:
        row = sorted((p for p in points if p["model"] == name), key=lambda p: p["budget_s"])
        if row:
            ax.errorbar(
                [p["budget_s"] for p in row],
                [p["bpd"] for p in row],
                yerr=[2 * (p["mc_se_bpd"] or 0) for p in row],
                marker="o",
                capsize=3,
                label=name,
            )
    ax.set_xscale("log")
    budgets = sorted({p["budget_s"] for p in points})
    ax.set_xticks(budgets, [f"{b:g}" for b in budgets])
    ax.minorticks_off()
    ax.set_xlabel("training seconds (CPU, loaded machine)")
    ax.set_ylabel("test bound, bits/dim")
    ax.set_title(f"{points[0]['data'] if points else ''}: bound vs training budget (bars: ±2 MC s.e.)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    print(f"wrote {path}")


def merge(names: list[str], out: str) -> None:
    """Join the points and T-step checks of several results files into `out`, each part keeping its machine."""
    parts = {name: json.loads((RESULTS / f"{name}.json").read_text()) for name in names}
    points = [p for part in parts.values() for p in part["points"]]
    checks = [c for part in parts.values() for c in part.get("t_step_checks", [])]
    write_results(
        out,
        {
            "merged_from": {name: {"started": part["started"], "args": part["args"]} for name, part in parts.items()},
            "points": points,
            "t_step_checks": checks,
            "bpd_se_target": BPD_SE,
        },
    )
    print_table(points, "bits/dim vs training seconds")
    plot(points, RESULTS / f"{out}.png")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="digits", help="digits, or a data set under --data-dir (fashion-mnist)")
    ap.add_argument("--data-dir", default=str(SHARED_DATA))
    ap.add_argument("--budgets", type=float, nargs="+", default=[15.0, 60.0])
    ap.add_argument("--models", nargs="+", default=list(VARIANTS))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--eval-n", type=int, default=None, help="test images per point (default: the whole split)")
    ap.add_argument("--check-n", type=int, default=16)
    ap.add_argument("--check-passes", type=int, default=32, help="network passes per image of each MC estimate")
    ap.add_argument(
        "--check-repeats", type=int, default=20, help="further estimates per estimator, to tell bias from bad luck"
    )
    ap.add_argument(
        "--checks-only",
        action="store_true",
        help="only the T-step check of --models (of CHECKED) at the largest budget; its rows replace "
        "theirs in the existing --out JSON, its points are kept",
    )
    ap.add_argument(
        "--runs", default=None, help="a folder to keep trained runs in, reused when there (default: a temporary one)"
    )
    ap.add_argument("--out", default="likelihood")
    ap.add_argument(
        "--merge",
        nargs="+",
        default=None,
        metavar="NAME",
        help="only join the points and checks of results/NAME.json files (e.g. one process per model, "
        "run side by side) into --out, with its plot",
    )
    args = ap.parse_args()
    if args.merge:
        merge(args.merge, args.out)
        return
    torch.set_num_threads(args.threads)
    data_dir = None if args.data == "digits" else args.data_dir
    train_data, test_data = load_data(args.data, "train", data_dir), load_data(args.data, "test", data_dir)
    started = machine()
    previous = json.loads((RESULTS / f"{args.out}.json").read_text()) if args.checks_only else {}
    points = previous.get("points", [])
    checks = [c for c in previous.get("t_step_checks", []) if c["model"] not in args.models]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.runs or tmp)
        for budget in args.budgets:
            for name in args.models:
                last = budget == max(args.budgets)
                if args.checks_only and not (last and name in CHECKED):
                    continue
                t0 = time.perf_counter()
                run_dir = train(name, budget, args.threads, root, train_data, test_data, data_dir)
                if not args.checks_only:
                    point = {
                        "model": name,
                        "data": args.data,
                        "budget_s": budget,
                        **evaluate(run_dir, train_data, test_data, args.eval_n),
                        "wall_s": time.perf_counter() - t0,
                        "load_average_1min": os.getloadavg()[0],
                    }
                    points.append(point)
                    print_table([point], f"{name} after {budget:g} s")
                if last and name in CHECKED:
                    rows = t_step_check(
                        run_dir, train_data, test_data, args.check_n, args.check_passes, args.check_repeats
                    )
                    checks.extend({"model": name, "budget_s": budget, **row} for row in rows)
                    print_table(checks[-len(rows) :], "T-step check")
                write_results(
                    args.out,
                    {
                        "started": previous.get("started", started),
                        "points": points,
                        "t_step_checks": checks,
                        "t_step_checks_started": started,
                        "bpd_se_target": BPD_SE,
                        "args": {**previous.get("args", {}), **vars(args)},
                    },
                )
    print_table(points, "bits/dim vs training seconds")
    print_table(checks, "Monte-Carlo estimate vs exact T-sum")
    if not args.checks_only:
        plot(points, RESULTS / f"{args.out}.png")


if __name__ == "__main__":
    main()
