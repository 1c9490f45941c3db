"""Reproduce the paper's Table 1, Table 2 and Fig. 4 with ResNet32 on CIFAR-LT.

    python -m benchmarks.reproduce --preset smoke --out runs/smoke          # ~1-2 min on a CPU
    python -m benchmarks.reproduce --preset paper --seeds 0 1 2 --out runs/paper
    python -m benchmarks.reproduce --preset paper --seeds 0 1 2 --jobs 6 --out runs/paper  # in parallel

Methods (--methods; "paper" names the first list, "all" every row):
  the paper's Table 1: ce, ce_drw, ldam_drw, bs, bs_cmo (stage 1) and afr, bs_cmo_ft (stage 2:
    50 epochs fine-tuning the finished bs_cmo model of the same seed, with or without AFR's
    adversarial set); the default of the paper presets;
  the long-tail baselines (issue 10): la (logit-adjusted loss, --la-tau), bs_cmo_eff (BS+CMO
    whose Balanced Softmax uses the prior CMO's mixed stream really has), and rows made from a
    finished model without training its features: ce_posthoc and bs_cmo_posthoc (post-hoc
    logit adjustment: CE's prior, CMO's uncorrected share), bs_cmo_tau and afr_tau
    (tau-normalised classifier, --tau), bs_cmo_crt (classifier re-trained on a balanced stream,
    --crt-epochs). The smoke preset runs every row.
Writes results.json, results.md (Table 1 style, mean ± std over seeds, ECE), shot_accuracy.png
(Fig. 4), per_class.png, reliability.png and class_distribution.png (Fig. 1) into --out, and
checkpoints every epoch to --out/ckpt so that --resume finishes a killed run with the same result.

--jobs N runs the (method, seed) grid in N worker processes (each its own CUDA context, or its
own CPU threads: --threads per worker, default the cores divided by N). A stage-2 run starts
only once the bs_cmo checkpoint it fine-tunes is finished; each worker's output goes to
--out/logs/ and to the screen, and the parent merges every finished checkpoint into one report.
--stage1-seed S makes the stage-2 runs of every seed fine-tune the one bs_cmo model of seed S,
which isolates the stage-2 spread (the seeds then vary only the stage-2 randomness).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import replace
from typing import Dict, List, Optional

import torch

from afr_aug import IntraClassSplitter
from afr_aug.distributed import get_rank, get_world_size

from . import report
from .common import (ALL_METHODS, DERIVED_METHODS, PAPER_METHODS, STAGE2_METHODS, Schedule,
                     add_speed_args, derive_model, device_name, evaluate_model, evaluate_run,
                     load_checkpoint, load_data, make_model, maybe_refresh, new_run, restore,
                     save_atomic, speed_from, state_of, train_batches, train_epoch, worker_env)

PRESETS = {
    "paper": dict(schedule=Schedule(epochs=200, stage2_epochs=50, milestones=(0.8, 0.9)),
                  dataset="cifar100-lt", methods=PAPER_METHODS),
    # CMO's 400-epoch recipe: decay after 360 and 380 epochs
    "paper400": dict(schedule=Schedule(epochs=400, stage2_epochs=50, milestones=(0.9, 0.95)),
                     dataset="cifar100-lt", methods=PAPER_METHODS),
    "smoke": dict(schedule=Schedule(epochs=2, stage2_epochs=2, warmup_epochs=1, max_iters=3,
                                    eval_every=1, refresh_every=1, cmo_off_epochs=0,
                                    crt_epochs=1),
                  train_fraction=0.05, test_limit=500, dataset="cifar10-lt", methods=ALL_METHODS),
}
METHOD_GROUPS = {"paper": PAPER_METHODS, "all": ALL_METHODS}


class Interrupted(SystemExit):
    """Raised by --stop-after-epochs to simulate a killed run (exit status 75)."""


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m benchmarks.reproduce", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", choices=sorted(PRESETS), default="paper")
    p.add_argument("--methods", nargs="+", choices=list(ALL_METHODS) + list(METHOD_GROUPS),
                   default=None, metavar="METHOD",
                   help="rows to run, or 'paper' / 'all' (default: the preset's; see above)")
    p.add_argument("--dataset", choices=["cifar10-lt", "cifar100-lt"], default=None,
                   help="default: the preset's (paper, paper400: cifar100-lt; smoke: cifar10-lt)")
    p.add_argument("--imbalance-ratio", type=float, default=100)
    p.add_argument("--data-root", default=None, help="folder holding cifar-10-batches-py/ or "
                   "cifar-100-python/ (default: $AFR_DATA, else ./data)")
    p.add_argument("--data", default=None, metavar="PACK",
                   help="read the data from a file written by python -m benchmarks.pack")
    p.add_argument("--download", action="store_true",
                   help="fetch CIFAR with torchvision when it is not found (needs internet)")
    p.add_argument("--epochs", type=int, help="stage-1 epochs (milestones scale with it)")
    p.add_argument("--stage2-epochs", type=int, help="stage-2 epochs of afr and bs_cmo_ft")
    p.add_argument("--stage2-lr", type=float, help="peak stage-2 learning rate (cosine to 0)")
    p.add_argument("--seed", type=int, default=None, help="a single seed (same as --seeds N)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--mix", choices=["cutmix", "mixup"], default=None, help="stage-2 mixer")
    p.add_argument("--mix-p", type=float, default=None, help="stage-2 mixing probability")
    p.add_argument("--la-tau", type=float, default=None,
                   help="temperature of la and ce_posthoc's logit adjustment (default 1)")
    p.add_argument("--tau", type=float, default=None,
                   help="tau of bs_cmo_tau and afr_tau's normalisation (default 1)")
    p.add_argument("--crt-epochs", type=int, default=None,
                   help="bs_cmo_crt's classifier re-training epochs (default 10)")
    p.add_argument("--crt-lr", type=float, default=None, help="bs_cmo_crt's peak learning rate")
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--max-iters", type=int, default=None, help="cap iterations per epoch")
    p.add_argument("--eval-every", type=int, default=None)
    p.add_argument("--out", default="runs/reproduce")
    p.add_argument("--device", default=None, help="default: cuda if available, else cpu")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (per worker)")
    add_speed_args(p)
    p.add_argument("--stage1-seed", type=int, default=None,
                   help="stage-2 runs of every seed fine-tune the bs_cmo model of this seed "
                        "(default: the bs_cmo model of their own seed)")
    p.add_argument("--jobs", type=int, default=1,
                   help="run the (method, seed) grid in this many worker processes")
    p.add_argument("--isolate", action="store_true",
                   help="run each (method, seed) in a worker process of its own even with --jobs 1: "
                        "a failing run does not stop the others, and each gets its log in --out/logs")
    p.add_argument("--resume", action="store_true", help="continue from --out/ckpt")
    p.add_argument("--report-only", action="store_true",
                   help="write the report from the finished checkpoints in --out; train nothing")
    p.add_argument("--partial", action="store_true",
                   help="with --report-only: report unfinished runs too, each as a row of its own "
                        "(afr[partial 37/50]) evaluated at its last checkpoint")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--stop-after-epochs", type=int, default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.seed is not None:
        args.seeds = [args.seed]
    if args.dataset is None:
        args.dataset = PRESETS[args.preset]["dataset"]
    wanted = args.methods or list(PRESETS[args.preset]["methods"])
    expanded = [m for name in wanted for m in METHOD_GROUPS.get(name, (name,))]
    args.methods = [m for m in ALL_METHODS if m in expanded]
    if args.jobs < 1:
        p.error(f"--jobs must be at least 1, got {args.jobs}")
    if (args.jobs > 1 or args.isolate) and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        p.error("--jobs and --isolate run their own processes; use them without torchrun")
    return args


def schedule_from(args) -> Schedule:
    s = PRESETS[args.preset]["schedule"]
    changes = {k: v for k, v in dict(epochs=args.epochs, stage2_epochs=args.stage2_epochs,
                                     stage2_lr=args.stage2_lr, mix=args.mix, mix_p=args.mix_p,
                                     batch_size=args.batch_size, max_iters=args.max_iters,
                                     eval_every=args.eval_every, la_tau=args.la_tau, tau=args.tau,
                                     crt_epochs=args.crt_epochs,
                                     crt_lr=args.crt_lr).items() if v is not None}
    return replace(s, **changes)


def run_label(method: str, s: Schedule) -> str:
    """Variants get their own row: afr[mixup,0.5] (Table 2), bs_cmo_tau[tau=0.5], la[tau=2]."""
    tags = []
    if (method in STAGE2_METHODS or DERIVED_METHODS.get(method) in STAGE2_METHODS) \
            and (s.mix, s.mix_p) != ("cutmix", 0.25):
        tags.append(f"{s.mix},{s.mix_p:g}")
    if method.endswith("_tau") and s.tau != 1:
        tags.append(f"tau={s.tau:g}")
    if method in ("la", "ce_posthoc") and s.la_tau != 1:
        tags.append(f"tau={s.la_tau:g}")
    return f"{method}[{','.join(tags)}]" if tags else method


def from_bs_cmo(method: str) -> bool:
    """Whether ``method``'s run starts from a finished bs_cmo model (directly or through afr)."""
    source = source_of(method, 0)
    while source is not None and source[0] != "bs_cmo":
        source = source_of(source[0], 0)
    return source is not None


def ckpt_path(args, schedule: Schedule, label: str, seed: int) -> str:
    """``--out/ckpt/{label}-seed{seed}.pt``; a run that starts from another seed's bs_cmo model
    (--stage1-seed) says so in its name, so it never resumes a run of the other kind."""
    stem = f"{label}-seed{seed}"
    s1 = args.stage1_seed
    if s1 is not None and s1 != seed and from_bs_cmo(label.split("[")[0]):
        stem += f"-from{s1}"
    return os.path.join(args.out, "ckpt", stem + ".pt")


def setup_distributed(requested_device: Optional[str]) -> torch.device:
    """Under torchrun (WORLD_SIZE > 1): join the process group (NCCL on GPUs, gloo on CPU) and
    use this process's GPU; otherwise the requested device, else CUDA when present."""
    cuda = torch.cuda.is_available() and (requested_device or "cuda").startswith("cuda")
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        if not torch.distributed.is_initialized():
            torch.distributed.init_process_group(backend="nccl" if cuda else "gloo")
        if cuda:
            local = int(os.environ.get("LOCAL_RANK", "0"))
            torch.cuda.set_device(local)
            return torch.device("cuda", local)
        return torch.device("cpu")
    return torch.device(requested_device or ("cuda" if cuda else "cpu"))


class Benchmark:
    def __init__(self, args):
        self.args = args
        self.schedule = schedule_from(args)
        self.device = setup_distributed(args.device)
        preset = PRESETS[args.preset]
        self.data = load_data(args.dataset, args.data_root, args.imbalance_ratio, seed=0,
                              device=self.device, train_fraction=preset.get("train_fraction"),
                              test_limit=preset.get("test_limit"), pack=args.data,
                              download=args.download)
        self.ckpt_dir = os.path.join(args.out, "ckpt")
        self.epochs_this_call = 0
        self.finished: Dict[str, dict] = {}

    @staticmethod
    def log(message: str) -> None:
        if get_rank() == 0:
            print(message, flush=True)

    def stage1_seed(self, seed: int) -> int:
        return seed if self.args.stage1_seed is None else self.args.stage1_seed

    def ckpt_path(self, label: str, seed: int) -> str:
        return ckpt_path(self.args, self.schedule, label, seed)

    def source_state(self, method: str, seed: int) -> dict:
        """The finished checkpoint the run of ``method`` and ``seed`` starts from (a stage-2 run:
        its bs_cmo model; a derived row: its source's). A --jobs worker never trains it itself:
        the parent starts the worker only once that file is finished."""
        source, s = source_of(method, seed, self.args.stage1_seed)
        if not self.args.worker:
            return self.run(source, s)
        path = self.ckpt_path(run_label(source, self.schedule), s)
        state = load_checkpoint(path) if os.path.exists(path) else None
        if state is None or not state["done"]:
            raise RuntimeError(f"{path} is missing or unfinished: run {source} seed {s} first")
        return state

    def run(self, method: str, seed: int) -> dict:
        """Train (or resume, or reuse) one method for one seed; the finished checkpoint."""
        label = run_label(method, self.schedule)
        path = self.ckpt_path(label, seed)
        if path in self.finished:
            return self.finished[path]
        state = load_checkpoint(path) if self.args.resume and os.path.exists(path) else None
        if state is not None and state["done"]:
            self.finished[path] = state
            return state
        if method in DERIVED_METHODS:
            return self.derive(method, seed, label, path)
        init = self.source_state(method, seed) if method in STAGE2_METHODS else None
        run = new_run(method, seed, self.schedule, self.data, self.device, init_state=init,
                      speed=speed_from(self.args))
        if state is not None:
            restore(run, state)
            self.log(f"[{label} seed {seed}] resumed after epoch {run.epoch}")
        progress = not self.args.no_progress and get_rank() == 0
        while run.epoch < run.total_epochs:
            start = time.perf_counter()
            split = maybe_refresh(run, progress=progress)
            run.seconds += time.perf_counter() - start
            stats = train_epoch(run, progress=progress)
            if split is not None:
                stats["refresh"] = {"minority": int(split.minority_mask.sum()),
                                    "adversarial": int(run.balancer.is_adversarial.sum()),
                                    "adaptive": split.adaptive_applied}
            if run.epoch % self.schedule.eval_every == 0 or run.epoch == run.total_epochs:
                stats["top1"] = evaluate_run(run)["top1"]
            run.history.append(stats)
            self.log(f"[{label} seed {seed}] epoch {run.epoch}/{run.total_epochs} "
                     + " ".join(f"{k}={v:.4g}" for k, v in stats.items() if isinstance(v, float)))
            save_atomic(state_of(run), path)
            self.epochs_this_call += 1
            if self.args.stop_after_epochs and self.epochs_this_call >= self.args.stop_after_epochs:
                raise Interrupted(75)
        final = evaluate_run(run)
        evaluated = [h["top1"] for h in run.history if "top1" in h]
        epochs = self.schedule.epochs + (self.schedule.stage2_epochs if run.stage == 2 else 0)
        result = trained_row(label, seed, final, evaluated, run.seconds, run.images_seen,
                             self.schedule.epochs, epochs - self.schedule.epochs)
        if run.stage == 2:
            result["stage1_seed"] = self.stage1_seed(seed)
        state = state_of(run, done=True, result=result)
        save_atomic(state, path)
        self.finished[path] = state
        return state

    def derive(self, method: str, seed: int, label: str, path: str) -> dict:
        """A row made from a finished model (post-hoc, tau-normalised, cRT): one step, so its
        checkpoint is written once, finished."""
        source = self.source_state(method, seed)
        start = time.perf_counter()
        model, images = derive_model(method, source, self.data, self.device, self.schedule, seed,
                                     progress=not self.args.no_progress and get_rank() == 0)
        seconds = time.perf_counter() - start
        final = evaluate_model(model, self.data, self.device)
        src = source["result"]
        crt = self.schedule.crt_epochs if images else 0
        result = {"method": label, "epochs": src["epochs"] + crt, "seed": seed,
                  "top1": final["top1"], "many": final["many"], "med": final["med"],
                  "few": final["few"], "ece": final["ece"], "calibration": final["calibration"],
                  "per_class": final["per_class"], "seconds": seconds,
                  "img_per_s": images / seconds if images else None,
                  "derived_from": src["method"],
                  "stage1_epochs": src.get("stage1_epochs", src["epochs"]),
                  "stage2_epochs": crt or src.get("stage2_epochs", 0)}
        if from_bs_cmo(method):
            result["stage1_seed"] = self.stage1_seed(seed)
        self.log(f"[{label} seed {seed}] from {src['method']}: top1={final['top1']:.4g} "
                 f"ece={final['ece']:.4g} ({seconds:.1f}s)")
        state = {"method": method, "seed": seed, "done": True, "result": result,
                 "model": model.state_dict(), "history": []}
        save_atomic(state, path)
        self.finished[path] = state
        return state

    def partial_result(self, method: str, seed: int, path: str) -> Optional[dict]:
        """The row of an unfinished run, evaluated at its last checkpoint (a time budget cut
        it); ``None`` when it never finished an epoch or is a derived row (made in one step)."""
        if method in DERIVED_METHODS or not os.path.exists(path):
            return None
        try:
            state = load_checkpoint(path)
        except Exception:   # noqa: BLE001 - a checkpoint cut mid-write is not a row
            return None
        done, label = int(state["epoch"]), run_label(method, self.schedule)
        if done == 0:
            return None
        total = self.schedule.stage2_epochs if method in STAGE2_METHODS else self.schedule.epochs
        base, _, tags = label.partition("[")
        tags = tags.rstrip("]")
        label = f"{base}[{tags + ',' if tags else ''}partial {done}/{total}]"
        model = make_model(self.data, self.device, method)
        model.load_state_dict(state["model"])
        final = evaluate_model(model, self.data, self.device)
        evaluated = [h["top1"] for h in state["history"] if "top1" in h] + [final["top1"]]
        stage2 = method in STAGE2_METHODS
        result = trained_row(label, seed, final, evaluated, state["seconds"], state["images_seen"],
                             self.schedule.epochs if stage2 else done, done if stage2 else 0)
        result["partial"] = {"epochs_done": done, "epochs": total}
        if stage2:
            result["stage1_seed"] = self.stage1_seed(seed)
        return result

    def class_distribution(self, seed: int) -> Optional[dict]:
        """Fig. 1: cosine similarity to the class mean under the finished bs_cmo model."""
        path = self.ckpt_path("bs_cmo", self.stage1_seed(seed))
        if path not in self.finished and _finished(path):   # e.g. only stage-2 runs were asked
            self.finished[path] = load_checkpoint(path)
        if path not in self.finished:
            return None
        state = self.finished[path]
        model = make_model(self.data, self.device)
        model.load_state_dict(state["model"])
        splitter = IntraClassSplitter()
        emb, labels, _, _ = splitter.embed(model, train_batches(self.data), self.device,
                                           progress=not self.args.no_progress and get_rank() == 0)
        d = self.data
        split = splitter.split(emb, labels, state["class_accuracy"], state["train_accuracy"],
                               num_classes=d.num_classes)
        return {"similarity": split.similarity, "labels": split.labels,
                "thresholds": split.thresholds.tolist()}


def trained_row(label: str, seed: int, final: dict, evaluated: List[float], seconds: float,
                images: int, stage1_epochs: int, stage2_epochs: int) -> dict:
    """The ``results.json`` row of a trained run (finished or cut) from its final evaluation,
    the top-1 of its earlier evaluations and its training time."""
    return {"method": label, "epochs": stage1_epochs + stage2_epochs, "seed": seed,
            "top1": final["top1"], "best_top1": max(evaluated) if evaluated else final["top1"],
            "many": final["many"], "med": final["med"], "few": final["few"],
            "ece": final.get("ece"), "calibration": final.get("calibration"),
            "per_class": final["per_class"], "seconds": seconds,
            "img_per_s": images / max(seconds, 1e-9),
            "stage1_epochs": stage1_epochs, "stage2_epochs": stage2_epochs}


def source_of(method: str, seed: int, stage1_seed: Optional[int] = None) -> Optional[tuple]:
    """The (method, seed) run whose finished model the run of ``method`` starts from, if any:
    a stage-2 run's bs_cmo (of --stage1-seed when given), a derived row's source."""
    source = "bs_cmo" if method in STAGE2_METHODS else DERIVED_METHODS.get(method)
    if source is None:
        return None
    return (source, stage1_seed if source == "bs_cmo" and stage1_seed is not None else seed)


def grid(methods, seeds, stage1_seed: Optional[int] = None):
    """The (method, seed) runs to do, in report order, and the run each one starts from (a
    dependency missing from the grid is added before it: trained but not reported)."""
    order = [m for m in ALL_METHODS if m in methods]
    tasks, deps = [], {}

    def add(task):
        dep = source_of(*task, stage1_seed)
        if dep is not None:
            deps[task] = dep
            add(dep)
        if task not in tasks:
            tasks.append(task)

    for seed in seeds:
        for method in order:
            add((method, seed))
    return tasks, deps


def start_order(tasks):
    """The order --jobs starts runs in: bs_cmo first (the stage-2 runs wait for it and it is
    the longest), then each run that starts from another as soon as it may, then the other
    stage-1 runs."""
    rank = {"bs_cmo": 0, **{m: 1 for m in STAGE2_METHODS}, **{m: 1 for m in DERIVED_METHODS}}
    return sorted(tasks, key=lambda t: rank.get(t[0], 2))


def _finished(path: str) -> bool:
    """Whether ``path`` is a finished checkpoint; a corrupt one is left for its worker to report."""
    if not os.path.exists(path):
        return False
    try:
        return bool(load_checkpoint(path)["done"])
    except Exception:   # noqa: BLE001 - any unreadable file counts as not finished
        return False


class JobRunner:
    """--jobs N: each (method, seed) in its own worker process, N at a time, a stage-2 run only
    once the bs_cmo checkpoint it fine-tunes is finished. Worker output goes to --out/logs/ and
    to the screen; SIGTERM (e.g. from ``timeout``) stops the workers too."""

    def __init__(self, args, argv: List[str]):
        self.args, self.argv = args, argv
        self.tasks, self.deps = grid(args.methods, args.seeds, args.stage1_seed)
        schedule = schedule_from(args)
        self.path = {t: ckpt_path(args, schedule, run_label(t[0], schedule), t[1])
                     for t in self.tasks}
        self.done = {t for t in self.tasks if args.resume and _finished(self.path[t])}
        self.threads = args.threads or max(1, (os.cpu_count() or 1) // args.jobs)
        self.logs = os.path.join(args.out, "logs")
        self.env = worker_env(self.threads)
        self.lock = threading.Lock()
        self.running: Dict[tuple, tuple] = {}
        self.failed: List[tuple] = []

    def say(self, line: str, err: bool = False) -> None:
        with self.lock:
            print(line, end="" if line.endswith("\n") else "\n", flush=True,
                  file=sys.stderr if err else sys.stdout)

    def _pump(self, proc, log_path: str) -> None:
        with open(log_path, "a", encoding="utf-8") as log:
            for line in proc.stdout:
                log.write(line)
                log.flush()
                self.say(line)

    def _start(self, task) -> None:
        method, seed = task
        cmd = [sys.executable, "-m", "benchmarks.reproduce", *self.argv, "--jobs", "1",
               "--worker", "--methods", method, "--seeds", str(seed),
               "--threads", str(self.threads), "--no-progress"]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                env=self.env)
        log = os.path.join(self.logs, os.path.basename(self.path[task])[:-3] + ".log")
        pump = threading.Thread(target=self._pump, args=(proc, log), daemon=True)
        pump.start()
        self.running[task] = (proc, pump)

    def _stop(self, signum, frame):
        for proc, _ in self.running.values():
            proc.terminate()
        raise SystemExit(128 + signum)

    def run(self) -> int:
        """Run the grid; the number of runs that failed or could not start."""
        os.makedirs(self.logs, exist_ok=True)
        pending = [t for t in start_order(self.tasks) if t not in self.done]
        self.say(f"--jobs {self.args.jobs}: {len(pending)} runs to do ({len(self.done)} already "
                 f"finished), {self.threads} thread(s) each; logs in {self.logs}")
        previous = signal.signal(signal.SIGTERM, self._stop)
        try:
            while pending or self.running:
                for task in list(pending):
                    dep = self.deps.get(task)
                    if dep in self.failed:
                        pending.remove(task)
                        self.failed.append(task)
                    elif len(self.running) < self.args.jobs and (dep is None or dep in self.done):
                        pending.remove(task)
                        self._start(task)
                for task, (proc, pump) in list(self.running.items()):
                    if proc.poll() is None:
                        continue
                    pump.join()
                    del self.running[task]
                    if proc.returncode == 0:
                        self.done.add(task)
                    else:
                        self.failed.append(task)
                        self.say(f"{task[0]} seed {task[1]} failed (exit {proc.returncode}); "
                                 f"see {self.logs}", err=True)
                time.sleep(0.2)
        finally:
            signal.signal(signal.SIGTERM, previous)
        return len(self.failed)


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    if (args.jobs > 1 or args.isolate) and not args.worker and not args.report_only:
        failed = JobRunner(args, argv).run()
        if failed:
            print(f"{failed} run(s) failed or were skipped; finished ones resume with --resume",
                  file=sys.stderr)
            return 1
        args = parse_args(argv + ["--jobs", "1", "--resume"])   # merge the finished runs
        args.isolate = False
    if args.threads:
        torch.set_num_threads(args.threads)
    bench = Benchmark(args)
    tasks, _ = grid(args.methods, args.seeds, args.stage1_seed)
    wanted = [t for t in tasks if t[0] in args.methods and t[1] in args.seeds]
    runs: List[dict] = []
    missing: List[str] = []
    partial: List[str] = []
    try:
        for method, seed in (tasks if args.report_only else wanted):
            if not args.report_only:
                runs.append(bench.run(method, seed)["result"])
                continue
            path = bench.ckpt_path(run_label(method, bench.schedule), seed)
            if _finished(path):
                bench.finished[path] = load_checkpoint(path)
                if (method, seed) in wanted:
                    runs.append(bench.finished[path]["result"])
            elif (method, seed) in wanted:
                row = bench.partial_result(method, seed, path) if args.partial else None
                if row is None:
                    missing.append(f"{method} seed {seed}")
                else:
                    runs.append(row)
                    partial.append(f"{method} seed {seed} ({row['partial']['epochs_done']}/"
                                   f"{row['partial']['epochs']} epochs)")
    except Interrupted:
        if get_rank() != 0:
            return 75
        print(f"stopped after {bench.epochs_this_call} epochs as asked (--stop-after-epochs); "
              f"continue with --resume", file=sys.stderr)
        return 75
    if args.worker:
        return 0                                      # the parent writes the report
    if missing:
        print(f"--report-only: not finished, left out of the report: {', '.join(missing)}",
              file=sys.stderr)
    if partial:
        print(f"--report-only: unfinished, reported as partial rows: {', '.join(partial)}",
              file=sys.stderr)
    if not runs:
        print(f"no finished runs in {bench.ckpt_dir}", file=sys.stderr)
        return 1
    fig1 = bench.class_distribution(args.seeds[0])   # a collective under DDP: every rank
    if get_rank() != 0:
        return 0                                      # only rank 0 writes files
    d = bench.data
    results = {"dataset": args.dataset, "imbalance_ratio": args.imbalance_ratio,
               "device": device_name(bench.device), "world_size": get_world_size(),
               "preset": args.preset,
               "class_counts": d.class_counts, "runs": runs}
    if missing:
        results["missing"] = missing
    if partial:
        results["partial"] = partial
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump(results, f, indent=1)
    written = [os.path.join(args.out, "results.json")]
    written += report.write_report(results, args.out, class_counts=d.class_counts)
    if fig1 is not None:
        try:
            path = os.path.join(args.out, "class_distribution.png")
            report.plot_class_distribution(d.class_counts, fig1["similarity"], fig1["labels"],
                                           head_class=0, tail_class=d.num_classes - 1, path=path,
                                           class_names=d.classes, thresholds=fig1["thresholds"])
            written.append(path)
        except ImportError as e:
            print(f"skipping class_distribution.png: {e}", file=sys.stderr)
    print(report.markdown_table(results))
    print("wrote " + ", ".join(str(w) for w in written))
    return 0


def _main_and_leave_group() -> int:
    try:
        return main()
    finally:
        if torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


if __name__ == "__main__":
    sys.exit(_main_and_leave_group())
