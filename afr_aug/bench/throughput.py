"""Training throughput of the reference loop, in images per second.

    afr-aug throughput [--device cuda] [--iters 30]

Measures, in one run and with the same loop as ``afr_aug.bench.reproduce``:

- ``model_only``: ResNet32 forward + backward + SGD step on a fixed random (mixed-class)
  batch already on the device (the ceiling: no data loading, no augmentation);
- ``bs_cmo``: a stage-1 BS+CMO iteration: index the uint8 data, AutoAugment + crop + flip +
  Cutout on both batches, CutMix, Balanced Softmax;
- ``afr_stage2``: a stage-2 AFR iteration (crop + flip, CutMix 25 % with the AFR set) with
  the adversarial refresh (embed every slot, MinorityPGD on half of each class's majority
  slots) amortised over its 10-epoch period. The refresh is timed on a stratified share of the
  training set (``--refresh-share``) and scaled to the whole set: its cost is linear in the
  number of slots (embedding) and of attacked slots (a fixed share of each class);
- ``stage 2``: AFR's whole stage 2 (its epochs and refreshes) against its control's, the
  same fine-tuning without refreshes (issue 16's target: at most 1.5x).

All three run at the same speed settings (``--amp``, ``--channels-last``, ``--compile``; see
``afr_aug.bench.speed.Speed``), so each pipeline's ratio to ``model_only`` is the share of the
ceiling the loop reaches. ``--jobs N`` also measures the aggregate img/s of N concurrent
``bs_cmo`` loops (separate processes, each with its own CUDA context or CPU threads, timed over
the same window), which is what ``reproduce --jobs N`` gets from one device.

Targets: bs_cmo >= 0.9 x model_only; afr_stage2 >= bs_cmo / 1.3; AFR's stage 2 <= 1.5 x the
control's. The last line printed is
one JSON object ``{"device", "speed", "model_only", "bs_cmo", "afr_stage2", "ratios", ...}``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, replace

import torch
import torch.nn.functional as F

from .checkpoints import load_checkpoint
from .cli import CHECKPOINT, data_or_fail, require_file
from .data import load_data
from .factories import make_model, make_optimizer
from .loop import maybe_refresh, new_run, train_epoch
from .runtime import device_name, worker_env
from .schedule import Schedule
from .speed import Speed, add_speed_args, speed_from

PROG = "afr-aug throughput"


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def model_only(data, device, batch_size, iters, warmup, speed: Speed | None = None):
    """The ceiling: forward + backward + step on one fixed batch, at the loop's speed settings."""
    speed = (Speed() if speed is None else speed).resolved(device)
    fmt = torch.channels_last if speed.channels_last else torch.contiguous_format
    model = make_model(data, device).to(memory_format=fmt).train()
    opt = make_optimizer(model.parameters(), 0.1, Schedule(), device)
    net = torch.compile(model) if speed.compile else model
    # A fixed random batch with every class in it: the first images of the long-tailed set are
    # all class 0, on which the loss reaches 0 within a few steps and the step slows down
    # (denormal floats), so it is not the ceiling the loop should be compared with.
    pick = torch.randperm(len(data.y_train), generator=torch.Generator().manual_seed(0))[
        :batch_size
    ]
    pick = pick.to(data.x_train.device)
    x = data.x_train[pick].float().div(255).contiguous(memory_format=fmt)
    y = data.y_train[pick]
    start = time.perf_counter()  # reset when the timed steps begin
    for i in range(warmup + iters):
        if i == warmup:
            _sync(device)
            start = time.perf_counter()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bool(speed.amp)):
            logits = net(x)
        loss = F.cross_entropy(logits.float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    _sync(device)
    return iters * batch_size / (time.perf_counter() - start)


def loop_rate(run, iters, warmup):
    """img/s of the real training loop over ``iters`` iterations after ``warmup``."""
    run.schedule = replace(run.schedule, max_iters=warmup)
    train_epoch(run, progress=False)
    run.epoch -= 1  # keep the same epoch (mixing stays on)
    run.schedule = replace(run.schedule, max_iters=iters)
    return train_epoch(run, progress=False)["img_per_s"]


def refresh_seconds(data, schedule, device, base: dict, speed: Speed, share: float):
    """Seconds of one AFR refresh of the whole training set, timed on a stratified ``share``
    of each class and scaled to the set (its cost is linear in the images embedded and
    attacked); also the split and the run it was timed on."""
    keep = torch.cat(
        [
            idx[: max(1, round(len(idx) * share))]
            for idx in (
                torch.nonzero(data.y_train.cpu() == c).flatten() for c in range(data.num_classes)
            )
        ]
    ).to(device)
    sub = replace(data, x_train=data.x_train[keep], y_train=data.y_train[keep])
    part = new_run("afr", 0, schedule, sub, device, init_state=base, speed=speed)
    _sync(device)
    start = time.perf_counter()
    report = maybe_refresh(part, progress=False)
    _sync(device)
    return (time.perf_counter() - start) * len(data.y_train) / len(keep), report, part


def _wait_for(barrier: str, n: int, timeout: float = 60.0) -> None:
    """File barrier: concurrent measuring processes start their timed window together. A
    sibling that died before it arrives would hold the others forever: give up after
    ``timeout`` seconds (the parent kills the rest as soon as one fails)."""
    open(os.path.join(barrier, f"ready-{os.getpid()}"), "w").close()
    deadline = time.monotonic() + timeout
    while len(os.listdir(barrier)) < n:
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"only {len(os.listdir(barrier))} of {n} processes reached the barrier"
            )
        time.sleep(0.05)


def concurrent_rate(
    argv, jobs: int, threads: int, timeout: float = 300.0, barrier_timeout: float = 60.0
) -> dict:
    """Aggregate bs_cmo img/s of ``jobs`` processes measuring at once: all their images over
    one shared wall window (first start to last end), not the sum of per-process rates (which
    overstates it when the windows differ). Also each process's start-up seconds (interpreter,
    imports, data, model, warm-up), a fixed cost of every run of ``reproduce --jobs``. The
    first process that fails stops the others; so does ``timeout``."""
    with tempfile.TemporaryDirectory() as barrier, tempfile.TemporaryDirectory() as outs:
        cmd = [
            sys.executable,
            "-m",
            "afr_aug.bench.throughput",
            *argv,
            "--jobs",
            "1",
            "--threads",
            str(threads),
            "--only-bs-cmo",
            "--barrier",
            barrier,
            "--barrier-n",
            str(jobs),
            "--barrier-timeout",
            str(barrier_timeout),
        ]
        env = worker_env(threads)
        procs: list[subprocess.Popen] = []
        # each file is a child's stdout, read back once all have exited; closed after the
        # children are killed (the finally below)
        with contextlib.ExitStack() as opened:
            files = []
            try:
                for i in range(jobs):
                    files.append(opened.enter_context(open(os.path.join(outs, f"{i}.json"), "w+")))
                    procs.append(
                        subprocess.Popen(
                            [*cmd, "--spawned-at", repr(time.time())],
                            stdout=files[-1],
                            text=True,
                            env=env,
                        )
                    )
                deadline = time.monotonic() + timeout
                while any(p.poll() is None for p in procs):
                    bad = [p.returncode for p in procs if p.poll() not in (None, 0)]
                    if bad:
                        raise RuntimeError(
                            f"a concurrent throughput process failed (exit {bad[0]})"
                        )
                    if time.monotonic() > deadline:
                        raise TimeoutError(
                            f"{jobs} concurrent throughput processes took over {timeout:.0f} s"
                        )
                    time.sleep(0.1)
                bad = [p.returncode for p in procs if p.returncode != 0]
                if bad:
                    raise RuntimeError(f"a concurrent throughput process failed (exit {bad[0]})")
                stats = []
                for f in files:
                    f.seek(0)
                    stats.append(json.loads(f.read().strip().splitlines()[-1]))
            finally:
                for p in procs:
                    if p.poll() is None:
                        p.kill()
                        p.wait()
    return {"jobs": jobs, **aggregate(stats)}


def aggregate(stats) -> dict:
    """One shared window over the processes' ``{"images", "t0", "t1", "startup_s"}``."""
    window = max(s["t1"] for s in stats) - min(s["t0"] for s in stats)
    images = sum(s["images"] for s in stats)
    return {
        "per_job": [s["bs_cmo"] for s in stats],
        "images": images,
        "window_s": round(window, 3),
        "aggregate": round(images / max(window, 1e-9), 1),
        "startup_s": round(max(s.get("startup_s", 0.0) for s in stats), 2),
    }


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--dataset", choices=["cifar10-lt", "cifar100-lt"], default="cifar10-lt")
    p.add_argument("--data-root", default=None)
    p.add_argument("--data", default=None, metavar="PACK", help="a file from afr_aug.bench.pack")
    p.add_argument(
        "--download",
        action="store_true",
        help="fetch CIFAR with torchvision when it is not found (needs internet)",
    )
    p.add_argument(
        "--jobs",
        type=int,
        default=1,
        help="also measure N concurrent bs_cmo loops (aggregate img/s)",
    )
    p.add_argument("--only-bs-cmo", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--barrier", default=None, help=argparse.SUPPRESS)
    p.add_argument("--barrier-n", type=int, default=1, help=argparse.SUPPRESS)
    p.add_argument("--barrier-timeout", type=float, default=60.0, help=argparse.SUPPRESS)
    p.add_argument("--spawned-at", type=float, default=None, help=argparse.SUPPRESS)
    p.add_argument("--device", default=None)
    p.add_argument("--iters", type=int, default=30)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument(
        "--refresh-share",
        type=float,
        default=0.25,
        help="share of each class the refresh is timed on (scaled to the whole set)",
    )
    p.add_argument("--threads", type=int, default=None)
    p.add_argument(
        "--checkpoint",
        default=None,
        help="a bs_cmo checkpoint from afr_aug.bench.reproduce: "
        "the refresh then splits and attacks as on a trained model (default: random weights,"
        " where every image is majority, the refresh's worst case)",
    )
    add_speed_args(p)
    return p


def _one_of_concurrent(args, data, device, speed, s) -> None:
    """--only-bs-cmo: one of ``--jobs N`` concurrent measurements; prints its images, window
    and start-up as one JSON line for :func:`concurrent_rate`."""
    cmo = new_run("bs_cmo", 0, s, data, device, speed=speed)
    loop_rate(cmo, 1, args.warmup)  # compile and warm up before the common window
    startup = time.time() - args.spawned_at if args.spawned_at else 0.0
    if args.barrier:
        _wait_for(args.barrier, args.barrier_n, args.barrier_timeout)
    t0 = time.time()
    cmo_rate = loop_rate(cmo, args.iters, 1)
    t1 = time.time()
    # the window holds loop_rate's one warm-up step too
    print(
        json.dumps(
            {
                "bs_cmo": round(cmo_rate, 1),
                "images": (args.iters + 1) * args.batch_size,
                "t0": t0,
                "t1": t1,
                "startup_s": round(startup, 3),
            }
        )
    )


def _measure(args, argv, data, device, speed, s) -> dict:
    """Every rate the summary reports, and the refresh it timed."""
    m = {"model_only": model_only(data, device, args.batch_size, args.iters, args.warmup, speed)}
    cmo = new_run("bs_cmo", 0, s, data, device, speed=speed)
    m["bs_cmo"] = loop_rate(cmo, args.iters, args.warmup)
    assert cmo.model is not None  # new_run() set it
    base = {
        "model": (
            load_checkpoint(args.checkpoint)["model"] if args.checkpoint else cmo.model.state_dict()
        )
    }
    afr = new_run("afr", 0, s, data, device, init_state=base, speed=speed)
    m["afr"] = loop_rate(afr, args.iters, args.warmup)
    m["control"] = loop_rate(
        new_run("bs_cmo_ft", 0, s, data, device, init_state=base, speed=speed),
        args.iters,
        args.warmup,
    )
    m["refresh_s"], m["report"], m["part"] = refresh_seconds(
        data, s, device, base, speed, args.refresh_share
    )
    n, period = len(data.y_train), s.refresh_every
    m["afr_amortised"] = period * n / (period * n / m["afr"] + m["refresh_s"])
    # issue 16: AFR's whole stage 2 against its control's, the refreshes included
    m["control_s"] = s.stage2_epochs * n / m["control"]
    m["afr_s"] = (
        s.stage2_epochs * n / m["afr"] + math.ceil(s.stage2_epochs / period) * m["refresh_s"]
    )
    m["concurrent"] = None
    if args.jobs > 1:
        threads = args.threads or max(1, (os.cpu_count() or 1) // args.jobs)
        m["concurrent"] = concurrent_rate(argv, args.jobs, threads)
    return m


def _summary(args, m: dict, device, speed, s, n: int) -> None:
    """The human lines, then the one JSON line."""
    mo, cmo, amortised = m["model_only"], m["bs_cmo"], m["afr_amortised"]
    control_s, afr_s, concurrent = m["control_s"], m["afr_s"], m["concurrent"]
    resolved = asdict(speed.resolved(device))
    print(f"device: {device_name(device)}; speed settings {resolved}")
    print(
        f"model_only {mo:.1f} img/s | bs_cmo {cmo:.1f} img/s ({cmo / mo:.2f} x model_only,"
        f" target >= 0.9)"
    )
    print(
        f"afr stage-2 iterations {m['afr']:.1f} img/s; "
        f"refresh {m['refresh_s']:.1f} s for {n} images "
        f"(timed on {len(m['part'].data.y_train)} originals, {len(m['part'].stage2)} slots: "
        f"{sum(m['report'].minority)} minority, {sum(m['report'].attacked)} attacked), "
        f"every {s.refresh_every} epochs"
    )
    print(
        f"stage 2, {s.stage2_epochs} epochs: control {control_s:.0f} s, AFR {afr_s:.0f} s "
        f"(AFR / control = {afr_s / control_s:.2f}, target <= 1.5)"
    )
    print(
        f"afr_stage2 {amortised:.1f} img/s (bs_cmo / afr_stage2 = {cmo / amortised:.2f},"
        f" target <= 1.3)"
    )
    if concurrent is not None:
        print(
            f"--jobs {args.jobs}: bs_cmo {concurrent['aggregate']:.1f} img/s in all "
            f"({', '.join(f'{r:.1f}' for r in concurrent['per_job'])} per job)"
        )
    print(
        json.dumps(
            {
                "device": device_name(device),
                "speed": resolved,
                "model_only": round(mo, 1),
                "bs_cmo": round(cmo, 1),
                "afr_stage2": round(amortised, 1),
                "control_stage2": round(m["control"], 1),
                "refresh_s": round(m["refresh_s"], 1),
                "stage2_seconds": {
                    "control": round(control_s),
                    "afr": round(afr_s),
                    "ratio": round(afr_s / control_s, 3),
                },
                "ratios": {"bs_cmo": round(cmo / mo, 3), "afr_stage2": round(amortised / mo, 3)},
                "concurrent": concurrent,
            }
        )
    )


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    args = _parser().parse_args(argv)
    require_file(PROG, "--checkpoint", args.checkpoint, CHECKPOINT)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    speed = speed_from(args)
    data = data_or_fail(
        PROG,
        load_data,
        args.dataset,
        args.data_root,
        device=device,
        pack=args.data,
        download=args.download,
    )
    s = Schedule(batch_size=args.batch_size, cmo_off_epochs=-1)  # CMO mixing on from epoch 0
    if args.only_bs_cmo:
        _one_of_concurrent(args, data, device, speed, s)
        return
    _summary(
        args, _measure(args, argv, data, device, speed, s), device, speed, s, len(data.y_train)
    )


if __name__ == "__main__":
    main()
