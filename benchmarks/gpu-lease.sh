#!/usr/bin/env bash
# benchmarks/gpu.py on a lent GPU across calls of at most 10 minutes (benchmarks/gpu-plan.md):
#   benchmarks/gpu-lease.sh start SECONDS GPU.PY-ARGS...  launch it in its own process session (it outlives the
#                                                         call), then wait as `wait` does
#   benchmarks/gpu-lease.sh wait SECONDS                  wait up to SECONDS for it to end
# Both copy its JSON files and log into $OUT (every part writes its file as it goes) and print the log's end.
set -u
dir=${GPU_RUN_DIR:-/tmp/elbolab-gpu}
verb=${1:?start or wait}
secs=${2:?seconds to wait}
shift 2
if [ "$verb" = start ]; then
    mkdir -p "$dir/results"
    PYTHONUNBUFFERED=1 setsid python3 benchmarks/gpu.py --results-dir "$dir/results" "$@" >"$dir/log" 2>&1 </dev/null &
    echo $! >"$dir/pid"
elif [ "$verb" != wait ]; then
    echo "gpu-lease.sh: the verb is start or wait, got $verb" >&2
    exit 2
fi
pid=$(cat "$dir/pid")
end=$((SECONDS + secs))
while kill -0 "$pid" 2>/dev/null && [ "$SECONDS" -lt "$end" ]; do sleep 2; done
mkdir -p "${OUT:-$dir/out}"
cp "$dir"/results/*.json "$dir/log" "${OUT:-$dir/out}/" 2>/dev/null
tail -n 40 "$dir/log"
if kill -0 "$pid" 2>/dev/null; then
    echo "gpu.py still running (pid $pid): call 'benchmarks/gpu-lease.sh wait SECONDS' next"
else
    echo "gpu.py finished"
fi
