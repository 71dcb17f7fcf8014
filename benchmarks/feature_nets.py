"""Benchmark: accuracy and CPU training time of elbolab's built-in feature networks.

MNIST (only its 10,000-image test set is at hand: split 8,000/2,000 with a fixed seed) must reach
≥ 97% and Fashion-MNIST ≥ 88%; digits is the package default. Results go to
benchmarks/results/feature_nets.json with the machine they were measured on.

    python benchmarks/feature_nets.py [--data-dir /work/shared/data]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from elbolab.data import ImageData, load_data
from elbolab.evaluate.features import load_or_train_classifier
from elbolab.machine import machine_info

SPLIT_SEED = 0
MNIST_TRAIN = 8000
TARGETS = {"digits": 0.90, "mnist": 0.97, "fashion-mnist": 0.88}


def load_split(name: str, split: str, data_dir: Path) -> ImageData:
    """One split through elbolab's loaders (the shared folder's files are read as they are)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the shared Fashion-MNIST is not byte-identical to the official files
        return load_data(name, split, data_dir=data_dir)


def mnist_splits(data_dir: Path) -> tuple[ImageData, ImageData]:
    """MNIST's test set cut into 8,000 train / 2,000 held-out images by a fixed permutation."""
    full = load_split("mnist", "test", data_dir)
    order = torch.from_numpy(np.random.default_rng(SPLIT_SEED).permutation(len(full)))
    pick = lambda idx: ImageData("mnist", full.images[idx], full.levels, full.labels[idx])
    return pick(order[:MNIST_TRAIN]), pick(order[MNIST_TRAIN:])


def splits(name: str, data_dir: Path) -> tuple[ImageData, ImageData]:
    """(train, test) for one benchmarked data set."""
    if name == "mnist":
        return mnist_splits(data_dir)
    if name == "digits":
        return load_data("digits", "train"), load_data("digits", "test")
    return load_split(name, "train", data_dir), load_split(name, "test", data_dir)


def main() -> None:
    """Train each built-in feature net from scratch in a temporary cache; record accuracy and time."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=Path("/work/shared/data"))
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "feature_nets.json")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's own)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    results, before = {}, machine_info()
    with tempfile.TemporaryDirectory() as cache:
        for name, target in TARGETS.items():
            train, test = splits(name, args.data_dir)
            cpu_start = time.process_time()
            info = load_or_train_classifier(train, test, cache, retrain=True).info
            results[name] = {
                "test_accuracy": round(info["test_accuracy"], 4),
                "target": target,
                "passed": info["test_accuracy"] >= target,
                "train_seconds": info["train_seconds"],
                "cpu_seconds": round(time.process_time() - cpu_start, 2),
                "steps": info["steps"],
                "batch_size": info["batch_size"],
                "n_train": info["n_train"],
                "n_test": info["n_test"],
                "feature_dim": info["dim"],
            }
            print(
                f"{name:14s} acc {info['test_accuracy']:.4f} (target {target})  "
                f"{info['train_seconds']:.1f} s, {info['steps']} steps"
            )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    record = {
        "machine": before,
        "load_average_after": machine_info()["load_average_1_5_15_min"],
        "results": results,
        "note": "train_seconds is wall-clock time on a shared machine; read it with the load averages",
    }
    args.out.write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
