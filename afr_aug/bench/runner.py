"""Train, derive, resume and evaluate the runs of ``afr-aug reproduce`` in this
process, and turn each into its ``results.json`` row."""

from __future__ import annotations

import os

import torch

from afr_aug import IntraClassSplitter
from afr_aug.distributed import get_rank
from afr_aug.embedding import run_inference

from .checkpoints import is_finished, load_checkpoint, restore, save_atomic, state_of
from .clock import recorded_seconds, running_time
from .data import Data, train_batches
from .derived import derive_model
from .factories import logit_scale, make_model
from .grid import ckpt_path, from_bs_cmo, run_label, source_of
from .loop import Run, evaluate_model, evaluate_run, maybe_refresh, new_run, train_epoch
from .methods import METHODS
from .presets import schedule_from
from .runtime import training_device
from .speed import speed_from


class Interrupted(SystemExit):
    """Raised by --stop-after-epochs to simulate a killed run (exit status 75)."""


class Benchmark:
    """The runs of ``reproduce``'s grid done in this process (under torchrun: by every rank
    together), each resumed from or saved to its checkpoint; ``args`` are reproduce's flags."""

    def __init__(self, args, device: torch.device, data: Data):
        self.args, self.device, self.data = args, device, data
        self.schedule = schedule_from(args)
        self.ckpt_dir = os.path.join(args.out, "ckpt")
        self.epochs_this_call = 0
        self.finished: dict[str, dict] = {}

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
        its stage-1 model, bs_cmo or --stage1-method's; a derived row: its source's). A --jobs
        worker never trains it itself: the parent starts the worker only once that file is
        finished."""
        dep = source_of(method, seed, self.args.stage1_seed, self.schedule.stage1_method)
        assert dep is not None  # asked only for a run that starts from another
        source, s = dep
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
        state = self.cached(path)
        if state is not None and state["done"]:
            return state
        if METHODS[method].stage == 0:
            return self.derive(method, seed, label, path)
        run = self.start(method, seed, state, label)
        self.train(run, label, path)
        return self.finish(run, label, path)

    def cached(self, path: str) -> dict | None:
        """The checkpoint at ``path`` when this process finished it or ``--resume`` finds it;
        ``None`` when the run starts afresh."""
        if path in self.finished:
            return self.finished[path]
        state = load_checkpoint(path) if self.args.resume and os.path.exists(path) else None
        if state is not None and state["done"]:
            self.finished[path] = state
        return state

    def start(self, method: str, seed: int, state: dict | None, label: str) -> Run:
        """A new run of ``method`` (a stage-2 run from its stage-1 model), resumed from
        ``state`` when there is one."""
        init = self.source_state(method, seed) if METHODS[method].stage == 2 else None
        run = new_run(
            method,
            seed,
            self.schedule,
            self.data,
            self.device,
            init_state=init,
            speed=speed_from(self.args),
        )
        if state is not None:
            restore(run, state)
            self.log(f"[{label} seed {seed}] resumed after epoch {run.epoch}")
        return run

    def train(self, run: Run, label: str, path: str) -> None:
        """The run's remaining epochs: the refresh when due, an epoch, the evaluation when due,
        a checkpoint after each."""
        progress = not self.args.no_progress and get_rank() == 0
        while run.epoch < run.total_epochs:
            start = running_time()
            report = maybe_refresh(run, progress=progress)
            run.seconds += running_time() - start
            if report is not None:
                self.show_refresh(report, label, run.seed, running_time() - start)
            stats = train_epoch(run, progress=progress)
            if report is not None:
                stats["refresh"] = {
                    **report.to_dict(),
                    "seconds": running_time() - start - stats["seconds"],
                }
            if run.schedule.evaluates(run.epoch, run.stage):
                stats["top1"] = evaluate_run(run)["top1"]
            run.history.append(stats)
            self.log(
                f"[{label} seed {run.seed}] epoch {run.epoch}/{run.total_epochs} "
                + " ".join(f"{k}={v:.4g}" for k, v in stats.items() if isinstance(v, float))
            )
            save_atomic(state_of(run), path)
            self.epochs_this_call += 1
            if self.args.stop_after_epochs and self.epochs_this_call >= self.args.stop_after_epochs:
                raise Interrupted(75)

    def finish(self, run: Run, label: str, path: str) -> dict:
        """The finished run's ``results.json`` row, saved with its final checkpoint."""
        final = evaluate_run(run)
        evaluated = [h["top1"] for h in run.history if "top1" in h]
        stage1 = run.schedule.epochs
        seconds, estimated = recorded_seconds(run.seconds, run.history, run.clock)
        result = trained_row(
            label,
            run.seed,
            final,
            evaluated,
            seconds,
            run.images_seen,
            stage1,
            run.schedule.stage2_epochs if run.stage == 2 else 0,
            run.history,
        )
        if estimated:
            result["paused_epochs_estimated"] = estimated
        if run.stage == 2:
            result["stage1_seed"] = self.stage1_seed(run.seed)
        # the machine that finished the run: a report may be written elsewhere, from runs of
        # several machines, and its header names only the machine that wrote it
        assert run.speed is not None  # new_run() set it
        result["device"] = training_device(self.device, run.speed.amp)
        result["recipe"] = self.schedule.recipe
        state = state_of(run, done=True, result=result)
        save_atomic(state, path)
        self.finished[path] = state
        return state

    def show_refresh(self, report, label: str, seed: int, seconds: float) -> None:
        """The refresh's table in the log, and its Fig. 1-style histograms under refresh/."""
        if get_rank() != 0:
            return
        self.log(f"[{label} seed {seed}] refresh {report.generation} ({seconds:.1f} s)\n{report}")
        try:
            folder = os.path.join(self.args.out, "refresh")
            os.makedirs(folder, exist_ok=True)
            report.plot(os.path.join(folder, f"{label}-seed{seed}-r{report.generation}.png"))
        except ImportError:
            pass

    def derive(self, method: str, seed: int, label: str, path: str) -> dict:
        """A row made from a finished model (post-hoc, tau-normalised, cRT): one step, so its
        checkpoint is written once, finished."""
        source = self.source_state(method, seed)
        start = running_time()
        model, images = derive_model(
            method,
            source,
            self.data,
            self.device,
            self.schedule,
            seed,
            progress=not self.args.no_progress and get_rank() == 0,
        )
        seconds = running_time() - start
        final = evaluate_model(model, self.data, self.device)
        src = source["result"]
        crt = self.schedule.crt_epochs if images else 0
        result = {
            "method": label,
            "epochs": src["epochs"] + crt,
            "seed": seed,
            "top1": final["top1"],
            "many": final["many"],
            "med": final["med"],
            "few": final["few"],
            "ece": final["ece"],
            "calibration": final["calibration"],
            "per_class": final["per_class"],
            "seconds": seconds,
            "img_per_s": images / seconds if images else None,
            "derived_from": src["method"],
            "stage1_epochs": src.get("stage1_epochs", src["epochs"]),
            "stage2_epochs": crt or src.get("stage2_epochs", 0),
            "recipe": src.get("recipe", "paper"),
        }
        # where the row was made: a classifier re-trained here (cRT, MiSLAS's stage 2, in fp32),
        # or, for a post-hoc row, where its source model trained
        device = training_device(self.device, False) if images else src.get("device")
        if device is not None:
            result["device"] = device
        if from_bs_cmo(method, self.schedule.stage1_method):
            result["stage1_seed"] = self.stage1_seed(seed)
        self.log(
            f"[{label} seed {seed}] from {src['method']}: top1={final['top1']:.4g} "
            f"ece={final['ece']:.4g} ({seconds:.1f}s)"
        )
        state = {
            "method": method,
            "seed": seed,
            "done": True,
            "result": result,
            "model": model.state_dict(),
            "history": [],
        }
        save_atomic(state, path)
        self.finished[path] = state
        return state

    def evaluate_checkpoint(self, entry, state: dict) -> dict:
        """The test-set numbers of the model saved in ``state``, a run of row ``entry``."""
        model = make_model(self.data, self.device, entry)
        model.load_state_dict(state["model"])
        return evaluate_model(model, self.data, self.device, logit_scale(entry))

    def reevaluated(self, method: str, state: dict) -> dict:
        """The row of a finished trained run with its final model evaluated again by this
        version (--report-only --reevaluate): the test-set numbers change, the training history
        and best top-1 stay as they were recorded, and the time of a run recorded before
        ``afr_aug.bench.clock`` leaves out its pauses (``paused_epochs_estimated``)."""
        result = dict(state["result"])
        entry = METHODS[method]
        if entry.stage == 0:
            return result
        if state.get("clock") is None:  # finished before the running clock: estimate its pauses
            seconds, estimated = recorded_seconds(result["seconds"], state.get("history", []))
            result["img_per_s"] *= result["seconds"] / max(seconds, 1e-9)  # same images
            result["seconds"] = seconds
            if estimated:
                result["paused_epochs_estimated"] = estimated
        final = self.evaluate_checkpoint(entry, state)
        for key in ("top1", "many", "med", "few", "ece", "calibration", "per_class"):
            result[key] = final[key]
        result["best_top1"] = max(result.get("best_top1", final["top1"]), final["top1"])
        return result

    def partial_result(self, method: str, seed: int, path: str) -> dict | None:
        """The row of an unfinished run, evaluated at its last checkpoint (a time budget cut
        it); ``None`` when it never finished an epoch or is a derived row (made in one step)."""
        entry = METHODS[method]
        if entry.stage == 0 or not os.path.exists(path):
            return None
        try:
            state = load_checkpoint(path)
        except Exception:
            return None
        done, label = int(state["epoch"]), run_label(method, self.schedule)
        if done == 0:
            return None
        stage2 = entry.stage == 2
        schedule = self.schedule if stage2 else self.schedule.for_stage1(entry)
        total = schedule.stage2_epochs if stage2 else schedule.epochs
        base, _, tags = label.partition("[")
        tags = tags.rstrip("]")
        label = f"{base}[{tags + ',' if tags else ''}partial {done}/{total}]"
        final = self.evaluate_checkpoint(entry, state)
        evaluated = [h["top1"] for h in state["history"] if "top1" in h] + [final["top1"]]
        result = trained_row(
            label,
            seed,
            final,
            evaluated,
            recorded_seconds(state["seconds"], state["history"], state.get("clock"))[0],
            state["images_seen"],
            self.schedule.epochs if stage2 else done,
            done if stage2 else 0,
            state["history"],
        )
        result["partial"] = {"epochs_done": done, "epochs": total}
        result["recipe"] = state.get("recipe", "paper")
        if stage2:
            result["stage1_seed"] = self.stage1_seed(seed)
        return result

    def class_distribution(self, seed: int) -> dict | None:
        """Fig. 1: cosine similarity to the class mean under the finished stage-1 model that
        stage 2 fine-tunes (bs_cmo, or --stage1-method's)."""
        label = run_label(self.schedule.stage1_method, self.schedule)
        path = self.ckpt_path(label, self.stage1_seed(seed))
        if path not in self.finished and is_finished(path):  # e.g. only stage-2 runs were asked
            self.finished[path] = load_checkpoint(path)
        if path not in self.finished:
            return None
        state = self.finished[path]
        model = make_model(self.data, self.device)
        model.load_state_dict(state["model"])
        out = run_inference(
            model,
            train_batches(self.data),
            embed=True,
            device=self.device,
            progress=not self.args.no_progress and get_rank() == 0,
        )
        d = self.data
        assert out.embeddings is not None  # embed=True
        split = IntraClassSplitter().split(
            out.embeddings,
            out.labels,
            state["class_accuracy"],
            state["train_accuracy"],
            num_classes=d.num_classes,
        )
        return {
            "similarity": split.similarity,
            "labels": split.labels,
            "thresholds": split.thresholds.tolist(),
        }


def _refreshes_in_training(history) -> list[dict]:
    """Each refresh's report, with ``trained``: what the batches of the epochs it served (up to
    the next refresh) took from the stage-2 set: batches, mixed batches, images and the share
    of the training pixels that came from the set."""
    served: list[tuple[dict, list[dict]]] = []  # (report, the mix stats of the epochs it served)
    for h in history:
        if "refresh" in h:
            served.append((h["refresh"], []))
        if served and h.get("mix"):
            served[-1][1].append(h["mix"])
    refreshes = []
    for report, mixes in served:
        row = dict(report)
        if mixes:
            images = sum(m["images"] for m in mixes)
            from_set = sum(m["balanced_share"] * m["images"] for m in mixes)
            row["trained"] = {
                "batches": sum(m["batches"] for m in mixes),
                "mixed": sum(m["mixed"] for m in mixes),
                "images": images,
                "set_share": from_set / images if images else 0.0,
            }
        refreshes.append(row)
    return refreshes


def trained_row(
    label: str,
    seed: int,
    final: dict,
    evaluated: list[float],
    seconds: float,
    images: int,
    stage1_epochs: int,
    stage2_epochs: int,
    history=(),
) -> dict:
    """The ``results.json`` row of a trained run (finished or cut) from its final evaluation,
    the top-1 of its earlier evaluations, its training time and, for AFR, the report of every
    refresh (from its ``history``)."""
    refreshes = _refreshes_in_training(history)
    return {
        **({"refreshes": refreshes} if refreshes else {}),
        "method": label,
        "epochs": stage1_epochs + stage2_epochs,
        "seed": seed,
        "top1": final["top1"],
        "best_top1": max(evaluated) if evaluated else final["top1"],
        "many": final["many"],
        "med": final["med"],
        "few": final["few"],
        "ece": final.get("ece"),
        "calibration": final.get("calibration"),
        "per_class": final["per_class"],
        "seconds": seconds,
        "img_per_s": images / max(seconds, 1e-9),
        "stage1_epochs": stage1_epochs,
        "stage2_epochs": stage2_epochs,
    }
