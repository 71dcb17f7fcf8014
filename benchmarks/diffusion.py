"""Benchmark: diffusion on Fashion-MNIST — training and sampling speed, test bits/dim and its cost (issue 3).

    python benchmarks/diffusion.py [--train-seconds 120 | --steps N] [--device cpu|cuda] [--threads N]
                                   [--n-test 500] [--elbo-samples 4] [--sample-n 8] [--long-n 4]

elbolab: a UNet (`small` preset, T = 1000, cosine schedule, ε-prediction, L_simple) trained by
`train_run` (what `elbolab train diffusion` calls) for a wall-clock budget, or for exactly --steps
steps. The EMA weights are then measured:

- sampling images/s of each sampler (ancestral, ddim, dpm-solver++) at 10/20/50 steps on
  --sample-n images and at 1000 steps on --long-n images; NFE per image is counted, not assumed;
- test bits/dim, the Monte-Carlo bound (`elbo(method="mc")`, --elbo-samples draws of t per
  image, each with its own L_0) on the first --n-test test images, with its 95% interval, and
  its cost in network passes per image, counted by a hook on the UNet (the exact bound costs T).

The likelihood is what the training budget buys: on a CPU that is a few dozen steps, far from
converged. Scale up on a GPU: `--device cuda --steps 20000 --n-test 10000 --elbo-samples 16`.

diffusers (the `bench` extra): a `UNet2DModel` with the same widths (32, 64, 64), two residual
blocks a level, attention at 7×7 and in the middle block, GroupNorm(16), 2 heads — the same
parameter count — at the native 28×28 (28 → 14 → 7, no padding); `DDPMScheduler` (beside ancestral,
at every step count) and `DDIMScheduler` (beside ddim, at 10/20/50) on the same cosine betas,
clipping x̂_0 to [−1, 1] as elbolab does. It is timed, not trained:
speed does not depend on the weights. Ratios are elbolab/diffusers (> 1: elbolab is faster), each
pair timed in alternation so that a shared machine's load falls on both alike. Training is one
AdamW step on the same batch with L_simple, for both without EMA or clipping (the Trainer's own
figure, with both, is reported beside it).

On a busy shared CPU, `--threads 1` can be several times faster than torch's default. The defaults
took 10 minutes on two cores shared with other jobs (120 s of it training, 2 minutes the bound).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import SHARED_DATA, print_table, timed, write_results

from elbolab.bounds import Estimator
from elbolab.data import DataWarning, load_data
from elbolab.diffusion import DiffusionModel
from elbolab.evaluate.speed import PassCounter, timed_calls
from elbolab.model import dataset_bound
from elbolab.nets.diffusers_unet import unet2d_layout
from elbolab.nets.unet import UNetConfig
from elbolab.records import BoundSummary
from elbolab.train.api import train_run
from elbolab.train.config import TrainConfig
from elbolab.train.run import load_run

SAMPLERS = ("ancestral", "ddim", "dpm-solver++")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--steps",
        type=int,
        default=None,
        help="train exactly this many steps (default: as many as --train-seconds allow)",
    )
    parser.add_argument(
        "--train-seconds",
        type=float,
        default=None,
        help="wall-clock training budget (default 120 without --steps, none with it)",
    )
    parser.add_argument("--batch-size", type=int, default=32, help="training batch (also the timed step's)")
    parser.add_argument("--preset", default="small", help="UNet preset (tiny | small | base)")
    parser.add_argument("--T", type=int, default=1000, help="diffusion steps of the chain")
    parser.add_argument("--n-test", type=int, default=500, help="test images for bits/dim")
    parser.add_argument("--elbo-samples", type=int, default=4, help="Monte-Carlo draws of t per test image")
    parser.add_argument("--sample-n", type=int, default=8, help="images per call at 10/20/50 steps")
    parser.add_argument("--long-n", type=int, default=4, help="images per call at --long-steps")
    parser.add_argument("--long-steps", type=int, default=1000, help="the long run's steps (at most T)")
    parser.add_argument("--repeats", type=int, default=2, help="timed calls per figure (1 at --long-steps)")
    parser.add_argument("--train-repeats", type=int, default=3, help="timed optimiser steps per library")
    parser.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--data-dir", default=str(SHARED_DATA))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-diffusers", action="store_true", help="run elbolab's half only")
    args = parser.parse_args()
    if args.train_seconds is None:
        args.train_seconds = 0.0 if args.steps is not None else 120.0
    if args.steps is None:
        args.steps = 10**7  # the budget decides
    if not 1 <= args.long_steps <= args.T or args.elbo_samples < 2 or min(args.sample_n, args.long_n) < 1:
        parser.error("need 1 ≤ --long-steps ≤ --T, --elbo-samples ≥ 2 and at least one image per call")
    return args


def counterpart(sampler: str, steps: int, long_steps: int) -> str | None:
    """The diffusers scheduler timed beside an elbolab sampler: DDPM beside ancestral at every step count,
    DDIM beside ddim short of the long run (a few-step sampler; a second long run would double its cost)."""
    if sampler == "ancestral":
        return "DDPMScheduler"
    return "DDIMScheduler" if sampler == "ddim" and steps < long_steps else None


def alternating_seconds(fns: dict[str, Callable[[], Any]], rounds: int, device: str) -> dict[str, float]:
    """Median seconds per call of each fn, the fns called in turn `rounds` times (no warm-up here)."""
    seconds: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            seconds[name] += timed_calls(fn, 1, warmup=0, device=device)
    return {name: statistics.median(s) for name, s in seconds.items()}


# ---------------------------------------------------------------- diffusers (optional)


def import_diffusers() -> Any | None:
    """The diffusers module, or None with a one-line message saying why."""
    try:
        import diffusers
    except Exception as exc:  # noqa: BLE001 -- ImportError, or a broken install raising something else
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        print(
            f"diffusers is not available ({reason}); install it with `pip install -e '.[bench]'` — "
            f"running elbolab's half only"
        )
        return None
    return diffusers


def diffusers_unet(diffusers: Any, preset: str, in_channels: int, size: int) -> torch.nn.Module:
    """UNet2DModel laid out like elbolab's UNet of `preset` (`nets.diffusers_unet.unet2d_layout`)."""
    return diffusers.UNet2DModel(**unet2d_layout(UNetConfig(preset=preset).spec(), in_channels, in_channels, size))


def diffusers_scheduler(diffusers: Any, name: str, T: int) -> Any:
    """A scheduler on the cosine betas (Nichol & Dhariwal 2021) that clips x̂_0 to [−1, 1]."""
    cls = getattr(diffusers, name)
    kw = {"timestep_spacing": "trailing"} if name == "DDIMScheduler" else {}
    return cls(
        num_train_timesteps=T, beta_schedule="squaredcos_cap_v2", prediction_type="epsilon", clip_sample=True, **kw
    )


@torch.no_grad()
def diffusers_sample(
    unet: torch.nn.Module, scheduler: Any, shape: tuple[int, ...], steps: int, generator: torch.Generator, levels: int
) -> torch.Tensor:
    """x_T ~ N(0, I), then the scheduler's `steps` steps, then levels as uint8 (as elbolab's sample returns)."""
    scheduler.set_timesteps(steps)
    x = torch.randn(shape, generator=generator, device=generator.device) * scheduler.init_noise_sigma
    for t in scheduler.timesteps:
        eps_hat = unet(x, t).sample
        x = scheduler.step(eps_hat, t, x, generator=generator).prev_sample
    return ((x.clamp(-1, 1) + 1) / 2 * (levels - 1)).round().to(torch.uint8)


# ---------------------------------------------------------------- the measurements


def train_elbolab(args: argparse.Namespace) -> tuple[DiffusionModel, dict]:
    """Train through `train_run` (what `elbolab train diffusion` calls); the EMA model (eval mode) and metrics."""
    overrides = {
        "model.T": args.T,
        "model.unet.preset": args.preset,
        "model.elbo_samples": args.elbo_samples,
        "train.max_seconds": args.train_seconds,
        "train.batch_size": args.batch_size,
        "train.warmup_steps": 20,
        "train.eval_every": 0,
        "train.eval_n": 2,
        "train.checkpoint_every": args.steps,
        "train.seed": args.seed,
        "train.device": args.device,
    }
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "diffusion"
        _, metrics = train_run(
            "diffusion",
            "fashion-mnist",
            run,
            data_dir=args.data_dir,
            steps=args.steps,
            overrides={k: str(v) for k, v in overrides.items()},
            progress=False,
        )
        _, model = load_run(run, device=args.device)
    return model, metrics


def training_row(
    args: argparse.Namespace, trained: DiffusionModel, train: Any, trainer_metrics: dict, diffusers: Any | None
) -> dict[str, Any]:
    """One AdamW step on the same batch with L_simple: elbolab's model.loss vs a UNet2DModel, timed in turn."""
    device, B = torch.device(args.device), args.batch_size
    g = torch.Generator().manual_seed(args.seed + 2)
    x = train.model_range(torch.randint(len(train), (B,), generator=g)).to(device)
    lr = TrainConfig().lr
    torch.manual_seed(args.seed)
    ours = DiffusionModel(trained.config, trained.shape, trained.levels).to(device).train()
    ours_opt = torch.optim.AdamW(ours.parameters(), lr=lr)

    def ours_step() -> None:
        ours_opt.zero_grad(set_to_none=True)
        ours.loss(x).mean().backward()
        ours_opt.step()

    steps = {"elbolab": ours_step}
    row: dict[str, Any] = {"batch": B, "params": sum(p.numel() for p in ours.parameters())}
    if diffusers is not None:
        unet = diffusers_unet(diffusers, args.preset, x.shape[1], x.shape[-1]).to(device).train()
        noise_schedule = diffusers_scheduler(diffusers, "DDPMScheduler", args.T)
        theirs_opt = torch.optim.AdamW(unet.parameters(), lr=lr)

        def theirs_step() -> None:
            theirs_opt.zero_grad(set_to_none=True)
            eps = torch.randn_like(x)
            t = torch.randint(0, args.T, (B,), device=device)
            F.mse_loss(unet(noise_schedule.add_noise(x, eps, t), t).sample, eps).backward()
            theirs_opt.step()

        steps["diffusers"] = theirs_step
        row["params_diffusers"] = sum(p.numel() for p in unet.parameters())
    for step in steps.values():  # warm-up
        step()
    seconds = alternating_seconds(steps, args.train_repeats, args.device)
    row["elbolab_img_per_s"] = B / seconds["elbolab"]
    row["diffusers_img_per_s"] = B / seconds["diffusers"] if diffusers is not None else None
    row["ratio"] = seconds["diffusers"] / seconds["elbolab"] if diffusers is not None else None
    row["trainer_img_per_s"] = trainer_metrics["train_images_per_s"]
    return row


def sampling_rows(args: argparse.Namespace, model: DiffusionModel, diffusers: Any | None) -> list[dict[str, Any]]:
    """Images/s per sampler and step count, with the measured NFE; diffusers' counterpart timed in turn."""
    device = args.device
    ours_count = PassCounter(model.diffusion.net)
    unet, theirs_count = None, None
    if diffusers is not None:
        torch.manual_seed(args.seed)
        unet = diffusers_unet(diffusers, args.preset, model.shape[0], model.shape[-1]).to(device).eval()
        theirs_count = PassCounter(unet)
        schedulers = {name: diffusers_scheduler(diffusers, name, args.T) for name in ("DDPMScheduler", "DDIMScheduler")}

    def ours(sampler: str, steps: int, n: int) -> Callable[[], Any]:
        g = torch.Generator(device).manual_seed(args.seed)
        return lambda: model.sample(n, generator=g, sampler=sampler, steps=steps)

    def theirs(scheduler: str, steps: int, n: int) -> Callable[[], Any]:
        g = torch.Generator(device).manual_seed(args.seed)
        return lambda: diffusers_sample(unet, schedulers[scheduler], (n, *model.shape), steps, g, model.levels)

    # warm-up: one short call of each
    for sampler in SAMPLERS:
        ours(sampler, 2, 2)()
    if unet is not None:
        for scheduler in schedulers:
            theirs(scheduler, 2, 2)()
    rows = []
    for sampler in SAMPLERS:
        for steps in sorted({10, 20, 50, args.long_steps}):
            if steps > args.T:
                continue
            n = args.long_n if steps == args.long_steps else args.sample_n
            rounds = 1 if steps == args.long_steps else args.repeats
            fns = {"elbolab": ours(sampler, steps, n)}
            scheduler = counterpart(sampler, steps, args.long_steps) if unet is not None else None
            if scheduler is not None:
                fns["diffusers"] = theirs(scheduler, steps, n)
            ours_count.reset()
            if theirs_count is not None:
                theirs_count.reset()
            seconds = alternating_seconds(fns, rounds, device)
            row = {
                "sampler": sampler,
                "steps": steps,
                "n": n,
                "nfe_per_img": ours_count.images / (n * rounds),
                "elbolab_img_per_s": n / seconds["elbolab"],
                "diffusers": scheduler or "",
                "diffusers_nfe": None,
                "diffusers_img_per_s": None,
                "ratio": None,
            }
            if scheduler is not None:
                row["diffusers_nfe"] = theirs_count.images / (n * rounds)
                row["diffusers_img_per_s"] = n / seconds["diffusers"]
                row["ratio"] = seconds["diffusers"] / seconds["elbolab"]
            rows.append(row)
            print(f"  sampled: {sampler} at {steps} steps ({n} images)", flush=True)
    ours_count.remove()
    if theirs_count is not None:
        theirs_count.remove()
    return rows


def likelihood_row(
    args: argparse.Namespace, model: DiffusionModel, test: Any, trainer_metrics: dict
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Monte-Carlo test bits/dim with its 95% interval, and the network passes it took per image."""
    n = min(args.n_test, len(test))
    counter = PassCounter(model.diffusion.net)
    torch.manual_seed(args.seed + 1)
    estimator = Estimator("mc", args.elbo_samples)
    bound, seconds = timed(dataset_bound, model, test, n, 256, estimator)
    counter.remove()
    summary = BoundSummary.of(bound, estimator.describe(), seconds).to_json()
    steps, train_s = trainer_metrics["step"], trainer_metrics["train_seconds"]
    budget = f"{args.train_seconds:.0f} s budget: " if args.train_seconds > 0 else ""
    terms = summary["bpd"]["terms"]
    row = {
        "trained": f"{budget}{steps} steps x {args.batch_size} in {train_s:.0f} s",
        "n_test": n,
        "bpd": summary["bpd"]["total"],
        "ci95": summary["bpd"]["ci95"],
        "prior": terms["prior"],
        "diffusion": terms["diffusion"],
        "reconstruction": terms["reconstruction"],
        "mc_stderr_nats": summary["mc_stderr_nats"],
        "K": args.elbo_samples,
        "passes_per_img": counter.images / n,
        "net_calls": counter.calls,
        "exact_passes": args.T,
        "eval_s": seconds,
    }
    return row, summary


def main() -> None:
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", category=DataWarning)  # the shared copy is not byte-identical to the official
    diffusers = None if args.no_diffusers else import_diffusers()
    train = load_data("fashion-mnist", "train", args.data_dir)
    test = load_data("fashion-mnist", "test", args.data_dir)

    print(
        f"training elbolab's {args.preset} UNet "
        f"({f'{args.train_seconds:.0f} s budget' if args.train_seconds > 0 else f'{args.steps} steps'}) ...",
        flush=True,
    )
    model, trainer_metrics = train_elbolab(args)
    print("timing a training step ...", flush=True)
    train_row = training_row(args, model, train, trainer_metrics, diffusers)
    print("timing the samplers ...", flush=True)
    sample_rows = sampling_rows(args, model, diffusers)
    print("test bits/dim ...", flush=True)
    bpd_row, summary = likelihood_row(args, model, test, trainer_metrics)

    side = "elbolab vs diffusers UNet2DModel" if diffusers is not None else "elbolab (diffusers not run)"
    print_table(
        [train_row],
        f"Training, Fashion-MNIST 28x28, one AdamW step on L_simple: {side} "
        f"(ratio = elbolab/diffusers images/s; trainer = elbolab's full loop with EMA)",
    )
    print_table(
        sample_rows,
        f"Sampling images/s, {args.device}, T = {args.T}, cosine, x0 clipped: {side} (NFE counted per image)",
    )
    print_table(
        [bpd_row],
        f"Test bits/dim, Monte-Carlo bound (K = {args.elbo_samples} draws of t, each with "
        f"its own L_0), EMA weights; what the training budget buys, not a converged model",
    )
    write_results(
        "diffusion",
        {
            "settings": {k: v for k, v in vars(args).items()},
            "diffusers": getattr(diffusers, "__version__", None),
            "training": train_row,
            "sampling": sample_rows,
            "likelihood": bpd_row,
            "bound_summary": summary,
            "trainer_metrics": trainer_metrics,
        },
    )


if __name__ == "__main__":
    main()
