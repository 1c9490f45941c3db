"""The data-pack file format: a long-tailed training set and its test set in one file that
travels (``afr-aug pack`` writes one, ``--data PACK`` reads it).

Format (version 1): ``b"AFRPACK1"``, a 4-byte little-endian header length, a JSON header, then
zlib streams whose offsets the header lists. Images are stored losslessly as the residual of
the gradient predictor ``left + up - up_left`` (a 2-D difference) with green subtracted from
red and blue, modulo 256: CIFAR-10-LT packs into 36.8 MB where plain zlib gives 63 MB (JPEG-LS's
median predictor gave 38.7 MB and decodes pixel by pixel; this one decodes as two cumulative
sums, a few seconds). The header carries the sha256 of the decoded arrays, checked on every
read.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import zlib
from typing import Any

import numpy as np

MAGIC = b"AFRPACK1"
VERSION = 1


def encode_images(x: np.ndarray) -> np.ndarray:
    """uint8 ``N, C, H, W`` -> uint8 residuals of the same shape (see the module docstring)."""
    if x.dtype != np.uint8 or x.ndim != 4:
        raise ValueError(f"expected uint8 images N x C x H x W, got {x.dtype} {x.shape}")
    res = np.diff(np.diff(x, axis=3, prepend=np.uint8(0)), axis=2, prepend=np.uint8(0))
    if x.shape[1] == 3:
        res[:, 0] -= res[:, 1]
        res[:, 2] -= res[:, 1]
    return res


def decode_images(res: np.ndarray) -> np.ndarray:
    """The inverse of :func:`encode_images`: cumulative sums along the rows and columns,
    modulo 256 (uint8 arithmetic wraps)."""
    res = res.copy()
    if res.shape[1] == 3:
        res[:, 0] += res[:, 1]
        res[:, 2] += res[:, 1]
    return np.cumsum(np.cumsum(res, axis=3, dtype=np.uint8), axis=2, dtype=np.uint8)


def _digest(arrays: dict[str, np.ndarray]) -> str:
    h = hashlib.sha256()
    for key in sorted(arrays):
        h.update(key.encode())
        h.update(np.ascontiguousarray(arrays[key]).tobytes())
    return h.hexdigest()


def write_pack(path, arrays: dict[str, np.ndarray], meta: dict) -> str:
    """Write ``arrays`` (uint8 images ``x_*`` as N x C x H x W, int labels ``y_*``) and ``meta``;
    returns the file's sha256. Written to a temporary name first, then renamed."""
    blocks: list[bytes] = []
    header: dict[str, Any] = {
        "version": VERSION,
        "meta": meta,
        "arrays": {},
        "sha256": _digest(arrays),
    }
    offset = 0
    for key, a in arrays.items():
        a = np.ascontiguousarray(a)
        if key.startswith("x_"):
            payload, codec = encode_images(a).tobytes(), "grad-g"
        else:
            a = a.astype(np.int32)
            payload, codec = a.tobytes(), "raw"
        blob = zlib.compress(payload, 6)
        header["arrays"][key] = {
            "dtype": str(a.dtype),
            "shape": list(a.shape),
            "codec": codec,
            "offset": offset,
            "length": len(blob),
        }
        blocks.append(blob)
        offset += len(blob)
    head = json.dumps(header).encode()
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "wb") as f:
        f.write(MAGIC + struct.pack("<I", len(head)) + head)
        for blob in blocks:
            f.write(blob)
    os.replace(tmp, path)
    return file_sha256(path)


def read_meta(path) -> dict:
    """The pack's ``meta`` (dataset, imbalance ratio, classes) from its header alone, without
    decoding the arrays; raises ``ValueError`` on a file that is not a pack."""
    with open(path, "rb") as f:
        head = f.read(12)
        if head[:8] != MAGIC:
            raise ValueError(f"{path} is not an afr-aug data pack (write one with afr-aug pack)")
        (n,) = struct.unpack("<I", head[8:12])
        return json.loads(f.read(n))["meta"]


def read_pack(path):
    """``(arrays, meta)`` from a pack; raises ``ValueError`` on a wrong or damaged file."""
    with open(path, "rb") as f:
        blob = f.read()
    if blob[:8] != MAGIC:
        raise ValueError(f"{path} is not an afr-aug data pack (write one with afr-aug pack)")
    (n,) = struct.unpack("<I", blob[8:12])
    header = json.loads(blob[12 : 12 + n])
    if header.get("version") != VERSION:
        raise ValueError(
            f"{path}: pack version {header.get('version')}, this reader knows {VERSION}"
        )
    base, arrays = 12 + n, {}
    for key, spec in header["arrays"].items():
        start = base + spec["offset"]
        try:
            raw = zlib.decompress(blob[start : start + spec["length"]])
        except zlib.error as e:
            raise ValueError(f"{path}: array {key!r} is damaged ({e})") from None
        a = np.frombuffer(raw, dtype=spec["dtype"]).reshape(spec["shape"])
        arrays[key] = decode_images(a) if spec["codec"] == "grad-g" else a.astype(np.int64)
    if _digest(arrays) != header["sha256"]:
        raise ValueError(f"{path}: decoded data do not match the pack's checksum (damaged file)")
    return arrays, header["meta"]


def file_sha256(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
