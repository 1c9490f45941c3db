import re

import pytest
import torch
import torch.nn.functional as F
import torchattacks
import torchvision
from conftest import cifar10_root, needs_cifar10

from afr_aug import IntraClassSplitter, MinorityPGD, SignNoise
from afr_aug.augment import BatchAugment
from afr_aug.data import load_cifar
from afr_aug.embedding import run_inference
from afr_aug.models import resnet32

CIFAR_NORM = ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))


@pytest.fixture(scope="module")
def trained():
    """A ResNet32 trained briefly (about half a minute) on 3 CIFAR-10 classes, and its split."""
    torch.manual_seed(0)
    data = load_cifar("cifar10", root=cifar10_root())
    targets = torch.tensor(data.targets)
    keep = torch.cat(
        [torch.nonzero(targets == c).flatten()[:n] for c, n in ((0, 600), (1, 300), (2, 150))]
    )
    x = torch.from_numpy(data.data[keep.numpy()]).permute(0, 3, 1, 2).contiguous()
    y = targets[keep]
    model = resnet32(num_classes=3, normalize=CIFAR_NORM)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    aug = BatchAugment(seed=0)
    for _ in range(6):
        for idx in torch.randperm(len(y)).split(64):
            loss = F.cross_entropy(model(aug(x[idx])), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    opt.zero_grad(set_to_none=True)
    images = x.float() / 255
    splitter = IntraClassSplitter(threshold=0.8, adaptive=False)
    out = run_inference(
        model, [(images[i : i + 256], y[i : i + 256]) for i in range(0, len(y), 256)], embed=True
    )
    split = splitter.split(out.embeddings, out.labels)
    train_acc = float((out.predictions == out.labels).float().mean())
    assert train_acc > 0.6, f"the fixture model did not train (accuracy {train_acc:.2f})"
    return model, images, y, split


@needs_cifar10
def test_moves_majority_toward_minority_and_keeps_labels(trained):
    model, images, labels, split = trained
    idx = torch.cat([split.majority_indices(c)[:40] for c in range(3)])
    x, y = images[idx], labels[idx]
    model.train()
    atk = MinorityPGD(
        model,
        target="centroid",
        label_weight=1.0,
        alpha=1 / 255,
        grad_scale="pixels",
        keep_when="always",
    ).set_targets(split)  # the attack before issue 16
    adv = atk(x, y)
    assert model.training  # mode restored
    assert all(p.grad is None for p in model.parameters())
    assert (adv - x).abs().max() <= atk.eps + 1e-6 and (adv - x).abs().max() <= 3 / 255 + 1e-6
    assert adv.min() >= 0 and adv.max() <= 1
    model.eval()
    with torch.no_grad():
        logits0, e0 = model(x, return_embedding=True)
        logits1, e1 = model(adv, return_embedding=True)
    model.train()
    target = split.minority_centroids[y]
    before, after = F.cosine_similarity(e0, target), F.cosine_similarity(e1, target)
    moved = (after > before).float().mean().item()
    correct = logits0.argmax(1) == y
    kept = (logits1.argmax(1) == y)[correct].float().mean().item()
    assert moved >= 0.8, f"only {moved:.0%} moved toward the minority centroid"
    assert kept >= 0.9, f"only {kept:.0%} of correctly classified images kept their label"
    assert after.mean() > before.mean()


@needs_cifar10
def test_label_weight_trades_pull_against_label(trained):
    model, images, labels, split = trained
    idx = torch.cat([split.majority_indices(c)[:40] for c in range(3)])
    x, y = images[idx], labels[idx]
    target = split.minority_centroids[y]

    def gain(weight):
        adv = MinorityPGD(
            model,
            label_weight=weight,
            steps=5,
            target="centroid",
            alpha=1 / 255,
            grad_scale="pixels",
            keep_when="always",
        ).set_targets(split)(x, y)
        with torch.no_grad():
            return F.cosine_similarity(model(adv, return_embedding=True)[1], target).mean().item()

    assert gain(0.0) > gain(1.0) > gain(4.0) - 0.02


def test_is_a_torchattacks_pgd_and_respects_eps_and_range():
    torch.manual_seed(0)
    model = resnet32(num_classes=4)
    atk = MinorityPGD(model, eps=2 / 255, alpha=1 / 255, steps=5, target="centroid").set_targets(
        torch.randn(4, 64)
    )
    assert isinstance(atk, torchattacks.PGD) and isinstance(atk, torchattacks.attack.Attack)
    x = torch.rand(6, 3, 32, 32)
    x[0] = 1.0
    adv = atk(x, torch.tensor([0, 1, 2, 3, 0, 1]))
    assert (adv - x).abs().max() <= 2 / 255 + 1e-6
    assert adv.min() >= 0 and adv.max() <= 1 and adv.shape == x.shape
    assert (adv != x).any()


def test_set_normalization_used():
    torch.manual_seed(0)
    mean, std = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)
    plain = resnet32(num_classes=3).eval()
    inner = resnet32(num_classes=3, normalize=(mean, std)).eval()
    inner.load_state_dict(plain.state_dict(), strict=False)
    targets = torch.randn(3, 64)
    x, y = torch.rand(4, 3, 32, 32), torch.tensor([0, 1, 2, 0])
    a = MinorityPGD(inner, target="centroid").set_targets(targets)(x, y)
    atk = MinorityPGD(plain, target="centroid").set_targets(targets)
    atk.set_normalization_used(mean, std)
    m, s = torch.tensor(mean).view(1, 3, 1, 1), torch.tensor(std).view(1, 3, 1, 1)
    b = atk((x - m) / s, y) * s + m  # normalised in, normalised out
    assert torch.allclose(a, b, atol=1e-5)


def test_embed_fn_for_other_models():
    torch.manual_seed(0)
    features = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten()
    )
    head = torch.nn.Linear(8, 2)
    model = torch.nn.Sequential(features, head)
    atk = MinorityPGD(model, steps=4, embed_fn=features, target="centroid").set_targets(
        torch.randn(2, 8)
    )
    x, y = torch.rand(3, 3, 16, 16), torch.tensor([0, 1, 1])
    assert (atk(x, y) - x).abs().max() > 0


def test_restores_submodule_modes():
    model = resnet32(num_classes=2).train()
    next(m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)).eval()  # frozen BN
    before = [m.training for m in model.modules()]
    MinorityPGD(model, target="centroid").set_targets(torch.randn(2, 64))(
        torch.rand(2, 3, 32, 32), torch.tensor([0, 1])
    )
    assert [m.training for m in model.modules()] == before


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"eps": -0.1}, "eps must be a finite number >= 0"),
        ({"alpha": 0}, "alpha"),
        ({"steps": 0}, "steps"),
        ({"label_weight": -1}, "label_weight"),
        ({"eps": float("nan")}, "finite"),
    ],
)
def test_bad_construction(kwargs, match):
    with pytest.raises(ValueError, match=match):
        MinorityPGD(resnet32(num_classes=2), **kwargs)


def test_bad_calls():
    atk = MinorityPGD(resnet32(num_classes=3), target="centroid")
    x, y = torch.rand(2, 3, 32, 32), torch.tensor([0, 1])
    with pytest.raises(RuntimeError, match="set_targets"):
        atk(x, y)
    atk.set_targets(torch.randn(3, 64))
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 2\] for 3 classes"):
        atk(x, torch.tensor([0, 3]))
    with pytest.raises(ValueError, match="expected 2 \\(one per item\\)"):
        atk(x, torch.tensor([0]))
    with pytest.raises(ValueError, match=r"in \[0, 1\]"):
        atk(x * 3, y)
    with pytest.raises(ValueError, match="NaN"):
        atk(torch.full((2, 3, 32, 32), float("nan")), y)
    with pytest.raises(ValueError, match=r"4-D image batch \[N, C, H, W\]"):
        atk(x[0], y)
    with pytest.raises(ValueError, match=r"\[C, D\]"):
        atk.set_targets(torch.randn(64))
    with pytest.raises(ValueError, match="NaN"):
        atk.set_targets(torch.full((3, 64), float("nan")))
    with pytest.raises(TypeError, match="SplitResult"):
        atk.set_targets([[0.0]])


def _passes(model):
    """Counters of the model's forwards and of the backwards that reach its input."""
    fwd, bwd = [], []

    def on_forward(_module, args):
        fwd.append(1)
        if args[0].requires_grad:  # fires once per backward pass that reaches the input
            args[0].register_hook(lambda g: bwd.append(1))

    model.register_forward_pre_hook(on_forward)
    return fwd, bwd


@pytest.mark.parametrize(
    "build,size,dim",
    [
        (lambda: torchvision.models.resnet18(num_classes=3), 32, 512),
        (lambda: torchvision.models.mobilenet_v3_small(num_classes=3), 32, 1024),
    ],
)
@pytest.mark.parametrize("grad_scale,backwards", [("pixels", 2), ("embedding", 1)])
def test_torchvision_models_one_forward_per_step(build, size, dim, grad_scale, backwards):
    torch.manual_seed(0)
    model = build()
    fwd, bwd = _passes(model)
    atk = MinorityPGD(model, steps=3, grad_scale=grad_scale, target="centroid").set_targets(
        torch.randn(3, dim)
    )
    x, y = torch.rand(4, 3, size, size), torch.tensor([0, 1, 2, 0])
    adv = atk(x, y)
    assert len(fwd) == 3 and len(bwd) == 3 * backwards
    assert 0 < (adv - x).abs().max() <= 9 / 255 + 1e-6
    assert all(p.grad is None for p in model.parameters())


def test_pure_pull_is_one_forward_one_backward():
    model = torchvision.models.resnet18(num_classes=2)
    fwd, bwd = _passes(model)
    MinorityPGD(model, label_weight=0, steps=2, target="centroid").set_targets(torch.randn(2, 512))(
        torch.rand(2, 3, 32, 32), torch.tensor([0, 1])
    )
    assert len(fwd) == 2 and len(bwd) == 2


def test_named_layer_and_set_model_keep_the_configuration():
    torch.manual_seed(0)
    a, b = torchvision.models.resnet18(num_classes=2), torchvision.models.resnet18(num_classes=2)
    atk = MinorityPGD(a, layer="avgpool", eps=2 / 255, target="centroid").set_targets(
        torch.randn(2, 512)
    )
    atk.set_normalization_used((0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
    fwd_a, _ = _passes(a)
    fwd_b, _ = _passes(b)
    x, y = torch.rand(2, 3, 32, 32), torch.tensor([0, 1])
    atk(x, y)
    atk.set_model(b)
    adv = atk(x, y)
    assert len(fwd_a) == 3 and len(fwd_b) == 3  # the second call attacked b
    assert atk.embedder.model is b and atk.layer == "avgpool" and atk.eps == 2 / 255
    assert atk.normalization_used is not None and atk.targets.shape == (2, 512)
    assert (adv - x).abs().max() > 0
    with pytest.raises(ValueError, match="no sub-module named 'nope'"):
        MinorityPGD(a, layer="nope")
    with pytest.raises(TypeError, match=re.escape("nn.Module")):
        atk.set_model("not a model")


def test_only_the_default_mode():
    atk = MinorityPGD(resnet32(num_classes=2))
    for setter in (
        lambda: atk.set_mode_targeted_random(),
        lambda: atk.set_mode_targeted_least_likely(),
        lambda: atk.set_mode_targeted_by_function(lambda x, y: y),
    ):
        with pytest.raises(ValueError, match="only the default mode"):
            setter()
    assert atk.get_mode() == "default" and atk.supported_mode == ["default"]
    with pytest.raises(ValueError, match="grad_scale"):
        MinorityPGD(resnet32(num_classes=2), grad_scale="logits")
    with pytest.raises(ValueError, match="layer= instead of embed_fn"):
        MinorityPGD(resnet32(num_classes=2), grad_scale="embedding", embed_fn=lambda x: x)


@needs_cifar10
def test_head_target_turns_majority_into_minority_and_keeps_labels(trained):
    # the paper's "two categories": the 2C-way head's (class, minority) is the target; with the
    # defaults (3 steps of 3/255) a clear share of majority images cross λ_c (Eq. 2), far more
    # than random sign steps of the same budget. How large the share is depends on the briefly
    # trained fixture: 0.17-0.33 over fixture seeds and CPUs (120 images a class, 3 head
    # seeds), noise 0.01-0.04; so the bounds are on the mean over head seeds and its margin
    # over the noise control, below the lowest value seen.
    model, images, labels, _ = trained
    emb = model_embeddings(model, images)
    split = IntraClassSplitter(quantile=0.2, adaptive=False).split(emb, labels)
    idx = torch.cat([split.majority_indices(c)[:120] for c in range(3)])
    x, y = images[idx], labels[idx]
    correct = (model.eval()(x).argmax(1) == y).float().mean().item()
    model.train()

    def crossed_and_kept(atk):
        adv = atk(x, y)
        assert (adv - x).abs().max() <= 9 / 255 + 1e-6
        cos = F.cosine_similarity(model_embeddings(model, adv), split.class_means[y])
        kept = (model.eval()(adv).argmax(1) == y).float().mean().item()
        model.train()
        return (cos < split.thresholds[y]).float().mean().item(), kept, cos.mean()

    head = [crossed_and_kept(MinorityPGD(model).fit(emb, split, seed=s)) for s in range(3)]
    noise = [crossed_and_kept(SignNoise(model).fit(emb, split, seed=s)) for s in range(3)]
    head_crossed = sum(h[0] for h in head) / 3
    noise_crossed = sum(n[0] for n in noise) / 3
    assert all(h[2] < split.similarity[idx].mean() for h in head)  # less typical
    assert all(h[1] >= 0.9 * correct for h in head), (head, correct)  # labels kept
    assert head_crossed >= 0.15 and head_crossed >= noise_crossed + 0.12, (
        head_crossed,
        noise_crossed,
    )


def model_embeddings(model, images):
    was = model.training
    model.eval()
    with torch.no_grad():
        emb = torch.cat(
            [
                model(images[i : i + 256], return_embedding=True)[1]
                for i in range(0, len(images), 256)
            ]
        )
    model.train(was)
    return emb


def _toy_split(n=24, c=3, d=64):
    torch.manual_seed(0)
    emb, labels = torch.randn(n, d), torch.arange(n) % c
    return emb, labels, IntraClassSplitter(quantile=0.25, adaptive=False).split(emb, labels)


def test_sign_noise_needs_no_gradient_and_is_seeded():
    model = torchvision.models.resnet18(num_classes=3)
    fwd, bwd = _passes(model)
    emb, _labels, split = _toy_split(d=512)
    x, y = torch.rand(4, 3, 32, 32), torch.tensor([0, 1, 2, 0])
    a = SignNoise(model).fit(emb, split, seed=3)(x, y)
    b = SignNoise(model).fit(emb, split, seed=3)(x, y)
    assert len(fwd) == 0 and len(bwd) == 0 and torch.equal(a, b)
    assert ((a - x).abs() * 255).round().max() == 9  # 3 steps of the default 3/255
    with pytest.warns(DeprecationWarning, match="SignNoise"):
        old = MinorityPGD(model, target="noise")  # the deprecated spelling
    assert torch.equal(old.fit(emb, split, seed=3)(x, y), a) and old.target_name == "noise"


def test_a_target_is_an_object_with_fit_goal_and_pull():
    from afr_aug.targets import CentroidTarget, HeadTarget

    emb, _labels, split = _toy_split()
    atk = MinorityPGD(resnet32(num_classes=3), target=HeadTarget(head_steps=5))
    assert atk.target_name == "head" and atk.fit(emb, split, seed=0).head_accuracy is not None
    centroid = MinorityPGD(resnet32(num_classes=3), target=CentroidTarget()).fit(emb, split)
    assert torch.equal(centroid.targets, split.minority_centroids.float())
    with pytest.raises(TypeError, match="fit, goal and pull"):
        MinorityPGD(resnet32(num_classes=3), target=object())
    with pytest.raises(ValueError, match="target must be one of"):
        MinorityPGD(resnet32(num_classes=3), target="mean")


@pytest.mark.parametrize("target", ["head", "slot", "centroid"])
def test_fit_each_target_then_attack(target):
    model = resnet32(num_classes=3)
    emb, _labels, split = _toy_split()
    atk = MinorityPGD(model, target=target)
    assert not atk.fitted
    with pytest.raises(RuntimeError, match="not fitted"):
        atk(torch.rand(2, 3, 32, 32), torch.tensor([0, 1]))
    atk.fit(emb, split, seed=0)
    assert atk.fitted and atk.num_target_classes == 3
    x, y = torch.rand(3, 3, 32, 32), torch.tensor([0, 1, 2])
    adv = atk(x, y)
    assert 0 < (adv - x).abs().max() <= 9 / 255 + 1e-6
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 2\] for 3 classes"):
        atk(x, torch.tensor([0, 1, 3]))


def test_fit_and_set_targets_errors():
    emb, _labels, split = _toy_split()
    atk = MinorityPGD(resnet32(num_classes=3))
    with pytest.raises(ValueError, match="N = 24"):
        atk.fit(emb[:5], split)
    with pytest.raises(ValueError, match=r"\[N, D\]"):
        atk.fit(emb[:, 0], split)
    with pytest.raises(TypeError, match="SplitResult"):
        atk.fit(emb, "split")
    with pytest.raises(ValueError, match="target='centroid'"):
        atk.set_targets(torch.randn(3, 64))
    with pytest.raises(ValueError, match="target must be one of"):
        MinorityPGD(resnet32(num_classes=3), target="mean")


def test_generate_owns_the_batch_loop_and_normalisation():
    torch.manual_seed(0)
    mean, std = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)
    model = resnet32(num_classes=3).eval()
    emb, _labels, split = _toy_split()
    atk = MinorityPGD(model).fit(emb, split, seed=0)
    atk.set_normalization_used(mean, std)
    x, y = torch.rand(5, 3, 32, 32), torch.tensor([0, 1, 2, 0, 1])
    out = list(atk.generate([(x[:3], y[:3]), (x[3:], y[3:], "ignored")]))
    rows = torch.cat([r for r, _ in out])
    assert rows.dtype == torch.uint8 and rows.shape == x.shape
    back = rows.float() / 255  # [0, 1] in, [0, 1] out
    assert (back - x).abs().max() <= 9 / 255 + 1 / 255
    after = out[0][1]
    assert after["embeddings"].shape == (3, 64) and after["predictions"].shape == (3,)
    assert after["linf"].max() <= 10 / 255
    assert next(iter(atk.generate([(x, y)], measure=False)))[1] == {}


def test_targets_of_another_width_fail_with_a_clear_error():
    model = resnet32(num_classes=3)  # 64-d embedding
    atk = MinorityPGD(model, target="centroid").set_targets(torch.randn(3, 32))
    with pytest.raises(ValueError, match=r"32-dimensional but the model's embedding .* has 64"):
        atk(torch.rand(2, 3, 32, 32), torch.tensor([0, 1]))
    emb, _labels, split = _toy_split(d=16)
    head = MinorityPGD(model).fit(emb, split)
    with pytest.raises(ValueError, match="16-dimensional"):
        head(torch.rand(2, 3, 32, 32), torch.tensor([0, 1]))


def test_keep_when_correct_pulls_misclassified_images_freely():
    # the label term guards the images the model gets right; an image it already gets wrong
    # spends its whole budget on the pull (keep_when="always" would spend it on fixing the label)
    torch.manual_seed(0)
    model = resnet32(num_classes=3).eval()
    emb, _labels, split = _toy_split()
    x = torch.rand(6, 3, 32, 32)
    with torch.no_grad():
        pred = model(x).argmax(1)
    wrong = (pred + 1) % 3  # every image misclassified
    free = MinorityPGD(model, label_weight=0, steps=2).fit(emb, split, seed=0)(x, wrong)
    guarded = MinorityPGD(model, steps=2).fit(emb, split, seed=0)(x, wrong)
    always = MinorityPGD(model, steps=2, keep_when="always").fit(emb, split, seed=0)(x, wrong)
    assert MinorityPGD(model).keep_when == "correct"
    assert torch.equal(guarded, free) and not torch.equal(always, free)
    with pytest.raises(ValueError, match="keep_when"):
        MinorityPGD(model, keep_when="sometimes")


def test_generate_measures_in_the_embed_fn_space():
    torch.manual_seed(0)
    features = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten()
    )
    model = torch.nn.Sequential(features, torch.nn.Linear(8, 2))
    emb = torch.randn(10, 8)
    labels = torch.arange(10) % 2
    split = IntraClassSplitter(quantile=0.2, adaptive=False).split(emb, labels)
    atk = MinorityPGD(model, embed_fn=features).fit(emb, split, seed=0)
    assert atk.grad_scale == "pixels"  # the only choice with an embed_fn
    x, y = torch.rand(3, 3, 16, 16), torch.tensor([0, 1, 1])
    rows, after = next(atk.generate([(x, y)]))
    assert after["embeddings"].shape == (3, 8)
    assert torch.allclose(after["embeddings"], features(rows.float() / 255), atol=1e-5)
