import math

import pytest
import torch
import torch.nn.functional as F

from afr_aug.losses import BalancedSoftmaxLoss, LDAMLoss, drw_weights

COUNTS = [100, 20, 5]


def _ce(z, y):
    """-log softmax(z)[y] by explicit math."""
    return -(z[y] - math.log(sum(math.exp(v) for v in z)))


# ------------------------------------------------------------------ BalancedSoftmaxLoss


def test_balanced_softmax_matches_hand_computation():
    logits = torch.tensor([[1.0, 0.5, -0.5], [0.0, 2.0, 1.0]], dtype=torch.float64)
    targets = torch.tensor([1, 2])
    per = []
    for row, y in zip(logits.tolist(), targets.tolist()):
        z = [v + math.log(n) for v, n in zip(row, COUNTS)]
        per.append(_ce(z, y))
    loss = BalancedSoftmaxLoss(COUNTS)(logits, targets)
    assert loss.item() == pytest.approx(sum(per) / 2, rel=1e-6)  # buffers are float32
    assert BalancedSoftmaxLoss(COUNTS, reduction="sum")(logits, targets).item() == pytest.approx(
        sum(per)
    )
    none = BalancedSoftmaxLoss(COUNTS, reduction="none")(logits, targets)
    assert none.tolist() == pytest.approx(per)


def test_balanced_softmax_equal_counts_is_cross_entropy():
    logits = torch.randn(5, 4, generator=torch.Generator().manual_seed(0))
    targets = torch.tensor([0, 1, 2, 3, 0])
    loss = BalancedSoftmaxLoss([7, 7, 7, 7])(logits, targets)
    assert torch.allclose(loss, F.cross_entropy(logits, targets))


def test_balanced_softmax_gradient_flows_and_buffer_moves():
    loss_fn = BalancedSoftmaxLoss(COUNTS)
    assert "log_prior" in dict(loss_fn.named_buffers())
    logits = torch.randn(4, 3, requires_grad=True)
    loss_fn.to("cpu")(logits, torch.tensor([0, 1, 2, 0])).backward()
    assert (
        logits.grad is not None
        and torch.isfinite(logits.grad).all()
        and logits.grad.abs().sum() > 0
    )


def test_balanced_softmax_accepts_int32_targets():
    logits = torch.randn(3, 3)
    a = BalancedSoftmaxLoss(COUNTS)(logits, torch.tensor([0, 1, 2], dtype=torch.int32))
    b = BalancedSoftmaxLoss(COUNTS)(logits, torch.tensor([0, 1, 2]))
    assert torch.equal(a, b)


@pytest.mark.parametrize(
    "counts, exc, match",
    [
        ([10, 0, 5], ValueError, "must all be positive.*got 0 for class 1"),
        ([10, -3, 5], ValueError, "must all be positive"),
        ([], ValueError, "non-empty 1-D"),
        ([[1, 2], [3, 4]], ValueError, "non-empty 1-D"),
        ("abc", TypeError, "sequence of positive ints"),
    ],
)
def test_counts_errors(counts, exc, match):
    with pytest.raises(exc, match=match):
        BalancedSoftmaxLoss(counts)
    with pytest.raises(exc, match=match):
        LDAMLoss(counts)
    with pytest.raises(exc, match=match):
        drw_weights(counts, epoch=200)


@pytest.mark.parametrize("cls", [BalancedSoftmaxLoss, LDAMLoss])
def test_input_errors(cls):
    loss_fn = cls(COUNTS)
    with pytest.raises(ValueError, match="class_counts has 3 entries but logits have 4 classes"):
        loss_fn(torch.randn(2, 4), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match=r"targets must lie in \[0, 2\].*got values in \[0, 3\]"):
        loss_fn(torch.randn(2, 3), torch.tensor([0, 3]))
    with pytest.raises(ValueError, match=r"targets must lie in \[0, 2\].*\[-1, 1\]"):
        loss_fn(torch.randn(2, 3), torch.tensor([-1, 1]))
    with pytest.raises(TypeError, match="hard integer class indices"):
        loss_fn(torch.randn(2, 3), torch.rand(2, 3))
    with pytest.raises(ValueError, match=r"targets must have shape \[N\] = \[2\]"):
        loss_fn(torch.randn(2, 3), torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match=r"logits must have shape \[N, C\]"):
        loss_fn(torch.randn(3), torch.tensor([0]))
    with pytest.raises(TypeError, match="logits must be a floating-point tensor"):
        loss_fn(torch.ones(2, 3, dtype=torch.long), torch.tensor([0, 1]))


def test_reduction_error():
    with pytest.raises(ValueError, match="reduction must be one of"):
        BalancedSoftmaxLoss(COUNTS, reduction="avg")


# ------------------------------------------------------------------ LDAMLoss


def _ldam_margins(counts, max_m):
    raw = [n**-0.25 for n in counts]
    return [r * max_m / max(raw) for r in raw]


def test_ldam_margins():
    loss_fn = LDAMLoss(COUNTS, max_m=0.5)
    assert loss_fn.margins.tolist() == pytest.approx(_ldam_margins(COUNTS, 0.5))
    assert loss_fn.margins.max().item() == pytest.approx(0.5)  # rarest class gets max_m


def test_ldam_matches_hand_computation():
    logits = torch.tensor([[1.0, 0.5, -0.5], [0.0, 2.0, 1.0]], dtype=torch.float64)
    targets = [0, 2]
    m = _ldam_margins(COUNTS, 0.5)
    s = 30.0
    per = []
    for row, y in zip(logits.tolist(), targets):
        z = [s * (v - (m[y] if c == y else 0.0)) for c, v in enumerate(row)]
        per.append(_ce(z, y))
    loss = LDAMLoss(COUNTS, max_m=0.5, s=30)(logits, torch.tensor(targets))
    assert loss.item() == pytest.approx(sum(per) / 2, rel=1e-6)  # buffers are float32

    # With class weights: weighted mean sum(w_y * l) / sum(w_y), as F.cross_entropy.
    w = torch.tensor([0.5, 1.0, 2.0], dtype=torch.float64)
    expected = (w[0] * per[0] + w[2] * per[1]) / (w[0] + w[2])
    weighted = LDAMLoss(COUNTS, weight=w)(logits, torch.tensor(targets))
    assert weighted.item() == pytest.approx(expected.item(), rel=1e-6)  # buffers are float32


def test_ldam_weight_assignment_changes_value_and_gradient_flows():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(6, 3, generator=g, requires_grad=True)
    targets = torch.tensor([0, 0, 1, 2, 2, 1])
    loss_fn = LDAMLoss(COUNTS)
    before = loss_fn(logits, targets)
    loss_fn.weight = drw_weights(COUNTS, epoch=160)
    assert "weight" in dict(loss_fn.named_buffers())
    after = loss_fn(logits, targets)
    assert not torch.allclose(before, after)
    after.backward()
    assert (
        logits.grad is not None
        and torch.isfinite(logits.grad).all()
        and logits.grad.abs().sum() > 0
    )
    loss_fn.weight = None
    assert torch.allclose(loss_fn(logits, targets), before)


def test_ldam_errors():
    with pytest.raises(ValueError, match=r"weight must have shape \[3\].*got shape \(4,\)"):
        LDAMLoss(COUNTS, weight=torch.ones(4))
    loss_fn = LDAMLoss(COUNTS)
    loss_fn.weight = torch.ones(2)
    with pytest.raises(ValueError, match=r"weight must have shape \[3\]"):
        loss_fn(torch.randn(2, 3), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="max_m must be a positive number"):
        LDAMLoss(COUNTS, max_m=0)
    with pytest.raises(ValueError, match="s must be a positive number"):
        LDAMLoss(COUNTS, s=-1)


# ------------------------------------------------------------------ drw_weights


def test_drw_weights_schedule():
    before = drw_weights(COUNTS, epoch=159, start_epoch=160)
    assert before.dtype == torch.float32 and torch.equal(before, torch.ones(3))
    beta = 0.9999
    raw = [(1 - beta) / (1 - beta**n) for n in COUNTS]
    expected = [r / sum(raw) * 3 for r in raw]
    for epoch in (160, 199):
        w = drw_weights(COUNTS, epoch=epoch, start_epoch=160, beta=beta)
        assert w.tolist() == pytest.approx(expected, rel=1e-5)
        assert w.sum().item() == pytest.approx(3.0, rel=1e-6)
    # beta = 0 means no re-weighting at all
    assert drw_weights(COUNTS, epoch=5, start_epoch=0, beta=0.0).tolist() == pytest.approx(
        [1.0, 1.0, 1.0]
    )


def test_drw_weights_errors():
    with pytest.raises(ValueError, match=r"beta must be a number in \[0, 1\), got 1.0"):
        drw_weights(COUNTS, epoch=0, beta=1.0)
    with pytest.raises(TypeError, match="epoch must be an int, got float"):
        drw_weights(COUNTS, epoch=1.5)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    logits = torch.randn(8, 3, generator=torch.Generator().manual_seed(0))
    targets = torch.tensor([0, 1, 2, 0, 1, 2, 0, 0])
    for loss_fn in (
        BalancedSoftmaxLoss(COUNTS),
        LDAMLoss(COUNTS, weight=drw_weights(COUNTS, epoch=200)),
    ):
        cpu = loss_fn(logits, targets)
        gpu = loss_fn.to("cuda")(logits.cuda(), targets.cuda())
        assert torch.allclose(gpu.cpu(), cpu, atol=1e-5)
    ldam = LDAMLoss(COUNTS).to("cuda")
    ldam.weight = drw_weights(COUNTS, epoch=200)  # CPU weight assigned later still works
    ldam(logits.cuda(), targets.cuda())
