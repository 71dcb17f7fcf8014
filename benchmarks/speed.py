"""Benchmark: speed per UNet preset against diffusers' UNet2DModel at the same parameter count (issue 13).

    python benchmarks/speed.py [--presets small,lean] [--batch-size 128] [--threads 2] [--device cpu|cuda]
                               [--sample-steps 10,50,1000] [--sample-n 16] [--long-n 2]

For each elbolab UNet preset, at Fashion-MNIST's 28×28 (a random-weight model: speed does not depend
on the weights):

- FLOPs per image, counted by torch.utils.flop_counter.FlopCounterMode: one forward pass, and one
  training step (forward and backward of L_simple);
- training images/s: one AdamW step on L_simple, batch --batch-size (`benchmarks/diffusion.py`'s
  `training_row`: elbolab's `model.loss` against a UNet2DModel with DDPMScheduler's `add_noise`,
  timed in alternation so a shared machine's load falls on both alike);
- sampling images/s at each of --sample-steps: elbolab's ancestral sampler against DDPMScheduler,
  DDIM against DDIMScheduler (NFE = steps for both), in alternation;
- MFU: the training step's counted FLOPs × images/s over the machine's measured matmul peak
  (float32 on the CPU, bf16 on a GPU), measured in the same run;
- channels_last: elbolab's training step with the model and batch in channels_last, against the
  default layout, in alternation (ratio > 1: channels_last pays).

The diffusers counterpart of every preset is the UNet2DModel laid out like --diffusers-layout
(default `small`, 1.62M parameters: the issue's reference), built by `benchmarks/diffusion.py`'s
`diffusers_unet`; both parameter counts are in the rows. Ratios are elbolab/diffusers images/s.
The JSON (benchmarks/results/speed.json) records the machine and its load average before and after.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import SHARED_DATA, print_table, write_results
from diffusion import (
    alternating_seconds,
    diffusers_sample,
    diffusers_scheduler,
    diffusers_unet,
    import_diffusers,
    training_row,
)

from elbolab.data import DataWarning, load_data
from elbolab.diffusion import DiffusionModel
from elbolab.diffusion.config import DiffusionConfig
from elbolab.evaluate.speed import timed_calls
from elbolab.nets.unet import UNetConfig
from elbolab.train.run import inference_layout

#: elbolab's sampler and the diffusers scheduler timed beside it
PAIRS = (("ancestral", "DDPMScheduler"), ("ddim", "DDIMScheduler"))


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", default="small,lean", help="elbolab UNet presets, comma-separated")
    parser.add_argument("--diffusers-layout", default="small", help="the preset whose layout diffusers' UNet copies")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--T", type=int, default=1000)
    parser.add_argument("--sample-steps", default="10,50,1000", help="NFE per image, comma-separated")
    parser.add_argument("--sample-n", type=int, default=16, help="images per sampling call (short runs)")
    parser.add_argument("--long-n", type=int, default=2, help="images per sampling call at ≥ 500 steps")
    parser.add_argument("--repeats", type=int, default=3, help="alternating rounds per figure (1 at ≥ 500 steps)")
    parser.add_argument("--train-repeats", type=int, default=5, help="timed optimiser steps per library")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--data-dir", default=str(SHARED_DATA))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-diffusers", action="store_true", help="run elbolab's half only")
    parser.add_argument(
        "--out", default="speed", help="results/OUT.json (e.g. a rerun of some rows beside the full table)"
    )
    args = parser.parse_args()
    args.sample_steps = [int(s) for s in args.sample_steps.split(",") if s]
    args.presets = [p for p in args.presets.split(",") if p]
    return args


def matmul_peak(device: str, n: int = 1024, rounds: int = 10) -> tuple[float, str]:
    """(FLOP/s, dtype): n×n matmuls (8192² on a GPU) on random data, float32 on the CPU and bf16 on a GPU, the
    median of `rounds` after 3 warm-ups."""
    dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    n = 8192 if device.startswith("cuda") else n
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    seconds = statistics.median(timed_calls(lambda: a @ b, rounds, warmup=3, device=device))
    return 2 * n**3 / seconds, str(dtype).removeprefix("torch.")


def counted_flops(model: DiffusionModel, x: torch.Tensor) -> tuple[float, float]:
    """(forward FLOPs per image, training-step FLOPs per image) of the network, counted on a batch of 2."""
    from torch.utils.flop_counter import FlopCounterMode

    xb, t = x[:2], torch.rand(2, device=x.device)
    with FlopCounterMode(display=False) as forward, torch.no_grad():
        model.diffusion.net(xb, t)
    with FlopCounterMode(display=False) as step:
        model.loss(xb).mean().backward()
    model.zero_grad(set_to_none=True)
    return forward.get_total_flops() / 2, step.get_total_flops() / 2


def channels_last_ratio(model: DiffusionModel, x: torch.Tensor, repeats: int, device: str) -> float:
    """Images/s of a training step in channels_last over the default layout (timed in alternation)."""
    import copy

    fns = {}
    for name, fmt in (("default", torch.contiguous_format), ("channels_last", torch.channels_last)):
        m = copy.deepcopy(model).to(memory_format=fmt).train()
        xf = x.contiguous(memory_format=fmt)
        opt = torch.optim.AdamW(m.parameters())

        def step(m=m, xf=xf, opt=opt) -> None:
            opt.zero_grad(set_to_none=True)
            m.loss(xf).mean().backward()
            opt.step()

        step()
        fns[name] = step
    seconds = alternating_seconds(fns, repeats, device)
    return seconds["default"] / seconds["channels_last"]


def sampling_rows(args: argparse.Namespace, model: DiffusionModel, diffusers: Any | None) -> list[dict[str, Any]]:
    """Images/s per (sampler, NFE), elbolab against its diffusers counterpart at the same NFE, in alternation."""
    device = args.device
    if diffusers is not None:
        torch.manual_seed(args.seed)
        unet = diffusers_unet(diffusers, args.diffusers_layout, model.shape[0], model.shape[-1]).to(device).eval()

    def ours(sampler: str, steps: int, n: int) -> Callable[[], Any]:
        g = torch.Generator(device).manual_seed(args.seed)
        return lambda: model.sample(n, generator=g, sampler=sampler, steps=steps)

    def theirs(scheduler: str, steps: int, n: int) -> Callable[[], Any]:
        g, sch = torch.Generator(device).manual_seed(args.seed), diffusers_scheduler(diffusers, scheduler, args.T)
        return lambda: diffusers_sample(unet, sch, (n, *model.shape), steps, g, model.levels)

    rows = []
    for sampler, scheduler in PAIRS:
        ours(sampler, 2, 2)()
        if diffusers is not None:
            theirs(scheduler, 2, 2)()
        for steps in args.sample_steps:
            long = steps >= 500
            n, rounds = (args.long_n, 1) if long else (args.sample_n, args.repeats)
            fns = {"elbolab": ours(sampler, steps, n)}
            if diffusers is not None:
                fns["diffusers"] = theirs(scheduler, steps, n)
            with torch.no_grad():
                seconds = alternating_seconds(fns, rounds, device)
            row = {
                "sampler": sampler,
                "nfe": steps,
                "n": n,
                "rounds": rounds,
                "elbolab_img_per_s": n / seconds["elbolab"],
                "diffusers": scheduler if diffusers else "",
                "diffusers_img_per_s": n / seconds["diffusers"] if diffusers else None,
                "ratio": seconds["diffusers"] / seconds["elbolab"] if diffusers else None,
            }
            rows.append(row)
            print(
                f"  {sampler} at {steps} steps: {row['elbolab_img_per_s']:.3g} img/s, ratio {row['ratio']}", flush=True
            )
    return rows


def preset_report(
    args: argparse.Namespace, preset: str, train: Any, peak: float, diffusers: Any | None
) -> dict[str, Any]:
    """Every figure of one preset."""
    torch.manual_seed(args.seed)
    config = DiffusionConfig(T=args.T, unet=UNetConfig(preset=preset))
    model = DiffusionModel(config, train.shape, train.levels).to(args.device)
    x = train.model_range(torch.arange(args.batch_size)).to(args.device)
    forward_flops, step_flops = counted_flops(model, x)
    print(
        f"{preset}: {forward_flops / 1e9:.3f} GFLOP forward, {step_flops / 1e9:.3f} GFLOP per training image",
        flush=True,
    )
    layout = argparse.Namespace(**{**vars(args), "preset": args.diffusers_layout})
    train_row = training_row(layout, model, train, {"train_images_per_s": None}, diffusers)
    train_row.pop("trainer_img_per_s")
    train_row["mfu"] = step_flops * train_row["elbolab_img_per_s"] / peak
    if diffusers is not None:
        their_model = diffusers_unet(diffusers, args.diffusers_layout, *train.shape[:1], train.shape[-1])
        with torch.no_grad():
            from torch.utils.flop_counter import FlopCounterMode

            with FlopCounterMode(display=False) as counter:
                their_model(x[:2].cpu(), torch.tensor([10, 10]))
        train_row["diffusers_gflop_forward"] = counter.get_total_flops() / 2 / 1e9
    print(f"  training: {train_row['elbolab_img_per_s']:.3g} img/s, ratio {train_row['ratio']}", flush=True)
    cl = channels_last_ratio(model, x, max(2, args.train_repeats // 2), args.device)
    print(f"  channels_last / default: {cl:.3f}", flush=True)
    model.eval().to(memory_format=inference_layout(torch.device(args.device)))  # as `load_run` gives it
    return {
        "preset": preset,
        "gflop_forward": forward_flops / 1e9,
        "gflop_train_step": step_flops / 1e9,
        "training": train_row,
        "channels_last_ratio": cl,
        "sampling": sampling_rows(args, model, diffusers),
    }


def main() -> None:
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", category=DataWarning)
    load_before = [round(v, 2) for v in os.getloadavg()]
    diffusers = None if args.no_diffusers else import_diffusers()
    train = load_data("fashion-mnist", "train", args.data_dir)
    peak, peak_dtype = matmul_peak(args.device)
    print(f"matmul peak: {peak / 1e9:.1f} GFLOP/s ({peak_dtype}, {torch.get_num_threads()} threads)", flush=True)
    reports = [preset_report(args, preset, train, peak, diffusers) for preset in args.presets]
    peak_after, _ = matmul_peak(args.device)  # a loaded machine can depress either; MFU uses the start's
    for r in reports:
        print_table(
            [
                {
                    "preset": r["preset"],
                    "gflop_fwd": r["gflop_forward"],
                    **r["training"],
                    "channels_last": r["channels_last_ratio"],
                }
            ],
            f"Training step, {args.device}, 28x28, batch {args.batch_size} "
            f"(ratio = elbolab/diffusers {args.diffusers_layout}-layout images/s)",
        )
        print_table(r["sampling"], f"Sampling, {r['preset']} (ratio = elbolab/diffusers images/s at the same NFE)")
    write_results(
        args.out,
        {
            "settings": vars(args),
            "diffusers": getattr(diffusers, "__version__", None),
            "matmul_peak_flops": peak,
            "matmul_peak_flops_after": peak_after,
            "matmul_peak_dtype": peak_dtype,
            "load_average_before": load_before,
            "presets": reports,
        },
    )


if __name__ == "__main__":
    main()
