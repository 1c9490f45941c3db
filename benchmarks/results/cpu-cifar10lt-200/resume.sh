#!/usr/bin/env bash
# Issue 23's unfinished 200-epoch rows, continued on this or another machine:
#
#   bash benchmarks/results/cpu-cifar10lt-200/resume.sh [RUNS]     (RUNS default: ../runs-23)
#
# It sets up what is missing, never overwriting a checkpoint that is further along: worktrees of
# the fixed commits beside the clone; RUNS/cpu-cifar10lt-200/ckpt with the committed partial
# checkpoints of partial/; RUNS/cpu-cifar10lt-200-ibdense/ckpt with those of partial/ibdense/,
# else IB's epoch-32 checkpoint. Then it starts two lanes of one thread each in the background
# (logs in RUNS/*/logs) and returns. Remix and the IB rerun began at 65d7de5 (every epoch
# evaluated from the recipe's first change) and run there; MiSLAS with stage 1's weight decay at
# 5e-4 (the check of its stage-1 gap) runs at 3d427fd, which added --weight-decay.
# DRY=1 prints the commands instead.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
repo=$(git -C "$here" rev-parse --show-toplevel)
runs=$(mkdir -p "${1:-$repo/../runs-23}" && cd "${1:-$repo/../runs-23}" && pwd)
py=${PY:-$repo/.venv/bin/python}
new=$repo/../exp-23b wdt=$repo/../exp-23c
[ -e "$new/.git" ] || git -C "$repo" worktree add -f --detach "$new" 65d7de5
[ -e "$wdt/.git" ] || git -C "$repo" worktree add -f --detach "$wdt" 3d427fd
out=$runs/cpu-cifar10lt-200 ib=$runs/cpu-cifar10lt-200-ibdense
mkdir -p "$out/ckpt" "$out/logs" "$ib/ckpt" "$ib/logs"
for f in "$here"/partial/*.pt; do [ ! -e "$f" ] || cp -n "$f" "$out/ckpt/"; done
for f in "$here"/partial/ibdense/*.pt; do [ ! -e "$f" ] || cp -n "$f" "$ib/ckpt/"; done
[ -e "$ib/ckpt/ib-seed0.pt" ] || git -C "$repo" show \
    2aff89e:benchmarks/results/cpu-cifar10lt-200/partial/ib-seed0.pt > "$ib/ckpt/ib-seed0.pt"

lane() {  # lane WORKTREE OUT METHOD [FLAG...]: one row, one thread, resumable, logged
    local wt=$1 dst=$2 m=$3
    shift 3
    local cmd=(env AFR_DATA="${AFR_DATA:-$repo/../shared/data}" OMP_NUM_THREADS=1
        MKL_NUM_THREADS=1 PYTHONPATH="$wt" "$py" -m benchmarks.reproduce --preset paper
        --dataset cifar10-lt --recipe authors --methods "$m" --seeds 0 --amp --threads 1
        --resume --no-progress --out "$dst" "$@")
    if [ -n "${DRY:-}" ]; then echo "(cd $wt && ${cmd[*]})"; return; fi
    # a row run with extra flags (the weight-decay check) logs to M-wd-seed0.log
    (cd "$wt" && "${cmd[@]}" >> "$dst/logs/$m${1:+-wd}-seed0.log" 2>&1)
}
lanes() {  # the two lanes: Remix; the IB rerun, then MiSLAS with weight decay 5e-4
    lane "$new" "$out" remix &
    (lane "$new" "$ib" ib && lane "$wdt" "$out" mislas --weight-decay 5e-4) &
    wait
}
export py repo new wdt out ib
if [ -n "${DRY:-}" ]; then lanes; exit; fi
nohup setsid bash -c "$(declare -f lane lanes); lanes" > /dev/null 2>&1 &
echo "issue 23's rows run in the background; logs in $out/logs and $ib/logs"
