"""Benchmark: the VAE on Fashion-MNIST — training speed, test ELBO and IWAE bits/dim, eval cost.

    python benchmarks/vae.py [--steps 1500] [--data-dir ../shared/data] [--n-test 2000]

Trains with the library's Trainer (as `elbolab train vae` does), then evaluates the EMA
weights on the first n test images: the ELBO and the importance-weighted bound (k = 100),
each with a 95% interval, and how long each evaluation took.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import SHARED_DATA, print_table, timed, write_results

from elbolab.bounds import Estimator, mean_ci95, nats_to_bpd
from elbolab.data import load_data
from elbolab.model import dataset_bound
from elbolab.records import BoundSummary
from elbolab.train.config import TrainConfig
from elbolab.train.loop import Trainer
from elbolab.train.run import RunConfig, build_model, load_run, save_run_config
from elbolab.vae import VAEConfig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--net", default="small")
    parser.add_argument("--n-test", type=int, default=2000)
    parser.add_argument("--iwae-k", type=int, default=100)
    parser.add_argument("--data-dir", default=str(SHARED_DATA))
    args = parser.parse_args()

    import warnings

    warnings.simplefilter("ignore")  # the shared Fashion-MNIST split is not byte-identical to the official files
    train = load_data("fashion-mnist", "train", args.data_dir)
    test = load_data("fashion-mnist", "test", args.data_dir)
    cfg = RunConfig(
        "vae",
        "fashion-mnist",
        args.data_dir,
        train.shape,
        train.levels,
        VAEConfig(net=args.net, latent_dim=32),
        TrainConfig(
            steps=args.steps, batch_size=args.batch_size, eval_every=0, eval_n=500, checkpoint_every=args.steps
        ),
    )
    torch.manual_seed(0)
    model = build_model(cfg)
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "vae"
        run.mkdir()
        save_run_config(run, cfg)
        metrics = Trainer(model, train, test, cfg.train, run, progress=False).fit()
        _, model = load_run(run)
    torch.manual_seed(1)
    elbo, elbo_s = timed(dataset_bound, model, test, args.n_test, 250)
    iwae, iwae_s = timed(dataset_bound, model, test, args.n_test, 50, Estimator("iwae", args.iwae_k))
    summary = BoundSummary.of(elbo, "mc").to_json()
    iwae_bpd, iwae_ci = mean_ci95(nats_to_bpd(iwae.total, iwae.dims))
    row = {
        "data": "fashion-mnist",
        "net": args.net,
        "params": sum(p.numel() for p in model.parameters()),
        "steps": args.steps,
        "train_img_per_s": metrics["train_images_per_s"],
        "elbo_bpd": summary["bpd"]["total"],
        "elbo_ci95": summary["bpd"]["ci95"],
        f"iwae{args.iwae_k}_bpd": iwae_bpd,
        "iwae_ci95": iwae_ci,
        "n_test": min(args.n_test, len(test)),
        "elbo_eval_s": elbo_s,
        "iwae_eval_s": iwae_s,
    }
    print_table([row], "VAE on Fashion-MNIST (discretised logistic decoder, EMA weights)")
    write_results("vae", {"rows": [row], "elbo_terms_bpd": summary["bpd"]["terms"]})


if __name__ == "__main__":
    main()
