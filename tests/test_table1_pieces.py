"""The pieces behind Table 1's IB Loss, Remix and MiSLAS rows, each against its authors'
formula on small inputs worked out by hand: ``IBLoss``, ``class_weights``,
``LabelAwareSmoothingLoss``, ``Remix`` (and mixup within a batch), per-sample ``mixed_loss``,
and ``retrain_mislas``."""

import math
import re

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from afr_aug import BalancedMixLoader, LongTailSampler, MixUpBalancer, Remix, mixed_loss
from afr_aug.decouple import retrain_mislas
from afr_aug.losses import IBLoss, LabelAwareSmoothingLoss, class_weights, drw_weights


# -- class weights ------------------------------------------------------------------------------
def test_class_weights_by_hand():
    # inverse: 1/n normalised to sum to C: (1/3, 1) / (4/3) * 2 = (0.5, 1.5)
    assert class_weights([3, 1], "inverse").tolist() == pytest.approx([0.5, 1.5])
    beta = 0.9
    raw = [(1 - beta) / (1 - beta**3), (1 - beta) / (1 - beta**1)]
    expected = [2 * r / sum(raw) for r in raw]
    assert class_weights([3, 1], "effective", beta).tolist() == pytest.approx(expected)
    assert torch.equal(
        drw_weights([3, 1], 5, start_epoch=5, beta=beta), class_weights([3, 1], "effective", beta)
    )
    with pytest.raises(ValueError, match="beta must be a number in"):
        class_weights([3, 1], "effective", 1.0)


# -- IB loss ------------------------------------------------------------------------------------
LOGITS = [[2.0, 0.0], [0.0, 1.0]]
EMB = [[1.0, -2.0], [0.5, 0.5]]


def _ib_by_hand(weights, alpha=1000.0, eps=1e-3, gamma=0.0):
    """The authors' formula, element by element with math."""
    total = 0.0
    for (z0, z1), y, h, w in zip(LOGITS, (0, 1), EMB, weights):
        e0, e1 = math.exp(z0), math.exp(z1)
        p = [e0 / (e0 + e1), e1 / (e0 + e1)]
        grad = abs(p[0] - (y == 0)) + abs(p[1] - (y == 1))
        influence = grad * (abs(h[0]) + abs(h[1]))
        ce = -w * math.log(p[y])
        if gamma:
            ce = (1 - math.exp(-ce)) ** gamma * ce
        total += ce * alpha / (influence + eps)
    return total / 2


@pytest.mark.parametrize("weighting,weights", [(None, (1.0, 1.0)), ("inverse", (0.5, 1.5))])
def test_ib_loss_matches_the_formula(weighting, weights):
    loss_fn = IBLoss([3, 1], weighting=weighting)
    got = loss_fn(torch.tensor(LOGITS), torch.tensor([0, 1]), torch.tensor(EMB))
    assert got.item() == pytest.approx(_ib_by_hand(weights), rel=1e-5)


def test_ib_focal_matches_the_formula_and_the_influence_gets_a_gradient():
    logits = torch.tensor(LOGITS, requires_grad=True)
    emb = torch.tensor(EMB, requires_grad=True)
    loss = IBLoss([3, 1], gamma=1.0, alpha=10.0)(logits, torch.tensor([0, 1]), emb)
    assert loss.item() == pytest.approx(_ib_by_hand((0.5, 1.5), alpha=10.0, gamma=1.0), rel=1e-5)
    loss.backward()
    assert emb.grad is not None and emb.grad.abs().sum() > 0  # not detached, as the authors'


def test_ib_loss_is_plain_cross_entropy_before_its_start():
    loss_fn = IBLoss([3, 1], start_epoch=100)
    logits, y, emb = torch.tensor(LOGITS), torch.tensor([0, 1]), torch.tensor(EMB)
    for epoch, active in ((0, False), (99, False), (100, True), (150, True)):
        loss_fn.set_epoch(epoch)
        assert loss_fn.active is active
        ce = F.cross_entropy(logits, y)  # unweighted, as the authors' warm phase
        assert torch.isclose(loss_fn(logits, y, emb), ce).item() is not active


def test_ib_loss_errors():
    with pytest.raises(ValueError, match="needs class_counts"):
        IBLoss()
    with pytest.raises(ValueError, match="alpha must be"):
        IBLoss([3, 1], alpha=0)
    loss_fn = IBLoss([3, 1])
    with pytest.raises(ValueError, match=r"embedding must have shape \[2, D\]"):
        loss_fn(torch.tensor(LOGITS), torch.tensor([0, 1]), torch.ones(2))
    with pytest.raises(ValueError, match="targets must lie in"):
        loss_fn(torch.tensor(LOGITS), torch.tensor([0, 2]), torch.tensor(EMB))
    with pytest.raises(ValueError, match="epoch must be"):
        loss_fn.set_epoch(-1)


# -- label-aware smoothing ------------------------------------------------------------------------
def test_label_aware_smoothing_values_of_cifar10_lt():
    counts = [5000, 2997, 1796, 1077, 645, 387, 232, 139, 83, 50]
    # the authors' concave shape: 0.3 * sin(pi/2 * (n - 50) / 4950), worked out per class
    expected = [0.3 * math.sin(math.pi / 2 * (n - 50) / 4950) for n in counts]
    got = LabelAwareSmoothingLoss(counts, 0.3, 0.0).smoothing.tolist()
    assert got == pytest.approx(expected, abs=1e-6)
    assert [round(e, 3) for e in got][:4] == [0.3, 0.241, 0.158, 0.096]
    convex = LabelAwareSmoothingLoss([3, 2, 1], 0.4, 0.1, "convex").smoothing.tolist()
    assert convex == pytest.approx([0.4, 0.4 + 0.3 * math.sin(1.75 * math.pi), 0.1], abs=1e-6)
    exp = LabelAwareSmoothingLoss([3, 2, 1], 0.4, 0.0, "exp", power=2).smoothing.tolist()
    assert exp == pytest.approx([0.4, 0.1, 0.0], abs=1e-6)


def test_label_aware_smoothing_loss_by_hand():
    loss_fn = LabelAwareSmoothingLoss([4, 1], smooth_head=0.2, smooth_tail=0.0, shape="linear")
    logits, y = torch.tensor([[1.0, 0.0], [1.0, 0.0]]), torch.tensor([0, 1])
    lp0 = 1 - math.log(math.e + 1)  # log p of the larger logit
    lp1 = -math.log(math.e + 1)
    by_hand = (0.8 * -lp0 + 0.2 * -(lp0 + lp1) / 2 + 1.0 * -lp1) / 2
    assert loss_fn(logits, y).item() == pytest.approx(by_hand, rel=1e-6)


def test_label_aware_smoothing_errors():
    with pytest.raises(ValueError, match="shape must be one of"):
        LabelAwareSmoothingLoss([3, 1], shape="cubic")
    with pytest.raises(ValueError, match="smooth_head must be"):
        LabelAwareSmoothingLoss([3, 1], smooth_head=1.5)
    with pytest.raises(TypeError, match="power must be"):
        LabelAwareSmoothingLoss([3, 1], shape="exp")
    with pytest.raises(ValueError, match="class_counts has 2 entries but logits have 3"):
        LabelAwareSmoothingLoss([3, 1])(torch.zeros(1, 3), torch.tensor([0]))


# -- Remix ----------------------------------------------------------------------------------------
def test_remix_label_rule_by_hand():
    remix = Remix([300, 100, 10], kappa=3, tau=0.5)
    y = torch.tensor([0, 2, 0, 1, 0, 1])
    partner = torch.tensor([2, 0, 1, 0, 0, 2])
    # ratios n_y / n_partner: 30, 1/30, 3, 1/3, 1, 10
    assert remix.label_share(y, partner, 0.3).tolist() == pytest.approx(
        [0.0, 0.3, 0.0, 0.3, 0.3, 0.0]
    )
    assert remix.label_share(y, partner, 0.7).tolist() == pytest.approx(
        [0.7, 1.0, 0.7, 1.0, 0.7, 0.7]
    )
    # a milder kappa: 3 no longer counts as imbalanced
    assert Remix([300, 100, 10], kappa=4).label_share(y, partner, 0.3).tolist() == pytest.approx(
        [0.0, 0.3, 0.3, 0.3, 0.3, 0.0]
    )


def test_remix_mixes_within_the_batch():
    remix = Remix([1] * 6, seed=3)
    x = torch.arange(6.0).view(6, 1, 1, 1).expand(6, 3, 2, 2).contiguous()
    y = torch.arange(6)
    mixed, y_a, y_b, lam_y = remix(x, y)
    lam = remix.last_lam
    assert torch.equal(y_a, y) and sorted(y_b.tolist()) == list(range(6))
    assert torch.allclose(mixed[:, 0, 0, 0], lam * y.float() + (1 - lam) * y_b.float())
    assert torch.allclose(lam_y, torch.full((6,), lam))  # balanced counts: plain mixup


def test_remix_cutmix_mode_uses_the_box_share():
    remix = Remix([100, 1], mode="cutmix", seed=1)
    x, y = torch.zeros(4, 3, 16, 16), torch.tensor([0, 1, 0, 1])
    mixed, _, y_b, lam_y = remix(x, y, torch.ones(4, 3, 16, 16), torch.tensor([1, 0, 1, 0]))
    pasted = float(mixed[0].mean())
    assert remix.last_lam == pytest.approx(1 - pasted)
    expected = remix.label_share(y, y_b, remix.last_lam)
    assert torch.equal(lam_y, expected)


def test_remix_state_and_errors():
    remix = Remix([5, 1], seed=0)
    state = remix.state_dict()
    a = remix(torch.rand(4, 3, 4, 4), torch.tensor([0, 1, 0, 1]))
    again = Remix([5, 1], seed=9)
    again.load_state_dict(state)
    b = again(torch.rand(4, 3, 4, 4), torch.tensor([0, 1, 0, 1]))
    assert torch.equal(a[2], b[2]) and torch.equal(a[3], b[3])
    with pytest.raises(ValueError, match=re.escape("kappa=3.0 but this Remix has kappa=4.0")):
        Remix([5, 1], kappa=4).load_state_dict(state)
    with pytest.raises(ValueError, match="mode must be"):
        Remix([5, 1], mode="manifold")
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 1\]"):
        remix(torch.rand(2, 3, 4, 4), torch.tensor([0, 2]))
    with pytest.raises(TypeError, match="pass both x_bal and y_bal"):
        remix(torch.rand(2, 3, 4, 4), torch.tensor([0, 1]), torch.rand(2, 3, 4, 4))


def test_mixup_within_the_batch_and_its_state():
    mixup = MixUpBalancer(p=1.0, in_batch=True, seed=0)
    _mixed, _y_a, y_b, lam = mixup(torch.rand(5, 3, 4, 4), torch.arange(5))
    assert isinstance(lam, float) and sorted(y_b.tolist()) == list(range(5))
    with pytest.raises(TypeError, match="pass x_bal and y_bal, or build it with in_batch=True"):
        MixUpBalancer(p=1.0)(torch.rand(2, 3, 4, 4), torch.arange(2))
    with pytest.raises(ValueError, match="in_batch=True but this MixUpBalancer has in_batch=False"):
        MixUpBalancer(p=1.0).load_state_dict(mixup.state_dict())
    old = MixUpBalancer(p=1.0).state_dict()
    del old["in_batch"]  # a state from before in_batch existed
    MixUpBalancer(p=1.0).load_state_dict(old)
    with pytest.raises(ValueError, match="in_batch=False but this MixUpBalancer has in_batch=True"):
        MixUpBalancer(p=1.0, in_batch=True).load_state_dict(old)


# -- per-sample mixed_loss ------------------------------------------------------------------------
def test_per_sample_mixed_loss_with_a_weighted_module():
    weight = torch.tensor([1.0, 3.0])
    criterion = nn.CrossEntropyLoss(weight=weight)
    logits = torch.tensor([[0.5, -0.5], [1.0, 2.0]])
    y_a, y_b, lam = torch.tensor([0, 1]), torch.tensor([1, 0]), torch.tensor([0.25, 1.0])

    def ce(i, c):
        return -F.log_softmax(logits[i], 0)[c].item() * weight[c].item()

    by_hand = (0.25 * ce(0, 0) + 0.75 * ce(0, 1) + 1.0 * ce(1, 1)) / 2
    assert mixed_loss(criterion, logits, y_a, y_b, lam).item() == pytest.approx(by_hand)
    assert criterion.reduction == "mean"  # the user's criterion is left alone
    with pytest.raises(ValueError, match="must lie in"):
        mixed_loss(criterion, logits, y_a, y_b, torch.tensor([0.5, 1.5]))
    with pytest.raises(ValueError, match=r"float tensor of shape \(2,\)"):
        mixed_loss(criterion, logits, y_a, y_b, torch.tensor([0.5]))

    class NoReduction(nn.Module):
        def forward(self, logits, y):
            return F.cross_entropy(logits, y)

    with pytest.raises(TypeError, match="has no 'reduction' attribute"):
        mixed_loss(NoReduction(), logits, y_a, y_b, lam)


def test_remix_inside_balanced_mix_loader_never_reads_the_balanced_source():
    class Untouchable:
        def __iter__(self):
            raise AssertionError("an in-batch mixer read the balanced source")

    data = TensorDataset(torch.rand(24, 3, 6, 6), torch.tensor([0] * 18 + [1] * 6))
    loader = BalancedMixLoader(
        DataLoader(data, batch_size=8), Remix([18, 6]), balanced=Untouchable(), num_classes=2
    )
    model = nn.Sequential(nn.Flatten(), nn.Linear(108, 2))
    for x, y_a, y_b, lam in loader:
        assert isinstance(lam, torch.Tensor) and lam.shape == (8,)
        mixed_loss(nn.CrossEntropyLoss(), model(x), y_a, y_b, lam).backward()
        loader.observe(model(x))
    # without balanced= and without .targets, an in-batch mixer needs only num_classes
    plain = BalancedMixLoader(DataLoader(data, batch_size=8), Remix([18, 6]), num_classes=2)
    assert plain.balanced is None and len(list(plain)) == 3


# -- MiSLAS stage 2 -------------------------------------------------------------------------------
def _net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(5, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3))


def _loader():
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(60, 5, generator=g) + 2, torch.tensor([0] * 40 + [1] * 15 + [2] * 5)
    return DataLoader(TensorDataset(x, y), batch_size=20), y


def test_retrain_mislas_scales_the_trained_classifier_without_reinitialising_it():
    net, (loader, y) = _net(), _loader()
    before = net[3].weight.detach().clone()
    retrain_mislas(
        net,
        loader,
        [40, 15, 5],
        epochs=3,
        lr_factor=0.0,
        progress=False,
        sampler=LongTailSampler(y, exponent=1.0),
    )
    after = net[3].weight.detach()
    # lr_factor 0: the classifier itself never moves, only the folded per-class scale does
    cos = F.cosine_similarity(before, after, dim=1)
    assert torch.allclose(cos, torch.ones(3), atol=1e-6)
    assert not torch.allclose(before, after)
    assert [p.requires_grad for p in net.parameters()] == [False] * 4 + [True] * 2
    assert net.training  # modes put back


def test_retrain_mislas_shifts_batch_norm_only_when_asked():
    for shift in (False, True):
        net, (loader, _) = _net(), _loader()
        net.eval()
        mean = net[1].running_mean.clone()
        retrain_mislas(net, loader, [40, 15, 5], epochs=1, shift_bn=shift, progress=False)
        assert torch.equal(net[1].running_mean, mean) is not shift
        assert not net.training and not net[1].training


def test_retrain_mislas_errors():
    loader, _ = _loader()
    with pytest.raises(ValueError, match="class_counts has 2 classes but the classifier '3' has 3"):
        retrain_mislas(_net(), loader, [40, 20], progress=False)

    class Cosine(nn.Module):
        is_classifier = True

        def __init__(self):
            super().__init__()
            self.weight = nn.Parameter(torch.randn(3, 5))

        def forward(self, x):
            return F.normalize(x, dim=1) @ F.normalize(self.weight, dim=1).t()

    with pytest.raises(TypeError, match=re.escape("folds its per-class scale into an nn.Linear")):
        retrain_mislas(nn.Sequential(Cosine()), loader, [40, 15, 5], progress=False)
    with pytest.raises(ValueError, match="epochs must be"):
        retrain_mislas(_net(), loader, [40, 15, 5], epochs=0, progress=False)
