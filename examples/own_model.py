"""AFR with your own model and data: a torchvision ResNet-18 on a long-tailed ImageFolder.

What it shows: nothing of afr-aug's CIFAR tooling is needed. The data is an ordinary
``torchvision.datasets.ImageFolder`` (read in two views: augmented for training, deterministic
for AFR's stage-2 set and evaluation), the model an unmodified ``torchvision.models.resnet18``.

- Stage 1 (inter-class): long-tailed batches CutMixed (p = 0.5) with class-balanced batches
  from ``LongTailSampler``, Balanced Softmax loss.
- Stage 2 (intra-class): fine-tuning at a smaller learning rate with ``AFRBalancer`` over the
  deterministic view (read lazily, by index), refreshed every ``--refresh-every`` epochs with
  the running accuracy on the mixed batches (§3.3), CutMixed onto 25 % of the batches.

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
from torchvision import models, transforms as T
from torchvision.datasets import ImageFolder
from torchvision.transforms import v2
from tqdm.auto import tqdm

from afr_aug import AFRBalancer, CutMixBalancer, LongTailSampler, MinorityPGD, mixed_loss
from afr_aug.data import load_cifar, long_tailed_counts
from afr_aug.embedding import Embedder
from afr_aug.losses import BalancedSoftmaxLoss
from afr_aug.metrics import evaluate

MEAN, STD = (0.491, 0.482, 0.447), (0.247, 0.243, 0.262)      # CIFAR-10's; use your data's


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--root", type=Path, help="ImageFolder tree with train/ and val/ "
                   "(default: write one from CIFAR-10 into <out>/imagefolder)")
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
    p.add_argument("--storage", default=None, help="'memory' or a directory for the "
                   "adversarial images (default: <out>/afr)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--no-progress", action="store_true")
    return p.parse_args(argv)


def write_imagefolder(out: Path, classes: int, per_class_max: int, ratio: float,
                      val_per_class: int) -> Path:
    """A long-tailed ImageFolder of CIFAR-10 PNGs (kept when already written alike)."""
    root = out / "imagefolder"
    settings = json.dumps({"classes": classes, "per_class_max": per_class_max,
                           "ratio": ratio, "val_per_class": val_per_class})
    marker = root / "settings.json"
    if marker.is_file() and marker.read_text() == settings:
        return root
    shutil.rmtree(root, ignore_errors=True)
    counts = long_tailed_counts(per_class_max, classes, ratio)
    for split, train in (("train", True), ("val", False)):
        cifar = load_cifar("cifar10", train=train)        # $AFR_DATA or ./data
        targets = np.asarray(cifar.targets)
        for c in range(classes):
            folder = root / split / f"{c}_{cifar.classes[c]}"   # sorted names = label order
            folder.mkdir(parents=True)
            for i in np.flatnonzero(targets == c)[:counts[c] if train else val_per_class]:
                Image.fromarray(cifar.data[i]).save(folder / f"{i:05d}.png")
    marker.write_text(settings)
    return root


def train_epoch(model, loader, balanced, mix, criterion, opt, args, desc):
    """One epoch of long-tailed batches mixed with balanced ones. Returns the running accuracy
    on the mixed batches (argmax vs. the long-tailed label), per class and overall: what
    AFRBalancer.refresh wants for §3.3's per-class thresholds."""
    num_classes = criterion.num_classes
    correct, seen = torch.zeros(num_classes), torch.zeros(num_classes)
    steps = min(len(loader), args.max_iters or len(loader))
    model.train()
    for (x, y), (xb, yb) in tqdm(islice(zip(loader, balanced), steps), total=steps, desc=desc,
                                 leave=False, disable=args.no_progress):
        x, y, xb, yb = x.to(args.device), y.to(args.device), xb.to(args.device), yb.to(args.device)
        x, y_a, y_b, lam = mix(x, y, xb, yb)
        logits = model(x)
        loss = mixed_loss(criterion, logits, y_a, y_b, lam)
        opt.zero_grad()
        loss.backward()
        opt.step()
        y_a = y_a.cpu()
        correct.index_add_(0, y_a, (logits.argmax(1).cpu() == y_a).float())
        seen.index_add_(0, y_a, torch.ones(len(y_a)))
    return (correct / seen).tolist(), float(correct.sum() / seen.sum())   # NaN: class not seen


def main(argv=None) -> int:
    args = parse_args(argv)
    args.no_progress = args.no_progress or not sys.stderr.isatty()
    torch.manual_seed(0)
    root = args.root or write_imagefolder(args.out, args.classes, args.per_class_max,
                                          args.ratio, args.val_per_class)
    S, W = args.size, args.num_workers

    # Two views of the same folder. afr-aug wants images in [0, 1]: no Normalize here.
    train = ImageFolder(root / "train", transform=T.Compose(
        [T.RandomResizedCrop(S, scale=(0.35, 1)), T.RandomHorizontalFlip(), T.ToTensor()]))
    plain = T.Compose([T.Resize(S), T.CenterCrop(S), T.ToTensor()])       # deterministic
    eval_view = ImageFolder(root / "train", transform=plain)     # for AFR's stage-2 set
    val = ImageFolder(root / "val", transform=plain)
    counts = torch.bincount(torch.tensor(train.targets), minlength=len(train.classes)).tolist()
    print(f"{len(train)} training images, per class {counts}; {len(val)} validation images")

    # Normalisation lives *inside* the model, so every image afr-aug handles (AFR's stage-2
    # set, the embedding pass, the attack, evaluate) stays in [0, 1]. The alternative: a plain
    # model, and AFRBalancer(..., attack=atk) with atk.set_normalization_used(MEAN, STD); the
    # refresh then normalises for the model in both passes (but evaluate would not).
    model = nn.Sequential(T.Normalize(MEAN, STD),
                          models.resnet18(weights=None, num_classes=len(counts))).to(args.device)
    embedder = Embedder(model.eval())                  # default: input of the last nn.Linear
    with torch.no_grad():
        dim = embedder(val[0][0][None].to(args.device))[1].shape[1]
    print(f"AFR embeds the input of {embedder.classifier!r} ({dim}-d)")      # resnet18's fc: 512-d

    loader = DataLoader(train, batch_size=args.batch_size, shuffle=True, drop_last=True,
                        num_workers=W)
    criterion = BalancedSoftmaxLoss(counts).to(args.device)

    # Stage 1: CMO's class-balanced batch CutMixed onto half of the long-tailed batches.
    start = time.perf_counter()
    balanced = DataLoader(train, batch_size=args.batch_size, drop_last=True, num_workers=W,
                          sampler=LongTailSampler(train.targets))
    opt = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9, weight_decay=5e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(args.stage1_epochs, 1))
    mix, class_acc, train_acc = CutMixBalancer(p=0.5), None, None
    for epoch in range(args.stage1_epochs):
        balanced.sampler.set_epoch(epoch)
        class_acc, train_acc = train_epoch(model, loader, balanced, mix, criterion, opt, args,
                                           f"stage 1 epoch {epoch + 1}")
        sched.step()
        print(f"stage 1 epoch {epoch + 1}: running accuracy on mixed batches {train_acc:.1%}")
    print(f"stage 1: {args.stage1_epochs} epochs in {time.perf_counter() - start:.0f} s")

    # Stage 2: AFR's set over the deterministic view. Built lazily: ImageFolder has .targets,
    # so no image is read here; each refresh streams the folder once (W workers) to embed it,
    # then reads and attacks half of each class's majority. MinorityPGD's defaults are the
    # paper's (eps 0.6, 3 steps of 1/255), embedding at the same layer as Embedder(model).
    start, refresh_s = time.perf_counter(), 0.0
    stage2 = AFRBalancer(eval_view, attack=MinorityPGD(model), batch_size=2 * args.batch_size,
                         num_workers=W, storage=args.storage or str(args.out / "afr"),
                         transform=v2.Compose([v2.RandomCrop(S, padding=S // 8),
                                               v2.RandomHorizontalFlip()]),
                         progress=not args.no_progress)
    # No persistent_workers: each epoch's workers must see the latest refresh.
    balanced = DataLoader(stage2, batch_size=args.batch_size, shuffle=True, drop_last=True,
                          num_workers=W)
    opt = torch.optim.SGD(model.parameters(), lr=args.lr / 10, momentum=0.9, weight_decay=5e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(args.stage2_epochs, 1))
    mix = CutMixBalancer(p=0.25)
    for epoch in range(args.stage2_epochs):
        if epoch % args.refresh_every == 0:
            t = time.perf_counter()
            split = stage2.refresh(model, class_accuracy=class_acc, train_accuracy=train_acc)
            refresh_s += time.perf_counter() - t
            print(f"stage 2 refresh: {split}; {int(stage2.is_adversarial.sum())} adversarial "
                  f"images in {len(stage2)}")
        class_acc, train_acc = train_epoch(model, loader, balanced, mix, criterion, opt, args,
                                           f"stage 2 epoch {epoch + 1}")
        sched.step()
        print(f"stage 2 epoch {epoch + 1}: running accuracy on mixed batches {train_acc:.1%}")
    print(f"stage 2: {args.stage2_epochs} epochs in {time.perf_counter() - start:.0f} s "
          f"({refresh_s:.0f} s of it in AFR refreshes)")

    result = evaluate(model, DataLoader(val, batch_size=256, num_workers=W),
                      class_counts=counts, progress=not args.no_progress)
    shots = "  ".join(f"{g} {'-' if result[g] is None else f'{result[g]:.1%}'}"
                      for g in ("many", "med", "few"))
    print(f"result: top-1 {result['top1']:.1%}  {shots}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
