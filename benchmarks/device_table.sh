#!/usr/bin/env bash
# The paper-preset table (Table 1's rows x seeds 0 1 2) in one prepared GPU run, on the data
# set of the bundle's pack (CIFAR-10-LT or CIFAR-100-LT, the paper's).
#
#   python -m benchmarks.bundle .bundle                                 # here, once: pack + wheels
#   python -m benchmarks.bundle .bundle100 --dataset cifar100-lt        # the paper's data set
#   benchmarks/device_table.sh .bundle WORKDIR --results "$OUT"          # on the lent GPU
#   benchmarks/device_table.sh .bundle WORKDIR --recipe authors          # each row as its code
#   benchmarks/device_table.sh .bundle WORKDIR --preset smoke            # CPU dry run
#
# The first argument is a bundle folder (benchmarks.bundle: the data pack and the wheels the
# lent image lacks) or a bare pack file. In order, each step bounded so that a table comes back:
#   (0) installs the bundle's wheels offline into a temporary folder on PYTHONPATH;
#   (1) preflight (a few seconds): device, torch / torchvision / torchattacks versions and an
#       import of afr_aug, or one line naming what is missing, and stops (exit 3);
#   (2) calibration under `timeout` (benchmarks.plan: img/s alone and of J concurrent loops, the
#       fixed costs of a run, the --jobs scheduler replayed against what is left of the budget);
#       if it fails or runs out of time, the default plan (one bs_cmo feeding every stage-2 seed);
#   (3) the planned grid, cut at the budget;
#   (4) the report from what finished, unfinished runs as partial rows;
#   (5) the results folder: at most 8 files of at most 16 MiB (what a device call brings back):
#       results.json, results.md, plan.json, device_table.log, environment.txt, logs.tar.gz (the
#       per-run logs, with the finished bs_cmo checkpoints when they fit), shot_accuracy.png and
#       plots.tar (the other figures).
# Everything is tee'd into RESULTS/device_table.log as it happens, so a run killed from outside
# still leaves its log. Re-running with the same WORKDIR resumes.
#
# Budget: AFR_TABLE_BUDGET_S (default 540 s = 9 min) for the whole script, start to results;
# AFR_TABLE_CALIBRATION_S (default 150) caps calibration; AFR_TABLE_REPORT_S (default 45) is
# kept for the report.
#
# Interpreter: $PYTHON, the Python that has torch (default: python3 from PATH, else python);
# every python step of this script runs with it, e.g. PYTHON=.venv/bin/python.
set -uo pipefail

if [ $# -lt 2 ]; then
    echo "usage: $0 BUNDLE|PACK WORKDIR [--results DIR] [--preset paper|smoke] [--recipe paper|authors] [reproduce args]" >&2
    exit 2
fi
SRC=$1
WORK=$2
shift 2
PRESET=paper
RECIPE=paper
RESULTS=
EXTRA=()
while [ $# -gt 0 ]; do
    case "$1" in
        --preset) PRESET=$2; shift 2 ;;
        --recipe) RECIPE=$2; shift 2 ;;
        --results) RESULTS=$2; shift 2 ;;
        *) EXTRA+=("$1"); shift ;;
    esac
done
BUDGET=${AFR_TABLE_BUDGET_S:-540}
CALIB=${AFR_TABLE_CALIBRATION_S:-150}
REPORT_S=${AFR_TABLE_REPORT_S:-45}
SEEDS=${AFR_TABLE_SEEDS:-"0 1 2"}
START=$(date +%s)
DEADLINE=$(( START + BUDGET - REPORT_S ))
MAX_FILE=$(( 16 * 1024 * 1024 ))

# absolute paths, then work from the repository root (python -m benchmarks.* resolves there)
mkdir -p "$WORK" "${RESULTS:=$WORK/results}"
SRC=$(cd "$(dirname "$SRC")" && pwd)/$(basename "$SRC")
WORK=$(cd "$WORK" && pwd)
RESULTS=$(cd "$RESULTS" && pwd)
cd "$(dirname "$0")/.."
exec > >(tee -a "$RESULTS/device_table.log") 2>&1
export PYTHONUNBUFFERED=1
PY=${PYTHON:-$(command -v python3 || command -v python || echo python3)}
elapsed() { echo $(( $(date +%s) - START )); }
echo "== device_table.sh $(date -u +%FT%TZ): preset $PRESET, $SRC, budget ${BUDGET}s, python $PY"

# (0) the bundle: its pack, and its wheels installed offline into a temporary target
WHEELS=()
if [ -d "$SRC" ]; then
    PACK=$(ls "$SRC"/*.afrpack 2>/dev/null | head -n 1)
    for w in "$SRC"/wheels/*.whl; do [ -f "$w" ] && WHEELS+=("$w"); done
else
    PACK=$SRC
fi
if [ ${#WHEELS[@]} -gt 0 ]; then
    SITE=$(mktemp -d "${TMPDIR:-/tmp}/afr-site.XXXXXX")
    if ! "$PY" -m pip install -q --no-index --no-deps --no-compile --disable-pip-version-check \
            --target "$SITE" "${WHEELS[@]}"; then
        echo "device_table.sh: could not install the bundle's wheels (${WHEELS[*]}) with $PY -m pip" >&2
        exit 3
    fi
    export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
    echo "== installed $(for w in "${WHEELS[@]}"; do basename "$w"; done | tr '\n' ' ')into $SITE"
fi

# (1) preflight: what we run on, and everything importable, in a few seconds. Run as a file,
# not as afr_aug.bench.preflight: importing the package would need what it is checking for.
"$PY" -c 'import runpy, sys; sys.argv[0] = "afr-aug preflight"; runpy.run_path("afr_aug/bench/preflight.py", run_name="__main__")' \
    --out "$RESULTS/environment.txt" || exit 3
if [ -z "$PACK" ] || [ ! -f "$PACK" ]; then
    echo "device_table.sh: no data pack in $SRC (write a bundle with python -m benchmarks.bundle DIR)" >&2
    exit 2
fi
sha256sum "$PACK" | tee -a "$RESULTS/environment.txt"
DATASET=$("$PY" -c "from afr_aug.bench.pack_format import read_meta; print(read_meta('$PACK')['dataset'])") \
    || { echo "device_table.sh: $PACK is not a data pack" >&2; exit 2; }
echo "== preflight done after $(elapsed)s: $DATASET, recipe $RECIPE"

# (2) calibration, bounded; the plan gets what is left of the budget once it is done
echo "== calibration (at most ${CALIB}s)"
PLAN="$RESULTS/plan.json"
rm -f "$PLAN"
timeout --signal=TERM --kill-after=10 "$CALIB" \
    "$PY" -m benchmarks.plan --preset "$PRESET" --dataset "$DATASET" --recipe "$RECIPE" \
        --data "$PACK" --seeds $SEEDS --deadline "$DEADLINE" --spawned-at "$(date +%s.%N)" --out "$PLAN"
RC=$?
if [ "$RC" -ne 0 ] || [ ! -s "$PLAN" ]; then
    echo "== calibration failed (exit $RC) after $(elapsed)s: the default plan"
    "$PY" -m benchmarks.plan --default-plan --seeds $SEEDS --reason "calibration exit $RC" --out "$PLAN" \
        || { echo "device_table.sh: could not write even the default plan" >&2; exit 1; }
fi
read -r JOBS STAGE1 METHODS < <("$PY" -c "
import json; p = json.load(open('$PLAN'))
print(p['jobs'], 'none' if p.get('stage1_seed') is None else p['stage1_seed'], ' '.join(p['methods']))")
GRID=(--preset "$PRESET" --dataset "$DATASET" --recipe "$RECIPE" --data "$PACK" --seeds $SEEDS --methods $METHODS
      --out "$WORK" --no-progress)
[ "$STAGE1" != none ] && GRID+=(--stage1-seed "$STAGE1")
echo "== calibration took $(elapsed)s; running --jobs $JOBS ${GRID[*]}"

# (3) the grid, cut at the deadline (timeout signals the parent, which stops its workers)
LEFT=$(( DEADLINE - $(date +%s) ))
[ "$LEFT" -lt 10 ] && LEFT=10
timeout --signal=TERM --kill-after=15 "$LEFT" \
    "$PY" -m benchmarks.reproduce "${GRID[@]}" --jobs "$JOBS" --isolate --resume "${EXTRA[@]}"
RC=$?
[ "$RC" -eq 124 ] && echo "== the budget cut the grid after $(elapsed)s; reporting what finished"
rm -f "$WORK/ckpt/"*.tmp* 2>/dev/null

# (4) the report: finished runs, and unfinished ones as partial rows
"$PY" -m benchmarks.reproduce "${GRID[@]}" --report-only --partial "${EXTRA[@]}"
echo "== device_table.sh done in $(elapsed)s (grid exit status $RC)"

# (5) the results folder: at most 8 files of at most 16 MiB
for f in results.json results.md shot_accuracy.png; do
    [ -f "$WORK/$f" ] && cp "$WORK/$f" "$RESULTS/"
done
PLOTS=$(cd "$WORK" && ls *.png 2>/dev/null | grep -v '^shot_accuracy.png$')
[ -n "$PLOTS" ] && (cd "$WORK" && tar -cf "$RESULTS/plots.tar" $PLOTS)
CKPTS=$(cd "$WORK" && ls ckpt/bs_cmo-seed*.pt 2>/dev/null)
(cd "$WORK" && tar -czf "$RESULTS/logs.tar.gz" logs $CKPTS 2>/dev/null)
if [ "$(stat -c %s "$RESULTS/logs.tar.gz" 2>/dev/null || echo 0)" -gt "$MAX_FILE" ]; then
    (cd "$WORK" && tar -czf "$RESULTS/logs.tar.gz" logs)     # the checkpoints do not fit
fi
for f in "$RESULTS"/*; do
    [ "$(stat -c %s "$f")" -gt "$MAX_FILE" ] && echo "== WARNING: $f is over 16 MiB and will not come back"
done
echo "== results in $RESULTS: $(ls "$RESULTS" | tr '\n' ' ')($(ls "$RESULTS" | wc -l) files)"
sleep 1   # let tee write the last lines before a caller collects the folder
exit 0
