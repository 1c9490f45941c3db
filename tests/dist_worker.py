"""Run under torchrun by tests/test_distributed.py: the AFR pieces in a 2-process gloo group.

Each rank works on its shard; rank 0 saves what every rank ended up with, so the test can
compare it with the single-process result computed by the same ``compute`` function.
"""

import sys

import torch
import torch.distributed as dist

from afr_aug import AFRDataset, IntraClassSplitter, LongTailSampler
from afr_aug.bench.runtime import exit_process
from afr_aug.distributed import all_gather_cat, get_rank, get_world_size
from afr_aug.embedding import run_inference
from afr_aug.metrics import evaluate
from afr_aug.models import resnet32


def fixture_data():
    g = torch.Generator().manual_seed(0)
    labels = torch.cat([torch.full((n,), c) for c, n in enumerate([30, 12, 6])])
    images = torch.randint(0, 256, (len(labels), 3, 16, 16), generator=g, dtype=torch.uint8)
    torch.manual_seed(0)
    model = resnet32(num_classes=3).eval()
    return images, labels, model


def compute(storage_dir):
    """Split, stage-2 set (memory and disk storage), evaluation and sampler draw, sharded over
    the current group."""
    images, labels, model = fixture_data()
    rank, world = get_rank(), get_world_size()
    mine = torch.arange(rank, len(labels), world)
    batches = [(images[i].float() / 255, labels[i], i) for i in mine.split(7)]
    splitter = IntraClassSplitter(threshold=0.9, adaptive=False)
    out = run_inference(model, batches, embed=True, progress=False)
    emb, labs = out.embeddings, out.labels
    correct = (out.predictions == labs).double()
    acc = (
        torch.bincount(labs, weights=correct, minlength=3) / torch.bincount(labs, minlength=3)
    ).float()
    train_acc = float(correct.mean())
    split = splitter.split(emb, labs, num_classes=3)
    balancer = AFRDataset(
        images,
        labels,
        batch_size=5,
        seed=3,
        progress=False,
        splitter=IntraClassSplitter(threshold=0.9, adaptive=False),
    )
    balancer.refresh(model)
    on_disk = AFRDataset(
        images,
        labels,
        batch_size=5,
        seed=3,
        progress=False,
        splitter=IntraClassSplitter(threshold=0.9, adaptive=False),
        storage=storage_dir,
    )
    on_disk.refresh(model)  # every rank writes its rows of one shared file
    metrics = evaluate(
        model,
        [(images[i].float() / 255, labels[i]) for i in mine.split(9)],
        class_counts=[30, 12, 6],
        progress=False,
    )
    sampler = LongTailSampler(labels.tolist(), num_samples=40, seed=1)
    sampler.set_epoch(2)
    shares = all_gather_cat(torch.tensor(list(sampler)).view(1, -1))
    return {
        "embeddings": emb,
        "labels": labs,
        "class_accuracy": acc,
        "train_accuracy": train_acc,
        "minority_mask": split.minority_mask,
        "thresholds": split.thresholds,
        "centroids": split.minority_centroids,
        "adversarial": balancer.adversarial,
        "adversarial_disk": on_disk.adversarial.clone(),
        "item_index": balancer.item_index,
        "is_adversarial": balancer.is_adversarial,
        "attacked": balancer.report.attacked,
        "crossed": balancer.report.crossed,
        "top1": metrics["top1"],
        "per_class": metrics["per_class"],
        "shares": shares,
        "global_draw": sampler.global_draw(),
        "world": world,
    }


if __name__ == "__main__":
    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    result = compute(sys.argv[2])
    if dist.get_rank() == 0:
        torch.save(result, sys.argv[1])
    exit_process(0)  # as the commands end under torchrun (see its docstring)
