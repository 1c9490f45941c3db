import math

import pytest
import torch

from afr_aug import LongTailSampler
from afr_aug.sampler import class_balanced_weights

COUNTS = [500, 200, 50, 10]
LABELS = [c for c, n in enumerate(COUNTS) for _ in range(n)]


def class_freq(sampler, labels=LABELS, num_classes=len(COUNTS)):
    drawn = torch.tensor([labels[i] for i in sampler])
    return torch.bincount(drawn, minlength=num_classes).double() / len(drawn)


def test_alpha_one_is_class_balanced():
    s = LongTailSampler(LABELS, alpha=1.0, num_samples=40_000, seed=0)
    freq = class_freq(s)
    assert torch.allclose(freq, torch.full((4,), 0.25, dtype=torch.float64), atol=0.01)


def test_alpha_zero_is_instance_balanced():
    s = LongTailSampler(LABELS, alpha=0.0, num_samples=40_000, seed=1)
    expected = torch.tensor(COUNTS, dtype=torch.float64) / sum(COUNTS)
    assert torch.allclose(class_freq(s), expected, atol=0.01)


def test_alpha_half_is_square_root():
    s = LongTailSampler(LABELS, alpha=0.5, num_samples=40_000, seed=2)
    root = torch.tensor(COUNTS, dtype=torch.float64).sqrt()
    assert torch.allclose(class_freq(s), root / root.sum(), atol=0.01)


def test_within_class_uniform():
    s = LongTailSampler(LABELS, alpha=1.0, num_samples=40_000, seed=3)
    idx = torch.tensor(list(s))
    tail = idx[idx >= 750]  # the 10 images of class 3
    per_item = torch.bincount(tail - 750, minlength=10).double() / len(tail)
    assert torch.allclose(per_item, torch.full((10,), 0.1, dtype=torch.float64), atol=0.02)


def test_deterministic_per_seed_and_epoch():
    a = LongTailSampler(LABELS, seed=5)
    b = LongTailSampler(LABELS, seed=5)
    assert list(a) == list(b)
    first = list(a)
    a.set_epoch(1)
    assert list(a) != first
    b.set_epoch(1)
    assert list(a) == list(b)
    assert list(LongTailSampler(LABELS, seed=6)) != first


def test_default_length_and_len():
    s = LongTailSampler(LABELS)
    assert len(s) == len(LABELS) == len(list(s))


@pytest.mark.parametrize("replicas,num_samples", [(2, 760), (3, 760), (4, 1001)])
def test_ddp_shares_disjoint_equal_and_cover_the_draw(replicas, num_samples):
    shards = [LongTailSampler(LABELS, num_samples=num_samples, seed=7,
                              num_replicas=replicas, rank=r) for r in range(replicas)]
    for s in shards:
        s.set_epoch(3)
    lists = [list(s) for s in shards]
    per = math.ceil(num_samples / replicas)
    assert all(len(x) == per == len(s) for x, s in zip(lists, shards))
    # interleaving the shards gives back the global draw: positions are disjoint and cover it
    draw = shards[0].global_draw().tolist()
    rebuilt = [None] * (per * replicas)
    for r, x in enumerate(lists):
        rebuilt[r::replicas] = x
    assert rebuilt == draw


def test_ddp_without_replacement_disjoint_indices():
    shards = [LongTailSampler(LABELS, replacement=False, num_samples=700, num_replicas=2, rank=r)
              for r in range(2)]
    a, b = (set(s) for s in shards)
    assert len(a) == len(b) == 350 and not a & b


def test_weights_hand_computed():
    w = class_balanced_weights([0, 0, 1, 2, 2, 2, 2], alpha=0.5)
    expected = torch.tensor([2, 2, 1, 4, 4, 4, 4], dtype=torch.float64).pow(-0.5)
    assert torch.allclose(w, expected)


@pytest.mark.parametrize("kwargs,exc,match", [
    (dict(labels=[]), ValueError, "empty"),
    (dict(labels=[[0, 1]]), ValueError, "1-D"),
    (dict(labels=[0.5, 1.0]), TypeError, "integers"),
    (dict(labels=[0, -1]), ValueError, ">= 0"),
    (dict(labels=[0, 1], alpha=float("nan")), ValueError, "finite"),
    (dict(labels=[0, 1], num_samples=0), ValueError, "num_samples"),
    (dict(labels=[0, 1], num_replicas=2, rank=2), ValueError, "rank"),
    (dict(labels=[0, 1], num_replicas=0, rank=0), ValueError, "num_replicas"),
    (dict(labels=[0, 1], replacement=False, num_samples=3), ValueError, "without replacement"),
])
def test_bad_input(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        LongTailSampler(**kwargs)
