import math
import re

import pytest
import torch

from afr_aug import LongTailSampler
from afr_aug.sampler import class_balanced_weights

COUNTS = [500, 200, 50, 10]
LABELS = [c for c, n in enumerate(COUNTS) for _ in range(n)]
NUM_CLASSES = len(COUNTS)


def class_freq(sampler, labels=LABELS, num_classes=NUM_CLASSES):
    drawn = torch.tensor([labels[i] for i in sampler])
    return torch.bincount(drawn, minlength=num_classes).double() / len(drawn)


def test_exponent_one_is_class_balanced():
    s = LongTailSampler(LABELS, exponent=1.0, num_samples=40_000, seed=0)
    freq = class_freq(s)
    assert torch.allclose(freq, torch.full((4,), 0.25, dtype=torch.float64), atol=0.01)


def test_class_draws_pass_a_chi_square_test():
    s = LongTailSampler(LABELS, exponent=1.0, num_samples=20_000, seed=11)
    observed = class_freq(s) * 20_000
    chi2 = float(((observed - 5_000) ** 2 / 5_000).sum())
    assert chi2 < 16.27  # 99.9 % quantile of chi-square with 3 degrees of freedom
    assert torch.allclose(s.class_probs, torch.full((4,), 0.25, dtype=torch.float64))


def test_exponent_zero_is_instance_balanced():
    s = LongTailSampler(LABELS, exponent=0.0, num_samples=40_000, seed=1)
    expected = torch.tensor(COUNTS, dtype=torch.float64) / sum(COUNTS)
    assert torch.allclose(class_freq(s), expected, atol=0.01)


def test_exponent_half_is_square_root():
    s = LongTailSampler(LABELS, exponent=0.5, num_samples=40_000, seed=2)
    root = torch.tensor(COUNTS, dtype=torch.float64).sqrt()
    assert torch.allclose(class_freq(s), root / root.sum(), atol=0.01)


def test_within_class_uniform():
    s = LongTailSampler(LABELS, exponent=1.0, num_samples=40_000, seed=3)
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
    shards = [
        LongTailSampler(LABELS, num_samples=num_samples, seed=7, num_replicas=replicas, rank=r)
        for r in range(replicas)
    ]
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
    shards = [
        LongTailSampler(LABELS, replacement=False, num_samples=700, num_replicas=2, rank=r)
        for r in range(2)
    ]
    a, b = (set(s) for s in shards)
    assert len(a) == len(b) == 350 and not a & b


def test_without_replacement_is_a_weighted_draw():
    # 3 items of class 0 and 1 of class 1, exponent=1: the first pick is the class-1 item half
    # the time, and a full draw is a permutation
    s = LongTailSampler([0, 0, 0, 1], replacement=False, seed=0)
    firsts = []
    for epoch in range(4000):
        s.set_epoch(epoch)
        draw = s.global_draw()
        assert sorted(draw.tolist()) == [0, 1, 2, 3]
        firsts.append(int(draw[0]))
    assert abs(firsts.count(3) / 4000 - 0.5) < 0.03
    assert abs(firsts.count(0) / 4000 - 0.5 / 3) < 0.03


def test_sparse_label_ids_and_class_attributes():
    s = LongTailSampler([7, 10**12, 7, 7], exponent=1.0, seed=0)
    assert s.classes.tolist() == [7, 10**12] and s.class_counts.tolist() == [3, 1]
    assert s.class_probs.tolist() == [0.5, 0.5]
    assert s.order.tolist() == [0, 2, 3, 1]


def test_more_than_2_to_the_24_labels():
    n = 2**24 + 5
    labels = torch.zeros(n, dtype=torch.int32)  # cheap: 64 MB
    labels[-5:-3], labels[-3:] = 1, 2  # 2 items of class 1, 3 of class 2
    s = LongTailSampler(labels, exponent=1.0, num_samples=1000, seed=0)
    assert s.num_labels == n and s.class_counts.tolist() == [n - 5, 2, 3]
    drawn = s.global_draw()
    assert drawn.dtype == torch.int64 and len(drawn) == 1000
    assert int(drawn.min()) >= 0 and int(drawn.max()) < n
    freq = torch.bincount(labels[drawn].long(), minlength=3) / 1000
    assert torch.allclose(freq, torch.full((3,), 1 / 3, dtype=freq.dtype), atol=0.06)
    assert set(drawn[drawn >= n - 5].tolist()) == set(range(n - 5, n))  # every tail item
    no_repeat = LongTailSampler(labels, num_samples=1000, replacement=False, seed=0).global_draw()
    assert len(set(no_repeat.tolist())) == 1000
    assert set(range(n - 5, n)) <= set(no_repeat.tolist())  # weight 1/2, 1/3 vs 2**-24 each


def test_state_dict_round_trip():
    a = LongTailSampler(LABELS, num_samples=300, seed=4)
    a.set_epoch(3)
    state = a.state_dict()
    assert state == {
        "type": "LongTailSampler",
        "seed": 4,
        "epoch": 3,
        "num_labels": 760,
        "num_classes": 4,
        "num_samples": 300,
        "replacement": True,
        "exponent": 1.0,
    }
    b = LongTailSampler(LABELS, num_samples=300, seed=99, num_replicas=2, rank=1)  # other shard
    b.load_state_dict(state)
    assert (b.seed, b.epoch) == (4, 3)
    assert torch.equal(a.global_draw(), b.global_draw())
    for epoch in (4, 5):
        a.set_epoch(epoch)
        b.set_epoch(epoch)
        assert torch.equal(a.global_draw(), b.global_draw())


@pytest.mark.parametrize(
    "state,exc,match",
    [
        ([("seed", 0)], TypeError, "expects the dict"),
        ({"seed": 0, "epoch": 0}, ValueError, r"missing keys \['exponent'"),
        (
            {
                "type": "LongTailSampler",
                "seed": 0,
                "epoch": 0,
                "num_labels": 760,
                "num_classes": 4,
                "num_samples": 300,
                "replacement": True,
                "exponent": 1.0,
                "rank": 0,
            },
            ValueError,
            r"unexpected keys \['rank'\]",
        ),
        (
            {
                "type": "CutMixBalancer",
                "seed": 0,
                "epoch": 0,
                "num_labels": 760,
                "num_classes": 4,
                "num_samples": 300,
                "replacement": True,
                "exponent": 1.0,
            },
            ValueError,
            "saved by 'CutMixBalancer'",
        ),
        (
            {
                "type": "LongTailSampler",
                "seed": 0,
                "epoch": 0,
                "num_labels": 760,
                "num_classes": 4,
                "num_samples": 500,
                "replacement": True,
                "exponent": 1.0,
            },
            ValueError,
            "num_samples=500 but this LongTailSampler has num_samples=300",
        ),
        (
            {
                "type": "LongTailSampler",
                "seed": 0,
                "epoch": 0,
                "num_labels": 100,
                "num_classes": 4,
                "num_samples": 300,
                "replacement": True,
                "exponent": 1.0,
            },
            ValueError,
            "num_labels=100",
        ),
        (
            {
                "type": "LongTailSampler",
                "seed": 0,
                "epoch": 0,
                "num_labels": 760,
                "num_classes": 4,
                "num_samples": 300,
                "replacement": False,
                "exponent": 1.0,
            },
            ValueError,
            "replacement=False",
        ),
        (
            {
                "type": "LongTailSampler",
                "seed": 0,
                "epoch": 0,
                "num_labels": 760,
                "num_classes": 4,
                "num_samples": 300,
                "replacement": True,
                "exponent": 0.5,
            },
            ValueError,
            "exponent=0.5",
        ),
        (
            {
                "type": "LongTailSampler",
                "seed": "0",
                "epoch": 0,
                "num_labels": 760,
                "num_classes": 4,
                "num_samples": 300,
                "replacement": True,
                "exponent": 1.0,
            },
            TypeError,
            "seed must be an int",
        ),
    ],
)
def test_load_state_dict_bad_input(state, exc, match):
    s = LongTailSampler(LABELS, num_samples=300, seed=4)
    with pytest.raises(exc, match=match):
        s.load_state_dict(state)
    assert (s.seed, s.epoch) == (4, 0)  # a rejected state changes nothing


def test_weights_hand_computed():
    w = class_balanced_weights([0, 0, 1, 2, 2, 2, 2], exponent=0.5)
    expected = torch.tensor([2, 2, 1, 4, 4, 4, 4], dtype=torch.float64).pow(-0.5)
    assert torch.allclose(w, expected)


@pytest.mark.parametrize(
    "kwargs,exc,match",
    [
        ({"labels": []}, ValueError, "empty"),
        ({"labels": [[0, 1]]}, ValueError, "1-D"),
        ({"labels": [0.5, 1.0]}, TypeError, "integer class indices"),
        ({"labels": [0, -1]}, ValueError, ">= 0"),
        ({"labels": [0, 1], "exponent": float("nan")}, ValueError, "finite"),
        ({"labels": [0, 1], "num_samples": 0}, ValueError, "num_samples"),
        ({"labels": [0, 1], "num_replicas": 2, "rank": 2}, ValueError, "rank"),
        ({"labels": [0, 1], "num_replicas": 0, "rank": 0}, ValueError, "num_replicas"),
        (
            {"labels": [0, 1], "replacement": False, "num_samples": 3},
            ValueError,
            "without replacement",
        ),
        ({"labels": [0, 1], "seed": None}, TypeError, "seed must be an int"),
        ({"labels": [0] * 7 + [1] * 8, "exponent": 1e308}, ValueError, "too extreme"),
    ],
)
def test_bad_input(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        LongTailSampler(**kwargs)


def test_old_alpha_keyword_attribute_and_state_still_work():
    with pytest.warns(DeprecationWarning, match="'alpha' is deprecated, use 'exponent'"):
        old = LongTailSampler(LABELS, alpha=0.5, num_samples=300, seed=4)
    assert old.exponent == 0.5
    assert torch.equal(
        old.global_draw(),
        LongTailSampler(LABELS, exponent=0.5, num_samples=300, seed=4).global_draw(),
    )
    with pytest.warns(
        DeprecationWarning, match=r"LongTailSampler.alpha is deprecated, use .exponent"
    ):
        assert old.alpha == 0.5
    with pytest.raises(TypeError, match="both 'exponent' and its deprecated name 'alpha'"):
        LongTailSampler(LABELS, exponent=1.0, alpha=1.0)
    with pytest.warns(DeprecationWarning, match="'alpha' is deprecated"):
        assert torch.equal(
            class_balanced_weights([0, 1, 1], alpha=0.5),
            class_balanced_weights([0, 1, 1], exponent=0.5),
        )
    # a state saved before the rename (key "alpha") loads; state= still names the argument
    saved = dict(old.state_dict(), epoch=3)
    saved["alpha"] = saved.pop("exponent")
    fresh = LongTailSampler(LABELS, exponent=0.5, num_samples=300)
    with pytest.warns(DeprecationWarning, match="'state' is deprecated, use 'state_dict'"):
        fresh.load_state_dict(state=saved)
    assert (fresh.seed, fresh.epoch) == (4, 3)
    with pytest.raises(
        ValueError, match=re.escape("exponent=0.5 but this LongTailSampler has exponent=1.0")
    ):
        LongTailSampler(LABELS, num_samples=300).load_state_dict(saved)
