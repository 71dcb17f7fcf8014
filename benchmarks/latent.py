"""Benchmark: latent diffusion on Fashion-MNIST — its bound against its own autoencoder's, and sampling speed
against pixel-space diffusion at the same NFE (issue 4).

    python benchmarks/latent.py [--ae-steps 200] [--steps 300] [--batch-size 64] [--n-test 500] [--nfe 10 20 50]
                                [--sample-n 16] [--device cpu|cuda] [--threads N]

Both stages train through `train_run` (what `elbolab train latent-diffusion` calls) with the library's
default latent diffusion config: the VAE for --ae-steps, then the diffusion over its scaled latents
for --steps. Measured on the EMA weights:

- test bits/dim on the first --n-test test images, each with its 95% interval: the autoencoder's own
  ELBO (N(0, I) prior) and the latent diffusion bound with the same frozen autoencoder, and their
  paired difference;
- sampling images/s with DDIM at each NFE, latent diffusion against a pixel-space `DiffusionModel`
  (the library's default config for 28×28, untrained: speed does not depend on the weights), timed in
  alternation so that a shared machine's load falls on both alike; the ratio > 1 means latent is faster;
- the split of latent diffusion's sampling time between the latent chain (NFE network passes on the
  [c, 7, 7] grid) and the one decoder pass.

On a CPU the default budget is a few minutes and far from converged; on a GPU scale up with
`--device cuda --ae-steps 5000 --steps 20000 --n-test 10000`.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import SHARED_DATA, print_table, timed, write_results

from elbolab.bounds import (
    Estimator,
    mean_ci95,
)
from elbolab.data import DataWarning, load_data
from elbolab.diffusion import DiffusionConfig, DiffusionModel
from elbolab.evaluate.speed import timed_calls
from elbolab.model import dataset_bound
from elbolab.records import BoundSummary
from elbolab.train.api import train_run
from elbolab.train.run import load_run
from elbolab.train.stages import AUTOENCODER_DIR


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ae-steps", type=int, default=200, help="stage 1: VAE training steps")
    parser.add_argument("--steps", type=int, default=300, help="stage 2: latent diffusion training steps")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--n-test", type=int, default=500, help="test images for bits/dim")
    parser.add_argument("--nfe", type=int, nargs="+", default=[10, 20, 50], help="DDIM steps to time")
    parser.add_argument("--sample-n", type=int, default=16, help="images per timed sampling call")
    parser.add_argument("--repeats", type=int, default=3, help="timed calls per figure")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--data-dir", default=str(SHARED_DATA))
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args()


def train(args: argparse.Namespace, tmp: Path):
    """Both stages through `train_run`; (latent diffusion model, its autoencoder as a VAE, metrics), EMA weights."""
    overrides = {
        "model.autoencoder_steps": args.ae_steps,
        "train.batch_size": args.batch_size,
        "train.eval_every": 0,
        "train.eval_n": 2,
        "train.checkpoint_every": max(args.steps, args.ae_steps),
        "train.seed": args.seed,
        "train.device": args.device,
        "train.threads": args.threads,
    }
    run = tmp / "latent-diffusion"
    _, metrics = train_run(
        "latent-diffusion",
        "fashion-mnist",
        run,
        data_dir=args.data_dir,
        steps=args.steps,
        overrides={k: str(v) for k, v in overrides.items()},
        progress=False,
    )
    _, vae = load_run(run / AUTOENCODER_DIR, device=args.device)
    _, model = load_run(run, device=args.device)
    stage1 = json.loads((run / AUTOENCODER_DIR / "metrics.json").read_text())
    return model, vae, {"stage1_seconds": stage1["train_seconds"], "stage2_seconds": metrics["train_seconds"]}


def bound_rows(model, vae, test, n: int, seed: int) -> tuple[list[dict], dict]:
    """Bits/dim of the autoencoder's ELBO and of the latent diffusion bound on the same images, with intervals."""
    torch.manual_seed(seed)
    (vae_bound, vae_s) = timed(dataset_bound, vae, test, n, 250)
    (ld_bound, ld_s) = timed(dataset_bound, model, test, n, 250, Estimator("mc"))
    diff, diff_ci = mean_ci95(ld_bound.bits_per_dim() - vae_bound.bits_per_dim())
    rows = []
    for name, bound, seconds in (
        ("VAE ELBO, N(0, I) prior", vae_bound, vae_s),
        ("latent diffusion bound", ld_bound, ld_s),
    ):
        s = BoundSummary.of(bound, "default").to_json()
        terms = {k: s["bpd"]["terms"].get(k) for k in ("reconstruction", "kl", "neg_entropy", "latent_prior")}
        rows.append(
            {"bound": name, "bits/dim": s["bpd"]["total"], "ci95": s["bpd"]["ci95"], **terms, "eval_s": seconds}
        )
    return rows, {
        "paired_difference_bpd": diff,
        "paired_difference_ci95": diff_ci,
        "latent_prior_terms_nats": {k: v.mean().item() for k, v in ld_bound.extras.items()},
    }


def speed_rows(args: argparse.Namespace, model, shape, levels) -> list[dict]:
    """DDIM images/s, latent vs pixel-space diffusion at each NFE (timed in turn), and latent's time split."""
    device = torch.device(args.device)
    torch.manual_seed(args.seed)
    pixel = DiffusionModel(DiffusionConfig(), shape, levels).to(device).eval()
    n, rows = args.sample_n, []
    for nfe in args.nfe:
        g = torch.Generator(device).manual_seed(args.seed)
        u = model.diffusion.sample((n, *model.latent_shape), "ddim", nfe, generator=g, device=device)
        calls = {
            "latent": lambda g=g, nfe=nfe: model.sample(n, generator=g, sampler="ddim", steps=nfe),
            "pixel": lambda g=g, nfe=nfe: pixel.sample(n, generator=g, sampler="ddim", steps=nfe),
            "latent chain": lambda g=g, nfe=nfe: model.diffusion.sample(
                (n, *model.latent_shape), "ddim", nfe, generator=g, device=device
            ),
            "decoder": lambda u=u: model.vae.decode(u * model.scale),
        }
        seconds = {k: [] for k in calls}
        for fn in calls.values():
            fn()  # warm-up
        for _ in range(args.repeats):
            for name, fn in calls.items():
                seconds[name] += timed_calls(fn, 1, warmup=0, device=device)
        med = {k: statistics.median(v) for k, v in seconds.items()}
        split = med["latent chain"] + med["decoder"]
        rows.append(
            {
                "nfe": nfe,
                "n": n,
                "latent img/s": n / med["latent"],
                "pixel img/s": n / med["pixel"],
                "speed-up": med["pixel"] / med["latent"],
                "chain %": 100 * med["latent chain"] / split,
                "decoder %": 100 * med["decoder"] / split,
                "decoder ms/img": 1000 * med["decoder"] / n,
            }
        )
    return rows


def main() -> None:
    args = parse_args()
    warnings.simplefilter("ignore", DataWarning)  # the shared split is not byte-identical to the official files
    if args.threads:
        torch.set_num_threads(args.threads)
    test = load_data("fashion-mnist", "test", args.data_dir)
    with tempfile.TemporaryDirectory() as tmp:
        model, vae, seconds = train(args, Path(tmp))
    bounds, paired = bound_rows(model, vae, test, args.n_test, args.seed + 1)
    print_table(
        bounds,
        f"Fashion-MNIST test bits/dim, first {min(args.n_test, len(test))} images, same autoencoder "
        f"(VAE {args.ae_steps} steps, latent diffusion {args.steps} steps)",
    )
    print(
        f"paired difference (latent diffusion − VAE): {paired['paired_difference_bpd']:.4f} "
        f"± {paired['paired_difference_ci95']:.4f} bits/dim; latent scale s = {model.scale.item():.4f}, "
        f"latent {list(model.latent_shape)}"
    )
    speed = speed_rows(args, model, test.shape, test.levels)
    print_table(
        speed,
        f"DDIM sampling on {args.device}, {args.sample_n} images a call, median of {args.repeats} "
        f"(pixel: the default 28×28 UNet; latent: UNet on {list(model.latent_shape)} + one decoder pass)",
    )
    write_results(
        "latent",
        {
            "args": vars(args),
            "training": seconds,
            "bounds": bounds,
            "paired": paired,
            "latent_shape": list(model.latent_shape),
            "scale": model.scale.item(),
            "sampling": speed,
        },
    )


if __name__ == "__main__":
    main()
