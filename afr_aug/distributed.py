"""Small ``torch.distributed`` helpers so every component works under ``torchrun`` unchanged.

Outside a process group every helper is the identity (world size 1), so single-process code
pays nothing. Collectives go through the backend's device: CUDA tensors for NCCL, CPU
tensors for gloo; results come back on the input's device.
"""

from __future__ import annotations

import torch
import torch.distributed as dist

__all__ = [
    "all_gather_cat",
    "all_reduce_sum",
    "barrier",
    "get_rank",
    "get_world_size",
    "is_distributed",
]


def is_distributed() -> bool:
    """True inside an initialised process group with more than one process."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def get_rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def get_world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def _comm_device() -> torch.device:
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def all_gather_cat(tensor: torch.Tensor) -> torch.Tensor:
    """Concatenate every rank's ``tensor`` along dim 0, in rank order (lengths may differ).

    >>> all_gather_cat(torch.arange(3)).tolist()   # one process: unchanged
    [0, 1, 2]
    """
    if not is_distributed():
        return tensor
    dev = _comm_device()
    local = tensor.detach().to(dev).contiguous()
    n = torch.tensor([local.shape[0]], device=dev)
    sizes: list[torch.Tensor] = [torch.zeros_like(n) for _ in range(dist.get_world_size())]
    dist.all_gather(sizes, n)
    longest = int(max(s.item() for s in sizes))
    padded = torch.zeros((longest, *local.shape[1:]), dtype=local.dtype, device=dev)
    padded[: local.shape[0]] = local
    parts = [torch.empty_like(padded) for _ in sizes]
    dist.all_gather(parts, padded)
    return torch.cat([p[: int(s.item())] for p, s in zip(parts, sizes)]).to(tensor.device)


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum of ``tensor`` over ranks (a new tensor; the input is left as it is)."""
    if not is_distributed():
        return tensor.clone()
    out = tensor.detach().to(_comm_device()).clone()
    dist.all_reduce(out)
    return out.to(tensor.device)


def barrier() -> None:
    if is_distributed():
        dist.barrier()
