"""Where AFR's adversarial images live between refreshes: uint8 rows in memory or on disk.

Why a store of its own: the stage-2 set of ImageNet-LT holds hundreds of thousands of
adversarial images; as uint8 rows in a memory-mapped file they need disk, not RAM. Under
``torchrun`` every rank writes its own rows of one file, so every rank must agree on the file's
name: the name's token is drawn once and shared by all ranks.
"""

from __future__ import annotations

import os
import tempfile
from typing import Optional

import numpy as np
import torch

from .distributed import all_gather_cat, barrier, get_rank, get_world_size

__all__ = ["AdversarialStore"]


def _shared_token() -> str:
    """One random token, the same on every rank (rank 0's)."""
    token = torch.tensor([int.from_bytes(os.urandom(6), "little")])
    return f"{int(all_gather_cat(token)[0]):012x}"


class AdversarialStore:
    """The rows of one generation of adversarial images, uint8 [A, C, H, W].

    ``storage="memory"`` keeps them in a tensor; a directory keeps them in a file there
    (``afr-adversarial-<token>-<generation>.u8``), read through a memory map. A new generation
    is written with :meth:`begin`, :meth:`write` (any rows, by position, from any rank) and
    :meth:`finish`; the file of the generation before the previous one is deleted (the
    previous one stays, for a checkpoint taken before the latest refresh).

    Example:
        >>> store = AdversarialStore("memory")
        >>> store.begin(2, (1, 2, 2))
        >>> store.write(torch.tensor([1, 0]), torch.arange(8, dtype=torch.uint8).view(2, 1, 2, 2))
        >>> store.finish()
        >>> store.rows(torch.tensor([0])).flatten().tolist()
        [4, 5, 6, 7]
    """

    def __init__(self, storage="memory"):
        self.storage = self._check(storage)
        self.generation = 0
        self.image_shape: Optional[tuple] = None
        self.num_rows = 0
        self.token: Optional[str] = None
        self.file: Optional[str] = None
        self._rows: Optional[torch.Tensor] = None
        self._map = None
        self._pending = None

    @staticmethod
    def _check(storage):
        if storage == "memory":
            return storage
        if not isinstance(storage, (str, os.PathLike)):
            raise TypeError(f"storage must be 'memory' or a directory path, got "
                            f"{type(storage).__name__}")
        path = os.fspath(storage)
        try:
            os.makedirs(path, exist_ok=True)
            with tempfile.TemporaryFile(dir=path):
                pass
        except OSError as exc:
            raise ValueError(f"storage directory {path!r} is not writable: {exc}") from exc
        return path

    @property
    def on_disk(self) -> bool:
        return self.storage != "memory"

    def _file_name(self, generation: int) -> str:
        return os.path.join(self.storage, f"afr-adversarial-{self.token}-{generation}.u8")

    # -- writing a generation ---------------------------------------------------------------
    def begin(self, num_rows: int, image_shape: tuple) -> None:
        """Start the next generation of ``num_rows`` rows (every rank calls it)."""
        self.generation += 1
        self.image_shape, self.num_rows = tuple(image_shape), int(num_rows)
        self._map = None
        if self.on_disk:
            if self.token is None:
                self.token = _shared_token()
            path = self._file_name(self.generation)
            if get_rank() == 0:
                with open(path, "wb") as f:
                    f.truncate(self.num_rows * int(np.prod(self.image_shape)))
                old = self._file_name(self.generation - 2)
                if self.generation >= 2 and os.path.exists(old):
                    os.remove(old)
            barrier()
            self._pending = open(path, "r+b")
            self.file = path
        else:
            self._pending = ([], [])

    def write(self, positions: torch.Tensor, rows: torch.Tensor) -> None:
        """Rows ``rows`` (uint8 [B, C, H, W]) at ``positions`` [B] of this generation."""
        positions = torch.as_tensor(positions, dtype=torch.long).reshape(-1)
        if rows.dtype != torch.uint8 or tuple(rows.shape[1:]) != self.image_shape:
            raise ValueError(f"rows must be uint8 [B, {', '.join(map(str, self.image_shape))}], "
                             f"got {rows.dtype} {tuple(rows.shape)}")
        if not self.on_disk:
            self._pending[0].append(positions)
            self._pending[1].append(rows.cpu())
            return
        row_bytes = int(np.prod(self.image_shape))
        data = rows.cpu().contiguous().numpy()
        if len(positions) and bool((positions[1:] - positions[:-1] == 1).all()):
            os.pwrite(self._pending.fileno(), data.tobytes(), int(positions[0]) * row_bytes)
        else:
            for p, row in zip(positions.tolist(), data):
                os.pwrite(self._pending.fileno(), row.tobytes(), p * row_bytes)

    def finish(self) -> None:
        """Close the generation: every rank's rows are readable on every rank."""
        if self.on_disk:
            self._pending.flush()
            os.fsync(self._pending.fileno())
            self._pending.close()
            self._pending, self._rows = None, None
            barrier()
            return
        positions, rows = self._pending
        self._pending = None
        empty = torch.empty((0, *self.image_shape), dtype=torch.uint8)
        positions = torch.cat(positions) if positions else torch.empty(0, dtype=torch.long)
        rows = torch.cat(rows) if rows else empty
        if get_world_size() > 1:
            positions, rows = all_gather_cat(positions), all_gather_cat(rows)
        out = torch.empty((self.num_rows, *self.image_shape), dtype=torch.uint8)
        out[positions] = rows
        self._rows, self.file = out, None

    # -- reading ----------------------------------------------------------------------------
    def rows(self, idx) -> torch.Tensor:
        """uint8 rows ``idx`` (a tensor of positions or a slice)."""
        if self._rows is not None:
            return self._rows[idx]
        if self.file is None or self.num_rows == 0:
            return torch.empty((0, *(self.image_shape or (0, 0, 0))), dtype=torch.uint8)[idx]
        if self._map is None:
            self._map = np.memmap(self.file, dtype=np.uint8, mode="r",
                                  shape=(self.num_rows, *self.image_shape))
        if isinstance(idx, torch.Tensor):
            idx = idx.numpy()
        return torch.from_numpy(np.array(self._map[idx]))

    def __getstate__(self):
        # DataLoader workers reopen the memory map themselves
        return {**self.__dict__, "_map": None, "_pending": None}

    # -- checkpoints --------------------------------------------------------------------------
    def state_dict(self) -> dict:
        """Rows in memory travel in the state; a file is named by it."""
        return {"generation": self.generation, "image_shape": self.image_shape,
                "num_rows": self.num_rows, "token": self.token, "file": self.file,
                "rows": self._rows}

    def load_state_dict(self, state_dict: dict) -> None:
        """Restore :meth:`state_dict` into either storage (memory rows go to a new file when
        this store is on disk, under one token shared by all ranks)."""
        rows, path = state_dict["rows"], state_dict["file"]
        shape = tuple(state_dict["image_shape"]) if state_dict["image_shape"] is not None else None
        n = int(state_dict["num_rows"])
        if rows is None and path is not None:
            size = n * int(np.prod(shape))
            if not os.path.isfile(path) or os.path.getsize(path) != size:
                raise ValueError(f"the state's adversarial images are in {path!r}, which is "
                                 f"missing or not {size} bytes")
        elif rows is not None and len(rows) != n:
            raise ValueError(f"inconsistent state: {len(rows)} adversarial rows, expected {n}")
        self.generation, self.image_shape, self.num_rows = state_dict["generation"], shape, n
        self.token = state_dict["token"]
        self._map, self._rows, self.file = None, None, None
        if rows is None and path is not None:
            if self.on_disk:
                self.file = path
            else:
                self._rows = torch.from_numpy(np.fromfile(path, np.uint8).reshape(n, *shape))
        elif rows is not None and self.on_disk:
            if self.token is None:
                self.token = _shared_token()          # every rank the same name
            self.file = self._file_name(self.generation)
            if get_rank() == 0:
                rows.contiguous().numpy().tofile(self.file)
            barrier()
        else:
            self._rows = rows

    def __repr__(self) -> str:
        where = "memory" if not self.on_disk else f"disk:{self.storage}"
        return f"AdversarialStore({self.num_rows} rows in {where}, generation {self.generation})"
