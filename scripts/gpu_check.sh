#!/usr/bin/env bash
# GPU check anyone can run on one GPU, in under 8 minutes: the CUDA-marked tests, each recipe's `gpu` preset for
# about a minute of training (then its evaluation and report), and the speed benchmarks on CUDA (quick).
# Everything goes into OUT_DIR (logs, run directories, benchmark tables) with one summary.md to read.
#
#     bash scripts/gpu_check.sh OUT_DIR            # data from TZOO_DATA_DIR, else data/ (downloading there)
#
# On a machine without CUDA it still passes: the CUDA tests report their skip reason, and the GPU runs and
# benchmarks are skipped with a line saying so. Exit status: non-zero when a step that ran failed.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${1:?usage: scripts/gpu_check.sh OUT_DIR}
mkdir -p "$OUT/runs"
OUT=$(cd "$OUT" && pwd)
PY=${PYTHON:-python3}
SUMMARY="$OUT/summary.md"
MINUTES=${GPU_CHECK_MINUTES:-1.0}   # training minutes per recipe
failed=0

say() { echo "$*" | tee -a "$SUMMARY"; }
step() {  # step NAME TIMEOUT_S CMD...: run, log to OUT/NAME.log, one summary line with status and wall time
    local name=$1 limit=$2; shift 2
    local start=$SECONDS
    timeout "$limit" "$@" >"$OUT/$name.log" 2>&1
    local rc=$?
    local status="ok"
    [ $rc -ne 0 ] && { status="FAILED (exit $rc, see $name.log)"; failed=1; }
    [ $rc -eq 124 ] && status="FAILED (timed out after ${limit}s, see $name.log)"
    say "- $name: $status, $((SECONDS - start)) s"
}

: >"$SUMMARY"
say "# GPU check, $(date -u '+%Y-%m-%d %H:%M UTC')"
say ""
"$PY" - <<'EOF' | tee -a "$SUMMARY"
import platform, torch
print(f"- torch {torch.__version__}, python {platform.python_version()}")
if torch.cuda.is_available():
    p = torch.cuda.get_device_properties(0)
    print(f"- device: {p.name}, {p.total_memory / 2**30:.0f} GiB, capability {p.major}.{p.minor}, CUDA {torch.version.cuda}")
else:
    print("- device: no CUDA device (the GPU steps below are skipped)")
EOF
HAS_CUDA=$("$PY" -c "import torch; print(int(torch.cuda.is_available()))")
say ""
say "## Steps"

# 1. the CUDA-marked tests (they skip, saying why, where there is no GPU)
step cuda-tests 180 "$PY" -m pytest -q -rs -m cuda -p no:cacheprovider tests/gpu  # the CUDA tests live there
grep -E "passed|skipped|failed|error" "$OUT/cuda-tests.log" | tail -1 | sed 's/^/  - pytest: /' | tee -a "$SUMMARY"

if [ "$HAS_CUDA" = "1" ]; then
    # 2. each recipe's gpu preset: about a minute of training, then its evaluation and report
    step gpt 150 "$PY" recipes/gpt.py --preset gpu --max-minutes "$MINUTES" --out "$OUT/runs/gpt"
    step translate 180 "$PY" recipes/translate.py --preset gpu --max-minutes "$MINUTES" --out "$OUT/runs/translate"
    step classify 150 "$PY" recipes/classify.py --preset gpu --max-minutes "$MINUTES" --out "$OUT/runs/classify"
    step mlm-pretrain 150 "$PY" recipes/mlm.py pretrain --preset gpu --corpus sst2 --max-minutes "$MINUTES" \
        --out "$OUT/runs/mlm-pretrain"
    # 3. the speed benchmarks on CUDA, quick
    mkdir -p "$OUT/benchmarks"
    step benchmarks 120 "$PY" benchmarks/run.py --device cuda --quick --out "$OUT/benchmarks/cuda-quick.md"
else
    say "- recipes' gpu presets: skipped (no CUDA device)"
    say "- benchmarks/run.py --device cuda: skipped (no CUDA device)"
fi

# 4. one table of what the runs reported
"$PY" - "$OUT" <<'EOF' | tee -a "$SUMMARY"
import json, sys
from pathlib import Path
runs = sorted(Path(sys.argv[1], "runs").glob("*/report.json"))
if runs:
    print("\n## Runs (gpu presets, capped at a minute of training)\n")
    print("| run | steps | train tokens/s | wall s | held-out figures |")
    print("| --- | ---: | ---: | ---: | --- |")
    for path in runs:
        r = json.loads(path.read_text())
        figures = "; ".join(f"{split} " + ", ".join(f"{k} {v:.4g}" for k, v in m.items()
                                                    if isinstance(v, float) and k in ("loss", "ppl", "bleu", "accuracy",
                                                                                      "masked_accuracy"))
                            for split, m in (r.get("eval") or {}).items())
        print(f"| {path.parent.name} | {r.get('steps')} | {r.get('train_tokens_per_s') or 0:,.0f} | "
              f"{r.get('wall_s') or 0:.0f} | {figures} |")
bench = sorted(Path(sys.argv[1], "benchmarks").glob("*.md")) if Path(sys.argv[1], "benchmarks").is_dir() else []
for path in bench:
    print(f"\n## Benchmark: {path.name}\n")
    print(path.read_text())
EOF
say ""
say "Total: $SECONDS s."
exit $failed
