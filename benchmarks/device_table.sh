#!/usr/bin/env bash
# The paper-preset CIFAR-10-LT table (7 methods x seeds 0 1 2) in one prepared GPU run.
#
#   python -m benchmarks.pack --dataset cifar10-lt --out cifar10lt.afrpack     # once, ~39 MB
#   benchmarks/device_table.sh cifar10lt.afrpack OUTDIR                        # on the GPU
#   benchmarks/device_table.sh cifar10lt.afrpack OUTDIR --preset smoke         # CPU dry run
#
# (a) calibrates for about a minute (benchmarks.plan: img/s of every kind of loop alone and of
#     J concurrent loops, the projected wall time of each --jobs J); (b) runs the grid with the
#     fastest J, or only bs_cmo, bs_cmo_ft and afr when the full grid does not fit, and says what
#     it left out; (c) writes results.json/results.md/plots from whatever finished, even when the
#     time budget cut the grid. Everything is tee'd into OUTDIR/device_table.log as it happens,
#     so a run killed from outside still leaves its log. Re-running with the same OUTDIR resumes.
#
# Budget: AFR_TABLE_BUDGET_S (default 540 s = 9 min) for the whole script, start to report.
set -uo pipefail

if [ $# -lt 2 ]; then
    echo "usage: $0 PACK OUTDIR [--preset paper|smoke] [extra benchmarks.reproduce args]" >&2
    exit 2
fi
PACK=$1
OUT=$2
shift 2
PRESET=paper
EXTRA=()
while [ $# -gt 0 ]; do
    case "$1" in
        --preset) PRESET=$2; shift 2 ;;
        *) EXTRA+=("$1"); shift ;;
    esac
done
BUDGET=${AFR_TABLE_BUDGET_S:-540}
SEEDS=${AFR_TABLE_SEEDS:-"0 1 2"}

cd "$(dirname "$0")/.."
mkdir -p "$OUT"
exec > >(tee -a "$OUT/device_table.log") 2>&1
export PYTHONUNBUFFERED=1
PY=${PYTHON:-python}
START=$(date +%s)
elapsed() { echo $(( $(date +%s) - START )); }

echo "== device_table.sh $(date -u +%FT%TZ): preset $PRESET, pack $PACK, budget ${BUDGET}s"
$PY - <<'PY' | tee "$OUT/environment.txt"
import platform, torch
print("torch", torch.__version__, "| cuda", torch.version.cuda, "| python", platform.python_version())
if torch.cuda.is_available():
    print("device:", torch.cuda.get_device_name(0))
else:
    print("device: cpu,", torch.get_num_threads(), "threads")
PY
if [ ! -f "$PACK" ]; then echo "no pack at $PACK (write one with python -m benchmarks.pack)" >&2; exit 2; fi
sha256sum "$PACK" | tee -a "$OUT/environment.txt"

# (a) calibration: leave 45 s of the budget for the report and start-up margins
echo "== calibration"
$PY -m benchmarks.plan --preset "$PRESET" --data "$PACK" --seeds $SEEDS \
    --budget-s $(( BUDGET - 45 - $(elapsed) - 60 )) --out "$OUT/plan.json" \
    || { echo "calibration failed" >&2; exit 1; }
read -r JOBS METHODS < <($PY -c "
import json; p = json.load(open('$OUT/plan.json'))
print(p['jobs'], ' '.join(p['methods']))")
echo "== calibration took $(elapsed)s; running --jobs $JOBS --methods $METHODS"

# (b) the grid, cut at the budget (timeout signals the parent, which stops its workers)
LEFT=$(( BUDGET - 45 - $(elapsed) ))
[ "$LEFT" -lt 10 ] && LEFT=10
timeout --signal=TERM --kill-after=15 "$LEFT" \
    $PY -m benchmarks.reproduce --preset "$PRESET" --dataset cifar10-lt --data "$PACK" \
        --seeds $SEEDS --methods $METHODS --jobs "$JOBS" --out "$OUT" --resume --no-progress \
        "${EXTRA[@]}"
RC=$?
[ "$RC" -eq 124 ] && echo "== the budget cut the grid after $(elapsed)s; reporting what finished"

# (c) the report from the finished checkpoints (all of them when nothing was cut)
$PY -m benchmarks.reproduce --preset "$PRESET" --dataset cifar10-lt --data "$PACK" \
    --seeds $SEEDS --methods $METHODS --out "$OUT" --report-only --no-progress "${EXTRA[@]}"
echo "== device_table.sh done in $(elapsed)s (grid exit status $RC)"
rm -rf "$OUT/ckpt/"*.tmp* 2>/dev/null
exit 0
