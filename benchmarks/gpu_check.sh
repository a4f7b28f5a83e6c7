#!/usr/bin/env bash
# The GPU checks in one go, on a CUDA machine with this repository and its venv:
#
#     make install && bash benchmarks/gpu_check.sh
#
# 1. the `cuda`-marked tests (tests/extract/test_cuda.py, tests/train/test_cuda.py): wav2vec / HF encoders with
#    bf16 batches == single utterances (and ~ the CPU's fp32), the pipeline's recorded dtype, torchrun with two
#    processes sharing one GPU; train_pooled, the frame-level heads, the cuDNN Bi-LSTM and the bimodal head on
#    CUDA == on the CPU;
# 2. the extraction benchmark at IEMOCAP size (5531 synthetic 2-5 s clips, wav2vec-large with random weights,
#    pipeline vs the naive loop, both in the pipeline's compute dtype);
# 3. the training benchmark at IEMOCAP size (5531 x 200-500 frames x 512 dims; every head, 5-fold CV).
#
# Each step has its own time limit (about 8 minutes in all); the figures go to results/bench/*.json (and to
# $OUT/bench/ when $OUT is set), and one table at the end says what passed and what was measured.
# Environment: VENV (default .venv), BENCH_WORKDIR (default /tmp/ser-bench), T_TESTS / T_EXTRACT / T_TRAIN
# (seconds per step), BENCH_N (default 5531), NAIVE_N (default 200).
set -u
cd "$(dirname "$0")/.."
PY="${VENV:-.venv}/bin/python"
WORK="${BENCH_WORKDIR:-/tmp/ser-bench}"
N="${BENCH_N:-5531}"
NAIVE_N="${NAIVE_N:-200}"
T_TESTS="${T_TESTS:-170}"
T_EXTRACT="${T_EXTRACT:-170}"
T_TRAIN="${T_TRAIN:-150}"
LOG="$WORK/gpu_check"
mkdir -p "$LOG"
START=$(date +%s)

if [ ! -x "$PY" ]; then
  echo "gpu_check: $PY not found: run 'make install' first (or set VENV=/path/to/venv)"; exit 2
fi
if ! "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  echo "gpu_check: no CUDA GPU visible to torch ($("$PY" -c 'import torch; print(torch.__version__)')): nothing to check"
  exit 2
fi
"$PY" -c "import torch; p = torch.cuda.get_device_properties(0); print(f'gpu_check: {p.name}, {p.total_memory / 2**30:.0f} GiB, torch {torch.__version__}, CUDA {torch.version.cuda}, bf16 {torch.cuda.is_bf16_supported()}')"

declare -a NAMES STATUS SECS
step() {  # step NAME LIMIT_S COMMAND...
  local name=$1 limit=$2; shift 2
  echo; echo "=== $name (limit ${limit} s): $*"
  local t0=$SECONDS
  timeout --kill-after=10 "$limit" "$@" > "$LOG/$name.log" 2>&1
  local rc=$?
  tail -n 25 "$LOG/$name.log"
  local st=ok
  if [ $rc -eq 124 ] || [ $rc -eq 137 ]; then st="TIMEOUT"; elif [ $rc -ne 0 ]; then st="FAILED (rc $rc)"; fi
  NAMES+=("$name"); STATUS+=("$st"); SECS+=($((SECONDS - t0)))
}

step cuda-tests "$T_TESTS" "$PY" -m pytest -q -p no:cacheprovider -m cuda -rs \
  tests/extract/test_cuda.py tests/train/test_cuda.py
step bench-extract "$T_EXTRACT" "$PY" benchmarks/bench_extract.py --workload iemocap-synth \
  --feature wav2vec:random-large --n "$N" --naive-n "$NAIVE_N" --device cuda --workers 8 --workdir "$WORK"
step bench-train "$T_TRAIN" "$PY" benchmarks/bench_train.py --n "$N" --device cuda --workdir "$WORK/train" \
  --frame-epochs 1 --naive-steps 100

if [ -n "${OUT:-}" ] && [ -d results/bench ]; then mkdir -p "$OUT/bench" "$OUT/logs"; cp results/bench/*.json "$OUT/bench/" 2>/dev/null; cp "$LOG"/*.log "$OUT/logs/"; fi

echo; echo "=== gpu_check summary"
for i in "${!NAMES[@]}"; do printf '%s\t%s\t%s\n' "${NAMES[$i]}" "${STATUS[$i]}" "${SECS[$i]}"; done > "$LOG/steps.tsv"
"$PY" - "$LOG/steps.tsv" "$LOG/cuda-tests.log" "$N" "$START" <<'PYEOF'
import glob, json, os, re, sys
from pathlib import Path
steps = [line.rstrip("\n").split("\t") for line in open(sys.argv[1]) if line.strip()]
tests_log, n, start = Path(sys.argv[2]), sys.argv[3], float(sys.argv[4])
fresh = lambda pattern: sorted(f for f in glob.glob(pattern) if os.path.getmtime(f) >= start)  # this run's only
print("| check | status | wall (s) | result |")
print("|---|---|---:|---|")
for name, status, secs in steps:
    result = ""
    if name == "cuda-tests" and tests_log.exists():
        last = [l for l in tests_log.read_text().splitlines() if re.search(r"\d+ (passed|failed|skipped)", l)]
        result = last[-1].strip("= ") if last else ""
    if name == "bench-extract":
        for f in fresh(f"results/bench/bench_extract-iemocap-synth-*-n{n}-cuda.json"):
            rows = json.load(open(f))["rows"]
            result += "; ".join(f"{r['feature']} {r['mode']} ({r['compute_dtype']}): x{r['rtf']:.0f} real time"
                                + (f", {r['speedup_vs_naive']}x naive" if r.get("speedup_vs_naive") else "")
                                for r in rows) + f" [{f}]"
    if name == "bench-train":
        for f in fresh(f"results/bench/bench_train-n{n}-*-cuda.json"):
            res = json.load(open(f))["results"]
            result += "; ".join(f"{r['head']}: {r['total_s']} s" for r in res) + f" [{f}]"
    print(f"| {name} | {status} | {secs} | {result} |")
PYEOF
for s in "${STATUS[@]}"; do [ "$s" = ok ] || exit 1; done
