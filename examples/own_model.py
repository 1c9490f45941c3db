"""AFR with your own model and data: a torchvision ResNet-18 on a long-tailed ImageFolder.

What it shows: nothing of afr-aug's CIFAR tooling is needed. The data is an ordinary
``torchvision.datasets.ImageFolder`` (read in two views: augmented for training, deterministic
for AFR's stage-2 set and evaluation), the model an unmodified ``torchvision.models.resnet18``.

- Stage 1 (inter-class): ``BalancedMixLoader`` wraps the long-tailed loader and CutMixes
  (p = 0.5) class-balanced batches from ``LongTailSampler`` onto it; Balanced Softmax loss.
- Stage 2 (intra-class): fine-tuning at a smaller learning rate; ``AFRLoader`` wraps the same
  loader around ``AFRDataset`` over the deterministic view (read lazily, by index), refreshed
  every ``--refresh-every`` epochs with the running accuracy on the mixed batches (§3.3),
  CutMixed onto 25 % of the batches.

Without ``--root`` it first writes a long-tailed ImageFolder of PNG files from CIFAR-10
(``$AFR_DATA`` or ``./data`` must hold ``cifar-10-batches-py/``) into ``<out>/imagefolder``:
``train/<class>/`` with 300 down to 15 images per class, ``val/<class>/`` with 100 test
images each. With ``--root DIR`` it reads your own ``DIR/train/<class>/*`` and
``DIR/val/<class>/*``. A few minutes' training shows that it works, not what AFR gains.
From the repository root (a few minutes on a 2-core CPU)::

    python examples/own_model.py
    python examples/own_model.py --root /data/my-lt-set --size 224 --device cuda --num-workers 8
"""

import argparse
import json
import shutil
import sys
import time
from itertools import islice
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader
from torchvision import models
from torchvision import transforms as T
from torchvision.datasets import ImageFolder
from torchvision.transforms import v2
from tqdm.auto import tqdm

from afr_aug import (
    AFRDataset,
    AFRLoader,
    BalancedMixLoader,
    CutMixBalancer,
    Embedder,
    MinorityPGD,
    mixed_loss,
)
from afr_aug.data import load_cifar, long_tailed_counts
from afr_aug.losses import BalancedSoftmaxLoss
from afr_aug.metrics import evaluate

MEAN, STD = (0.491, 0.482, 0.447), (0.247, 0.243, 0.262)  # CIFAR-10's; use your data's


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument(
        "--root",
        type=Path,
        help="ImageFolder tree with train/ and val/ "
        "(default: write one from CIFAR-10 into <out>/imagefolder)",
    )
    p.add_argument("--out", type=Path, default=Path("runs/own_model"))
    p.add_argument("--classes", type=int, default=10, help="CIFAR-10 classes to write")
    p.add_argument("--per-class-max", type=int, default=300, help="head class size to write")
    p.add_argument("--ratio", type=float, default=20, help="imbalance ratio to write")
    p.add_argument("--val-per-class", type=int, default=100, help="test images to write per class")
    p.add_argument("--size", type=int, default=64, help="image side the model sees")
    p.add_argument("--stage1-epochs", type=int, default=10)
    p.add_argument("--stage2-epochs", type=int, default=4)
    p.add_argument("--refresh-every", type=int, default=2, help="AFR refresh period (epochs)")
    p.add_argument("--max-iters", type=int, help="stop each epoch after this many batches")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=0.01, help="stage 1 (stage 2: a tenth of it)")
    p.add_argument("--num-workers", type=int, default=0)
    p.add_argument(
        "--storage",
        default=None,
        help="'memory' or a directory for the adversarial images (default: <out>/afr)",
    )
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--no-progress", action="store_true")
    return p.parse_args(argv)


def write_imagefolder(
    out: Path, classes: int, per_class_max: int, ratio: float, val_per_class: int
) -> Path:
    """A long-tailed ImageFolder of CIFAR-10 PNGs (kept when already written alike)."""
    root = out / "imagefolder"
    settings = json.dumps(
        {
            "classes": classes,
            "per_class_max": per_class_max,
            "ratio": ratio,
            "val_per_class": val_per_class,
        }
    )
    marker = root / "settings.json"
    if marker.is_file() and marker.read_text() == settings:
        return root
    shutil.rmtree(root, ignore_errors=True)
    counts = long_tailed_counts(per_class_max, classes, ratio)
    for split, train in (("train", True), ("val", False)):
        cifar = load_cifar("cifar10", train=train)  # $AFR_DATA or ./data
        targets = np.asarray(cifar.targets)
        for c in range(classes):
            folder = root / split / f"{c}_{cifar.classes[c]}"  # sorted names = label order
            folder.mkdir(parents=True)
            for i in np.flatnonzero(targets == c)[: counts[c] if train else val_per_class]:
                Image.fromarray(cifar.data[i]).save(folder / f"{i:05d}.png")
    marker.write_text(settings)
    return root


def train_epoch(model, mixed, criterion, opt, args, desc):
    """One epoch of the wrapped loader's ready-mixed batches; the loader counts the running
    accuracy from the logits handed back (what AFRLoader's refresh adapts to, §3.3)."""
    steps = min(len(mixed), args.max_iters or len(mixed))
    model.train()
    for x, y_a, y_b, lam in tqdm(
        islice(mixed, steps), total=steps, desc=desc, leave=False, disable=args.no_progress
    ):
        logits = model(x)
        loss = mixed_loss(criterion, logits, y_a, y_b, lam)
        opt.zero_grad()
        loss.backward()
        opt.step()
        mixed.observe(logits)
    return mixed.accuracy()[1]


def run_stage(name, model, mixed, criterion, lr, epochs, args) -> None:
    """``epochs`` of the wrapped loader ``mixed`` with SGD + cosine decay from ``lr``; prints
    the running accuracy per epoch and, for AFRLoader, each refresh's report."""
    start, refresh_s = time.perf_counter(), 0.0
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=5e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(epochs, 1))
    for epoch in range(epochs):
        mixed.set_epoch(epoch)
        refreshes = getattr(mixed, "refreshes", 0)
        acc = train_epoch(model, mixed, criterion, opt, args, f"{name} epoch {epoch + 1}")
        if getattr(mixed, "refreshes", 0) > refreshes:
            report, refresh_s = mixed.report, refresh_s + mixed.refresh_seconds
            print(
                f"{name} refresh: {sum(report.attacked)} adversarial images in "
                f"{len(mixed.stage2)}; crossed λ_c {report.total_crossed:.0%}, "
                f"dose {report.dose:.2%}"
            )
            print(report)
        sched.step()
        print(f"{name} epoch {epoch + 1}: running accuracy on mixed batches {acc:.1%}")
    refreshes = (
        f" ({refresh_s:.0f} s of it in AFR refreshes)" if isinstance(mixed, AFRLoader) else ""
    )
    print(f"{name}: {epochs} epochs in {time.perf_counter() - start:.0f} s{refreshes}")


def main(argv=None) -> int:
    args = parse_args(argv)
    args.no_progress = args.no_progress or not sys.stderr.isatty()
    torch.manual_seed(0)
    root = args.root or write_imagefolder(
        args.out, args.classes, args.per_class_max, args.ratio, args.val_per_class
    )
    S, W = args.size, args.num_workers

    # Two views of the same folder. afr-aug wants images in [0, 1]: no Normalize here.
    train = ImageFolder(
        root / "train",
        transform=T.Compose(
            [T.RandomResizedCrop(S, scale=(0.35, 1)), T.RandomHorizontalFlip(), T.ToTensor()]
        ),
    )
    plain = T.Compose([T.Resize(S), T.CenterCrop(S), T.ToTensor()])  # deterministic
    eval_view = ImageFolder(root / "train", transform=plain)  # for AFR's stage-2 set
    val = ImageFolder(root / "val", transform=plain)
    counts = torch.bincount(torch.tensor(train.targets), minlength=len(train.classes)).tolist()
    print(f"{len(train)} training images, per class {counts}; {len(val)} validation images")

    # Normalisation lives *inside* the model, so every image afr-aug handles (AFR's stage-2
    # set, the embedding pass, the attack, evaluate) stays in [0, 1]. The alternative: a plain
    # model, and AFRDataset(..., attack=atk) with atk.set_normalization_used(MEAN, STD); the
    # refresh then normalises for the model in both passes (but evaluate would not).
    model = nn.Sequential(
        T.Normalize(MEAN, STD), models.resnet18(weights=None, num_classes=len(counts))
    ).to(args.device)
    embedder = Embedder(model.eval())  # default: input of the last nn.Linear
    with torch.no_grad():
        dim = embedder(val[0][0][None].to(args.device))[1].shape[1]
    print(f"AFR embeds the input of {embedder.classifier!r} ({dim}-d)")  # resnet18's fc: 512-d

    loader = DataLoader(
        train, batch_size=args.batch_size, shuffle=True, drop_last=True, num_workers=W
    )
    criterion = BalancedSoftmaxLoss(counts).to(args.device)

    # Stage 1: CMO's class-balanced batch (LongTailSampler, built by the wrapper from the
    # loader's dataset and settings) CutMixed onto half of the long-tailed batches.
    stage1 = BalancedMixLoader(loader, CutMixBalancer(p=0.5), device=args.device)
    run_stage("stage 1", model, stage1, criterion, args.lr, args.stage1_epochs, args)

    # Stage 2: AFR's set over the deterministic view. Built lazily: ImageFolder has .targets,
    # so no image is read here. Each refresh over-samples every class to the largest one's
    # size with crop + flip (the slots), streams them once (W workers) to embed them, splits
    # each class (20 % minority), and attacks half of each class's majority slots toward
    # "(class, minority)", embedding at the same layer as Embedder(model). AFRLoader refreshes
    # it every --refresh-every epochs with the running accuracy of the epoch before (the first
    # time: stage 1's last), and CutMixes it onto 25 % of the batches.
    afr_set = AFRDataset(
        eval_view,
        attack=MinorityPGD(model),
        batch_size=2 * args.batch_size,
        num_workers=W,
        storage=args.storage or str(args.out / "afr"),
        transform=v2.Compose([v2.RandomCrop(S, padding=S // 8), v2.RandomHorizontalFlip()]),
        progress=not args.no_progress,
    )
    stage2 = AFRLoader(
        loader, afr_set, model, refresh_every=args.refresh_every, running=stage1, device=args.device
    )
    run_stage("stage 2", model, stage2, criterion, args.lr / 10, args.stage2_epochs, args)

    result = evaluate(
        model,
        DataLoader(val, batch_size=256, num_workers=W),
        class_counts=counts,
        progress=not args.no_progress,
    )
    shots = "  ".join(
        f"{g} {'-' if result[g] is None else f'{result[g]:.1%}'}" for g in ("many", "med", "few")
    )
    print(f"result: top-1 {result['top1']:.1%}  {shots}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
