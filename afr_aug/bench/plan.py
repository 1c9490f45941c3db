"""Calibrate, then plan a ``reproduce --jobs`` grid that fits a wall-time budget.

    afr-aug plan --data PACK --preset paper --budget-s 480 --out plan.json
    afr-aug plan --default-plan --seeds 0 1 2 --out plan.json   # no measuring

Why: a lent GPU comes for minutes, so the table must be sized before it starts. This measures,
at the real settings and for a few hundred steps each, the single-process img/s of a plain
stage-1 loop (``ce``; ``ce_drw``, ``ldam_drw`` and ``bs`` cost the same), of ``bs_cmo``, of a
stage-2 iteration and of the AFR refresh; the fixed costs of a run (process start-up, one
evaluation, one checkpoint); and the aggregate img/s of J concurrent ``bs_cmo`` processes
(all their images over one shared window). It then replays ``reproduce --jobs J``'s scheduler
(stage 2 only after its ``bs_cmo``) with those rates, each run slowed by the number of runs
*actually* running beside it at each moment, and picks the fastest J of the first grid that
fits, in this order: the full grid; ``bs_cmo``, ``bs_cmo_ft`` and ``afr`` per seed; one
``bs_cmo`` (of the first seed) feeding every stage-2 seed (``--stage1-seed``). When even that
does not fit it plans it anyway, marked ``fits: false``: the caller cuts it at the budget and
reports the unfinished runs as partial rows. ``--deadline`` (a Unix time) makes the budget
what is left of it once calibration is done. Prints the plan and writes it as JSON.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from dataclasses import replace

import torch

from .checkpoints import save_atomic, state_of
from .cli import data_or_fail
from .data import load_data
from .derived import CLASSIFIER_DERIVES
from .grid import grid, start_order
from .loop import evaluate_run, new_run
from .methods import DERIVED_METHODS, METHODS, PAPER_METHODS, RECIPES, STAGE2_METHODS
from .presets import PRESETS
from .speed import add_speed_args, speed_from
from .throughput import concurrent_rate, loop_rate, refresh_seconds

PROG = "afr-aug plan"

CORE = ("bs_cmo", "bs_cmo_ft", "afr")


def measure(data, device, schedule, speed, iters: int, warmup: int, refresh_share: float) -> dict:
    """Single-process img/s per kind of loop, the refresh's seconds for the whole set, and the
    fixed seconds of one evaluation and of one checkpoint."""
    s = replace(schedule, cmo_off_epochs=-1)  # CMO mixing on from epoch 0
    rates = {}
    for kind in ("ce", "bs_cmo"):
        rates[kind] = loop_rate(new_run(kind, 0, s, data, device, speed=speed), iters, warmup)
    bs = new_run("bs", 0, s, data, device, speed=speed)
    assert bs.model is not None  # new_run() set it
    base = {"model": bs.model.state_dict()}
    ft = new_run("bs_cmo_ft", 0, s, data, device, init_state=base, speed=speed)
    rates["stage2"] = loop_rate(ft, iters, warmup)
    refresh_s, _, _ = refresh_seconds(data, s, device, base, speed, refresh_share)
    start = time.perf_counter()
    evaluate_run(ft)
    eval_s = time.perf_counter() - start
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        save_atomic(state_of(ft), os.path.join(tmp, "probe.pt"))
        checkpoint_s = time.perf_counter() - start
    return {
        "img_per_s": {k: round(v, 1) for k, v in rates.items()},
        "refresh_s": round(refresh_s, 2),
        "eval_s": round(eval_s, 3),
        "checkpoint_s": round(checkpoint_s, 3),
    }


def run_seconds(method: str, n_train: int, schedule, single: dict) -> float:
    """Projected seconds of one run alone on the device, its fixed costs included (process
    start-up, a checkpoint per epoch, the evaluations; ``single`` may leave them out)."""
    r = single["img_per_s"]
    entry = METHODS[method]
    if entry.stage == 1:  # its recipe's epochs and batch size
        schedule = schedule.for_stage1(entry)

    def images_per_epoch(s) -> int:
        batches = math.ceil(n_train / s.batch_size)
        if s.max_iters is not None:
            batches = min(batches, s.max_iters)
        return batches * s.batch_size

    images = images_per_epoch(schedule)
    startup, eval_s = single.get("startup_s", 0.0), single.get("eval_s", 0.0)
    if entry.stage == 0:  # one evaluation; cRT and MiSLAS train the classifier
        trains = entry.derive in CLASSIFIER_DERIVES
        crt = schedule.crt_epochs * images / r["ce"] if trains else 0.0
        return startup + crt + eval_s
    if entry.stage == 2:
        epochs, rate = schedule.stage2_epochs, r["stage2"]
    else:  # a mixing row costs about what bs_cmo costs
        epochs, rate = schedule.epochs, r["bs_cmo" if entry.mixer else "ce"]
    t = startup + epochs * (images / rate + single.get("checkpoint_s", 0.0))
    t += sum(schedule.evaluates(e, entry.stage) for e in range(1, epochs + 1)) * eval_s + eval_s
    if entry.refreshes:  # afr_old and afr_noise refresh more cheaply: an upper bound
        t += math.ceil(epochs / schedule.refresh_every) * single["refresh_s"]
    return t


def speed_factor(concurrency: dict, base: float):
    """``f(k)``: the share of its alone speed each of ``k`` concurrent runs gets, from the
    measured aggregate img/s of J concurrent loops (``{J: img/s}``; J = 1 is ``base``),
    interpolated linearly between measured J and held flat beyond the largest (no gain is
    assumed where none was measured)."""
    points = sorted({1: float(base), **{int(j): float(a) for j, a in concurrency.items()}}.items())

    def f(k: int) -> float:
        if k <= 1:
            return 1.0
        agg = points[-1][1]
        for (j0, a0), (j1, a1) in zip(points, points[1:]):
            if j0 <= k <= j1:
                agg = a0 + (a1 - a0) * (k - j0) / (j1 - j0)
                break
        return min(1.0, agg / (k * base))

    return f


def simulate(methods, seeds, jobs: int, seconds: dict, speed, stage1_seed=None) -> float:
    """Wall time of ``reproduce --jobs`` (same start order and dependency rule). ``speed`` is
    ``f(k)`` (:func:`speed_factor`): while ``k`` runs share the device each advances at ``f(k)``
    of its alone speed; a number is a constant slowdown instead."""
    factor = speed if callable(speed) else (lambda k: 1.0 / speed)
    tasks, deps = grid(methods, seeds, stage1_seed)
    running: dict[tuple, float] = {}  # alone-seconds of work left per run
    now, done, pending = 0.0, set(), start_order(tasks, methods=methods)
    while pending or running:
        for t in list(pending):
            if len(running) >= jobs:
                break
            if t in deps and deps[t] not in done:
                continue
            running[t] = float(seconds[t[0]])  # alone-seconds of work left
            pending.remove(t)
        if not running:
            raise RuntimeError("unschedulable grid")
        f = factor(len(running))
        first = min(running, key=lambda t: running[t])
        dt = running[first] / f
        now += dt
        for t in running:
            running[t] -= dt * f
        for t in [t for t, left in running.items() if t == first or left <= 1e-9]:
            del running[t]
            done.add(t)
    return now


def _tiers(methods, seeds):
    """The grids to try, largest first: as asked; the core three per seed; the stage-2 rows of
    every seed fed by one bs_cmo (of the first seed, not itself a row of the table)."""
    core = [m for m in methods if m in CORE] or list(CORE)
    # with --stage1-seed, asking for bs_cmo would still train it for every seed: ask only for
    # the stage-2 rows, and their one bs_cmo comes as their dependency
    stage2 = [m for m in core if m in STAGE2_METHODS] or list(STAGE2_METHODS)
    tiers, seen = [], set()
    for name, chosen, s1 in (
        ("full", list(methods), None),
        ("core", core, None),
        ("one_stage1", stage2, seeds[0]),
    ):
        key = (tuple(chosen), s1)
        if name == "one_stage1" and len(seeds) == 1:
            continue  # one seed: the core grid is already that
        if key not in seen:
            seen.add(key)
            tiers.append((name, chosen, s1))
    return tiers


def make_plan(
    single: dict,
    concurrency: dict,
    n_train: int,
    schedule,
    seeds,
    budget_s: float,
    methods=PAPER_METHODS,
) -> dict:
    """The fastest measured J of the first grid (:func:`_tiers`) whose projection fits
    ``budget_s``; the last grid, ``fits: false``, when none does."""
    seeds = list(seeds)
    every = set(methods) | set(CORE) | {DERIVED_METHODS.get(m, m) for m in methods}
    seconds = {m: run_seconds(m, n_train, schedule, single) for m in every}
    f = speed_factor(concurrency, single["img_per_s"]["bs_cmo"])
    options, best = [], None
    for name, chosen, s1 in _tiers(methods, seeds):
        n_tasks = len(grid(chosen, seeds, s1)[0])
        mine = []
        for j in sorted(int(j) for j in concurrency):
            if j > n_tasks and j != 1:
                continue  # more workers than runs: a J it would never use
            wall = simulate(chosen, seeds, j, seconds, f, s1)
            mine.append(
                {
                    "tier": name,
                    "methods": chosen,
                    "stage1_seed": s1,
                    "jobs": j,
                    "speed_factor": round(f(min(j, n_tasks)), 3),
                    "projected_s": round(wall, 1),
                }
            )
        options += mine
        best = min(mine, key=lambda o: o["projected_s"])
        if best["projected_s"] <= budget_s:
            break
    assert best is not None  # every grid is tried with J = 1
    fits = best["projected_s"] <= budget_s
    return {
        **best,
        "fits": fits,
        "partial": not fits,
        "budget_s": round(budget_s, 1),
        "left_out": [m for m in methods if m not in best["methods"]],
        "seeds": seeds,
        "run_seconds_alone": {m: round(v, 1) for m, v in sorted(seconds.items())},
        "options": options,
        "calibrated": True,
    }


def default_plan(seeds, device_type: str, methods=PAPER_METHODS, reason: str = "") -> dict:
    """The plan when calibration failed or ran out of time: the smallest grid (one bs_cmo
    feeding every stage-2 seed), as many workers as it can use at once on a GPU (one on a
    CPU); nothing is projected, so the caller cuts it at the budget and reports partial rows."""
    seeds = list(seeds)
    name, chosen, s1 = _tiers(methods, seeds)[-1]
    n_tasks = len(grid(chosen, seeds, s1)[0])
    jobs = min(n_tasks, 2 * len(seeds)) if device_type == "cuda" else 1
    return {
        "tier": name,
        "methods": chosen,
        "stage1_seed": s1,
        "jobs": max(1, jobs),
        "projected_s": None,
        "fits": None,
        "partial": True,
        "seeds": seeds,
        "left_out": [m for m in methods if m not in chosen],
        "calibrated": False,
        "reason": reason or "no calibration",
    }


def describe(plan: dict) -> str:
    """One line: what runs, how, and whether it fits."""
    line = f"plan: --jobs {plan['jobs']} --methods {' '.join(plan['methods'])}"
    if plan.get("stage1_seed") is not None:
        line += f" --stage1-seed {plan['stage1_seed']}"
    if plan.get("projected_s") is not None:
        line += f": projected {plan['projected_s']:.0f} s of a {plan['budget_s']:.0f} s budget"
    else:
        line += f": not calibrated ({plan.get('reason', '')}), cut at the budget"
    if plan.get("left_out"):
        line += f"; left out: {', '.join(plan['left_out'])}"
    if plan.get("fits") is False:
        line += " (does NOT fit: cut at the budget, unfinished runs reported as partial rows)"
    return line


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--preset", choices=sorted(PRESETS), default="paper")
    p.add_argument("--dataset", choices=["cifar10-lt", "cifar100-lt"], default="cifar10-lt")
    p.add_argument("--data", default=None, metavar="PACK")
    p.add_argument("--data-root", default=None)
    p.add_argument(
        "--download",
        action="store_true",
        help="fetch CIFAR with torchvision when it is not found (needs internet)",
    )
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--methods", nargs="+", default=None, help="default: the preset's paper rows")
    p.add_argument(
        "--recipe",
        choices=list(RECIPES),
        default="paper",
        help="the rows' recipe (as reproduce --recipe): their epochs and batch sizes",
    )
    p.add_argument("--budget-s", type=float, default=480.0, help="wall time the grid may take")
    p.add_argument(
        "--deadline",
        type=float,
        default=None,
        help="Unix time the grid must end by; the budget is what is left of it after "
        "calibration (overrides --budget-s)",
    )
    p.add_argument(
        "--spawned-at",
        type=float,
        default=None,
        help="Unix time this process was started (its start-up counts as a run's fixed cost)",
    )
    p.add_argument(
        "--jobs-candidates",
        type=int,
        nargs="+",
        default=None,
        help="J values to measure (default: 1 4 8 on CUDA, 1 2 on CPU)",
    )
    p.add_argument(
        "--iters",
        type=int,
        default=None,
        help="timed steps per loop (default: 200 on CUDA, 3 on CPU)",
    )
    p.add_argument("--refresh-share", type=float, default=0.1)
    p.add_argument(
        "--concurrency-timeout",
        type=float,
        default=240.0,
        help="seconds one round of concurrent processes may take",
    )
    p.add_argument(
        "--default-plan",
        action="store_true",
        help="write the uncalibrated fallback plan and exit (see default_plan)",
    )
    p.add_argument("--reason", default="", help=argparse.SUPPRESS)
    p.add_argument("--device", default=None)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--out", default=None, help="write the plan here as JSON")
    add_speed_args(p)
    return p


def _throughput_args(args, device, speed, iters: int) -> list:
    """The flags a ``afr_aug.bench.throughput`` process needs to measure as this calibration
    does."""
    common = [
        "--dataset",
        args.dataset,
        "--iters",
        str(iters),
        "--warmup",
        str(max(3, iters // 10)),
    ]
    common += ["--data", args.data] if args.data else []
    common += ["--data-root", args.data_root] if args.data_root else []
    common += ["--device", str(device)]
    common += ["--amp" if speed.amp else "--no-amp"] if speed.amp is not None else []
    common += [] if speed.channels_last else ["--no-channels-last"]
    common += ["--compile"] if speed.compile else []
    return common


def _concurrency(args, device, speed, iters: int, candidates, single: dict) -> dict:
    """``{J: aggregate bs_cmo img/s}`` of J concurrent processes per candidate J (1: ``single``'s
    rate); raises ``single["startup_s"]`` to the slowest start-up seen."""
    common = _throughput_args(args, device, speed, iters)
    concurrency = {1: single["img_per_s"]["bs_cmo"]}
    for j in sorted(set(candidates) - {1}):
        threads = args.threads or max(1, (os.cpu_count() or 1) // j)
        c = concurrent_rate(common, j, threads, timeout=args.concurrency_timeout)
        concurrency[j] = c["aggregate"]
        # the slowest start-up of J processes at once is what a --jobs worker pays
        single["startup_s"] = max(single["startup_s"], c["startup_s"])
        print(
            f"{j} concurrent bs_cmo loops: {c['aggregate']} img/s in all over a "
            f"{c['window_s']} s window; start-up up to {c['startup_s']} s",
            flush=True,
        )
    return concurrency


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    methods = args.methods or list(PAPER_METHODS)
    if args.default_plan:
        kind = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
        plan = default_plan(args.seeds, torch.device(kind).type, methods, args.reason)
        return _write(plan, args.out)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    cuda = device.type == "cuda"
    iters = args.iters or (200 if cuda else 3)
    preset = PRESETS[args.preset]
    schedule = replace(preset["schedule"], recipe=args.recipe)
    start = time.perf_counter()
    data = data_or_fail(
        PROG,
        load_data,
        args.dataset,
        args.data_root,
        device=device,
        pack=args.data,
        train_fraction=preset.get("train_fraction"),
        test_limit=preset.get("test_limit"),
        download=args.download,
    )
    speed = speed_from(args)
    startup = time.time() - args.spawned_at if args.spawned_at else time.perf_counter() - start
    single = measure(data, device, schedule, speed, iters, max(3, iters // 10), args.refresh_share)
    single["startup_s"] = round(startup, 2)
    print(
        f"alone: {single['img_per_s']} img/s, refresh {single['refresh_s']} s; per run: start-up "
        f"{single['startup_s']} s, evaluation {single['eval_s']} s, checkpoint "
        f"{single['checkpoint_s']} s",
        flush=True,
    )
    concurrency = _concurrency(
        args, device, speed, iters, args.jobs_candidates or ([1, 4, 8] if cuda else [1, 2]), single
    )
    budget = args.deadline - time.time() if args.deadline is not None else args.budget_s
    plan = make_plan(single, concurrency, len(data.y_train), schedule, args.seeds, budget, methods)
    plan.update(
        calibration_s=round(time.perf_counter() - start, 1),
        single=single,
        concurrency={str(k): v for k, v in concurrency.items()},
        preset=args.preset,
        device=str(device),
    )
    return _write(plan, args.out)


def _write(plan: dict, out) -> int:
    print(describe(plan), flush=True)
    if out:
        with open(out, "w") as f:
            json.dump(plan, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
