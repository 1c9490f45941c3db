#!/usr/bin/env bash
# Issue 23's unfinished run, continued on this or another machine:
#
#   bash benchmarks/results/cpu-cifar10lt-200/resume.sh [RUNS]     (RUNS default: ../runs-23)
#
# MiSLAS with stage 1's weight decay at 5e-4 (rows mislas_stage1[wd=0.0005] and
# mislas[wd=0.0005], the check of its stage-1 gap) runs at 3d427fd, the commit that added
# --weight-decay. This sets up what is missing, never overwriting a checkpoint that is further
# along: the worktree of 3d427fd beside the clone, and RUNS/cpu-cifar10lt-200/ckpt with the
# committed partial checkpoints of partial/. Then it starts the run (one thread) in the
# background, logging to RUNS/cpu-cifar10lt-200/logs/mislas-wd-seed0.log, and returns.
# DRY=1 prints the command instead.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
repo=$(git -C "$here" rev-parse --show-toplevel)
runs=$(mkdir -p "${1:-$repo/../runs-23}" && cd "${1:-$repo/../runs-23}" && pwd)
py=${PY:-$repo/.venv/bin/python}
wdt=$repo/../exp-23c
[ -e "$wdt/.git" ] || git -C "$repo" worktree add -f --detach "$wdt" 3d427fd
out=$runs/cpu-cifar10lt-200
mkdir -p "$out/ckpt" "$out/logs"
for f in "$here"/partial/*.pt; do [ ! -e "$f" ] || cp -n "$f" "$out/ckpt/"; done
cmd=(env AFR_DATA="${AFR_DATA:-$repo/../shared/data}" OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
    PYTHONPATH="$wdt" "$py" -m benchmarks.reproduce --preset paper --dataset cifar10-lt
    --recipe authors --methods mislas --weight-decay 5e-4 --seeds 0 --amp --threads 1
    --resume --no-progress --out "$out")
if [ -n "${DRY:-}" ]; then echo "(cd $wdt && ${cmd[*]})"; exit; fi
cd "$wdt" && nohup setsid "${cmd[@]}" >> "$out/logs/mislas-wd-seed0.log" 2>&1 < /dev/null &
echo "MiSLAS with weight decay 5e-4 runs in the background; log: $out/logs/mislas-wd-seed0.log"
