"""Where a benchmark runs: the device it names in its results, the process group under
torchrun, and the environment of the worker processes it starts."""

from __future__ import annotations

import os
import platform
import sys
from typing import NoReturn

import torch

from afr_aug.distributed import barrier


def device_name(device: torch.device) -> str:
    """``cuda (NAME)`` or ``cpu (MODEL, N threads)``: what a results file says it ran on."""
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"cpu ({cpu}, {torch.get_num_threads()} threads)"


def training_device(device: torch.device, amp: bool | None) -> str:
    """:func:`device_name` and the precision the runs trained in (a results row says which).

    >>> training_device(torch.device("cpu"), amp=True).endswith(" threads), bf16 autocast")
    True
    """
    return device_name(device) + (", bf16 autocast" if amp else "")


def worker_env(threads: int) -> dict:
    """Environment for a benchmark worker process: unbuffered output, its own thread count, and
    the folder that holds this ``afr_aug`` on the path, so ``python -m afr_aug.bench.*`` runs
    this very code from any directory (a clone or an installed wheel)."""
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    return dict(
        os.environ,
        PYTHONUNBUFFERED="1",
        OMP_NUM_THREADS=str(threads),
        PYTHONPATH=os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p),
    )


def exit_process(code: int | None) -> NoReturn:
    """End a command's process with ``code``. Under torchrun: wait for every rank, leave the
    process group, flush the output and end at once, without the interpreter's shutdown.

    Why: a gloo worker thread releases a finished collective's tensors a moment after the
    caller has returned; when that lands in the interpreter's shutdown, the thread cannot take
    the GIL, is unwound inside a ``noexcept`` destructor and aborts the whole process (torch
    2.14.1, about 2 % of 2-rank runs on a 2-core Xeon, always after every file was written, yet
    torchrun reports the rank as failed). Every file of a command is closed before this runs.

    Usage, as a command's last line: ``if __name__ == "__main__": exit_process(main())``.
    """
    code = 0 if code is None else int(code)
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        barrier()
        torch.distributed.destroy_process_group()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


def setup_distributed(requested_device: str | None) -> torch.device:
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
