"""Everything a lent GPU machine lacks for ``device_table.sh``, in one folder that travels.

    afr-aug bundle .bundle                      # pack + wheels, <= 50 MiB
    benchmarks/device_table.sh .bundle OUTDIR --results $OUT # there

Why: the lent machine reaches no network and its image has torch, torchvision, numpy, scipy,
tqdm and matplotlib but no torchattacks, so ``import afr_aug`` would stop the first call. The
folder holds the data pack (``afr_aug.bench.pack``) and the wheels of what the image lacks
(:data:`WHEELS`, without their dependencies); ``device_table.sh`` installs them offline into a
temporary folder on ``PYTHONPATH``. A call may carry 64 MiB with the working tree, so the
bundle is refused above :data:`LIMIT_BYTES`. An existing pack of the same dataset and ratio is
kept (re-encoding CIFAR takes a minute); ``--wheel FILE`` supplies a wheel instead of asking
pip's index for it. ``MANIFEST.json`` lists each file, its size and sha256.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import shutil
import subprocess
import sys
from typing import Any

from .cli import fail, require_file
from .data import DataError
from .pack import pack_dataset
from .pack_format import file_sha256, read_meta

PROG = "afr-aug bundle"

# What the lent image lacks: {distribution: version}. torchattacks 3.3.0 is pure Python and
# declares no dependencies (setup.cfg says why not 3.4.0 to 3.5.1).
WHEELS: dict[str, str] = {"torchattacks": "3.3.0"}
LIMIT_BYTES = 50 * 2**20


def pack_name(dataset: str, imbalance_ratio: float) -> str:
    """``cifar10lt.afrpack`` for ratio 100, ``cifar10lt-r50.afrpack`` otherwise."""
    stem = dataset.replace("-", "")
    return (
        f"{stem}.afrpack"
        if float(imbalance_ratio) == 100
        else f"{stem}-r{imbalance_ratio:g}.afrpack"
    )


def _matches(path: str, dataset: str, imbalance_ratio: float) -> bool:
    try:
        meta = read_meta(path)
    except (OSError, ValueError):
        return False
    return meta.get("dataset") == dataset and float(meta.get("imbalance_ratio", -1)) == float(
        imbalance_ratio
    )


def fetch_wheel(name: str, version: str, dest: str) -> str:
    """The wheel of ``name==version`` in ``dest``, from pip's index (or its cache), no deps."""
    have = glob.glob(os.path.join(dest, f"{name}-{version}-*.whl"))
    if have:
        return have[0]
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        "--disable-pip-version-check",
        "-q",
        "-d",
        dest,
        f"{name}=={version}",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    found = glob.glob(os.path.join(dest, f"{name}-{version}-*.whl"))
    if proc.returncode != 0 or not found:
        raise RuntimeError(
            f"could not fetch the {name}=={version} wheel with pip "
            f"({proc.stderr.strip()[-300:]}); give it with --wheel FILE"
        )
    return found[0]


def make_bundle(
    out: str,
    dataset: str = "cifar10-lt",
    imbalance_ratio: float = 100,
    root: str | None = None,
    download: bool = False,
    wheels: list[str] | None = None,
    pack: str | None = None,
) -> dict:
    """Write (or complete) the bundle folder ``out``; returns its manifest."""
    os.makedirs(os.path.join(out, "wheels"), exist_ok=True)
    target = os.path.join(out, pack_name(dataset, imbalance_ratio))
    if pack is not None and os.path.abspath(pack) != os.path.abspath(target):
        if not _matches(pack, dataset, imbalance_ratio):
            raise ValueError(
                f"{pack} is not a {dataset} pack of imbalance ratio {imbalance_ratio:g}"
            )
        shutil.copyfile(pack, target)
    elif not _matches(target, dataset, imbalance_ratio):
        pack_dataset(dataset, target, root, imbalance_ratio, download=download)
    given = {os.path.basename(w).split("-")[0].lower(): w for w in wheels or []}
    for name, version in WHEELS.items():
        if name in given:
            shutil.copy(given[name], os.path.join(out, "wheels"))
        else:
            fetch_wheel(name, version, os.path.join(out, "wheels"))
    files = [target, *sorted(glob.glob(os.path.join(out, "wheels", "*.whl")))]
    manifest: dict[str, Any] = {
        "dataset": dataset,
        "imbalance_ratio": imbalance_ratio,
        "wheels": WHEELS,
        "files": [
            {"path": os.path.relpath(f, out), "bytes": os.path.getsize(f), "sha256": file_sha256(f)}
            for f in files
        ],
    }
    manifest["bytes"] = sum(f["bytes"] for f in manifest["files"])
    with open(os.path.join(out, "MANIFEST.json"), "w") as f:
        json.dump(manifest, f, indent=1)
    if manifest["bytes"] > LIMIT_BYTES:
        raise ValueError(
            f"the bundle in {out} holds {manifest['bytes'] / 2**20:.1f} MiB, over the "
            f"{LIMIT_BYTES / 2**20:.0f} MiB a device call can carry beside the tree"
        )
    return manifest


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("out", help="the bundle folder (created or completed)")
    p.add_argument("--dataset", choices=["cifar10-lt", "cifar100-lt"], default="cifar10-lt")
    p.add_argument("--imbalance-ratio", type=float, default=100)
    p.add_argument(
        "--data-root",
        default=None,
        help="folder holding cifar-10-batches-py/ or "
        "cifar-100-python/ (default: $AFR_DATA, else ./data)",
    )
    p.add_argument("--download", action="store_true", help="fetch CIFAR with torchvision first")
    p.add_argument("--pack", default=None, help="an existing pack to take instead of writing one")
    p.add_argument(
        "--wheel",
        action="append",
        default=[],
        metavar="FILE",
        help="a wheel to take instead of fetching it (repeatable)",
    )
    args = p.parse_args(argv)
    require_file(PROG, "--pack", args.pack, "a pack written by afr-aug pack")
    for wheel in args.wheel:
        require_file(PROG, "--wheel", wheel, "a .whl file")
    try:
        m = make_bundle(
            args.out,
            args.dataset,
            args.imbalance_ratio,
            args.data_root,
            args.download,
            args.wheel,
            args.pack,
        )
    except DataError as e:  # no CIFAR folder to pack, or no download
        fail(PROG, f"{e} (a bundle takes a written pack with --pack PACK)")
    except ValueError as e:  # a --pack of another data set, or over the size limit
        fail(PROG, e)
    except RuntimeError as e:  # pip could not fetch a wheel
        print(f"bundle: {e}", file=sys.stderr)
        return 1
    for f in m["files"]:
        print(f"  {f['path']}: {f['bytes'] / 2**20:.1f} MiB, sha256 {f['sha256'][:16]}…")
    print(f"wrote {args.out}: {m['bytes'] / 2**20:.1f} MiB of {LIMIT_BYTES / 2**20:.0f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
