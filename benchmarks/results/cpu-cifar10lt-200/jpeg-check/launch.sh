#!/usr/bin/env bash
# usage: launch.sh NAME DATA_ROOT AMPFLAG [NAME DATA_ROOT AMPFLAG ...]
# CE, authors' recipe scaled to 50 epochs (milestones 40/45, warm-up 5), seed 0, 1 thread,
# from the worktree /work/exp-screen (e107396); one after another, resumable
cd /work/exp-screen
export PYTHONPATH=$PWD OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
while [ $# -ge 3 ]; do
  name=$1 root=$2 amp=$3; shift 3
  mkdir -p /root/runs/jpeg-check/$name
  /work/main/.venv/bin/python -m benchmarks.reproduce --preset paper --dataset cifar10-lt \
    --data-root "$root" --recipe authors --epochs 50 --methods ce --seeds 0 $amp --threads 1 \
    --resume --no-progress --out /root/runs/jpeg-check/$name >> /root/runs/jpeg-check/$name.log 2>&1
done
