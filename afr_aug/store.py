"""Where AFR's adversarial images live between refreshes: uint8 rows in memory or on disk.

Why a store of its own: the stage-2 set of ImageNet-LT holds hundreds of thousands of
adversarial images; as uint8 rows in a memory-mapped file they need disk, not RAM. Under
``torchrun`` every rank writes its own rows of one file, so every rank must agree on the file's
name: the name's token is drawn once and shared by all ranks.

Why it is atomic: a refresh may fail half-way (an exception in the attack, Ctrl-C, a full or
read-only disk, a kill). A new generation is therefore written beside the live one, to a file
of its own (``…-<generation>.u8.partial``), every write checked, flushed and checksummed, and
only then renamed and swapped in. Until that moment the store serves the previous generation
unchanged; a failure leaves nothing open and says which generation is still served.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile
import zlib
from typing import IO

import numpy as np
import torch

from .checks import check_int
from .distributed import all_gather_cat, barrier, get_rank, get_world_size

__all__ = ["AdversarialStore", "StoreError"]

# Rows are checksummed in blocks of about this many bytes: a damaged block is found when it
# is first read, at the cost of one crc32 pass over each block per process and generation.
BLOCK_BYTES = 1 << 20


class StoreError(OSError):
    """A generation could not be written or read back intact; ``errno`` is the cause's."""


def _shared_token() -> str:
    """One random token, the same on every rank (rank 0's)."""
    token = torch.tensor([int.from_bytes(os.urandom(6), "little")])
    return f"{int(all_gather_cat(token)[0]):012x}"


def _checksums(data, rows_per_block: int, row_bytes: int, num_rows: int) -> list[int]:
    """crc32 of each block of ``rows_per_block`` rows of ``data`` (bytes-like or a uint8 array)."""
    view = memoryview(data).cast("B") if not isinstance(data, np.ndarray) else data.reshape(-1).data
    return [
        zlib.crc32(view[start * row_bytes : min(start + rows_per_block, num_rows) * row_bytes])
        for start in range(0, num_rows, rows_per_block)
    ]


def _describe(exc: OSError) -> str:
    code = exc.errno if exc.errno is None else errno.errorcode.get(exc.errno, exc.errno)
    if exc.errno == errno.ENOSPC:
        return "disk full (ENOSPC)"
    if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        return f"cannot write ({code}: read-only or no permission)"
    return f"{type(exc).__name__} {code}: {exc.strerror or exc}"


class _Writer:
    """One generation being written, beside the live one: its rows (memory) or its open
    ``.partial`` file (disk), every write checked. :meth:`finish` makes it complete and says
    what to swap in; :meth:`abort` drops it and leaves nothing open or on disk."""

    def __init__(
        self,
        generation: int,
        num_rows: int,
        image_shape: tuple,
        path: str | None = None,
        storage: str | None = None,
    ):
        self.generation, self.num_rows, self.image_shape = generation, num_rows, image_shape
        self.row_bytes = int(np.prod(image_shape))
        self.path, self.storage = path, storage  # disk: the .partial file, its folder
        self.handle: IO[bytes] | None = None
        self.parts: tuple[list[torch.Tensor], list[torch.Tensor]] = ([], [])

    def open(self) -> None:
        """Disk: create the file with its space reserved (a full disk fails here, not as a
        SIGBUS on a later read) and open it on every rank."""
        assert self.path is not None  # only a disk generation has a file
        if get_rank() == 0:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
            try:
                if self.num_rows:
                    os.posix_fallocate(fd, 0, self.num_rows * self.row_bytes)
            finally:
                os.close(fd)
        barrier()
        # stays open across write() calls until finish() or abort() closes it
        self.handle = open(self.path, "r+b")  # noqa: SIM115

    def write(self, positions: torch.Tensor, rows: torch.Tensor) -> None:
        if self.path is None:
            self.parts[0].append(positions)
            self.parts[1].append(rows.cpu())
            return
        data = rows.cpu().contiguous().numpy()
        if len(positions) and bool((positions[1:] - positions[:-1] == 1).all()):
            self._pwrite(data.tobytes(), int(positions[0]))
        else:
            for p, row in zip(positions.tolist(), data):
                self._pwrite(row.tobytes(), p)

    def _pwrite(self, data: bytes, row: int) -> None:
        assert self.handle is not None  # open() ran: only a disk generation writes here
        offset, view = row * self.row_bytes, memoryview(data)
        while len(view):
            n = os.pwrite(self.handle.fileno(), view, offset)
            if n <= 0:
                raise OSError(errno.ENOSPC, "short write")
            view, offset = view[n:], offset + n

    def finish(self, per_block: int):
        """``(rows, file, checksums)`` of the complete generation: the rows gathered from every
        rank (memory), or the file flushed, synced and renamed to its final name (disk)."""
        if self.path is None:
            rows = self._gather()
            return rows, None, _checksums(rows.numpy(), per_block, self.row_bytes, self.num_rows)
        assert self.handle is not None and self.storage is not None
        self.handle.flush()
        os.fsync(self.handle.fileno())
        self.handle.close()
        self.handle = None
        barrier()  # every rank's rows are on disk
        final = self.path[: -len(".partial")]
        if get_rank() == 0:
            os.replace(self.path, final)
            dir_fd = os.open(self.storage, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        barrier()
        data = (
            np.memmap(final, dtype=np.uint8, mode="r") if self.num_rows else np.zeros(0, np.uint8)
        )
        try:
            return None, final, _checksums(data, per_block, self.row_bytes, self.num_rows)
        finally:
            del data

    def _gather(self) -> torch.Tensor:
        position_parts, row_parts = self.parts
        empty = torch.empty((0, *self.image_shape), dtype=torch.uint8)
        positions = (
            torch.cat(position_parts) if position_parts else torch.empty(0, dtype=torch.long)
        )
        rows = torch.cat(row_parts) if row_parts else empty
        if get_world_size() > 1:
            positions, rows = all_gather_cat(positions), all_gather_cat(rows)
        out = torch.empty((self.num_rows, *self.image_shape), dtype=torch.uint8)
        out[positions] = rows
        return out

    def abort(self) -> None:
        if self.handle is not None:
            with contextlib.suppress(OSError):
                self.handle.close()
        if self.path is not None and get_rank() == 0:
            with contextlib.suppress(OSError):
                os.remove(self.path)


class AdversarialStore:
    """The rows of one generation of adversarial images, uint8 [A, C, H, W].

    ``storage="memory"`` keeps them in a tensor; a directory keeps them in a file there
    (``afr-adversarial-<token>-<generation>.u8``), read through a memory map. A new generation
    is written with :meth:`begin`, :meth:`write` (any rows, by position, from any rank) and
    :meth:`finish`, or dropped with :meth:`abort`; until :meth:`finish` returns, the previous
    generation is served unchanged (see the module docstring). Each generation's rows carry
    crc32 checksums per block of about 1 MiB, checked when a state is loaded and when a block
    is first read.

    Retention: the files of the last ``keep_generations`` generations (default 2: the live one
    and the one before, for a checkpoint taken before the latest refresh) are kept; older ones
    are deleted, so a checkpoint older than that can no longer be loaded. Loading a state
    (:meth:`load_state_dict`) gives the store a fresh token and a link (or copy) of the file
    it names, so two stores loaded from one checkpoint never write to one file.

    Example:
        >>> store = AdversarialStore("memory")
        >>> store.begin(2, (1, 2, 2))
        >>> store.write(torch.tensor([1, 0]), torch.arange(8, dtype=torch.uint8).view(2, 1, 2, 2))
        >>> store.finish()
        >>> store.rows(torch.tensor([0])).flatten().tolist()
        [4, 5, 6, 7]
        >>> store.begin(1, (1, 2, 2)); store.abort()     # a failed refresh: nothing changes
        >>> store.generation, store.num_rows
        (1, 2)
    """

    def __init__(self, storage="memory", keep_generations: int = 2):
        self.storage = self._check(storage)
        self.keep_generations = check_int(keep_generations, "keep_generations", minimum=1)
        self.generation = 0
        self.image_shape: tuple | None = None
        self.num_rows = 0
        self.token: str | None = None
        self.file: str | None = None
        self.checksums: list[int] = []
        self._rows: torch.Tensor | None = None
        self._map: np.memmap | None = None
        self._verified: np.ndarray | None = None
        self._pending: _Writer | None = None

    @staticmethod
    def _check(storage):
        if storage == "memory":
            return storage
        if not isinstance(storage, (str, os.PathLike)):
            raise TypeError(
                f"storage must be 'memory' or a directory path, got {type(storage).__name__}"
            )
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

    @property
    def row_bytes(self) -> int:
        return int(np.prod(self.image_shape)) if self.image_shape else 0

    def rows_per_block(self, row_bytes: int | None = None) -> int:
        return max(1, BLOCK_BYTES // max(row_bytes or self.row_bytes, 1))

    def _file_name(self, generation: int, token: str | None = None) -> str:
        return os.path.join(self.storage, f"afr-adversarial-{token or self.token}-{generation}.u8")

    def _failed(self, exc: BaseException, generation: int, action: str) -> StoreError:
        where = f" in {self.storage}" if self.on_disk else ""
        cause = _describe(exc) if isinstance(exc, OSError) else f"{type(exc).__name__}: {exc}"
        code = exc.errno if isinstance(exc, OSError) and exc.errno else errno.EIO
        return StoreError(
            code,
            f"{cause}{where} while {action} generation {generation}; the "
            f"set still holds generation {self.generation}",
        )

    # -- writing a generation ---------------------------------------------------------------
    def begin(self, num_rows: int, image_shape: tuple) -> None:
        """Start the next generation of ``num_rows`` rows (every rank calls it). The live
        generation is untouched until :meth:`finish`."""
        self.abort()
        generation = self.generation + 1
        if self.on_disk and self.token is None:
            self.token = _shared_token()
        path = self._file_name(generation) + ".partial" if self.on_disk else None
        self._pending = _Writer(generation, int(num_rows), tuple(image_shape), path, self.storage)
        if self.on_disk:
            self._attempt(self._pending.open, "starting")

    def write(self, positions: torch.Tensor, rows: torch.Tensor) -> None:
        """Rows ``rows`` (uint8 [B, C, H, W]) at ``positions`` [B] of the generation being
        written; every write is checked (a short write or a full disk raises :class:`StoreError`
        and drops the generation)."""
        pending = self._pending
        if pending is None:
            raise RuntimeError("write() outside a generation: call begin() first")
        positions = torch.as_tensor(positions, dtype=torch.long).reshape(-1)
        if (
            rows.dtype != torch.uint8
            or tuple(rows.shape[1:]) != pending.image_shape
            or len(rows) != len(positions)
        ):
            raise ValueError(
                f"rows must be uint8 [{len(positions)}, "
                f"{', '.join(map(str, pending.image_shape))}], got {rows.dtype} "
                f"{tuple(rows.shape)}"
            )
        if len(positions) and (
            int(positions.min()) < 0 or int(positions.max()) >= pending.num_rows
        ):
            raise ValueError(
                f"positions must lie in [0, {pending.num_rows}), got "
                f"[{int(positions.min())}, {int(positions.max())}]"
            )
        self._attempt(lambda: pending.write(positions, rows), "writing")

    def finish(self) -> None:
        """Complete the generation: flush, checksum, rename, and swap it in; every rank's rows
        are readable on every rank. On a failure the generation is dropped and the previous
        one stays (:class:`StoreError`)."""
        pending = self._pending
        if pending is None:
            raise RuntimeError("finish() outside a generation: call begin() first")
        rows, final, checksums = self._attempt(
            lambda: pending.finish(self.rows_per_block(pending.row_bytes)), "finishing"
        )
        # the swap: plain assignments, nothing left that can fail half-way
        self._pending, old = None, self.generation
        self.generation, self.num_rows, self.image_shape = (
            pending.generation,
            pending.num_rows,
            pending.image_shape,
        )
        self._rows, self.file, self.checksums = rows, final, checksums
        self._map, self._verified = None, None
        if self.on_disk:
            self._retire(old)

    def _attempt(self, step, action: str):
        """``step()``; on any failure the pending generation is dropped, and an ``OSError``
        becomes one :class:`StoreError` that names the generation still served."""
        try:
            return step()
        except BaseException as exc:
            generation = (
                self._pending.generation if self._pending is not None else self.generation + 1
            )
            self.abort()
            if isinstance(exc, OSError) and not isinstance(exc, StoreError):
                raise self._failed(exc, generation, action) from exc
            raise

    def abort(self) -> None:
        """Drop the generation being written (its file too); the live one is untouched."""
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.abort()

    def _retire(self, old_generation: int) -> None:
        """Delete this token's files older than the last ``keep_generations``."""
        if get_rank() != 0:
            return
        for g in range(
            max(1, old_generation - self.keep_generations + 1),
            self.generation - self.keep_generations + 1,
        ):
            path = self._file_name(g)
            if os.path.exists(path):
                with contextlib.suppress(OSError):  # a read-only store keeps it: harmless
                    os.remove(path)

    # -- reading ----------------------------------------------------------------------------
    def rows(self, idx) -> torch.Tensor:
        """uint8 rows ``idx`` (a tensor of positions or a slice). A block read for the first
        time in this process is checked against its checksum."""
        if self._rows is not None:
            return self._rows[idx]
        if self.file is None or self.num_rows == 0:
            return torch.empty((0, *(self.image_shape or (0, 0, 0))), dtype=torch.uint8)[idx]
        data = self._map if self._map is not None else self._open()
        if isinstance(idx, torch.Tensor):
            idx = idx.numpy()
        self._verify(np.arange(self.num_rows)[idx])
        return torch.from_numpy(np.array(data[idx]))

    def _open(self) -> np.memmap:
        """The memory map of :attr:`file` (and no block verified yet in this process)."""
        assert self.file is not None and self.image_shape is not None  # rows() checked
        size = self.num_rows * self.row_bytes
        actual = os.path.getsize(self.file) if os.path.isfile(self.file) else None
        if actual != size:
            raise StoreError(
                errno.EIO,
                f"adversarial store file {self.file!r} is "
                f"{'missing' if actual is None else f'{actual} bytes'}, "
                f"expected {size}: it was truncated or deleted",
            )
        self._map = np.memmap(
            self.file, dtype=np.uint8, mode="r", shape=(self.num_rows, *self.image_shape)
        )
        self._verified = np.zeros(len(self.checksums), dtype=bool)
        return self._map

    def _verify(self, positions: np.ndarray) -> None:
        if not self.checksums:
            return
        verified, data = self._verified, self._map
        assert verified is not None and data is not None  # rows() opened the file
        per_block = self.rows_per_block()
        for b in np.unique(positions // per_block):
            if verified[b]:
                continue
            start, stop = b * per_block, min((b + 1) * per_block, self.num_rows)
            if (
                zlib.crc32(np.ascontiguousarray(data[start:stop]).reshape(-1).data)
                != self.checksums[b]
            ):
                raise StoreError(
                    errno.EIO,
                    f"adversarial store file {self.file!r}: rows "
                    f"{start}..{stop - 1} fail their checksum (the file "
                    f"was changed or damaged after it was written)",
                )
            verified[b] = True

    def __getstate__(self):
        # DataLoader workers reopen the memory map themselves (and check what they read)
        return {**self.__dict__, "_map": None, "_pending": None, "_verified": None}

    # -- checkpoints --------------------------------------------------------------------------
    def state_dict(self) -> dict:
        """Rows in memory travel in the state; a file is named by it. Both with checksums."""
        return {
            "generation": self.generation,
            "image_shape": self.image_shape,
            "num_rows": self.num_rows,
            "token": self.token,
            "file": self.file,
            "rows": self._rows,
            "checksums": list(self.checksums),
        }

    def load_state_dict(self, state_dict: dict) -> None:
        """Restore :meth:`state_dict` into either storage, after checking every block against
        its checksum. On disk the store takes a fresh token and a hard link (else a copy) of
        the state's file, so it never writes where another store loaded from the same state
        does. Nothing changes when the state does not check out."""
        rows, path = state_dict["rows"], state_dict["file"]
        shape = tuple(state_dict["image_shape"]) if state_dict["image_shape"] is not None else None
        n = int(state_dict["num_rows"])
        sums = list(state_dict.get("checksums") or [])  # states before checksums: none
        row_bytes = int(np.prod(shape)) if shape else 0
        per_block = self.rows_per_block(row_bytes)
        if rows is None and path is not None:
            size = n * row_bytes
            actual = os.path.getsize(path) if os.path.isfile(path) else None
            if actual != size:
                raise ValueError(
                    f"the state's adversarial images are in {path!r}, which is "
                    f"{'missing' if actual is None else f'{actual} bytes'}, not "
                    f"{size} bytes (a store deletes the files of generations older "
                    f"than its keep_generations: is the checkpoint older than that?)"
                )
            data = np.memmap(path, dtype=np.uint8, mode="r") if n else np.zeros(0, np.uint8)
        elif rows is not None:
            if len(rows) != n:
                raise ValueError(f"inconsistent state: {len(rows)} adversarial rows, expected {n}")
            data = rows.contiguous().numpy()
        else:
            data = None
        if data is not None and sums and _checksums(data, per_block, row_bytes, n) != sums:
            raise ValueError(
                f"the state's adversarial images "
                f"{'in ' + repr(path) if rows is None else '(in memory)'} fail their "
                f"checksums: the file was changed or damaged after it was written"
            )
        if data is not None and not sums:
            sums = _checksums(data, per_block, row_bytes, n)
        del data
        self.abort()
        self.generation, self.image_shape, self.num_rows = state_dict["generation"], shape, n
        self.checksums = sums
        self._map, self._rows, self.file, self._verified = None, None, None, None
        self.token = _shared_token() if self.on_disk else state_dict["token"]
        if self.on_disk and (rows is not None or path is not None):
            self.file = self._file_name(self.generation)
            if get_rank() == 0:
                self._adopt(path, rows)
            barrier()
        elif rows is None and path is not None:
            assert shape is not None  # a file holds rows of some shape
            self._rows = torch.from_numpy(np.fromfile(path, np.uint8).reshape(n, *shape))
        else:
            self._rows = rows

    def _adopt(self, path: str | None, rows: torch.Tensor | None) -> None:
        """This store's own file for a loaded generation: a link to ``path`` (a copy across
        devices), or ``rows`` written out."""
        assert self.file is not None  # load_state_dict named it
        tmp = self.file + ".partial"
        if rows is not None:
            rows.contiguous().numpy().tofile(tmp)
        else:
            assert path is not None  # no rows: the state names a file
            try:
                os.link(path, tmp)
            except OSError:
                shutil.copyfile(path, tmp)
        os.replace(tmp, self.file)

    def __repr__(self) -> str:
        where = "memory" if not self.on_disk else f"disk:{self.storage}"
        return f"AdversarialStore({self.num_rows} rows in {where}, generation {self.generation})"
