"""Speed and memory of :meth:`afr_aug.AFRDataset.refresh` when the data do not fit in RAM.

    afr-aug refresh-scale [--images 20000] [--size 64] [--threads 2]
        [--storage-dir DIR] [--cifar-root DIR | --skip-cifar] [--sampler-labels 50000000]

Why: ``AFRDataset`` promises that the originals are never copied (a ``Dataset`` is read
lazily, by index) and that only the adversarial images are stored, in RAM or, with
``storage=<dir>``, in a memory-mapped file. A refresh of a web-scale set must therefore need
memory for the attacked images at most (memory storage) or for neither the data nor the
attacked images (disk storage), and reading through a ``Dataset`` must not be much slower
than the tensor fast path. This script measures all of that on the CPU:

(a) a synthetic long-tailed image ``Dataset`` generated on the fly: item ``i`` is a
    deterministic uint8 ``[3, size, size]`` image (one of two low-frequency patterns of its
    class, the rare one for ~15 % of the items, plus per-item noise from a generator seeded
    with ``i``), so classes have intra-class structure; nothing per item is held in memory,
    only the long-tailed label array (``afr_aug.bench.sampler_scale.long_tail_labels``:
    exponential profile, ``--imbalance-ratio`` largest/smallest class, the head size chosen
    so that the total is exactly ``--images``);
(b) one refresh (embed every original, split, MinorityPGD on half of each class's majority)
    of that set with ``storage="memory"`` and one with a directory, each in its own
    subprocess so that the peak RSS is clean. A thread polls ``VmRSS`` every 20 ms during
    ``refresh``; ``peak_rss_mb`` = the largest RSS seen minus the RSS right before the call
    (``hwm_growth_mb`` is the same from ``VmHWM``, reset through ``/proc/self/clear_refs``
    when the kernel allows); ``retained_mb`` is what the process still holds after the call
    (the adversarial rows with memory storage). ``img_per_s`` = originals embedded per second
    of the refresh (which also attacks ``attacked`` of them).
    A third subprocess refreshes a small set (``--calibration-images``, default 4 batches)
    with disk storage: its growth is the per-batch working set (the model's activations of
    one embedding and one attack batch, which autograd keeps for the backward), independent
    of N; ``beyond_batch_mb`` = ``peak_rss_mb`` minus that.
    The subprocesses run with glibc's mmap and trim thresholds fixed at 128 KiB
    (``--malloc fixed``, the default), so that freed tensors go back to the system and RSS
    shows what is live. With glibc's default dynamic threshold (``--malloc plain``) the heap
    keeps freed activations: 0.7-1.5 GiB still held after a refresh, and 160-280 MiB of
    extra peak "growth" that depends on the number of batches, not on the data;
(c) the real CIFAR-10-LT (ratio 100, 12,406 images of 32 px): refreshes on the tensor path
    and on the ``Dataset`` path (a Dataset wrapping the same uint8 NCHW tensor), same model
    and seed, same process, after a short warm-up refresh. With ``--cifar-repeats 2`` (the
    default) the order is tensor, Dataset, Dataset, tensor and each path's best run counts,
    so that a burst of load from another process does not decide the ratio;
(d) :func:`afr_aug.bench.sampler_scale.time_sampler` for ``--sampler-labels`` labels.

The model is a freshly initialised ``resnet32`` (adaptive pooling, so any image size works);
with random weights almost every image is majority, the refresh's worst case (most attacks).

Targets: disk-storage ``peak_rss_mb`` < 0.25 x ``dataset_mb``; memory-storage ``peak_rss_mb``
< 1.25 x ``attacked_mb``; CIFAR-10-LT Dataset-path img/s >= 0.8 x tensor-path img/s.
``targets_beyond_batch`` applies the first two to ``beyond_batch_mb`` instead: the per-batch
working set is set by the model, the image size and ``batch_size``, not by N, and exceeds
0.25 x ``dataset_mb`` until the set is many times larger than one batch's activations.
The last line printed is one JSON object ``{"images", "size", "malloc", "dataset_mb",
"attacked_mb", "memory", "disk", "calibration", "cifar10_lt", "sampler", "targets",
"targets_beyond_batch", "device"}``.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from .cli import fail
from .runtime import device_name
from .sampler_scale import long_tail_labels, time_sampler

REPO = Path(__file__).resolve().parents[1]
PROG = "afr-aug refresh-scale"
_CHILD_FLAG = "--_child"
_RESULT_PREFIX = "REFRESH_SCALE_RESULT "
# glibc: allocations above 128 KiB are mmapped and given back on free, and the heap is trimmed,
# so that RSS shows what is live (see --malloc)
FIXED_MALLOC = {"MALLOC_MMAP_THRESHOLD_": "131072", "MALLOC_TRIM_THRESHOLD_": "131072"}


# -- (a) the synthetic long-tailed Dataset ------------------------------------------------------
class SyntheticLongTail(Dataset):
    """A long-tailed set of deterministic uint8 ``[3, size, size]`` images made on the fly.

    Each class has two low-frequency patterns (a common and a rare one); item ``i`` is one of
    them (the rare one with probability ``rare_share``) plus Gaussian noise, both drawn from a
    generator seeded with ``seed`` and ``i``. Only the labels and the ``2 x classes`` patterns
    are kept.

    >>> ds = SyntheticLongTail(200, size=8, num_classes=4, imbalance_ratio=10)
    >>> img, label = ds[3]
    >>> img.dtype, tuple(img.shape), label == int(ds.targets[3]), torch.equal(ds[3][0], img)
    (torch.uint8, (3, 8, 8), True, True)
    """

    def __init__(
        self,
        num_images: int,
        size: int = 64,
        num_classes: int = 10,
        imbalance_ratio: float = 100,
        seed: int = 0,
        rare_share: float = 0.15,
        noise: float = 0.12,
    ):
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ValueError(f"size must be a positive int, got {size!r}")
        self.size, self.seed, self.rare_share, self.noise = size, seed, rare_share, noise
        self.targets = long_tail_labels(num_images, num_classes, imbalance_ratio, seed)
        g = torch.Generator().manual_seed(10_000 + seed)
        coarse = torch.rand(num_classes * 2, 3, 4, 4, generator=g)
        patterns = F.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=False)
        self.patterns = patterns.view(num_classes, 2, 3, size, size)

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, i: int):
        i = int(i)
        label = int(self.targets[i])
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + i)
        rare = int(torch.rand((), generator=g) < self.rare_share)
        img = self.patterns[label, rare] + self.noise * torch.randn(
            3, self.size, self.size, generator=g
        )
        return img.clamp_(0, 1).mul_(255).round_().to(torch.uint8), label


class TensorImages(Dataset):
    """A plain map-style Dataset over a uint8 NCHW tensor: ``(image [C, H, W], label)``."""

    def __init__(self, images: torch.Tensor, targets: torch.Tensor):
        self.images, self.targets = images, targets

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        return self.images[i], int(self.targets[i])


def mb(num_bytes: float) -> float:
    return num_bytes / 2**20


# -- memory probes ----------------------------------------------------------------------------
def _status_kb(field: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def rss_mb() -> float:
    """This process's resident set size, MiB (``VmRSS``)."""
    kb = _status_kb("VmRSS")
    if kb is None:
        raise RuntimeError("/proc/self/status has no VmRSS: this benchmark needs Linux")
    return kb / 1024


def reset_hwm() -> bool:
    """Reset ``VmHWM`` to the current RSS (Linux >= 4.0); False where it is not allowed."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


class PeakRSS:
    """Largest ``VmRSS`` seen by a thread that polls it every ``interval`` s inside the block."""

    def __init__(self, interval: float = 0.02):
        self.interval = interval
        self.peak = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _poll(self):
        while True:
            self.peak = max(self.peak, rss_mb())
            if self._stop.wait(self.interval):
                self.peak = max(self.peak, rss_mb())
                return

    def __enter__(self):
        self.peak = rss_mb()
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        return False


def timed_refresh(stage2, model) -> dict:
    """One ``stage2.refresh(model)`` with wall/CPU time and RSS growth (MiB) over the call."""
    gc.collect()
    baseline = rss_mb()
    hwm_ok = reset_hwm()
    with warnings.catch_warnings():
        # the split uses the clean-image accuracies, outside §3.3's window: expected here
        warnings.filterwarnings("ignore", message="IntraClassSplitter")
        with PeakRSS() as peak:
            cpu0, start = time.process_time(), time.perf_counter()
            report = stage2.refresh(model)
            seconds = time.perf_counter() - start
            cpu_seconds = time.process_time() - cpu0
    hwm = _status_kb("VmHWM") if hwm_ok else None
    gc.collect()
    retained = rss_mb() - baseline
    n = len(stage2.labels)
    return {
        "img_per_s": round(n / seconds, 1),
        "seconds": round(seconds, 2),
        "cpu_seconds": round(cpu_seconds, 2),
        "peak_rss_mb": round(peak.peak - baseline, 1),
        "hwm_growth_mb": None if hwm is None else round(hwm / 1024 - baseline, 1),
        "retained_mb": round(retained, 1),
        "baseline_rss_mb": round(baseline, 1),
        "originals": n,
        "slots": len(stage2),
        "minority": sum(report.minority),
        "attacked": sum(report.attacked),
    }


# -- (b) one refresh of the synthetic set, in a subprocess ----------------------------------------
def _child(spec: dict) -> dict:
    from afr_aug import AFRDataset
    from afr_aug.models import resnet32

    if spec["threads"]:
        torch.set_num_threads(spec["threads"])
    dataset = SyntheticLongTail(
        spec["images"], spec["size"], spec["classes"], spec["imbalance_ratio"], seed=spec["seed"]
    )
    torch.manual_seed(spec["seed"])
    model = resnet32(num_classes=spec["classes"])
    stage2 = AFRDataset(
        dataset,
        num_classes=spec["classes"],
        storage=spec["storage"],
        batch_size=spec["batch_size"],
        num_workers=spec["num_workers"],
        seed=spec["seed"],
        progress=False,
        label_safe=None,  # the paper's refresh, comparable with the committed runs
    )
    result = timed_refresh(stage2, model)
    if spec["storage"] != "memory":
        result["file_mb"] = round(mb(os.path.getsize(stage2.store.file)), 3)
    return result


def run_child(spec: dict) -> dict:
    """:func:`_child` in a fresh interpreter (``afr-aug refresh-scale --_child``)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO)] + [p for p in [env.get("PYTHONPATH")] if p])
    if spec.get("malloc", "fixed") == "fixed":
        for key, value in FIXED_MALLOC.items():
            env.setdefault(key, value)
    proc = subprocess.run(
        [sys.executable, "-m", "afr_aug.bench.refresh_scale", _CHILD_FLAG, json.dumps(spec)],
        cwd=str(REPO),
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(_RESULT_PREFIX)]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(
            f"the refresh subprocess ({spec['storage']}) failed with exit code "
            f"{proc.returncode}; its output:\n{proc.stdout}"
        )
    return json.loads(lines[-1][len(_RESULT_PREFIX) :])


# -- (c) tensor path vs Dataset path on CIFAR-10-LT ------------------------------------------------
def default_cifar_root() -> str:
    return os.environ.get("AFR_DATA") or str(REPO.parent / "shared" / "data")


def compare_paths(
    images: torch.Tensor,
    labels: torch.Tensor,
    num_classes: int,
    batch_size: int = 256,
    num_workers: int = 0,
    seed: int = 0,
    warmup_images: int = 512,
    repeats: int = 1,
) -> dict:
    """img/s of refreshes on a uint8 NCHW tensor and on a Dataset over the same tensor (same
    freshly initialised resnet32, same seed), after a short warm-up refresh.

    With ``repeats`` > 1 the paths alternate (tensor, Dataset, Dataset, tensor, ...) and each
    path's best run counts, which keeps a burst of load from another process out of the ratio.
    """
    from afr_aug import AFRDataset
    from afr_aug.models import resnet32

    torch.manual_seed(seed)
    model = resnet32(num_classes=num_classes)

    def stage2(data, lab=None):
        return AFRDataset(
            data,
            lab,
            num_classes=num_classes,
            batch_size=batch_size,
            num_workers=num_workers,
            seed=seed,
            progress=False,
            label_safe=None,
        )

    if warmup_images:
        warm = torch.arange(0, len(images), max(1, len(images) // warmup_images))
        timed_refresh(stage2(images[warm], labels[warm]), model)
    runs: dict[str, list[dict]] = {"tensor": [], "dataset": []}
    for k in range(max(1, repeats)):
        for path in ("tensor", "dataset") if k % 2 == 0 else ("dataset", "tensor"):
            data = (
                stage2(images, labels) if path == "tensor" else stage2(TensorImages(images, labels))
            )
            runs[path].append(timed_refresh(data, model))
    best = {path: max(r, key=lambda x: x["img_per_s"]) for path, r in runs.items()}
    tensor, dataset = best["tensor"], best["dataset"]
    return {
        "images": len(images),
        "tensor_img_per_s": tensor["img_per_s"],
        "dataset_img_per_s": dataset["img_per_s"],
        "ratio": round(dataset["img_per_s"] / tensor["img_per_s"], 3),
        "cpu_ratio": round(tensor["cpu_seconds"] / max(dataset["cpu_seconds"], 1e-9), 3),
        "tensor_seconds": tensor["seconds"],
        "dataset_seconds": dataset["seconds"],
        "runs_img_per_s": {path: [x["img_per_s"] for x in r] for path, r in runs.items()},
        "attacked": [tensor["attacked"], dataset["attacked"]],
    }


def has_cifar10(root) -> bool:
    return (Path(root) / "cifar-10-batches-py" / "data_batch_1").is_file()


def cifar_part(
    root: str, batch_size: int, num_workers: int, seed: int, repeats: int = 1
) -> dict | None:
    from afr_aug.data import cifar_lt

    if not has_cifar10(root):
        say(
            f"(c) skipped: CIFAR-10 not found in {root} (cifar-10-batches-py/); set "
            f"--cifar-root or $AFR_DATA"
        )
        return None
    train = cifar_lt("cifar10", root=root, imbalance_ratio=100)
    images = torch.from_numpy(train.data).permute(0, 3, 1, 2).contiguous()
    labels = torch.as_tensor(train.targets, dtype=torch.long)
    return compare_paths(images, labels, 10, batch_size, num_workers, seed, repeats=repeats)


# -- the report --------------------------------------------------------------------------------
def _line(name: str, r: dict, dataset_mb: float) -> str:
    hwm = "" if r["hwm_growth_mb"] is None else f", VmHWM +{r['hwm_growth_mb']:.0f} MiB"
    return (
        f"{name:>11}: {r['img_per_s']:7.1f} img/s ({r['seconds']:.1f} s, CPU "
        f"{r['cpu_seconds']:.1f} s), {r['attacked']} attacked, peak RSS "
        f"+{r['peak_rss_mb']:.0f} MiB ({r['peak_rss_mb'] / dataset_mb:.2f} x dataset){hwm}, "
        f"still held after the call +{r['retained_mb']:.0f} MiB"
    )


def say(*args) -> None:
    print(*args, flush=True)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--images", type=int, default=20000, help="synthetic set size (total)")
    p.add_argument("--size", type=int, default=64, help="synthetic image side, pixels")
    p.add_argument("--classes", type=int, default=10)
    p.add_argument(
        "--imbalance-ratio",
        type=float,
        default=100.0,
        help="largest / smallest class; the head size follows from --images",
    )
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--num-workers", type=int, default=0)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--storage-dir",
        default=None,
        help="directory for the disk-storage run (default: a temporary directory)",
    )
    p.add_argument(
        "--calibration-images",
        type=int,
        default=None,
        help="images of the per-batch working-set run (default 4 x batch size; 0 skips)",
    )
    p.add_argument(
        "--cifar-root",
        default=None,
        help="directory holding cifar-10-batches-py/ (default $AFR_DATA or ../shared/data)",
    )
    p.add_argument("--skip-cifar", action="store_true", help="skip part (c)")
    p.add_argument(
        "--cifar-repeats",
        type=int,
        default=2,
        help="refreshes per path in (c), alternating; each path's best counts",
    )
    p.add_argument(
        "--malloc",
        choices=["fixed", "plain"],
        default="fixed",
        help="fixed: the refresh subprocesses run with glibc's mmap/trim thresholds "
        "at 128 KiB, so RSS shows live memory; plain: glibc's defaults",
    )
    p.add_argument(
        "--sampler-labels",
        type=int,
        default=50_000_000,
        help="labels for the LongTailSampler timing (0 skips)",
    )
    return p


def _check_cifar_root(args) -> None:
    """A CIFAR folder the user named (--cifar-root or $AFR_DATA) must hold CIFAR-10, so that a
    typo fails now and not after minutes of (a) and (b); the default folder may be missing
    ((c) is then skipped, as documented)."""
    named = args.cifar_root or os.environ.get("AFR_DATA")
    if args.skip_cifar or not named or has_cifar10(named):
        return
    source = "--cifar-root" if args.cifar_root else "AFR_DATA"
    fail(
        PROG,
        f"CIFAR-10 not found in {named} ({source}; expected cifar-10-batches-py/ there): "
        "pass --cifar-root FOLDER (or set AFR_DATA) to the folder that holds it, "
        "or --skip-cifar",
    )


def _synthetic_part(args, spec: dict):
    """(b): the calibration refresh (or ``None``), then the memory- and disk-storage refreshes,
    each in its own subprocess."""
    tmp = None
    storage_dir = args.storage_dir
    if storage_dir is None:
        tmp = tempfile.TemporaryDirectory(prefix="afr-refresh-scale-")
        storage_dir = tmp.name
    try:
        calibration = None
        n_cal = 4 * args.batch_size if args.calibration_images is None else args.calibration_images
        if n_cal:
            n_cal = max(min(n_cal, args.images), args.classes)
            calibration = run_child(
                {**spec, "images": n_cal, "storage": os.path.join(storage_dir, "calibration")}
            )
            say(
                f"(b) per-batch working set (a {n_cal}-image refresh, disk storage): peak RSS "
                f"+{calibration['peak_rss_mb']:.0f} MiB"
            )
        memory = run_child({**spec, "storage": "memory"})
        disk = run_child({**spec, "storage": os.path.join(storage_dir, "disk")})
    finally:
        if tmp is not None:
            tmp.cleanup()
    for r in (memory, disk):
        r["beyond_batch_mb"] = (
            None if calibration is None else round(r["peak_rss_mb"] - calibration["peak_rss_mb"], 1)
        )
    return calibration, memory, disk


def _cifar_and_sampler(args):
    """(c) and (d), each ``None`` when skipped."""
    cifar = None
    if args.skip_cifar:
        say("(c) skipped (--skip-cifar)")
    else:
        cifar = cifar_part(
            args.cifar_root or default_cifar_root(),
            args.batch_size,
            args.num_workers,
            args.seed,
            args.cifar_repeats,
        )
        if cifar is not None:
            runs = cifar["runs_img_per_s"]
            say(
                f"(c) CIFAR-10-LT ({cifar['images']} images, 32 px), best of "
                f"{len(runs['tensor'])} refreshes each: tensor {cifar['tensor_img_per_s']:.1f} "
                f"img/s, Dataset {cifar['dataset_img_per_s']:.1f} img/s, Dataset/tensor "
                f"{cifar['ratio']:.3f} (CPU-time ratio {cifar['cpu_ratio']:.3f}; all runs: "
                f"tensor {runs['tensor']}, Dataset {runs['dataset']})"
            )
    sampler = None
    if args.sampler_labels:
        classes = max(1, min(1000, args.sampler_labels // 10))
        sampler = time_sampler(args.sampler_labels, classes, args.imbalance_ratio, args.seed)
        say(
            f"(d) LongTailSampler, {sampler['labels']:,} labels in {sampler['classes']} classes:"
            f" build {sampler['construct_s']:.2f} s, one epoch's draw {sampler['draw_s']:.2f} s"
        )
    return cifar, sampler


def _targets(
    memory: dict, disk: dict, cifar, dataset_mb: float, attacked_mb: float, growth: str
) -> dict:
    """The three targets of the module docstring, judged on ``growth`` (a key of the runs)."""
    return {
        "disk_peak_below_25pct_dataset": disk[growth] < 0.25 * dataset_mb,
        "memory_peak_below_attacked_plus_25pct": memory[growth] < 1.25 * attacked_mb,
        "dataset_path_ge_0.8x_tensor": None if cifar is None else cifar["ratio"] >= 0.8,
    }


def _verdicts(t: dict) -> str:
    return ", ".join(
        f"{k} {'-' if v is None else ('met' if v else 'NOT met')}" for k, v in t.items()
    )


def main(argv=None) -> dict:
    p = _parser()
    args = p.parse_args(argv)
    if args.images < args.classes:
        p.error(f"--images ({args.images}) must be >= --classes ({args.classes})")
    _check_cifar_root(args)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = device_name(torch.device("cpu"))
    row = 3 * args.size * args.size
    dataset_mb = mb(args.images * row)
    labels = long_tail_labels(args.images, args.classes, args.imbalance_ratio, args.seed)
    counts = torch.bincount(labels, minlength=args.classes).tolist()
    say(f"device: {device}")
    say(
        f"(a) synthetic long-tailed Dataset: {args.images} images of 3x{args.size}x{args.size} "
        f"({dataset_mb:.1f} MiB as uint8), {args.classes} classes, head {counts[0]}, tail "
        f"{counts[-1]}; resnet32 with random weights, batch {args.batch_size}, "
        f"{args.num_workers} workers; glibc malloc {args.malloc}"
    )
    spec = {
        "images": args.images,
        "size": args.size,
        "classes": args.classes,
        "imbalance_ratio": args.imbalance_ratio,
        "batch_size": args.batch_size,
        "num_workers": args.num_workers,
        "threads": args.threads,
        "seed": args.seed,
        "malloc": args.malloc,
    }
    calibration, memory, disk = _synthetic_part(args, spec)
    attacked_mb = mb(memory["attacked"] * row)
    say(
        f"(b) one refresh, {args.images} originals embedded, {memory['attacked']} attacked "
        f"({attacked_mb:.1f} MiB as uint8):"
    )
    say(_line("memory", memory, dataset_mb))
    say(_line("disk", disk, dataset_mb))
    if calibration is not None:
        say(
            f"    beyond the per-batch working set: memory +{memory['beyond_batch_mb']:.0f} MiB"
            f", disk +{disk['beyond_batch_mb']:.0f} MiB"
        )
    cifar, sampler = _cifar_and_sampler(args)
    targets = _targets(memory, disk, cifar, dataset_mb, attacked_mb, "peak_rss_mb")
    beyond = (
        None
        if calibration is None
        else _targets(memory, disk, cifar, dataset_mb, attacked_mb, "beyond_batch_mb")
    )
    say(f"targets (peak RSS growth): {_verdicts(targets)}")
    if beyond is not None:
        say(f"targets (growth beyond the per-batch working set): {_verdicts(beyond)}")
    result = {
        "images": args.images,
        "size": args.size,
        "malloc": args.malloc,
        "dataset_mb": round(dataset_mb, 3),
        "attacked_mb": round(attacked_mb, 3),
        "memory": memory,
        "disk": disk,
        "calibration": calibration,
        "cifar10_lt": cifar,
        "sampler": sampler,
        "targets": targets,
        "targets_beyond_batch": beyond,
        "device": device,
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == _CHILD_FLAG:
        print(_RESULT_PREFIX + json.dumps(_child(json.loads(sys.argv[2]))), flush=True)
    else:
        main()
