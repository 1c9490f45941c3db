"""afr_aug.decouple: tau-normalisation, LWS and cRT on any classifier ending in nn.Linear."""

import re

import pytest
import torch
import torch.nn as nn
from torch.utils.data import DataLoader, TensorDataset

from afr_aug import LongTailSampler
from afr_aug.decouple import (
    LearnableWeightScaling,
    find_classifier,
    retrain_classifier,
    tau_normalize,
)
from afr_aug.models import resnet32


def test_tau_normalize_by_hand_copy_and_bias():
    net = nn.Sequential(nn.Flatten(), nn.Linear(2, 2))
    with torch.no_grad():
        net[1].weight.copy_(torch.tensor([[3.0, 4.0], [0.0, 0.5]]))
        net[1].bias.copy_(torch.tensor([1.0, -1.0]))
    half = tau_normalize(net, tau=0.5)
    assert half[1].weight.flatten().tolist() == pytest.approx(
        [3 / 5**0.5, 4 / 5**0.5, 0.0, 0.5 / 0.5**0.5]
    )
    assert half[1].bias.tolist() == [0.0, 0.0]
    assert net[1].weight[0, 0].item() == 3.0 and net[1].bias[0].item() == 1.0  # input untouched
    kept = tau_normalize(net, tau=0.0, keep_bias=True)
    assert torch.equal(kept[1].weight, net[1].weight) and torch.equal(kept[1].bias, net[1].bias)
    with pytest.raises(ValueError, match="tau"):
        tau_normalize(net, tau=-0.1)


def test_classifier_is_found_in_torchvision_and_our_models():
    torchvision = pytest.importorskip("torchvision")
    assert find_classifier(torchvision.models.resnet18(num_classes=7)) == "fc"
    assert find_classifier(resnet32(num_classes=10)) in dict(
        resnet32(num_classes=10).named_modules()
    )
    out = tau_normalize(torchvision.models.resnet18(num_classes=7))
    assert out.fc.weight.norm(dim=1).allclose(torch.ones(7))
    with pytest.raises(ValueError, match=re.escape("no nn.Linear")):
        find_classifier(nn.Sequential(nn.ReLU()))
    with pytest.raises(ValueError, match="no sub-module"):
        find_classifier(nn.Sequential(nn.Linear(2, 2)), classifier="head")


def _long_tailed(seed=0):
    g = torch.Generator().manual_seed(seed)
    counts = [200, 20]
    x = torch.cat(
        [
            torch.randn(n, 2, generator=g) + (2.0 if c else -2.0) * torch.tensor([1.0, 0.0]) * 0.5
            for c, n in enumerate(counts)
        ]
    )
    y = torch.cat([torch.full((n,), c) for c, n in enumerate(counts)])
    return x, y


def test_crt_trains_only_the_classifier_and_balances_the_predictions():
    torch.manual_seed(0)
    x, y = _long_tailed()
    net = nn.Sequential(nn.Linear(2, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 2))
    # a head-biased model: plain training on the long-tailed set
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    for _ in range(200):
        opt.zero_grad()
        nn.functional.cross_entropy(net(x), y).backward()
        opt.step()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    recall = lambda: [float((net.eval()(x).argmax(1)[y == c] == c).float().mean()) for c in (0, 1)]  # noqa: E731
    tail_before = recall()[1]
    loader = DataLoader(TensorDataset(x, y), batch_size=32)
    retrain_classifier(
        net,
        loader,
        epochs=15,
        lr=0.05,
        sampler=LongTailSampler(y, exponent=1.0, seed=0),
        progress=False,
    )
    after = net.state_dict()
    for k in ("0.weight", "0.bias", "1.weight", "1.running_mean", "1.running_var"):
        assert torch.equal(before[k], after[k]), k  # features and BN statistics frozen
    assert not torch.equal(before["3.weight"], after["3.weight"])
    assert recall()[1] > tail_before and recall()[1] >= 0.8


def test_lws_trains_the_scales_only_and_keeps_bn_in_eval():
    x, y = _long_tailed()
    net = nn.Sequential(nn.Linear(2, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 2))
    lws = LearnableWeightScaling(net)
    lws.train()
    assert not net.training and not net[1].training
    before = [p.clone() for p in net.parameters()]
    retrain_classifier(
        lws,
        DataLoader(TensorDataset(x, y), batch_size=16),
        epochs=2,
        lr=0.1,
        params=lws.parameters(),
        reinit=False,
        sampler=LongTailSampler(y, exponent=1.0, seed=0),
        progress=False,
    )
    assert all(torch.equal(a, b) for a, b in zip(before, net.parameters()))
    assert not torch.equal(lws.scales, torch.ones(2))
    assert torch.allclose(lws(x[:3]), net(x[:3]) * lws.scales)


def test_retrain_classifier_errors():
    net = nn.Sequential(nn.Linear(2, 2))
    loader = DataLoader(
        TensorDataset(torch.zeros(4, 2), torch.zeros(4, dtype=torch.long)), batch_size=2
    )
    with pytest.raises(ValueError, match="epochs"):
        retrain_classifier(net, loader, epochs=0, lr=0.1)
    with pytest.raises(ValueError, match="lr"):
        retrain_classifier(net, loader, epochs=1, lr=0.0)
    with pytest.raises(TypeError, match="DataLoader"):
        retrain_classifier(
            net, [(torch.zeros(2, 2), torch.zeros(2, dtype=torch.long))], 1, 0.1, sampler=[0, 1]
        )
