import warnings

import pytest
import torch
import torch.nn.functional as F

from afr_aug import IntraClassSplitter, SplitResult


def planted(num_classes=5, per_class=200, outliers=10, dim=32, seed=0):
    """Tight clusters with a few planted outliers per class: the ground truth is known."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(num_classes, dim, generator=g) * 3
    emb, labels, truth = [], [], []
    for c in range(num_classes):
        x = centres[c] + 0.3 * torch.randn(per_class, dim, generator=g)
        x[:outliers] = torch.randn(outliers, dim, generator=g) * 3  # atypical images
        emb.append(x)
        labels.append(torch.full((per_class,), c))
        t = torch.zeros(per_class, dtype=torch.bool)
        t[:outliers] = True
        truth.append(t)
    return torch.cat(emb), torch.cat(labels), torch.cat(truth)


def test_recovers_planted_outliers():
    emb, labels, truth = planted()
    result = IntraClassSplitter(threshold=0.8).split(emb, labels)
    found = result.minority_mask
    tp = (found & truth).sum().item()
    precision, recall = tp / found.sum().item(), tp / truth.sum().item()
    assert precision >= 0.9 and recall >= 0.9, (precision, recall)
    assert result.minority_counts.tolist() == torch.bincount(labels[found], minlength=5).tolist()


def test_similarity_means_and_centroids_match_definition():
    emb, labels, _ = planted(num_classes=3, per_class=50, outliers=5)
    r = IntraClassSplitter(threshold=0.8).split(emb, labels)
    for c in range(3):
        members = emb[labels == c]
        assert torch.allclose(r.class_means[c], members.mean(0), atol=1e-5)
        cos = torch.nn.functional.cosine_similarity(members, members.mean(0, keepdim=True))
        assert torch.allclose(r.similarity[labels == c], cos, atol=1e-5)
        minority = members[r.minority_mask[labels == c]]
        assert torch.allclose(r.minority_centroids[c], minority.mean(0), atol=1e-5)
    assert r.thresholds.tolist() == pytest.approx([0.8] * 3)


def _one_class(angles):
    """2-D embeddings of one class at known angles to the mean direction (1, 0)."""
    angles = torch.tensor(angles)
    return torch.stack([angles.cos(), angles.sin()], 1), torch.zeros(len(angles), dtype=torch.long)


SYMMETRIC = [0.0, 0.2, 0.5, 0.7, 0.9, -0.2, -0.5, -0.7, -0.9, 0.1]


def test_hard_classes_hand_example():
    s = IntraClassSplitter(threshold=0.8, adaptive=True, accuracy_window=(0.6, 0.7))
    hard, applied = s.hard_classes(4, class_accuracy=[0.9, 0.5, 0.65, 0.7], train_accuracy=0.66)
    assert applied and hard.tolist() == [False, True, True, False]
    assert IntraClassSplitter(adaptive=False).hard_classes(4, [0.9] * 4, 0.66) == (None, False)


def test_literal_rule_uses_the_accuracy_as_cosine():
    emb, labels = _one_class(SYMMETRIC)
    fixed = IntraClassSplitter(0.8, adaptive=False).split(emb, labels, [0.5], 0.65)
    literal = IntraClassSplitter(0.8, adaptive_rule="literal").split(emb, labels, [0.5], 0.65)
    cos = F.cosine_similarity(emb, emb.mean(0, keepdim=True))
    assert fixed.minority_mask.tolist() == (cos < 0.8).tolist()
    assert literal.minority_mask.tolist() == (cos < 0.5).tolist()
    assert literal.thresholds.tolist() == pytest.approx([0.5])
    assert literal.adaptive_applied and literal.rule == "literal" and not fixed.adaptive_applied
    # the printed formula gives a hard class FEWER minority images, so MORE attacked ones
    assert literal.minority_mask.sum() < fixed.minority_mask.sum()


@pytest.mark.parametrize("base", [{"threshold": 0.8}, {"quantile": 0.2}])
def test_keep_originals_rule_gives_hard_classes_more_minority(base):
    # §3.3's stated purpose: "harder classes tend to keep more original samples"; pinned for
    # both kinds of base threshold: a hard class gets a larger minority (fewer attacked slots)
    torch.manual_seed(0)
    emb = torch.randn(200, 8) + torch.tensor([5.0] + [0.0] * 7)
    labels = torch.arange(200) % 2
    s = IntraClassSplitter(**base, accuracy_window=None)
    plain = IntraClassSplitter(**base, adaptive=False).split(emb, labels)
    split = s.split(emb, labels, class_accuracy=[0.9, 0.45], train_accuracy=0.6)
    assert split.rule == "keep_originals" and split.hard.tolist() == [False, True]
    share, base_share = split.minority_shares, plain.minority_shares
    assert share[0] == pytest.approx(float(base_share[0]), abs=0.011)  # easy: unchanged
    expected = min(0.5, 1 - (1 - float(base_share[1])) * 0.45 / 0.6)
    assert share[1] == pytest.approx(expected, abs=0.011) and share[1] > base_share[1]
    assert split.thresholds[1] > plain.thresholds[1]


def test_keep_originals_is_capped_at_max_minority():
    emb, labels = _one_class(SYMMETRIC)
    split = IntraClassSplitter(quantile=0.2, accuracy_window=None, max_minority=0.4).split(
        emb, labels, [0.05], 0.9
    )
    assert split.minority_shares.tolist() == pytest.approx([0.4])


def test_quantile_is_a_share_per_class_whatever_the_geometry():
    torch.manual_seed(0)
    tight = torch.randn(50, 16) * 0.01 + 1.0  # every cosine near 1: λ = 0.8 finds none
    loose = torch.randn(30, 16)
    emb, labels = torch.cat([tight, loose]), torch.tensor([0] * 50 + [1] * 30)
    assert (
        not IntraClassSplitter(threshold=0.8, adaptive=False)
        .split(emb, labels)
        .minority_mask[:50]
        .any()
    )
    r = IntraClassSplitter(quantile=0.2, adaptive=False).split(emb, labels)
    assert r.minority_counts.tolist() == [10, 6]
    # the minority are each class's least typical images
    for _c, members in ((0, torch.arange(50)), (1, torch.arange(50, 80))):
        sim, minority = r.similarity[members], r.minority_mask[members]
        assert sim[minority].max() <= sim[~minority].min()
    assert IntraClassSplitter().quantile == 0.2 and IntraClassSplitter().threshold is None


def test_accuracy_window_gates_adaptive():
    s = IntraClassSplitter(0.8, accuracy_window=(0.6, 0.7))
    emb, labels = torch.randn(4, 3), torch.tensor([0, 0, 1, 1])
    with pytest.warns(
        UserWarning, match=r"accuracy 0\.950 lies outside accuracy_window=\(0\.6, 0\.7\)"
    ):
        hard, applied = s.hard_classes(2, [0.5, 0.9], train_accuracy=0.95)
    assert not applied and hard is None
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # said once per splitter
        assert not s.split(emb, labels, [0.5, 0.9], 0.9).adaptive_applied
        assert s.hard_classes(2, [0.5, 0.9], train_accuracy=0.65)[1]
    hard, applied = IntraClassSplitter(0.8, accuracy_window=None).hard_classes(2, [0.5, 0.99], 0.95)
    assert applied and hard.tolist() == [True, False]


def test_edge_classes_single_empty_and_no_minority():
    emb = torch.tensor([[1.0, 0.0], [1.0, 0.1], [1.0, -0.1], [0.0, 1.0]])
    labels = torch.tensor([0, 0, 0, 2])  # class 1 is empty, class 2 has one image
    r = IntraClassSplitter(threshold=0.5).split(emb, labels, num_classes=3)
    assert not r.minority_mask.any()  # tight class 0, singleton class 2
    assert r.class_counts.tolist() == [3, 0, 1]
    assert torch.equal(r.class_means[1], torch.zeros(2))
    assert torch.equal(r.minority_centroids[1], torch.zeros(2))
    # no minority: the centroid is the least typical image of the class
    assert torch.equal(r.minority_centroids[0], emb[1]) or torch.equal(
        r.minority_centroids[0], emb[2]
    )
    assert torch.equal(r.minority_centroids[2], emb[3])
    assert r.similarity[3].item() == pytest.approx(1.0)
    assert r.majority_indices(0).tolist() == [0, 1, 2]


def test_zero_embedding_is_minority():
    emb = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 0.0]])
    r = IntraClassSplitter(0.8).split(emb, torch.zeros(3, dtype=torch.long))
    assert r.minority_mask.tolist() == [False, False, True]


def test_embed_restores_mode_and_measures_accuracy():
    class Tiny(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = torch.nn.Linear(2, 2)
            with torch.no_grad():
                self.fc.weight.copy_(torch.eye(2))
                self.fc.bias.zero_()
            self.drop = torch.nn.Dropout(0.5)

        def forward(self, x):  # a plain classifier: Embedder finds fc
            return self.fc(self.drop(x))

    model = Tiny().train()
    x = torch.tensor([[2.0, 0.0], [0.0, 2.0], [2.0, 0.0], [0.0, 1.0]])
    y = torch.tensor([0, 1, 1, 1])  # image 2 is misclassified
    loader = [(x[:2], y[:2]), (x[2:], y[2:])]
    with pytest.warns(DeprecationWarning, match="run_inference"):
        emb, labels, acc, train_acc = IntraClassSplitter().embed(model, loader, progress=False)
    assert model.training and model.drop.training
    assert torch.equal(emb, x)  # eval mode: no dropout
    assert labels.tolist() == y.tolist()
    assert acc.tolist() == pytest.approx([1.0, 2 / 3])
    assert train_acc == pytest.approx(0.75)


def test_result_repr_and_type():
    emb, labels, _ = planted(num_classes=2, per_class=20, outliers=2)
    r = IntraClassSplitter().split(emb, labels)
    assert isinstance(r, SplitResult) and "minority" in repr(r)


@pytest.mark.parametrize(
    "emb,labels,kwargs,exc,match",
    [
        (
            torch.zeros(8, 4),
            torch.zeros(7, dtype=torch.long),
            {},
            ValueError,
            "labels has 7 entries, expected 8",
        ),
        (torch.zeros(8), torch.zeros(8, dtype=torch.long), {}, ValueError, r"\[N, D\]"),
        (torch.full((2, 3), float("nan")), torch.zeros(2, dtype=torch.long), {}, ValueError, "NaN"),
        (
            torch.zeros(2, 3),
            torch.tensor([0, 5]),
            {"num_classes": 3},
            ValueError,
            r"in \[0, 2\] for 3 classes",
        ),
        (torch.zeros(2, 3), torch.tensor([0, -1]), {}, ValueError, "labels must be >= 0"),
        (torch.zeros(2, 3), torch.tensor([0.0, 1.5]), {}, TypeError, "integer class indices"),
        (torch.zeros(0, 3), torch.zeros(0, dtype=torch.long), {}, ValueError, "no embeddings"),
        (
            torch.zeros(2, 3),
            torch.tensor([0, 1]),
            {"class_accuracy": [0.5], "train_accuracy": 0.65},
            ValueError,
            r"labels must lie in \[0, 0\] for 1 classes",
        ),
    ],
)
def test_split_bad_input(emb, labels, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        IntraClassSplitter().split(emb, labels, **kwargs)


def test_bad_accuracy_and_construction():
    with pytest.raises(ValueError, match="class_accuracy has 1 entries"):
        IntraClassSplitter().hard_classes(2, [0.5], 0.65)
    with pytest.raises(ValueError, match="train_accuracy"):
        IntraClassSplitter().hard_classes(2, [0.5, 0.5], 1.5)
    with pytest.raises(ValueError, match="not both"):
        IntraClassSplitter(threshold=0.8, quantile=0.2)
    with pytest.raises(ValueError, match="quantile"):
        IntraClassSplitter(quantile=1.0)
    with pytest.raises(ValueError, match="adaptive_rule"):
        IntraClassSplitter(adaptive_rule="backwards")
    with pytest.raises(ValueError, match="threshold"):
        IntraClassSplitter(threshold=1.5)
    with pytest.raises(ValueError, match="accuracy_window"):
        IntraClassSplitter(accuracy_window=(0.7, 0.6))
