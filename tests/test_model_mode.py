"""Every afr-aug function that runs a model in another mode gives it back in the mode it had:
per module, so a model in train mode, one in eval mode and a training model with a frozen
BatchNorm all come back exactly as they went in."""

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from afr_aug import AFRDataset, IntraClassSplitter, MinorityPGD
from afr_aug.decouple import retrain_classifier
from afr_aug.embedding import run_inference
from afr_aug.metrics import evaluate

X = torch.rand(24, 3, 8, 8)
Y = torch.tensor([0] * 12 + [1] * 8 + [2] * 4)


def small_net():
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Dropout(0.1),
        nn.Linear(4, 3),
    )


def set_mode(net, mode):
    if mode == "train":
        return net.train()
    if mode == "eval":
        return net.eval()
    net.train()
    net[1].eval()  # a BatchNorm the user froze inside a training model
    return net


def attack_call(net):
    atk = MinorityPGD(net, target="centroid", steps=1).set_targets(torch.randn(3, 4))
    atk(X[:6], Y[:6])


def attack_generate(net):
    atk = MinorityPGD(net, target="centroid", steps=1).set_targets(torch.randn(3, 4))
    list(atk.generate([(X[:6], Y[:6])]))


def splitter_embed(net):
    with pytest.warns(DeprecationWarning):
        IntraClassSplitter().embed(net, [(X, Y)], progress=False)


CALLS = {
    "run_inference": lambda net: run_inference(net, [(X, Y)], embed=True, progress=False),
    "evaluate": lambda net: evaluate(net, [(X, Y)], progress=False),
    "retrain_classifier": lambda net: retrain_classifier(
        net, DataLoader(TensorDataset(X, Y), batch_size=8), epochs=1, lr=0.1, progress=False
    ),
    "MinorityPGD.__call__": attack_call,
    "MinorityPGD.generate": attack_generate,
    "AFRDataset.refresh": lambda net: AFRDataset(
        (X * 255).to(torch.uint8),
        Y,
        progress=False,
        batch_size=8,
        splitter=IntraClassSplitter(quantile=0.25, adaptive=False),
    ).refresh(net),
    "IntraClassSplitter.embed": splitter_embed,
}


@pytest.mark.parametrize("mode", ["train", "eval", "frozen_bn"])
@pytest.mark.parametrize("name", sorted(CALLS))
def test_modes_come_back_as_they_were(name, mode):
    net = set_mode(small_net(), mode)
    before = [m.training for m in net.modules()]
    CALLS[name](net)
    assert [m.training for m in net.modules()] == before


def test_modes_come_back_when_the_call_fails():
    net = set_mode(small_net(), "train")
    with pytest.raises(ValueError, match="labels has 3 entries"):
        run_inference(net, [(X[:4], Y[:3])], progress=False)
    assert net.training and all(m.training for m in net.modules())
