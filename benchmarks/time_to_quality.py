"""Benchmark: time to quality — training seconds until the built-in Fréchet distance on Fashion-MNIST falls below
a fixed threshold, elbolab against diffusers' training recipe, side by side in one run (issue 13).

    python benchmarks/time_to_quality.py [--budget 300] [--chunk 30] [--threshold 50] [--n 256] [--nfe 10]
                                         [--threads 2] [--batch-size 128] [--replicates 200] [--full-curve]

The two sides, on the Fashion-MNIST train split, batch --batch-size, the same optimiser settings:

- elbolab: the lean UNet (`UNetConfig(preset="lean")`: small's 1.65M parameters at half its FLOPs; T = 1000,
  cosine, ε-prediction, L_simple: `DiffusionConfig`'s defaults), trained by elbolab's own `Trainer` with the `TrainConfig` `compare` uses
  (AdamW, warm-up then cosine decay over the wall-clock budget, gradient clipping at 1, EMA 0.999, a log line
  per step, checkpoints every 500 steps).
- diffusers: a `UNet2DModel` laid out like elbolab's `small` preset (1.62M parameters, `benchmarks/diffusion.py`'s
  `diffusers_unet`), trained by a plain loop as diffusers' `train_unconditional.py` example does it: ε ~ N(0, I),
  t ~ U{0, …, T−1}, `DDPMScheduler.add_noise` on the same cosine betas, MSE(ε̂, ε), gradient clipping at 1,
  `torch.optim.AdamW`, then diffusers' `EMAModel`. What a fair race needs it shares with elbolab: the learning
  rate, betas, weight decay, warm-up, the EMA decay (diffusers' `EMAModel` without `use_ema_warmup` ramps its
  decay as (1 + n)/(10 + n), as elbolab's EMA does), and the schedule: diffusers' own cosine scheduler needs the
  number of steps in advance, which a race against the clock does not have, so both use elbolab's `lr_at`
  (warm-up, then cosine decay to 0.1 lr at the end of the budget), each on its own training clock. Batches are
  drawn with replacement from the training images held as one tensor, as elbolab's Trainer draws them.

Fairness on a shared machine: the two train in turns, --chunk seconds of training each (the order swapped
every chunk), then both are evaluated (evaluation time does not count); the load average is recorded after
each chunk. Quality: --n samples of each model's EMA weights, drawn with DDIM at --nfe steps (elbolab's `ddim`
sampler; diffusers' `DDIMScheduler`, trailing spacing, x̂_0 clipped), from the same noise seed at every
evaluation; the Fréchet distance in the built-in classifier's features (`select_features(..., "builtin")`, what
`eval` and `compare` use for Fashion-MNIST) against the first 2000 test images, with the 95% bootstrap interval of
`resample.resampled_quality` (--replicates resamples). FD from n samples is biased upwards; the two sides are
compared at equal n only.

Time to quality: the training seconds at which the FD curve first falls to --threshold, linearly interpolated
between the two evaluations around the crossing (its range: where the interval's bounds cross); "not reached in
S s" otherwise. A side stops training once its whole interval is below the threshold (--full-curve: train both
to the budget). Ratio: diffusers' seconds over elbolab's (> 1: elbolab reaches the threshold sooner). The same
curves also give the seconds and the ratio at each FD of a ladder (LADDER) both sides reached.

The threshold, FD 50, was chosen without a calibration run: the shared 2-core machine this was written on was
loaded four times over (one training step took 10 s), so no curve of the default budget could be measured. It
sits between what is known: untrained networks score about 100 (diffusers) and over 200 (elbolab) at n = 64;
`compare`'s diffusion after 78 steps of batch 128 scored 95.6 with samples that were noise; its VAE 13.9. At
about 0.6 (diffusers) and 1 (elbolab) steps a second on an idle machine, the default budget buys each side
roughly 190 and 300 steps; 50 asks for samples clearly past noise. If one side does not reach it, the ladder
table gives the ratio at the lowest FD both reached; the first full run on an idle machine is the calibration
(pass --threshold to race to another FD).

Wall time on an idle 2-core machine: at most 2 × --budget of training plus one evaluation of both per chunk
(an estimated 20 s for both at n = 256, 10 steps, from the networks' FLOPs) plus, on the first run, a minute
to train and cache the feature network: at most about 14 minutes at the defaults, less when both cross early.
"""

from __future__ import annotations

import argparse
import copy
import math
import os
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import SHARED_DATA, print_table, write_results
from diffusion import diffusers_sample, diffusers_scheduler, diffusers_unet, import_diffusers

from elbolab.data import DataWarning, load_data
from elbolab.data.base import ImageData, to_model
from elbolab.diffusion.config import DiffusionConfig
from elbolab.evaluate.features import select_features
from elbolab.evaluate.resample import resampled_quality
from elbolab.evaluate.run import quality_reference
from elbolab.nets.unet import UNetConfig
from elbolab.train.config import TrainConfig
from elbolab.train.loop import Trainer, lr_at
from elbolab.train.run import RunConfig, build_model

#: the Fréchet distance both sides race to (see the module docstring for how it was chosen)
THRESHOLD = 50.0
#: further FDs at which both sides' seconds are read off the same curves
LADDER = (100.0, 80.0, 60.0, 50.0, 40.0, 30.0, 20.0)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=float, default=300.0, help="training seconds per library, at most")
    parser.add_argument("--chunk", type=float, default=30.0, help="training seconds per turn (then both evaluated)")
    parser.add_argument("--threshold", type=float, default=THRESHOLD, help="the Fréchet distance to reach")
    parser.add_argument("--n", type=int, default=256, help="samples per evaluation")
    parser.add_argument("--nfe", type=int, default=10, help="DDIM steps of the evaluation samples")
    parser.add_argument("--replicates", type=int, default=200, help="bootstrap resamples of the FD")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--T", type=int, default=1000, help="diffusion steps of the chain")
    parser.add_argument("--diffusers-layout", default="small", help="the elbolab preset diffusers' UNet copies")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--full-curve", action="store_true", help="train both to the budget, even past the threshold")
    parser.add_argument("--data-dir", default=str(SHARED_DATA))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.chunk <= 0 or args.budget < args.chunk or args.n < 2 or args.nfe < 1:
        parser.error("need 0 < --chunk ≤ --budget, --n ≥ 2 and --nfe ≥ 1")
    return args


def train_config(args: argparse.Namespace) -> TrainConfig:
    """`compare`'s training settings (`experiments.compare.budgeted_run`) under this benchmark's budget and batch."""
    return TrainConfig(
        steps=1_000_000,
        max_seconds=args.budget,
        batch_size=args.batch_size,
        seed=args.seed,
        eval_every=0,
        eval_n=16,
        checkpoint_every=500,
        device="cpu",
    )


class ElbolabSide:
    """elbolab's CPU preset trained by its own Trainer, paused after each turn."""

    name = "elbolab"

    def __init__(self, args: argparse.Namespace, train: ImageData, test: ImageData, run_dir: Path) -> None:
        cfg = train_config(args)
        run = RunConfig(
            "diffusion",
            "fashion-mnist",
            args.data_dir,
            train.shape,
            train.levels,
            DiffusionConfig(unet=UNetConfig(preset="lean")),
            cfg,
        )
        torch.manual_seed(args.seed)
        self.trainer = Trainer(build_model(run), train, test, cfg, run_dir, progress=False)
        self.layout = run.model.unet.preset

    @property
    def step(self) -> int:
        return self.trainer.step

    @property
    def seconds(self) -> float:
        return self.trainer.seconds_trained()

    def parameters(self) -> int:
        return sum(p.numel() for p in self.trainer.model.parameters())

    def train_until(self, seconds: float) -> None:
        """Train until the run has trained `seconds` (or its budget is spent)."""
        self.trainer.fit(pause_at=seconds)

    @torch.no_grad()
    def sample(self, n: int, steps: int, generator: torch.Generator) -> torch.Tensor:
        """n uint8 samples of the EMA weights by DDIM at `steps` steps."""
        self.trainer.ema.copy_to(self.trainer.eval_model)
        return self.trainer.eval_model.sample(n, generator=generator, sampler="ddim", steps=steps).cpu()


class DiffusersSide:
    """diffusers' training recipe (UNet2DModel, DDPMScheduler, AdamW, EMAModel) as a plain loop."""

    name = "diffusers"

    def __init__(self, diffusers: Any, args: argparse.Namespace, train: ImageData, cfg: TrainConfig) -> None:
        from diffusers.training_utils import EMAModel

        torch.manual_seed(args.seed)
        self.unet = diffusers_unet(diffusers, args.diffusers_layout, train.shape[0], train.shape[-1]).train()
        self.eval_unet = copy.deepcopy(self.unet).eval()
        self.noise_scheduler = diffusers_scheduler(diffusers, "DDPMScheduler", args.T)
        self.sample_scheduler = diffusers_scheduler(diffusers, "DDIMScheduler", args.T)
        self.optimizer = torch.optim.AdamW(
            self.unet.parameters(), lr=cfg.lr, betas=(cfg.adam_beta1, cfg.adam_beta2), weight_decay=cfg.weight_decay
        )
        self.ema = EMAModel(self.unet.parameters(), decay=cfg.ema_decay)
        self.generator = torch.Generator().manual_seed(args.seed)
        self.images, self.levels, self.shape, self.cfg, self.T = train.images, train.levels, train.shape, cfg, args.T
        self.layout = args.diffusers_layout
        self.step, self.seconds = 0, 0.0

    def parameters(self) -> int:
        return sum(p.numel() for p in self.unet.parameters())

    def train_step(self) -> float:
        """One step of L_simple: x_t = add_noise(x_0, ε, t), MSE(ε̂, ε), clip, AdamW, EMA; returns the loss."""
        lr = lr_at(self.step, self.cfg, self.seconds / self.cfg.max_seconds)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        g = self.generator
        x_0 = to_model(self.images[torch.randint(len(self.images), (self.cfg.batch_size,), generator=g)], self.levels)
        eps = torch.randn(x_0.shape, generator=g)
        t = torch.randint(0, self.T, (len(x_0),), generator=g)
        loss = F.mse_loss(self.unet(self.noise_scheduler.add_noise(x_0, eps, t), t).sample, eps)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.unet.parameters(), self.cfg.grad_clip)
        self.optimizer.step()
        self.ema.step(self.unet.parameters())
        self.step += 1
        return loss.item()

    def train_until(self, seconds: float) -> None:
        """Train until `seconds` of training (or the budget) are spent."""
        before, start = self.seconds, time.perf_counter()
        while self.seconds < min(seconds, self.cfg.max_seconds):
            self.train_step()
            self.seconds = before + time.perf_counter() - start

    def sample(self, n: int, steps: int, generator: torch.Generator) -> torch.Tensor:
        """n uint8 samples of the EMA weights by DDIMScheduler at `steps` steps."""
        self.ema.copy_to(self.eval_unet.parameters())
        return diffusers_sample(self.eval_unet, self.sample_scheduler, (n, *self.shape), steps, generator, self.levels)


def crossing(points: list[tuple[float, float]], threshold: float) -> float | None:
    """The first time the curve (seconds, FD) is at or below `threshold`, linear between evaluations; None if never."""
    for i, (s, fd) in enumerate(points):
        if fd <= threshold:
            if i == 0:
                return s  # crossed within the first turn: at most s
            s_0, fd_0 = points[i - 1]
            return s_0 + (fd_0 - threshold) / (fd_0 - fd) * (s - s_0)
    return None


def time_to_threshold(curve: list[dict[str, Any]], threshold: float) -> dict[str, float | None]:
    """Seconds to the threshold of the FD and of its interval's bounds (the lower bound crosses first)."""
    return {
        key: crossing([(p["seconds"], p[field]) for p in curve], threshold)
        for key, field in (("seconds", "fd"), ("earliest", "fd_low"), ("latest", "fd_high"))
    }


def quality_point(
    args: argparse.Namespace, side: ElbolabSide | DiffusersSide, featurize: Callable, reference_features: torch.Tensor
) -> dict[str, float]:
    """Where one side stands: its training seconds and steps, and the FD of --n samples with its interval."""
    start = time.perf_counter()
    samples = side.sample(args.n, args.nfe, torch.Generator().manual_seed(args.seed + 1))
    sample_seconds = time.perf_counter() - start
    fd = resampled_quality(featurize(samples), reference_features, args.replicates, args.seed)["fd"]
    low, high = fd.interval()
    return {
        "seconds": side.seconds,
        "steps": side.step,
        "img_per_s": side.step * args.batch_size / side.seconds,
        "fd": fd.value,
        "fd_low": low,
        "fd_high": high,
        "sample_seconds": sample_seconds,
    }


def race(
    args: argparse.Namespace, sides: list, featurize: Callable, reference_features: torch.Tensor
) -> dict[str, list[dict[str, Any]]]:
    """Train the sides in turns of --chunk seconds (the order swapped each turn), evaluating both after each
    turn, until the budget is spent or every side's FD interval lies below the threshold; the curves."""
    curves: dict[str, list[dict[str, Any]]] = {side.name: [] for side in sides}
    done = {side.name: False for side in sides}
    for k in range(1, math.ceil(args.budget / args.chunk) + 1):
        until = min(k * args.chunk, args.budget)
        load = {}
        for side in sides if k % 2 else sides[::-1]:
            if not done[side.name]:
                side.train_until(until)
                load[side.name] = round(os.getloadavg()[0], 2)
        for side in sides:
            if done[side.name] or (curves[side.name] and curves[side.name][-1]["steps"] == side.step):
                continue  # finished, or a turn that overran the last one left nothing new to measure
            point = {
                "chunk": k,
                **quality_point(args, side, featurize, reference_features),
                "load_1min": load[side.name],
            }
            curves[side.name].append(point)
            print(
                f"  {side.name:9s} {point['seconds']:6.1f} s, {point['steps']:5d} steps: FD {point['fd']:7.2f} "
                f"[{point['fd_low']:.2f}, {point['fd_high']:.2f}]  (load {point['load_1min']}, "
                f"sampling {point['sample_seconds']:.1f} s)",
                flush=True,
            )
            done[side.name] = not args.full_curve and point["fd_high"] <= args.threshold
        if all(done.values()):
            break
    return curves


def ratio_of_times(ours: dict[str, Any], theirs: dict[str, Any]) -> dict[str, float | None]:
    """diffusers' seconds to the threshold over elbolab's, and its range from the interval's crossings."""
    ratio: dict[str, float | None] = {"ratio": None, "ratio_low": None, "ratio_high": None}
    if ours["seconds"] is not None and theirs["seconds"] is not None:
        ratio["ratio"] = theirs["seconds"] / ours["seconds"]
        if None not in (ours["earliest"], ours["latest"], theirs["earliest"], theirs["latest"]):
            ratio["ratio_low"] = theirs["earliest"] / ours["latest"]
            ratio["ratio_high"] = theirs["latest"] / ours["earliest"]
    return ratio


def main() -> None:
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", category=DataWarning)  # the shared copy is not byte-identical to the official
    diffusers = import_diffusers()
    if diffusers is None:
        sys.exit("time to quality races elbolab against diffusers; install it (pip install -e '.[bench]')")
    load_before = [round(v, 2) for v in os.getloadavg()]
    train = load_data("fashion-mnist", "train", args.data_dir)
    test = load_data("fashion-mnist", "test", args.data_dir)
    print("feature network (built-in classifier; trained and cached on the first run) ...", flush=True)
    features, _ = select_features("fashion-mnist", "builtin", data_dir=args.data_dir)
    reference = quality_reference(test, args.n)
    reference_features = features(reference, test.levels)

    with tempfile.TemporaryDirectory() as tmp:
        sides = [
            ElbolabSide(args, train, test, Path(tmp) / "elbolab"),
            DiffusersSide(diffusers, args, train, train_config(args)),
        ]
        started = time.perf_counter()
        curves = race(args, sides, lambda images: features(images, test.levels), reference_features)
        wall = time.perf_counter() - started

    results = {
        s.name: {
            "library": s.name,
            "unet": s.layout,
            "params": s.parameters(),
            "steps": s.step,
            "trained_s": s.seconds,
            "final_fd": curves[s.name][-1]["fd"],
            **time_to_threshold(curves[s.name], args.threshold),
        }
        for s in sides
    }
    ratio = ratio_of_times(results["elbolab"], results["diffusers"])
    ladder = [
        {"fd": level, **{f"{name}_s": time_to_threshold(curve, level)["seconds"] for name, curve in curves.items()}}
        for level in sorted({*LADDER, args.threshold}, reverse=True)
    ]
    for row in ladder:
        ours, theirs = row["elbolab_s"], row["diffusers_s"]
        row["ratio"] = theirs / ours if ours and theirs else None
    for row in results.values():
        if row["seconds"] is None:
            row["seconds"] = f"not reached in {row['trained_s']:.0f} s"
    for name, curve in curves.items():
        print_table(
            curve,
            f"{name}: training seconds -> FD (built-in features, n = {args.n}, DDIM {args.nfe} "
            f"steps, 95% bootstrap interval)",
        )
    print_table(
        list(results.values()),
        f"Time to FD <= {args.threshold:g} on Fashion-MNIST, {args.threads} threads, "
        f"batch {args.batch_size} (earliest/latest: where the interval's bounds cross)",
    )
    print_table([ratio], "diffusers seconds / elbolab seconds (> 1: elbolab is faster to the threshold)")
    print_table(ladder, "Seconds to each FD of the ladder, read off the same curves (blank: not reached)")
    write_results(
        "time_to_quality",
        {
            "settings": vars(args),
            "diffusers": diffusers.__version__,
            "feature_net": features.name,
            "feature_net_test_accuracy": getattr(features, "accuracy", None),
            "n_reference": len(reference),
            "load_average_before": load_before,
            "load_average_after": [round(v, 2) for v in os.getloadavg()],
            "wall_seconds": wall,
            "threshold": args.threshold,
            "results": results,
            **ratio,
            "ladder": ladder,
            "curves": curves,
        },
    )


if __name__ == "__main__":
    main()
