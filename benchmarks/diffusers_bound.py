"""Benchmark: the bound of a diffusers-trained model on Fashion-MNIST, next to elbolab's of the same size (issue 14).

    python benchmarks/diffusers_bound.py [--train-seconds 180] [--n-test 200] [--elbo-samples 4] [--threads 2]

diffusers' half is its own training recipe (examples/unconditional_image_generation): a `UNet2DModel`
(laid out like elbolab's `small` UNet, `diffusion.diffusers_unet`), a `DDPMScheduler` (T = 1000,
linear betas 1e-4 … 0.02, ε-prediction, fixed_small variance, clip_sample), AdamW and the MSE between
ε and the UNet's output at k ~ U{0..T−1}, for a wall-clock budget, no EMA. It is saved with
`save_pretrained` and measured by `evaluate_diffusers` — what `elbolab eval --diffusers` runs — so the
bound is of the clipped reverse process DDPMPipeline samples from.

elbolab's half: `train_run` (what `elbolab train diffusion` runs) with the same UNet preset, the same
chain (linear, T = 1000, ε, L_simple), batch, learning rate and budget; its trainer adds warm-up,
cosine decay, gradient clipping and EMA weights (those are what it evaluates). The AdamW learning rate of
both is elbolab's default (2e-3) unless --diffusers-lr is given (the diffusers example uses 1e-4, too slow
to show anything in minutes).

Both bounds are the Monte-Carlo estimate (K draws of t per image, each with its own L_0) on the same test
images, with 95% intervals over the images; a few CPU minutes of training is far from converged, so
the figures say what the budget buys and that the two sides are measured alike, not what either library
reaches. The machine's load average is recorded before and after each half.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import SHARED_DATA, machine, print_table, write_results
from diffusion import diffusers_unet, import_diffusers

from elbolab.bounds import Estimator
from elbolab.data import DataWarning, load_data
from elbolab.evaluate.run import EvalConfig
from elbolab.experiments.runs import evaluate_diffusers, evaluate_run
from elbolab.train.api import train_run
from elbolab.train.config import TrainConfig


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-seconds", type=float, default=180.0, help="wall-clock training budget of each")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--preset", default="small", help="UNet preset of both (tiny | small | base)")
    parser.add_argument("--T", type=int, default=1000)
    parser.add_argument("--diffusers-lr", type=float, default=TrainConfig().lr)
    parser.add_argument("--n-test", type=int, default=200, help="test images for the bound")
    parser.add_argument("--elbo-samples", type=int, default=4, help="Monte-Carlo draws of t per test image")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--data-dir", default=str(SHARED_DATA))
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args()


def load() -> float:
    """The 1-minute load average."""
    return float(machine()["load_average_1_5_15_min"][0])


def train_diffusers_recipe(diffusers, args, train, folder: Path) -> dict:
    """UNet2DModel + DDPMScheduler + AdamW + MSE on ε for the budget; saved to `folder` (save_pretrained)."""
    torch.manual_seed(args.seed)
    c, size = train.shape[0], train.shape[-1]
    unet = diffusers_unet(diffusers, args.preset, c, size).train()
    scheduler = diffusers.DDPMScheduler(num_train_timesteps=args.T)  # linear 1e-4 … 0.02, ε, fixed_small, clip
    optimizer = torch.optim.AdamW(unet.parameters(), lr=args.diffusers_lr)
    g = torch.Generator().manual_seed(args.seed)
    steps, start, losses = 0, time.perf_counter(), []
    while time.perf_counter() - start < args.train_seconds:
        x = train.model_range(torch.randint(len(train), (args.batch_size,), generator=g))
        eps = torch.randn(x.shape, generator=g)
        k = torch.randint(0, args.T, (args.batch_size,), generator=g)
        loss = F.mse_loss(unet(scheduler.add_noise(x, eps, k), k).sample, eps)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        steps += 1
    seconds = time.perf_counter() - start
    unet.eval().save_pretrained(folder)
    scheduler.save_pretrained(folder)
    return {
        "steps": steps,
        "train_seconds": seconds,
        "images_per_s": steps * args.batch_size / seconds,
        "final_loss_mean_last_20": sum(losses[-20:]) / max(1, len(losses[-20:])),
        "params": sum(p.numel() for p in unet.parameters()),
    }


def row(name: str, result: dict, training: dict) -> dict:
    """One printed row: the bound in bits/dim with its interval and terms, and what training bought."""
    b = result["bpd"]
    return {
        "model": name,
        "steps": training["steps"],
        "train_s": training["train_seconds"],
        "params": training["params"],
        "bpd": b["total"],
        "ci95": b["ci95"],
        "prior": b["terms"]["prior"],
        "diffusion": b["terms"]["diffusion"],
        "reconstruction": b["terms"]["reconstruction"],
        "n": result["n"],
        "estimator": result["estimator"],
    }


def main() -> None:
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", category=DataWarning)
    diffusers = import_diffusers()
    if diffusers is None:
        raise SystemExit(1)
    train = load_data("fashion-mnist", "train", args.data_dir)
    evaluation = EvalConfig(
        seed=args.seed, n_eval=args.n_test, estimator=Estimator("mc", args.elbo_samples), parts=("likelihood",)
    )
    loads = {"start": load()}
    with tempfile.TemporaryDirectory() as tmp:
        print(f"diffusers recipe: training {args.train_seconds:.0f} s ...", flush=True)
        theirs_train = train_diffusers_recipe(diffusers, args, train, Path(tmp) / "diffusers")
        loads["after_diffusers_training"] = load()
        theirs = evaluate_diffusers(Path(tmp) / "diffusers", "fashion-mnist", args.data_dir, cfg=evaluation).to_json()
        loads["after_diffusers_bound"] = load()

        print(f"elbolab: training {args.train_seconds:.0f} s ...", flush=True)
        overrides = {
            "model.T": args.T,
            "model.schedule": "linear",
            "model.unet.preset": args.preset,
            "train.max_seconds": args.train_seconds,
            "train.batch_size": args.batch_size,
            "train.eval_every": 0,
            "train.eval_n": 2,
            "train.checkpoint_every": 10**6,
            "train.seed": args.seed,
            "train.device": "cpu",
            "train.threads": args.threads,
        }
        run = Path(tmp) / "elbolab"
        _, metrics = train_run(
            "diffusion",
            "fashion-mnist",
            run,
            data_dir=args.data_dir,
            steps=10**6,
            overrides={k: str(v) for k, v in overrides.items()},
            progress=False,
        )
        loads["after_elbolab_training"] = load()
        ours = evaluate_run(run, cfg=evaluation).to_json()
        loads["after_elbolab_bound"] = load()
    ours_train = {
        "steps": metrics["step"],
        "train_seconds": metrics["train_seconds"],
        "images_per_s": metrics["train_images_per_s"],
        "params": ours["parameters"],
    }
    rows = [
        row("diffusers recipe (UNet2DModel, DDPMScheduler)", theirs, theirs_train),
        row("elbolab train diffusion (its UNet, EMA)", ours, ours_train),
    ]
    print_table(
        rows,
        f"Fashion-MNIST test bits/dim, {args.train_seconds:.0f} s of CPU training each, "
        f"T = {args.T} linear, ε, clipped reverse process; load average {loads}",
    )
    write_results(
        "diffusers_bound",
        {
            "settings": vars(args),
            "diffusers": diffusers.__version__,
            "load_average": loads,
            "rows": rows,
            "diffusers_training": theirs_train,
            "elbolab_training": ours_train,
            "diffusers_eval": theirs,
            "elbolab_eval": ours,
        },
    )


if __name__ == "__main__":
    main()
