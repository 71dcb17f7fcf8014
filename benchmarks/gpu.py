"""Benchmark: the GPU check of issue 13, one prepared script for a lent GPU (runs on a CPU too, for trying it).

    python benchmarks/gpu.py [--parts smoke,mfu,fd,cifar,compare] [--device cuda] [--data-dir DIR]
                             [--results-dir DIR] [--fd-seconds 300] [--fd-at 30,60,120,180,240] [--fd-n 2000]
                             [--cifar-dir DIR] [--cifar-minutes 8] [--cifar-at 1,2,4] [--cifar-fd-n 10000]
                             [--compare-seconds 600] [--quick]

benchmarks/gpu-plan.md says which parts the next lent GPU runs, how, and what each figure answers.

Parts, each writing its own JSON (`gpu-PART.json` in --results-dir, the machine attached):

- smoke: the main GPU paths end to end through the command line, each command in its own process, its exit
  code, seconds and last lines kept: `train` of every model kind in fp32, bf16 and fp16 (the grad scaler),
  continuous time, `train.compile`, resume, `eval` of each kind, `sample` with each sampler, and
  `compare --quick` on digits (which interpolates and writes the report).
- mfu: the `base` UNet (38.4M parameters) at 32×32×3, batch 256, on L_simple, timed through elbolab's own
  `Trainer.train_step` (autocast, fused AdamW, clipping, EMA, the loss read back each step) in fp32, bf16,
  bf16 + channels_last, bf16 + torch.compile and both, and those with train.log_every=100 (no host read in
  the step); each timed per step (synchronised after each) and pipelined (synchronised once); beside it the network's forward and backward alone (no
  optimiser). FLOPs per image are counted (FlopCounterMode, forward and backward); MFU is counted FLOPs ×
  images/s over the bf16 matmul peak measured in the same run (8192³). What bounds it: one profiled step's GPU
  kernel time split into matrix kernels (GEMM, convolution, attention) and the rest, against the step's wall
  time (the difference is the GPU waiting on the host). With diffusers importable, its `UNet2DModel` of the
  same layout, trained in the same bf16 autocast with fused AdamW, in alternation: a ratio with an EMA on both
  sides and one without on either.
- fd: Fashion-MNIST diffusion, `DiffusionConfig`'s defaults (T = 1000, cosine, ε, L_simple) with the `small`
  UNet that `compare` gives 28×28 images on a GPU, batch 256, bf16, trained by `Trainer` for --fd-seconds of
  wall clock; paused at each of --fd-at (pause and measurement time do not count) and at the end, the EMA
  weights draw --fd-n samples (DDIM, 50 steps; at the end also 250 ancestral steps) and the built-in feature
  network's Fréchet distance against the first 2,000 test images is taken with its 95% bootstrap interval.
- cifar: CIFAR-10 (what --cifar-dir holds: the full set or the shared 5,085-image subset) with compare's
  continuous-time recipe at the base UNet, trained for --cifar-minutes of wall clock; at each of --cifar-at and
  at the end the EMA weights' test bits/dim (importance-sampled t) with its 95% interval and Monte-Carlo standard
  error, and the Fréchet distance of samples (--cifar-curve-fd-n, --cifar-fd-n at the end) in the built-in
  features (and Inception's where present), beside the published table; the JSON rewritten after each point.
- compare: `elbolab compare --device DEVICE --data cifar10` under --compare-seconds; wall time, every verdict.

Reading the numbers: MFU counts only the FLOPs FlopCounterMode sees (convolutions, matmuls, attention), not
normalisations or elementwise work, which a UNet of this size spends much of its time on; the profile's split
says how much.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, SHARED_DATA, print_table, write_results
from speed import counted_flops, matmul_peak

from elbolab.data import DataWarning, load_data
from elbolab.data.base import ImageData
from elbolab.diffusion import DiffusionModel
from elbolab.diffusion.config import DiffusionConfig
from elbolab.evaluate.speed import synchronize, timed_calls
from elbolab.nets.unet import UNetConfig
from elbolab.train.config import TrainConfig
from elbolab.train.loop import Trainer

PARTS = ("smoke", "mfu", "fd", "cifar", "compare")
#: published CIFAR-10 test bits/dim at convergence (the full 50,000-image training set), beside the cifar part's
PUBLISHED_CIFAR10_BPD = {
    "VDM (Kingma et al. 2021)": 2.65,
    "iDDPM (Nichol & Dhariwal 2021)": 2.94,
    "DDPM (Ho et al. 2020)": 3.70,
}
#: kernel names counted as matrix work in the profile (cuBLAS/CUTLASS GEMMs, cuDNN convolutions, attention)
MATRIX_KERNELS = re.compile(
    r"gemm|conv|cutlass|sm90|xmma|wgmma|cudnn|fprop|dgrad|wgrad|flash|fmha|attention", re.IGNORECASE
)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", default=",".join(PARTS))
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--data-dir", default=str(SHARED_DATA))
    parser.add_argument("--results-dir", default=str(RESULTS))
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--mfu-preset", default="base")
    parser.add_argument("--mfu-side", type=int, default=32)
    parser.add_argument("--mfu-steps", type=int, default=20, help="timed optimiser steps per variant")
    parser.add_argument("--fd-seconds", type=float, default=300.0)
    parser.add_argument("--fd-at", default="30,60,120,180,240", help="training seconds of the curve's points")
    parser.add_argument("--fd-n", type=int, default=2000, help="samples per Fréchet distance")
    parser.add_argument("--fd-preset", default="small")
    parser.add_argument("--cifar-dir", default=str(SHARED_DATA / "cifar-10-subset"), help="holds cifar-10-batches-py")
    parser.add_argument("--cifar-minutes", type=float, default=8.0, help="wall-clock training time")
    parser.add_argument("--cifar-at", default="1,2,4", help="training minutes of the curve's earlier points")
    parser.add_argument("--cifar-preset", default="base")
    parser.add_argument("--cifar-batch", type=int, default=128)
    parser.add_argument("--cifar-fd-n", type=int, default=10_000, help="samples for the final Fréchet distance")
    parser.add_argument("--cifar-curve-fd-n", type=int, default=2000, help="samples at the earlier points")
    parser.add_argument("--cifar-bpd-n", type=int, default=0, help="test images bounded (0: the whole split)")
    parser.add_argument("--cifar-sample-steps", type=int, default=50)
    parser.add_argument("--cifar-pilot-n", type=int, default=64, help="training images fitting the proposal over t")
    parser.add_argument("--features-cache", default=None, help="the built-in feature network's cache folder")
    parser.add_argument("--features-steps", type=int, default=0, help="its training steps (0: its default)")
    parser.add_argument("--compare-seconds", type=float, default=600.0, help="compare's wall-time limit")
    parser.add_argument("--compare-data", default="cifar10", help="compare's data set (digits: a quick try)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: try the script on a CPU")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    args.parts = [p for p in args.parts.split(",") if p]
    unknown = set(args.parts) - set(PARTS)
    if unknown:
        parser.error(f"unknown parts {sorted(unknown)}; choose from {', '.join(PARTS)}")
    args.fd_at = [float(s) for s in args.fd_at.split(",") if s]
    args.cifar_at = [float(s) for s in args.cifar_at.split(",") if s]
    return args


# ---------------------------------------------------------------- smoke


def smoke_commands(args: argparse.Namespace, work: Path) -> list[tuple[str, list[str]]]:
    """(name, argv) of every command the smoke part runs, in order (later ones read earlier runs)."""
    dev = ["--device", args.device]
    steps = "20"
    cmds: list[tuple[str, list[str]]] = []
    for kind in ("vae", "diffusion", "latent-diffusion"):
        for precision in ("fp32", "bf16", "fp16"):
            run = work / f"{kind}-{precision}"
            cmds.append(
                (
                    f"train {kind} {precision}",
                    [
                        "train",
                        kind,
                        "--out",
                        str(run),
                        "--steps",
                        steps,
                        "--quiet",
                        *dev,
                        "--set",
                        f"train.precision={precision}",
                        "--set",
                        "train.eval_every=10",
                        "--set",
                        "train.checkpoint_every=10",
                    ],
                )
            )
    cmds.append(
        (
            "train diffusion continuous bf16",
            [
                "train",
                "diffusion",
                "--out",
                str(work / "diffusion-cont"),
                "--steps",
                steps,
                "--quiet",
                *dev,
                "--set",
                "model.time=continuous",
                "--set",
                "model.loss=vlb",
                "--set",
                "train.precision=bf16",
            ],
        )
    )
    cmds.append(
        (
            "train diffusion compile bf16",
            [
                "train",
                "diffusion",
                "--out",
                str(work / "diffusion-compile"),
                "--steps",
                steps,
                "--quiet",
                *dev,
                "--set",
                "train.compile=true",
                "--set",
                "train.precision=bf16",
            ],
        )
    )
    cmds.append(
        (
            "resume diffusion bf16",
            ["train", "diffusion", "--resume", "--out", str(work / "diffusion-bf16"), "--steps", "30", "--quiet", *dev],
        )
    )
    for kind in ("vae", "diffusion", "latent-diffusion"):
        cmds.append((f"eval {kind}", ["eval", str(work / f"{kind}-bf16"), "--n", "64", *dev]))
    for sampler in ("ancestral", "ddim", "dpm-solver++"):
        cmds.append(
            (
                f"sample diffusion {sampler}",
                [
                    "sample",
                    str(work / "diffusion-bf16"),
                    "--n",
                    "16",
                    "--sampler",
                    sampler,
                    "--steps",
                    "20",
                    "--out",
                    str(work / f"samples-{sampler}.png"),
                    *dev,
                ],
            )
        )
    cmds.append(("compare --quick", ["compare", "--quick", "--budget", "4", "--out", str(work / "compare"), *dev]))
    return cmds


def smoke(args: argparse.Namespace) -> dict[str, Any]:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, argv in smoke_commands(args, Path(tmp)):
            start = time.perf_counter()
            done = subprocess.run(
                [sys.executable, "-m", "elbolab", *argv], capture_output=True, text=True, timeout=300, check=False
            )
            out = (done.stdout + done.stderr).strip().splitlines()
            rows.append(
                {
                    "command": name,
                    "rc": done.returncode,
                    "seconds": round(time.perf_counter() - start, 1),
                    "tail": out[-6:] if done.returncode else out[-1:],
                }
            )
            print(f"  {name}: rc {done.returncode} in {rows[-1]['seconds']} s", flush=True)
            if done.returncode:
                print("    " + "\n    ".join(out[-12:]), flush=True)
    return {"commands": rows, "failed": [r["command"] for r in rows if r["rc"]]}


# ---------------------------------------------------------------- mfu


def random_images(n: int, shape: tuple[int, int, int], seed: int) -> ImageData:
    g = torch.Generator().manual_seed(seed)
    return ImageData("random", torch.randint(0, 256, (n, *shape), generator=g, dtype=torch.uint8), 256)


def kernel_split(step: Callable[[], Any], device: str, calls: int = 3) -> dict[str, float]:
    """`calls` profiled calls of `step`: wall seconds per call (the profiler's overhead included), and the GPU
    seconds per call in matrix kernels and in the rest."""
    from torch.profiler import ProfilerActivity, profile

    synchronize(device)
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        start = time.perf_counter()
        for _ in range(calls):
            step()
        synchronize(device)
        wall = (time.perf_counter() - start) / calls
    matrix = other = 0.0
    for event in prof.key_averages():
        gpu = getattr(event, "self_device_time_total", None)
        if gpu is None:
            gpu = getattr(event, "self_cuda_time_total", 0.0)
        if not gpu or event.device_type != torch.autograd.DeviceType.CUDA:
            continue
        if MATRIX_KERNELS.search(event.key):
            matrix += gpu / 1e6 / calls
        else:
            other += gpu / 1e6 / calls
    return {
        "wall_s": wall,
        "gpu_matrix_s": matrix,
        "gpu_other_s": other,
        "gpu_busy_share": (matrix + other) / wall if wall else float("nan"),
    }


def trainer_for(args: argparse.Namespace, data: ImageData, run_dir: Path, **train: Any) -> Trainer:
    torch.manual_seed(args.seed)
    model = DiffusionModel(DiffusionConfig(unet=UNetConfig(preset=args.mfu_preset)), data.shape, data.levels)
    cfg = TrainConfig(
        steps=10**9,
        batch_size=args.batch_size,
        device=args.device,
        eval_every=0,
        checkpoint_every=10**9,
        warmup_steps=10,
        seed=args.seed,
        **train,
    )
    return Trainer(model, data, data, cfg, run_dir, progress=False)


def mfu(args: argparse.Namespace) -> dict[str, Any]:
    device = args.device
    cuda = device.startswith("cuda")
    peak, _ = matmul_peak(device)
    print(f"matmul peak: {peak / 1e12:.1f} TFLOP/s", flush=True)
    data = random_images(4 * args.batch_size, (3, args.mfu_side, args.mfu_side), args.seed)
    variants = {
        "fp32": {"precision": "fp32"},
        "bf16": {"precision": "bf16"},
        "bf16 channels_last": {"precision": "bf16", "channels_last": True},
        "bf16 compile": {"precision": "bf16", "compile": True},
        "bf16 channels_last compile": {"precision": "bf16", "channels_last": True, "compile": True},
        "bf16 channels_last log_every=100": {"precision": "bf16", "channels_last": True, "log_every": 100},
        "bf16 channels_last compile log_every=100": {
            "precision": "bf16",
            "channels_last": True,
            "compile": True,
            "log_every": 100,
        },
    }
    if not cuda:
        variants = {k: v for k, v in variants.items() if "compile" not in k}
    rows, flops, params = [], None, None
    with tempfile.TemporaryDirectory() as tmp:
        for name, train in variants.items():
            trainer = trainer_for(args, data, Path(tmp) / name.replace(" ", "-"), **train)
            if flops is None:
                x = data.model_range(torch.arange(2)).to(trainer.device)
                flops = counted_flops(trainer.model, x)[1]
                params = sum(p.numel() for p in trainer.model.parameters())
                print(
                    f"{args.mfu_preset}: {params / 1e6:.2f}M parameters, {flops / 1e9:.2f} GFLOP per training "
                    f"image (forward and backward)",
                    flush=True,
                )
            start = time.perf_counter()
            for _ in range(5 if "compile" not in name else 8):  # warm-up (and compilation)
                trainer.train_step()
            synchronize(device)
            warm = time.perf_counter() - start
            seconds = statistics.median(timed_calls(trainer.train_step, args.mfu_steps, 0, device))
            ips = args.batch_size / seconds
            pipelined = pipelined_seconds(trainer.train_step, args.mfu_steps, device)
            row = {
                "variant": name,
                "step_ms": seconds * 1e3,
                "img_per_s": ips,
                "mfu": flops * ips / peak,
                "pipelined_step_ms": pipelined * 1e3,
                "mfu_pipelined": flops * args.batch_size / pipelined / peak,
                "warmup_s": warm,
            }
            if cuda:
                row.update(kernel_split(trainer.train_step, device))
                row["peak_memory_gb"] = torch.cuda.max_memory_allocated(device) / 1e9
                torch.cuda.reset_peak_memory_stats(device)
            rows.append(row)
            print(f"  {name}: {seconds * 1e3:.1f} ms per step, {ips:.0f} img/s, MFU {row['mfu']:.3f}", flush=True)
            if name == "bf16":
                rows.append(network_only(args, trainer, flops, peak))
            del trainer
    result: dict[str, Any] = {
        "preset": args.mfu_preset,
        "side": args.mfu_side,
        "batch": args.batch_size,
        "parameters": params,
        "gflop_per_training_image": flops / 1e9,
        "matmul_peak_flops": peak,
        "variants": rows,
    }
    result["diffusers"] = diffusers_row(args, data, peak, flops) if cuda or args.quick else None
    return result


def pipelined_seconds(step: Callable[[], Any], calls: int, device: str) -> float:
    """Seconds per call of `calls` calls back to back, synchronised once at the end: what training sustains when
    the host runs ahead of the GPU (timed_calls synchronises after every call)."""
    synchronize(device)
    start = time.perf_counter()
    for _ in range(calls):
        step()
    synchronize(device)
    return (time.perf_counter() - start) / calls


def network_only(args: argparse.Namespace, trainer: Trainer, flops: float, peak: float) -> dict[str, Any]:
    """The bf16 network's forward and backward of the loss alone: no optimiser, EMA, clipping or read-back."""
    model, device = trainer.model, args.device
    x, _ = trainer.micro_batch(0)

    def step() -> None:
        with torch.autocast(torch.device(device).type, dtype=torch.bfloat16):
            loss = model.loss(x).mean()
        loss.backward()

    for _ in range(3):
        step()
    seconds = statistics.median(timed_calls(step, args.mfu_steps, 0, device))
    ips = args.batch_size / seconds
    print(f"  bf16 network only: {seconds * 1e3:.1f} ms, MFU {flops * ips / peak:.3f}", flush=True)
    model.zero_grad(set_to_none=True)
    return {"variant": "bf16 network only", "step_ms": seconds * 1e3, "img_per_s": ips, "mfu": flops * ips / peak}


def diffusers_row(args: argparse.Namespace, data: ImageData, peak: float, flops: float) -> dict[str, Any] | None:
    """diffusers' UNet2DModel of the same layout against elbolab's trainer step, both bf16 + fused AdamW (on a
    GPU) and clipped, timed in alternation twice: both with an EMA of the weights (elbolab's `EMA`, decay 0.999)
    and both without (our step's EMA update left out)."""
    from diffusion import diffusers_scheduler, diffusers_unet, import_diffusers

    from elbolab.train.ema import EMA

    diffusers = import_diffusers()
    if diffusers is None:
        return None
    import torch.nn.functional as F

    device = args.device
    torch.manual_seed(args.seed)
    unet = diffusers_unet(diffusers, args.mfu_preset, 3, args.mfu_side).to(device).train()
    sched = diffusers_scheduler(diffusers, "DDPMScheduler", 1000)
    opt = torch.optim.AdamW(unet.parameters(), lr=2e-4, fused=device.startswith("cuda"))
    x = data.model_range(torch.arange(args.batch_size)).to(device)
    their_ema = EMA(unet, 0.999)

    def theirs(ema: bool) -> None:
        opt.zero_grad(set_to_none=True)
        eps = torch.randn_like(x)
        t = torch.randint(0, 1000, (len(x),), device=device)
        with torch.autocast(torch.device(device).type, dtype=torch.bfloat16):
            loss = F.mse_loss(unet(sched.add_noise(x, eps, t), t).sample.float(), eps)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
        opt.step()
        if ema:
            their_ema.update(unet)
        loss.item()

    row: dict[str, Any] = {
        "params_diffusers": sum(p.numel() for p in unet.parameters()),
        "version": diffusers.__version__,
    }
    with tempfile.TemporaryDirectory() as tmp:
        ours = trainer_for(args, data, Path(tmp), precision="bf16")
        ema_update = ours.ema.update
        for _ in range(5):
            theirs(True)
            ours.train_step()
        for ema, suffix in ((True, ""), (False, "_no_ema")):
            ours.ema.update = ema_update if ema else (lambda model: None)  # type: ignore[method-assign]
            times: dict[str, list[float]] = {"elbolab": [], "diffusers": []}
            for _ in range(args.mfu_steps):
                times["diffusers"] += timed_calls(partial(theirs, ema), 1, 0, device)
                times["elbolab"] += timed_calls(ours.train_step, 1, 0, device)
            med = {k: statistics.median(v) for k, v in times.items()}
            row[f"diffusers_step_ms{suffix}"] = med["diffusers"] * 1e3
            row[f"elbolab_step_ms{suffix}"] = med["elbolab"] * 1e3
            row[f"ratio{suffix}"] = med["diffusers"] / med["elbolab"]
            print(
                f"  diffusers UNet2DModel bf16{' (no EMA)' if not ema else ''}: {med['diffusers'] * 1e3:.1f} ms per "
                f"step; elbolab {med['elbolab'] * 1e3:.1f} ms; ratio {row[f'ratio{suffix}']:.2f}",
                flush=True,
            )
    return row


# ---------------------------------------------------------------- fd


def fd(args: argparse.Namespace) -> dict[str, Any]:
    from elbolab.evaluate.features import select_features
    from elbolab.evaluate.resample import resampled_quality
    from elbolab.evaluate.run import quality_reference

    device = args.device
    warnings.filterwarnings("ignore", category=DataWarning)
    train, test = load_data("fashion-mnist", "train", args.data_dir), load_data("fashion-mnist", "test", args.data_dir)
    features, _ = select_features("fashion-mnist", "builtin", data_dir=args.data_dir, device=device)
    reference = features(quality_reference(test, args.fd_n), test.levels)
    torch.manual_seed(args.seed)
    config = DiffusionConfig(unet=UNetConfig(preset=args.fd_preset))
    model = DiffusionModel(config, train.shape, train.levels)
    cfg = TrainConfig(
        steps=10**9,
        max_seconds=args.fd_seconds,
        batch_size=args.batch_size,
        device=device,
        precision="bf16" if device.startswith("cuda") else "fp32",
        eval_every=0,
        eval_n=256,
        checkpoint_every=1000,
        seed=args.seed,
    )
    points = []

    def point(trainer: Trainer, samplers: tuple[tuple[str, int], ...]) -> None:
        trainer.ema.copy_to(trainer.eval_model)
        row = {"train_seconds": trainer.seconds_trained(), "step": trainer.step}
        for sampler, steps in samplers:
            g = torch.Generator(device).manual_seed(args.seed)
            start = time.perf_counter()
            with torch.no_grad():
                samples = trainer.eval_model.sample(args.fd_n, generator=g, sampler=sampler, steps=steps).cpu()
            took = time.perf_counter() - start
            q = resampled_quality(features(samples, train.levels), reference, replicates=200, seed=args.seed)
            row[f"fd_{sampler}_{steps}"] = q["fd"].value
            row[f"fd_{sampler}_{steps}_ci95"] = list(q["fd"].interval())
            row[f"sample_s_{sampler}_{steps}"] = took
        points.append(row)
        print(
            "  " + ", ".join(f"{k} {v}" if not isinstance(v, float) else f"{k} {v:.4g}" for k, v in row.items()),
            flush=True,
        )
        write_results("gpu-fd", {"points": points, "partial": True}, Path(args.results_dir))  # kept if cut short

    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(model, train, test, cfg, Path(tmp) / "run", progress=False)
        for at in args.fd_at:
            if at < args.fd_seconds:
                trainer.fit(pause_at=at)
                point(trainer, (("ddim", 50),))
        final = trainer.fit()
        point(trainer, (("ddim", 50), ("ancestral", 250)))
    best = min(v for k, v in points[-1].items() if k.startswith("fd_") and not k.endswith("ci95"))
    return {
        "preset": args.fd_preset,
        "parameters": sum(p.numel() for p in model.parameters()),
        "config": "DiffusionConfig defaults: T=1000, cosine, eps, L_simple",
        "batch": args.batch_size,
        "precision": cfg.precision,
        "seconds": args.fd_seconds,
        "n_samples": args.fd_n,
        "feature_network": features.name,
        "final_test_bpd": final.get("test_bpd"),
        "train_images_per_s": final.get("train_images_per_s"),
        "steps": final.get("step"),
        "points": points,
        "final_best_fd": best,
    }


# ---------------------------------------------------------------- cifar


def cifar_features(args: argparse.Namespace) -> tuple[Any, Any]:
    """The built-in feature network of the CIFAR-10 data at --cifar-dir (cached in --features-cache), and
    Inception's where its weights are present (else the reason it is not)."""
    from elbolab.evaluate.features import FeatureNetUnavailable, builtin_features, inception_features

    builtin = builtin_features(
        "cifar10", args.cifar_dir, args.features_cache, steps=args.features_steps or None, seed=args.seed
    )
    try:
        inception: Any = inception_features(None, args.device)
    except FeatureNetUnavailable as err:
        inception = str(err).splitlines()[0]
    return builtin, inception


def cifar_point(
    args: argparse.Namespace, trainer: Trainer, train: ImageData, test: ImageData, features: dict[str, Any], n: int
) -> dict[str, Any]:
    """One point of the curve, on the EMA weights: the test bound (importance-sampled t, its proposal fitted on
    training images) with its 95% interval and Monte-Carlo error, and the Fréchet distance of n samples
    against the test images in each feature network, with its 95% bootstrap interval."""
    from elbolab.evaluate.resample import resampled_quality
    from elbolab.evaluate.run import EvalConfig, Pilot, quality_reference, quality_sampling, summarize

    model = trainer.eval_model
    trainer.ema.copy_to(model)
    model.eval()
    row: dict[str, Any] = {
        "train_minutes": trainer.seconds_trained() / 60,
        "step": trainer.step,
        "images_seen": trainer.step * trainer.cfg.batch_size,
    }
    cfg = EvalConfig(
        seed=args.seed, proposal="importance", pilot_n=args.cifar_pilot_n, quality_steps=args.cifar_sample_steps
    )
    with torch.no_grad():
        bound = summarize(model, test, args.cifar_bpd_n or None, None, args.seed, cfg, Pilot(train))
        row.update(
            test_bpd=bound.bpd.total,
            test_bpd_ci95=bound.bpd.ci95,
            test_bpd_mc_stderr=bound.mean_stderr_bpd,
            bpd_images=bound.n,
            bpd_estimator=bound.estimator,
            bpd_seconds=bound.seconds,
        )
        sampler, steps = quality_sampling(model, cfg)
        g = torch.Generator(args.device).manual_seed(args.seed)
        start = time.perf_counter()
        chunks = [
            model.sample(min(1000, n - i), generator=g, sampler=sampler, steps=steps).cpu() for i in range(0, n, 1000)
        ]
        row.update(samples=n, sampler=f"{sampler} {steps}", sample_seconds=time.perf_counter() - start)
    samples, reference = torch.cat(chunks), quality_reference(test, n)
    for name, net in features.items():
        q = resampled_quality(net(samples, train.levels), net(reference, test.levels), replicates=200, seed=args.seed)
        row[f"fd_{name}"], row[f"fd_{name}_ci95"] = q["fd"].value, list(q["fd"].interval())
    return row


def cifar(args: argparse.Namespace) -> dict[str, Any]:
    """CIFAR-10 in minutes: compare's continuous-time recipe (VDM's bound, γ linear between learned end points,
    t stratified in training and importance-sampled in evaluation) at --cifar-preset, trained for
    --cifar-minutes of wall clock, measured at each of --cifar-at and at the end (the measurements' time does
    not count); the JSON is rewritten after every point."""
    device = args.device
    cuda = device.startswith("cuda")
    warnings.filterwarnings("ignore", category=DataWarning)
    train, test = load_data("cifar10", "train", args.cifar_dir), load_data("cifar10", "test", args.cifar_dir)
    builtin, inception = cifar_features(args)
    features = {"builtin": builtin} | ({} if isinstance(inception, str) else {"inception": inception})
    torch.manual_seed(args.seed)
    config = replace(DiffusionConfig.sized_for(train.shape[-1], device), unet=UNetConfig(preset=args.cifar_preset))
    model = DiffusionModel(config, train.shape, train.levels)
    cfg = TrainConfig(
        steps=10**9,
        max_seconds=args.cifar_minutes * 60,
        batch_size=args.cifar_batch,
        device=device,
        precision="bf16" if cuda else "fp32",
        channels_last=cuda,
        log_every=50,  # no host read in the other steps
        eval_every=0,
        eval_n=64,
        checkpoint_every=10**9,
        seed=args.seed,
        threads=0 if cuda else 1,
    )
    result: dict[str, Any] = {
        "data": f"cifar10 from {args.cifar_dir}: {len(train)} train, {len(test)} test images"
        + (" (the subset, not the full CIFAR-10)" if len(train) < 50_000 else ""),
        "recipe": "DiffusionConfig.sized_for: continuous time (VDM), gamma linear between learned end points, "
        "trained on the ELBO (loss=vlb), t stratified in each batch; bound evaluated with importance-sampled t",
        "preset": args.cifar_preset,
        "parameters": sum(p.numel() for p in model.parameters()),
        "batch": cfg.batch_size,
        "precision": cfg.precision,
        "minutes": args.cifar_minutes,
        "feature_networks": {k: v.name for k, v in features.items()},
        "inception_unavailable": inception if isinstance(inception, str) else None,
        "published_bpd_at_convergence": PUBLISHED_CIFAR10_BPD,
        "points": [],
        "partial": True,
    }
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(model, train, test, cfg, Path(tmp) / "run", progress=False)
        for minutes in [*(m for m in args.cifar_at if m < args.cifar_minutes), None]:
            if minutes is None:
                final = trainer.fit()
                result["train_images_per_s"] = final.get("train_images_per_s")
            else:
                trainer.fit(pause_at=minutes * 60)
            n = args.cifar_fd_n if minutes is None else args.cifar_curve_fd_n
            result["points"].append(cifar_point(args, trainer, train, test, features, n))
            print("  " + ", ".join(f"{k} {_short(v)}" for k, v in result["points"][-1].items()), flush=True)
            result["partial"] = minutes is not None
            write_results("gpu-cifar", result, Path(args.results_dir))  # kept if the call is cut short
    return result


def _short(value: Any) -> str:
    """A figure for the log line."""
    return f"{value:.4g}" if isinstance(value, float) else str(value)


# ---------------------------------------------------------------- compare


def compare_verdicts(out: Path) -> list[dict[str, str]]:
    """Every contrast's title and verdict from compare's results.json, else from the first seed's file."""
    files = [out / "results.json", *sorted(out.glob("seed-*-results.json"))]
    for path in files:
        if path.is_file():
            contrasts = json.loads(path.read_text()).get("contrasts", [])
            return [{"title": c["title"], "verdict": c["verdict"], "source": path.name} for c in contrasts]
    return []


def compare(args: argparse.Namespace) -> dict[str, Any]:
    """`elbolab compare --device DEVICE --data cifar10` (--compare-data) under a wall-time limit
    (--compare-seconds): its exit code, wall time, last lines and every verdict reached."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "report"
        argv = [
            "compare",
            "--data",
            args.compare_data,
            "--data-dir",
            args.cifar_dir,
            "--device",
            args.device,
            "--quiet",
        ]
        argv += ["--out", str(out), *(["--quick", "--budget", "4"] if args.quick else [])]
        start = time.perf_counter()
        try:
            done = subprocess.run(
                [sys.executable, "-m", "elbolab", *argv],
                capture_output=True,
                text=True,
                timeout=args.compare_seconds,
                check=False,
            )
            rc, lines = done.returncode, (done.stdout + done.stderr).strip().splitlines()
        except subprocess.TimeoutExpired as err:
            rc, lines = None, [str(err)]
        seconds = time.perf_counter() - start
        verdicts = compare_verdicts(out)
    print(f"  compare: rc {rc} in {seconds:.0f} s, {len(verdicts)} verdicts", flush=True)
    return {
        "command": "elbolab " + " ".join(a for a in argv if not a.startswith(tmp)),
        "rc": rc,
        "timed_out": rc is None,
        "wall_seconds": seconds,
        "limit_seconds": args.compare_seconds,
        "verdicts": verdicts,
        "undecided": [v["title"] for v in verdicts if v["verdict"] == "inconclusive"],
        "tail": lines[-12:],
        "target": "issue 29: compare --device cuda --data cifar10 within 10 minutes, every verdict decided",
    }


def main() -> None:
    args = parse_args()
    if args.quick:
        args.mfu_preset, args.mfu_side, args.batch_size, args.mfu_steps = "tiny", 8, 16, 2
        args.fd_seconds, args.fd_at, args.fd_n, args.fd_preset = 6.0, [3.0], 64, "tiny"
        args.cifar_minutes, args.cifar_at, args.cifar_preset, args.cifar_batch = 0.05, [0.02], "tiny", 8
        args.cifar_fd_n, args.cifar_curve_fd_n, args.cifar_bpd_n, args.cifar_sample_steps = 24, 16, 16, 4
        args.features_steps, args.cifar_pilot_n = args.features_steps or 5, 4
    folder = Path(args.results_dir)
    for part in args.parts:
        print(f"\n== {part}", flush=True)
        start = time.perf_counter()
        try:
            result = {"smoke": smoke, "mfu": mfu, "fd": fd, "cifar": cifar, "compare": compare}[part](args)
        except Exception as exc:  # noqa: BLE001 -- a part that breaks must not take the others with it
            import traceback

            traceback.print_exc()
            kept = folder / f"gpu-{part}.json"  # what a part wrote on its way (the cifar points) stays
            result = {
                **(json.loads(kept.read_text()) if kept.is_file() else {}),
                "error": f"{type(exc).__name__}: {exc}",
            }
            result.pop("machine", None)
        result["part_seconds"] = time.perf_counter() - start
        result["settings"] = {k: v for k, v in vars(args).items() if k != "parts"}
        result["torch"] = torch.__version__
        write_results(f"gpu-{part}", result, folder)
        if part == "mfu" and "variants" in result:
            print_table(
                result["variants"],
                f"Training step, {args.mfu_preset} UNet, {args.mfu_side}x{args.mfu_side}, "
                f"batch {args.batch_size}, {result['gflop_per_training_image']:.2f} GFLOP per image",
            )
        if part == "fd" and "points" in result:
            print_table(result["points"], "Fréchet distance (built-in features) against training seconds")
    out = os.environ.get("OUT")
    if out and folder.resolve() != Path(out).resolve():
        for part in args.parts:
            shutil.copy(folder / f"gpu-{part}.json", out)


if __name__ == "__main__":
    main()
