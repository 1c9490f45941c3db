#!/usr/bin/env bash
# Issue 26, item 4: one reading's seeds with --jobs 2 (one thread each) once the given pids exit.
# usage: launch_jobs.sh WORKTREE READING "SEEDS" [PID...]
set -u
WT=$1; r=$2; seeds=$3; shift 3
for pid in "$@"; do while kill -0 "$pid" 2>/dev/null; do sleep 15; done; done
cd "$WT"
export PYTHONPATH=$PWD AFR_DATA=/work/shared/data OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
mkdir -p /root/runs/screen/$r/ckpt /root/runs/screen/logs
[ -f /root/runs/screen/$r/ckpt/bs_cmo-seed0.pt ] || \
  cp "$WT/benchmarks/results/cpu-cifar10lt-200+50/ckpt/bs_cmo-seed0.pt" /root/runs/screen/$r/ckpt/
case $r in
  balanced) M="bs_cmo_ft_bal afr_bal afr_noise_bal"; X="";;
  p1)       M="bs_cmo_ft afr afr_noise"; X="--mix-p 1";;
  literal)  M="bs_cmo_ft afr afr_noise"; X="";;
esac
/work/main/.venv/bin/python -m benchmarks.reproduce --preset paper --dataset cifar10-lt --methods $M \
    --seeds $seeds --stage1-seed 0 --stage2-epochs 10 --eval-every 5 --amp --jobs 2 --threads 1 \
    --resume --no-progress $X --out /root/runs/screen/$r >> /root/runs/screen/logs/$r.log 2>&1
