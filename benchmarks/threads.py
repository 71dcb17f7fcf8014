"""Benchmark: training throughput at 1 and 2 compute threads, idle and beside a CPU-bound busy loop.

    python benchmarks/threads.py [--steps 300] [--threads 1,2] [--competitors 1] [--quick]

Times `--steps` optimiser steps of compare's VAE and diffusion model on digits (compare's sizes, batch and
learning rate; after 3 untimed warm-up steps), each configuration in a fresh process, so that the thread count
and the OpenMP settings (OMP_WAIT_POLICY=PASSIVE rows for more than one thread: idle worker threads sleep instead
of spinning) hold from torch's start. Each configuration runs alone, then beside `--competitors` Python busy loops
(unpinned: on a 2-core machine one core stays free for one competitor). A row gives the seconds, steps per second,
the throughput beside the load over the same configuration idle, whether its weights are bit-identical to the idle
run's, and the load average before it. Writes benchmarks/results/threads.json. Issue 28 asks that one competing
process leave a run at least half its idle throughput; `train.threads` defaults to the fastest layout that does.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import print_table, write_results

WARMUP = 3


def child(kind: str, threads: int, steps: int) -> dict[str, Any]:
    """In this fresh process: `steps` timed training steps of compare's `kind` on digits at `threads` threads."""
    import tempfile

    import torch

    from elbolab.data import load_data
    from elbolab.experiments.compare import CompareConfig, budgeted_run, with_preset
    from elbolab.train.api import use_threads
    from elbolab.train.budget import Budget
    from elbolab.train.loop import Trainer
    from elbolab.train.run import build_model

    use_threads(threads)
    train, test = load_data("digits", "train"), load_data("digits", "test")
    cfg = with_preset(CompareConfig(device="cpu"), test.shape[-1])
    run = budgeted_run(kind, cfg, test, Budget(WARMUP + steps, "steps"))
    run = replace(run, train=replace(run.train, threads=threads))
    torch.manual_seed(run.train.seed)
    with tempfile.TemporaryDirectory() as folder:
        trainer = Trainer(build_model(run), train, test, run.train, Path(folder), progress=False)
        for _ in range(WARMUP):
            trainer.train_step()
        start = time.perf_counter()
        for _ in range(steps):
            trainer.train_step()
        seconds = time.perf_counter() - start
    digest = hashlib.sha256()
    for name, value in sorted(trainer.model.state_dict().items()):
        digest.update(name.encode())
        digest.update(value.detach().cpu().contiguous().numpy().tobytes())
    return {"seconds": seconds, "weights_sha256": digest.hexdigest(), "torch_threads": torch.get_num_threads()}


def busy_loops(n: int) -> list[subprocess.Popen[bytes]]:
    """`n` CPU-bound Python processes (the competitors)."""
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]


def measure(kind: str, threads: int, passive: bool, competitors: int, steps: int) -> dict[str, Any]:
    """One configuration in a fresh process, with `competitors` busy loops beside it; its row."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    env.pop("OMP_WAIT_POLICY", None)
    if passive:
        env["OMP_WAIT_POLICY"] = "PASSIVE"
    load = os.getloadavg()[0]
    rivals = busy_loops(competitors)
    try:
        done = subprocess.run(
            [sys.executable, __file__, "--child", kind, str(threads), str(steps)],
            capture_output=True,
            text=True,
            env=env,
            check=False,
        )
    finally:
        for rival in rivals:
            rival.kill()
            rival.wait()
    if done.returncode != 0:
        raise SystemExit(f"{kind} at {threads} threads failed (rc {done.returncode}):\n{done.stderr[-3000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return {
        "model": kind,
        "threads": threads,
        "wait_policy": "PASSIVE" if passive else "default",
        "competitors": competitors,
        "steps": steps,
        "seconds": result["seconds"],
        "steps_per_s": steps / result["seconds"],
        "load_before": load,
        "weights_sha256": result["weights_sha256"],
    }


def layouts(threads: list[int]) -> list[tuple[int, bool]]:
    """(threads, passive wait policy) to measure: each count, and more than one also with PASSIVE."""
    return [(t, False) for t in threads] + [(t, True) for t in threads if t > 1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--threads", default="1,2", help="thread counts, comma-separated")
    parser.add_argument("--kinds", default="vae,diffusion")
    parser.add_argument("--competitors", type=int, default=1, help="busy loops beside the loaded runs")
    parser.add_argument("--quick", action="store_true", help="5 steps of each: checks that the benchmark runs")
    parser.add_argument("--out", default=None, help="results folder (default benchmarks/results)")
    parser.add_argument("--child", nargs=3, metavar=("KIND", "THREADS", "STEPS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, threads, steps = args.child
        print(json.dumps(child(kind, int(threads), int(steps))))
        return
    steps = 5 if args.quick else args.steps
    rows = []
    for kind in args.kinds.split(","):
        for threads, passive in layouts([int(t) for t in args.threads.split(",")]):
            idle = measure(kind, threads, passive, 0, steps)
            loaded = measure(kind, threads, passive, args.competitors, steps)
            for row in (idle, loaded):
                row["vs_idle"] = idle["seconds"] / row["seconds"]
                row["same_weights_as_idle"] = row["weights_sha256"] == idle["weights_sha256"]
                rows.append(row)
    print_table([{k: v for k, v in r.items() if k != "weights_sha256"} for r in rows], "training throughput")
    payload = {
        "command": " ".join(["python", "benchmarks/threads.py", *sys.argv[1:]]),
        "how": f"{steps} timed steps after {WARMUP} warm-up steps per configuration, each in a fresh process; "
        f"loaded rows beside {args.competitors} unpinned Python busy loop(s); vs_idle = idle seconds / seconds",
        "quick": args.quick,
        "rows": rows,
    }
    kwargs = {} if args.out is None else {"folder": Path(args.out)}
    write_results("threads-quick" if args.quick else "threads", payload, **kwargs)


if __name__ == "__main__":
    main()
