"""The README's main command twice on one commit and seed: once alone, once pinned to one core beside a busy loop.

Writes benchmarks/results/reproducibility.json: each run's wall time and load, the optimiser steps of every model,
every bound and every verdict, and whether they agree. What may differ between the runs is only what is measured in
seconds (timings, and the effects and intervals built from them); everything else must be identical to the last
digit (issue 28's target).

    python benchmarks/reproducibility.py [--quick] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import print_table, write_results

#: keys whose values are measured in seconds, or describe the machine, and so may differ between the two runs
TIMED = ("second", "time", "wall", "machine", "load", "per_s", "throughput", "speed", "timing", "calibration")


def busy_loop() -> subprocess.Popen[bytes]:
    """A CPU-bound Python process pinned to core 0 (the competitor)."""
    code = "while True: pass"
    return subprocess.Popen(["taskset", "-c", "0", sys.executable, "-c", code])


def run_compare(out: Path, pinned: bool, quick: bool) -> dict[str, Any]:
    """One `elbolab compare --data digits` into `out`; its wall time and the load before and after."""
    cmd = [sys.executable, "-m", "elbolab", "compare", "--data", "digits", "--out", str(out)]
    if quick:
        cmd.append("--quick")
    if pinned:
        cmd = ["taskset", "-c", "0", *cmd]
    competitor = busy_loop() if pinned else None
    load_before = os.getloadavg()[0]
    start = time.perf_counter()
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    finally:
        if competitor is not None:
            competitor.kill()
            competitor.wait()
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"compare failed (rc {done.returncode}):\n{done.stderr[-3000:]}")
    return {
        "pinned_beside_busy_loop": pinned,
        "wall_seconds": wall,
        "load_before": load_before,
        "load_after": os.getloadavg()[0],
        "command": " ".join(cmd),
    }


def run_steps(out: Path) -> dict[str, int]:
    """The optimiser steps every run of the comparison took, from the last line of its log."""
    steps = {}
    for log in sorted(out.glob("**/runs/*/log.jsonl")):
        last = None
        for line in log.read_text().splitlines():
            if line.strip():
                last = json.loads(line)
        if last is not None and "step" in last:
            steps[str(log.parent.relative_to(out))] = int(last["step"])
    return steps


def leaves(obj: Any, path: str = "") -> dict[str, Any]:
    """Every scalar in a JSON document by its path, skipping what is measured in seconds (`TIMED`)."""
    found: dict[str, Any] = {}
    if isinstance(obj, dict):
        for key, value in obj.items():
            if any(word in str(key).lower() for word in TIMED):
                continue
            found.update(leaves(value, f"{path}/{key}"))
    elif isinstance(obj, list):
        for i, value in enumerate(obj):
            found.update(leaves(value, f"{path}[{i}]"))
    else:
        found[path] = obj
    return found


def timed_contrasts(contrasts: list[dict[str, Any]]) -> set[int]:
    """Indices of the contrasts whose effect is a timing (their value and interval may differ)."""
    timed = set()
    for i, contrast in enumerate(contrasts):
        text = json.dumps(contrast).lower()
        if "timing" in text or "time" in json.dumps(contrast.get("effect", {})).lower():
            timed.add(i)
    return timed


def timed_prefixes(results: dict[str, Any]) -> set[str]:
    """The paths of every timed contrast (the folded ones and each seed's) and of the attribution table's timing
    cells (the folded table and each seed's): what is measured in seconds."""
    found = {f"/contrasts[{i}]" for i in timed_contrasts(results.get("contrasts", []))}
    tables = [("", results.get("attribution"))]
    for s, seed in enumerate(results.get("seeds", [])):
        found |= {f"/seeds[{s}]/contrasts[{i}]" for i in timed_contrasts(seed.get("contrasts", []))}
        tables.append((f"/seeds[{s}]", seed.get("attribution")))
    for prefix, table in tables:
        if not table:
            continue
        timed = [j for j, o in enumerate(table["outcomes"]) if o["name"] == "time"]
        for r, row in enumerate(table["rows"]):
            found |= {f"{prefix}/attribution/rows[{r}]/cells[{j}]" for j in timed if j < len(row["cells"])}
    return found


def cell_verdicts(results: dict[str, Any]) -> dict[str, str]:
    """Each verdict cell of the attribution table, 'row contrast outcome' → 'verdict (stability)'."""
    table = results.get("attribution") or {"rows": []}
    return {
        f"{r} {row['pairing']['contrast']} {c['outcome']}": f"{c['verdict']} ({c.get('stability')})"
        for r, row in enumerate(table["rows"])
        for c in row["cells"]
        if c.get("verdict")
    }


def verdicts(results: dict[str, Any]) -> dict[str, str]:
    """Each contrast's title → its verdict."""
    return {c.get("title", str(i)): c.get("verdict", "?") for i, c in enumerate(results.get("contrasts", []))}


def differences(a: dict[str, Any], b: dict[str, Any]) -> list[dict[str, Any]]:
    """The leaves (outside timings and timing contrasts) that differ between two results documents."""
    skip = timed_prefixes(a) | timed_prefixes(b)
    la, lb = leaves(a), leaves(b)
    rows = []
    for key in sorted(set(la) | set(lb)):
        if any(key == prefix or key.startswith(prefix + "/") for prefix in skip):
            continue
        x, y = la.get(key), lb.get(key)
        same = x == y or (isinstance(x, float) and isinstance(y, float) and math.isnan(x) and math.isnan(y))
        if not same:
            rows.append({"path": key, "alone": x, "pinned": y})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="compare --quick (a smoke test of this script)")
    parser.add_argument("--keep", type=Path, help="keep both compare folders here")
    parser.add_argument("--out", default="reproducibility", help="results name under benchmarks/results/")
    parser.add_argument(
        "--alone",
        type=Path,
        help="the idle run's compare folder, already written by the same command on the same commit and seed (e.g. "
        "the README's timed run), instead of running it again; its wall time and load come from --alone-record",
    )
    parser.add_argument("--alone-record", type=Path, help="a JSON file with that run's wall_seconds and load_before")
    parser.add_argument("--pinned", type=Path, help="the pinned run's compare folder, already written (see --alone)")
    parser.add_argument("--pinned-record", type=Path, help="a JSON file with that run's wall_seconds and load_before")
    args = parser.parse_args()
    root = args.keep or Path(tempfile.mkdtemp(prefix="elbolab-repro-"))
    runs = {}
    for name, pinned in (("alone", False), ("pinned", True)):
        folder = root / name
        given, given_record = (args.alone, args.alone_record) if name == "alone" else (args.pinned, args.pinned_record)
        if given is not None:
            folder = given
            record = json.loads(given_record.read_text()) if given_record else {}
            runs[name] = {
                "pinned_beside_busy_loop": pinned,
                "wall_seconds": record.get("wall_seconds", float("nan")),
                "load_before": record.get("load_before", float("nan")),
                "command": record.get("command", "elbolab compare --data digits (run before, see --alone/--pinned)"),
                "folder": str(folder),
            }
        else:
            shutil.rmtree(folder, ignore_errors=True)
            print(f"== {name}: compare into {folder}", flush=True)
            runs[name] = run_compare(folder, pinned, args.quick)
        runs[name]["steps"] = run_steps(folder)
        runs[name]["results"] = json.loads((folder / "results.json").read_text())
    alone, pinned = runs["alone"], runs["pinned"]
    diff = differences(alone["results"], pinned["results"])
    same_steps = alone["steps"] == pinned["steps"]
    same_verdicts = verdicts(alone["results"]) == verdicts(pinned["results"])
    cells_a, cells_b = cell_verdicts(alone["results"]), cell_verdicts(pinned["results"])
    changed_cells = {
        k: [cells_a.get(k), cells_b.get(k)] for k in cells_a.keys() | cells_b.keys() if cells_a.get(k) != cells_b.get(k)
    }
    untimed_cells_same = all(k.endswith(" time") for k in changed_cells)
    rows = [
        {
            "run": name,
            "steps": sum(r["steps"].values()),
            "wall_s": r["wall_seconds"],
            "load_before": r["load_before"],
            "verdicts": len(verdicts(r["results"])),
        }
        for name, r in runs.items()
    ]
    print_table(rows, "the main command alone and pinned to one core beside a busy loop")
    print(
        f"\nsteps identical: {same_steps}; verdicts identical: {same_verdicts}; "
        f"other differing values (timings excluded): {len(diff)}; attribution verdicts that differ: "
        f"{changed_cells or 'none'}"
    )
    for row in diff[:20]:
        print(f"  {row['path']}: {row['alone']!r} vs {row['pinned']!r}")
    payload = {
        "how": "benchmarks/reproducibility.py: `elbolab compare --data digits` alone, then pinned to core 0 with a "
        "busy Python loop pinned to the same core; timings (and contrasts whose effect is a timing) excluded "
        "from the comparison",
        "quick": args.quick,
        "identical_steps": same_steps,
        "identical_verdicts": same_verdicts,
        "identical_other_values": not diff,
        "identical_attribution_verdicts_outside_timings": untimed_cells_same,
        "attribution_verdicts_that_differ": changed_cells,
        "differences": diff,
        "runs": {
            name: {k: v for k, v in r.items() if k != "results"} | {"verdicts": verdicts(r["results"])}
            for name, r in runs.items()
        },
    }
    write_results(args.out, payload)


if __name__ == "__main__":
    main()
