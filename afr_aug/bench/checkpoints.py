"""A run's checkpoint: written every epoch, atomically, so that ``--resume`` finishes a killed
run with the same result as an uninterrupted one. The run's loader is saved through its own
``state_dict()``, as a user's loop would save it."""

from __future__ import annotations

import os

import torch

from afr_aug.distributed import barrier, get_rank

from .loop import Run


def state_of(run: Run, done: bool = False, result: dict | None = None) -> dict:
    """Everything :func:`restore` needs to continue ``run`` as if it had never stopped."""
    assert run.model is not None and run.optimizer is not None and run.order is not None
    assert run.loader is not None  # new_run() set them all
    state = {
        "method": run.method,
        "seed": run.seed,
        "stage": run.stage,
        "epoch": run.epoch,
        "model": run.model.state_dict(),
        "optimizer": run.optimizer.state_dict(),
        "order": run.order.get_state(),
        "seconds": run.seconds,
        "clock": run.clock,
        "images_seen": run.images_seen,
        "history": run.history,
        "class_accuracy": run.class_accuracy,
        "train_accuracy": run.train_accuracy,
        "torch_rng": torch.get_rng_state(),
        "done": done,
        "result": result,
        "recipe": run.schedule.recipe,
    }
    if not done:  # a finished run is only evaluated: its loader (the stage-2 set's
        state["loader"] = run.loader.state_dict()  # adversarial rows, MBs) stays out
    return state


def restore(run: Run, state: dict) -> None:
    """Put a checkpoint of :func:`state_of` back into a fresh :func:`~afr_aug.bench.loop.new_run`;
    a checkpoint of another recipe is refused (checkpoints before recipes were "paper")."""
    recipe = state.get("recipe", "paper")
    if recipe != run.schedule.recipe:
        raise ValueError(
            f"{run.method} seed {run.seed}: the checkpoint was trained with "
            f"--recipe {recipe}, not {run.schedule.recipe}; use another --out"
        )
    assert run.model is not None and run.optimizer is not None and run.order is not None
    assert run.loader is not None  # new_run() set them all
    run.model.load_state_dict(state["model"])
    run.optimizer.load_state_dict(state["optimizer"])
    run.order.set_state(state["order"])
    run.epoch, run.seconds, run.images_seen = state["epoch"], state["seconds"], state["images_seen"]
    run.history = list(state["history"])
    run.clock = state.get("clock", "wall")  # an older run's seconds count its pauses
    run.class_accuracy, run.train_accuracy = state["class_accuracy"], state["train_accuracy"]
    torch.set_rng_state(state["torch_rng"])
    if "loader" not in state:
        raise ValueError(
            f"{run.method} seed {run.seed}: the checkpoint predates the loader "
            f"state (afr-aug 0.1's benchmark); resume it with the commit that "
            f"started it"
        )
    run.loader.load_state_dict(state["loader"])


def save_atomic(state: dict, path: str) -> None:
    """Write to a temporary file, then rename: a kill mid-write leaves the old checkpoint.
    Under DDP only rank 0 writes; the others wait for it."""
    if get_rank() == 0:
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        tmp = f"{path}.tmp{os.getpid()}"
        torch.save(state, tmp)
        os.replace(tmp, path)
    barrier()


def load_checkpoint(path: str) -> dict:
    """A checkpoint on the CPU, tensors and plain data only (``weights_only``)."""
    return torch.load(path, map_location="cpu", weights_only=True)


def is_finished(path: str) -> bool:
    """Whether ``path`` is a finished checkpoint; a corrupt one is left for its worker to report."""
    if not os.path.exists(path):
        return False
    try:
        return bool(load_checkpoint(path)["done"])
    except Exception:
        return False
