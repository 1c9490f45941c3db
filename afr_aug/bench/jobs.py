"""``reproduce --jobs N`` and ``--isolate``: the grid's runs in worker processes of their own.

Each worker is ``afr-aug reproduce --worker`` for one (method, seed); a run that
starts from another's finished model waits for it; the parent merges the checkpoints after.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

from .checkpoints import is_finished
from .grid import ckpt_path, grid, run_label, start_order
from .presets import schedule_from
from .runtime import worker_env


class JobRunner:
    """--jobs N: each (method, seed) in its own worker process, N at a time, a stage-2 run only
    once the stage-1 checkpoint it fine-tunes is finished. Worker output goes to --out/logs/ and
    to the screen; SIGTERM (e.g. from ``timeout``) stops the workers too."""

    def __init__(self, args, argv: list[str]):
        self.args, self.argv = args, argv
        self.schedule = schedule = schedule_from(args)
        self.tasks, self.deps = grid(
            args.methods, args.seeds, args.stage1_seed, schedule.stage1_method
        )
        self.path = {
            t: ckpt_path(args, schedule, run_label(t[0], schedule), t[1]) for t in self.tasks
        }
        self.done = {t for t in self.tasks if args.resume and is_finished(self.path[t])}
        self.threads = args.threads or max(1, (os.cpu_count() or 1) // args.jobs)
        self.logs = os.path.join(args.out, "logs")
        self.env = worker_env(self.threads)
        self.lock = threading.Lock()
        self.running: dict[tuple, tuple] = {}
        self.failed: list[tuple] = []

    def say(self, line: str, err: bool = False) -> None:
        with self.lock:
            print(
                line,
                end="" if line.endswith("\n") else "\n",
                flush=True,
                file=sys.stderr if err else sys.stdout,
            )

    def _pump(self, proc, log_path: str) -> None:
        with open(log_path, "a", encoding="utf-8") as log:
            for line in proc.stdout:
                log.write(line)
                log.flush()
                self.say(line)

    def _start(self, task) -> None:
        method, seed = task
        cmd = [
            sys.executable,
            "-m",
            "afr_aug.bench.reproduce",
            *self.argv,
            "--jobs",
            "1",
            "--worker",
            "--methods",
            method,
            "--seeds",
            str(seed),
            "--threads",
            str(self.threads),
            "--no-progress",
        ]
        proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=self.env
        )
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
        pending = [
            t
            for t in start_order(self.tasks, self.schedule.stage1_method, self.args.methods)
            if t not in self.done
        ]
        self.say(
            f"--jobs {self.args.jobs}: {len(pending)} runs to do ({len(self.done)} already "
            f"finished), {self.threads} thread(s) each; logs in {self.logs}"
        )
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
                        self.say(
                            f"{task[0]} seed {task[1]} failed (exit {proc.returncode}); "
                            f"see {self.logs}",
                            err=True,
                        )
                time.sleep(0.2)
        finally:
            signal.signal(signal.SIGTERM, previous)
        return len(self.failed)
