"""The model zoo users bring: a timm model next to a torchvision one, both built without
pretrained weights and without network, through Embedder, the stage-2 refresh and decouple.

timm comes with the ``dev`` extra; without it the timm cases are skipped, not failed.
"""

import copy
import math
import socket
import warnings

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from afr_aug import AFRDataset, Embedder, LongTailSampler, MinorityPGD
from afr_aug.decouple import LearnableWeightScaling, retrain_classifier, tau_normalize

COUNTS = [12, 6, 3]  # long-tailed: head, middle, tail
SIZE = 32
STEPS, ALPHA = 2, 3 / 255  # a short PGD: the refresh's plumbing, not its strength


def _timm_mobilenet():
    timm = pytest.importorskip("timm")
    return timm.create_model("mobilenetv3_small_050", pretrained=False, num_classes=len(COUNTS))


def _torchvision_resnet18():
    import torchvision

    return torchvision.models.resnet18(num_classes=len(COUNTS))


def _timm_pre_logits(model, x):
    # timm's own route to the classifier's input, independent of Embedder's hook
    return model.forward_head(model.forward_features(x), pre_logits=True)


def _resnet_pre_logits(model, x):
    return torch.flatten(torch.nn.Sequential(*list(model.children())[:-1])(x), 1)


# (build, classifier name, its input width, the model's own pre-logits features)
ZOO = {
    "timm-mobilenetv3_small_050": (_timm_mobilenet, "classifier", 1024, _timm_pre_logits),
    "torchvision-resnet18": (_torchvision_resnet18, "fc", 512, _resnet_pre_logits),
}


@pytest.fixture(params=sorted(ZOO))
def zoo(request, monkeypatch):
    """``(model, classifier name, embedding width, pre_logits)``; any network use fails."""

    def offline(*args, **kwargs):
        raise AssertionError("the zoo tests must not touch the network")

    monkeypatch.setattr(socket.socket, "connect", offline)
    build, classifier, dim, pre_logits = ZOO[request.param]
    torch.manual_seed(0)
    return build(), classifier, dim, pre_logits


def _data():
    g = torch.Generator().manual_seed(0)
    labels = torch.cat([torch.full((n,), c) for c, n in enumerate(COUNTS)])
    images = torch.randint(0, 256, (len(labels), 3, SIZE, SIZE), dtype=torch.uint8, generator=g)
    return images, labels


def _classifier(model, name):
    return dict(model.named_modules())[name]


def _backbone_state(model, classifier):
    """Every parameter and buffer (batch-norm statistics too) outside the classifier."""
    return {
        k: v.clone() for k, v in model.state_dict().items() if not k.startswith(classifier + ".")
    }


def _modes(model):
    return {name: m.training for name, m in model.named_modules()}


# -- Embedder -----------------------------------------------------------------------------------
def test_embedding_is_the_classifier_input(zoo):
    model, classifier, dim, pre_logits = zoo
    model.eval()
    layer = _classifier(model, classifier)
    assert isinstance(layer, torch.nn.Linear) and layer.in_features == dim
    x = _data()[0][:5].float() / 255
    embedder = Embedder(model)
    with torch.no_grad():
        logits, emb = embedder(x)
        assert embedder.classifier == classifier
        assert emb.shape == (5, dim) and logits.shape == (5, len(COUNTS))
        torch.testing.assert_close(logits, model(x))  # the model runs unchanged
        torch.testing.assert_close(layer(emb), logits)  # classifier(emb) = logits
        torch.testing.assert_close(emb, pre_logits(model, x))  # the model's own features


# -- the stage-2 refresh ------------------------------------------------------------------------
def _refreshed(model):
    images, labels = _data()
    balancer = AFRDataset(
        images,
        labels,
        batch_size=16,
        progress=False,
        attack=MinorityPGD(model, steps=STEPS, alpha=ALPHA, head_steps=50),
    )
    with warnings.catch_warnings():
        # tiny random data: §3.3 falls back and single-image minorities are expected here
        warnings.simplefilter("ignore", UserWarning)
        report = balancer.refresh(model)
    return balancer, report


def test_refresh_makes_adversarial_slots_in_range(zoo):
    model, classifier, _, _ = zoo
    model.eval()
    before = _backbone_state(model, classifier)
    balancer, report = _refreshed(model)
    assert report is balancer.report and report.generation == 1

    target = max(COUNTS)
    assert balancer.class_sizes().tolist() == [target] * len(COUNTS)
    assert report.slots == [target] * len(COUNTS)
    assert all(a > 0 for a in report.attacked), report.attacked  # every class, the tail too
    assert int(balancer.is_adversarial.sum()) == sum(report.served)  # label_safe drops some

    adv, clean = balancer.adversarial, balancer.adversarial_clean()
    assert adv.dtype == torch.uint8 and adv.shape == clean.shape == (
        sum(report.attacked),
        3,
        SIZE,
        SIZE,
    )
    moved = (adv.int() - clean.int()).abs()
    assert 0 < moved.max() <= math.ceil(STEPS * ALPHA * 255)  # inside the PGD budget
    for i in torch.nonzero(balancer.is_adversarial).flatten()[:4].tolist():
        img, y = balancer[i]  # what a DataLoader gets
        assert img.shape == (3, SIZE, SIZE) and img.dtype == torch.float32
        assert float(img.min()) >= 0 and float(img.max()) <= 1 and 0 <= y < len(COUNTS)

    per_class = report.threshold + report.cos_before + report.cos_after + report.crossed
    totals = [
        report.dose,
        report.linf,
        report.total_crossed,
        report.total_adversarial_share,
        report.clean_accuracy,
        report.adversarial_accuracy,
        report.cos_before_mean,
    ]
    assert all(math.isfinite(v) for v in per_class + totals), report.to_dict()
    assert 0 < report.linf <= STEPS * ALPHA + 1e-6 and 0 < report.dose < 1
    torch.testing.assert_close(_backbone_state(model, classifier), before)  # weights untouched


def test_refresh_keeps_every_modules_mode(zoo):
    model, _, _, _ = zoo
    model.train()
    frozen = next(m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d))
    frozen.eval()  # a user's frozen batch norm must stay frozen
    modes = _modes(model)
    _refreshed(model)
    assert _modes(model) == modes


# -- decouple -----------------------------------------------------------------------------------
def _loader():
    images, labels = _data()
    return DataLoader(TensorDataset(images.float() / 255, labels), batch_size=8), labels


def test_crt_trains_the_classifier_only(zoo):
    model, classifier, _, _ = zoo
    model.train()  # cRT must not update batch-norm statistics even so
    backbone = _backbone_state(model, classifier)
    trained_before = copy.deepcopy(_classifier(model, classifier))
    loader, labels = _loader()

    torch.manual_seed(1)
    retrain_classifier(
        model,
        loader,
        epochs=1,
        lr=0.1,
        sampler=LongTailSampler(labels, exponent=1.0),
        progress=False,
    )
    layer = _classifier(model, classifier)
    torch.manual_seed(1)  # cRT's re-initialisation, replayed on a copy
    reinit = copy.deepcopy(trained_before)
    reinit.reset_parameters()

    for p in ("weight", "bias"):
        new = getattr(layer, p)
        assert not torch.equal(new, getattr(trained_before, p))  # changed ...
        assert not torch.equal(new, getattr(reinit, p))  # ... by training, not only reset
        assert torch.isfinite(new).all()
    torch.testing.assert_close(_backbone_state(model, classifier), backbone, rtol=0, atol=0)
    assert [n for n, p in model.named_parameters() if p.requires_grad] == [
        f"{classifier}.weight",
        f"{classifier}.bias",
    ]


def test_tau_normalisation_rescales_class_norms(zoo):
    model, classifier, _, _ = zoo
    weight = _classifier(model, classifier).weight.detach().clone()
    norms = weight.norm(dim=1)

    unit = tau_normalize(model, tau=1.0)
    half = tau_normalize(model, tau=0.5)
    torch.testing.assert_close(
        _classifier(unit, classifier).weight.norm(dim=1), torch.ones(len(COUNTS))
    )
    torch.testing.assert_close(_classifier(half, classifier).weight.norm(dim=1), norms.sqrt())
    # directions kept, bias dropped (Kang et al.), the input model and the features untouched
    torch.testing.assert_close(_classifier(unit, classifier).weight, weight / norms[:, None])
    assert not _classifier(unit, classifier).bias.any()
    assert torch.equal(_classifier(model, classifier).weight, weight)
    torch.testing.assert_close(
        _backbone_state(unit, classifier), _backbone_state(model, classifier)
    )


def test_lws_trains_one_scale_per_class(zoo):
    model, _, _, _ = zoo
    state = {k: v.clone() for k, v in model.state_dict().items()}
    lws = LearnableWeightScaling(model)
    loader, labels = _loader()
    retrain_classifier(
        lws,
        loader,
        epochs=1,
        lr=0.1,
        params=lws.parameters(),
        reinit=False,
        sampler=LongTailSampler(labels, exponent=1.0),
        progress=False,
    )
    assert lws.scales.shape == (len(COUNTS),) and not torch.equal(
        lws.scales, torch.ones(len(COUNTS))
    )
    torch.testing.assert_close(model.state_dict(), state, rtol=0, atol=0)  # model frozen
