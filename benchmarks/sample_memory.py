"""Benchmark: peak resident memory of `elbolab sample` for 1,000 and 100,000 samples.

    python benchmarks/sample_memory.py [--sizes 1000 100000] [--batch-size 1000]

Trains a tiny VAE on digits (a few seconds), then runs `elbolab sample` in a fresh process per
case — to a folder of PNGs and to an .npz, in batches of `--batch-size`, and once unbatched
(`--batch-size N`) for contrast — and reads each process's peak RSS from the kernel (wait4's
ru_maxrss). A baseline process draws one sample, so the figure that matters is the growth over it.
Writes benchmarks/results/sample_memory.json with the machine and its load.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import print_table, write_results

SRC = Path(__file__).resolve().parents[1] / "src"


def elbolab(*args: str) -> tuple[float, float]:
    """Run `elbolab ARGS` in a fresh process; (peak RSS in MiB, seconds)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(SRC), os.environ.get("PYTHONPATH")]))}
    start = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "elbolab.cli", *args], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"elbolab {' '.join(args)} failed: {proc.stderr.read().decode()[-400:]}")
    return usage.ru_maxrss / 1024, seconds  # Linux reports KiB


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 100_000])
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument(
        "--unbatched",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also time one unbatched .npz per size, for contrast",
    )
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "vae"
        elbolab(
            "train",
            "vae",
            "--out",
            str(run),
            "--steps",
            "50",
            "--quiet",
            "--set",
            "model.net=tiny",
            "--set",
            "train.eval_every=0",
            "--set",
            "train.eval_n=64",
        )
        base_mib, _ = elbolab("sample", str(run), "--n", "1", "--out", str(Path(tmp) / "one.npz"))
        rows = []
        for n in args.sizes:
            cases = [("png folder", f"pngs-{n}", args.batch_size), ("npz", f"s-{n}.npz", args.batch_size)]
            if args.unbatched:
                cases.append(("npz, unbatched", f"u-{n}.npz", n))
            for what, name, batch in cases:
                out = Path(tmp) / name
                peak, seconds = elbolab(
                    "sample", str(run), "--n", str(n), "--batch-size", str(batch), "--out", str(out)
                )
                size = sum(p.stat().st_size for p in out.iterdir()) if out.is_dir() else out.stat().st_size
                rows.append(
                    {
                        "n": n,
                        "output": what,
                        "batch_size": batch,
                        "peak_rss_mib": round(peak, 1),
                        "over_baseline_mib": round(peak - base_mib, 1),
                        "seconds": round(seconds, 1),
                        "output_mib": round(size / 2**20, 2),
                        "array_mib": round(n * 64 / 2**20, 2),
                    }
                )
                print(rows[-1], flush=True)
    print_table(rows, f"elbolab sample: peak resident memory (baseline, one sample: {base_mib:.1f} MiB)")
    write_results(
        "sample_memory", {"baseline_rss_mib": round(base_mib, 1), "model": "vae (net=tiny), digits 8×8", "rows": rows}
    )


if __name__ == "__main__":
    main()
