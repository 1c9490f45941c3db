"""Calibrate, then plan a ``reproduce --jobs`` grid that fits a wall-time budget.

    python -m benchmarks.plan --data PACK --preset paper --budget-s 480 --out plan.json

Why: a lent GPU comes for minutes, so the table must be sized before it starts. This measures,
at the real settings and for a few hundred steps each, the single-process img/s of a plain
stage-1 loop (``ce``; ``ce_drw``, ``ldam_drw`` and ``bs`` cost the same), of ``bs_cmo``, of a
stage-2 iteration and of the AFR refresh, and the aggregate img/s of J concurrent ``bs_cmo``
loops for each candidate J. It then replays ``reproduce --jobs J``'s scheduler (stage 2 only
after its seed's ``bs_cmo``) with those rates and picks the J with the shortest projected wall
time. When the full grid does not fit, it plans ``bs_cmo``, ``bs_cmo_ft`` and ``afr`` only and
names what it left out. Prints the plan and writes it as JSON.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from dataclasses import replace

import torch

from .common import (PAPER_METHODS, STAGE2_METHODS, add_speed_args, load_data, new_run,
                     speed_from)
from .reproduce import PRESETS, grid, start_order
from .throughput import concurrent_rate, loop_rate, refresh_seconds

CORE = ("bs_cmo", "bs_cmo_ft", "afr")


def measure(data, device, schedule, speed, iters: int, warmup: int, refresh_share: float) -> dict:
    """Single-process img/s per kind of loop, and the refresh's seconds for the whole set."""
    s = replace(schedule, cmo_off_epochs=-1)  # CMO mixing on from epoch 0
    rates = {}
    for kind in ("ce", "bs_cmo"):
        rates[kind] = loop_rate(new_run(kind, 0, s, data, device, speed=speed), iters, warmup)
    base = {"model": new_run("bs", 0, s, data, device, speed=speed).model.state_dict()}
    rates["stage2"] = loop_rate(new_run("bs_cmo_ft", 0, s, data, device, init_state=base,
                                        speed=speed), iters, warmup)
    refresh_s, _, _ = refresh_seconds(data, s, device, base, speed, refresh_share)
    return {"img_per_s": {k: round(v, 1) for k, v in rates.items()}, "refresh_s": round(refresh_s, 2)}


def run_seconds(method: str, n_train: int, schedule, single: dict) -> float:
    """Projected seconds of one run alone on the device."""
    r = single["img_per_s"]
    batches = math.ceil(n_train / schedule.batch_size)
    if schedule.max_iters is not None:
        batches = min(batches, schedule.max_iters)
    images = batches * schedule.batch_size
    if method in STAGE2_METHODS:
        t = schedule.stage2_epochs * images / r["stage2"]
        if method == "afr":
            t += math.ceil(schedule.stage2_epochs / schedule.refresh_every) * single["refresh_s"]
        return t
    return schedule.epochs * images / r["bs_cmo" if method == "bs_cmo" else "ce"]


def simulate(methods, seeds, jobs: int, seconds: dict, slowdown: float) -> float:
    """Wall time of reproduce --jobs: the same order and dependency rule, each run ``slowdown``
    times slower than alone (the measured cost of sharing the device among ``jobs``)."""
    tasks, deps = grid(methods, seeds)
    now, finish, running, pending = 0.0, {}, {}, start_order(tasks)
    while pending or running:
        for t in list(pending):
            if len(running) >= jobs:
                break
            if t in deps and deps[t] not in finish:
                continue
            running[t] = now + seconds[t[0]] * slowdown
            pending.remove(t)
        if not running:
            raise RuntimeError("unschedulable grid")
        t = min(running, key=running.get)
        now = running.pop(t)
        finish[t] = now
    return now


def make_plan(single: dict, concurrency: dict, n_train: int, schedule, seeds, budget_s: float,
              methods=PAPER_METHODS) -> dict:
    """The fastest J for the full grid, or for the core three methods when it does not fit."""
    seconds = {m: run_seconds(m, n_train, schedule, single) for m in methods}
    base = single["img_per_s"]["bs_cmo"]
    options = []
    for chosen in (list(methods), [m for m in methods if m in CORE]):
        for j, agg in concurrency.items():
            slowdown = max(1.0, j * base / max(agg, 1e-9))
            wall = simulate(chosen, seeds, int(j), seconds, slowdown)
            options.append({"methods": chosen, "jobs": int(j), "slowdown": round(slowdown, 3),
                            "projected_s": round(wall, 1)})
        fitting = [o for o in options if o["methods"] == chosen and o["projected_s"] <= budget_s]
        if fitting:
            best = min(fitting, key=lambda o: o["projected_s"])
            break
    else:
        best = min((o for o in options if o["methods"] == options[-1]["methods"]),
                   key=lambda o: o["projected_s"])
    left_out = [m for m in methods if m not in best["methods"]]
    return {**best, "fits": best["projected_s"] <= budget_s, "budget_s": budget_s,
            "left_out": left_out, "seeds": list(seeds),
            "run_seconds_alone": {m: round(v, 1) for m, v in seconds.items()},
            "options": options}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.plan", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", choices=sorted(PRESETS), default="paper")
    p.add_argument("--dataset", choices=["cifar10-lt", "cifar100-lt"], default="cifar10-lt")
    p.add_argument("--data", default=None, metavar="PACK")
    p.add_argument("--data-root", default=None)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--budget-s", type=float, default=480.0, help="wall time the grid may take")
    p.add_argument("--jobs-candidates", type=int, nargs="+", default=None,
                   help="J values to measure (default: 1 2 4 8 12 on CUDA, 1 2 on CPU)")
    p.add_argument("--iters", type=int, default=None, help="timed steps per loop (default: "
                   "200 on CUDA, 3 on CPU)")
    p.add_argument("--refresh-share", type=float, default=0.1)
    p.add_argument("--device", default=None)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--out", default=None, help="write the plan here as JSON")
    add_speed_args(p)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    cuda = device.type == "cuda"
    iters = args.iters or (200 if cuda else 3)
    candidates = args.jobs_candidates or ([1, 2, 4, 8, 12] if cuda else [1, 2])
    preset = PRESETS[args.preset]
    schedule = preset["schedule"]
    data = load_data(args.dataset, args.data_root, device=device, pack=args.data,
                     train_fraction=preset.get("train_fraction"), test_limit=preset.get("test_limit"))
    speed = speed_from(args)
    start = time.perf_counter()
    single = measure(data, device, schedule, speed, iters, max(3, iters // 10), args.refresh_share)
    print(f"alone: {single['img_per_s']} img/s, refresh {single['refresh_s']} s", flush=True)
    common = ["--dataset", args.dataset, "--iters", str(iters), "--warmup", str(max(3, iters // 10))]
    common += ["--data", args.data] if args.data else []
    common += ["--data-root", args.data_root] if args.data_root else []
    common += ["--device", str(device)]
    common += ["--amp" if speed.amp else "--no-amp"] if speed.amp is not None else []
    common += [] if speed.channels_last else ["--no-channels-last"]
    common += ["--compile"] if speed.compile else []
    concurrency = {}
    for j in candidates:
        if j == 1:
            concurrency[1] = single["img_per_s"]["bs_cmo"]
            continue
        threads = args.threads or max(1, (os.cpu_count() or 1) // j)
        c = concurrent_rate(common, j, threads)
        concurrency[j] = c["aggregate"]
        print(f"{j} concurrent bs_cmo loops: {c['aggregate']} img/s in all", flush=True)
    plan = make_plan(single, concurrency, len(data.y_train), schedule, args.seeds, args.budget_s)
    plan.update(calibration_s=round(time.perf_counter() - start, 1), single=single,
                concurrency={str(k): v for k, v in concurrency.items()}, preset=args.preset,
                device=str(device))
    print(f"plan: --jobs {plan['jobs']} --methods {' '.join(plan['methods'])}: projected "
          f"{plan['projected_s']:.0f} s of a {args.budget_s:.0f} s budget"
          + (f"; left out: {', '.join(plan['left_out'])}" if plan["left_out"] else "")
          + ("" if plan["fits"] else " (does NOT fit: the run will be cut at the budget)"))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(plan, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
