"""Embedder on afr-aug's resnet32, torchvision models and a user's nn.Sequential: one forward,
the right layer, no leaked hooks, DDP, clear errors; run_inference and eval_mode."""

import re

import pytest
import torch
import torch.distributed as dist
import torchvision
from torch import nn

from afr_aug import Embedder
from afr_aug.embedding import eval_mode, run_inference, unwrap_model
from afr_aug.models import resnet32


def small_vit(num_classes=5):
    return torchvision.models.VisionTransformer(
        image_size=32,
        patch_size=8,
        num_layers=2,
        num_heads=2,
        hidden_dim=32,
        mlp_dim=64,
        num_classes=num_classes,
    )


def all_hooks(model):
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


def count_forwards(model):
    calls = []
    model.register_forward_pre_hook(lambda *_: calls.append(1))
    return calls


def capture(module, *, output):
    """What a module sees (input) or returns (output) in the next forward, for comparison."""
    box = {}
    if output:
        h = module.register_forward_hook(lambda m, a, out: box.setdefault("t", out))
    else:
        h = module.register_forward_pre_hook(lambda m, a: box.setdefault("t", a[0]))
    return box, h


@pytest.mark.parametrize(
    "name,build,size,classifier,dim",
    [
        ("resnet32", lambda: resnet32(num_classes=5), 32, "fc", 64),
        ("resnet18", lambda: torchvision.models.resnet18(num_classes=5), 64, "fc", 512),
        (
            "mobilenet_v3_small",
            lambda: torchvision.models.mobilenet_v3_small(num_classes=5),
            64,
            "classifier.3",
            1024,
        ),
        ("vit", small_vit, 32, "heads.head", 32),
        (
            "sequential",
            lambda: nn.Sequential(
                nn.Conv2d(3, 4, 3),
                nn.AdaptiveAvgPool2d(1),
                nn.Flatten(),
                nn.Linear(4, 6),
                nn.ReLU(),
                nn.Linear(6, 5),
            ),
            16,
            "5",
            6,
        ),
    ],
)
def test_default_layer_is_the_classifier_input_in_one_forward(name, build, size, classifier, dim):
    torch.manual_seed(0)
    model = build().eval()
    x = torch.rand(3, 3, size, size)
    box, h = capture(dict(model.named_modules())[classifier], output=False)
    with torch.no_grad():
        expected_logits = model(x)
    h.remove()
    calls = count_forwards(model)
    embedder = Embedder(model)
    with torch.no_grad():
        logits, emb = embedder(x)
    assert len(calls) == 1  # one call of model(x)
    assert embedder.classifier == classifier and embedder.layer is None  # found, remembered
    assert embedder.where == f"the input of {classifier!r}"
    assert emb.shape == (3, dim)
    assert torch.allclose(emb, box["t"].flatten(1)) and torch.allclose(logits, expected_logits)
    with torch.no_grad():
        embedder(x)
    assert len(calls) == 2 and all_hooks(model) == 1  # only the counter is left


def test_resnet32_embedding_equals_return_embedding():
    model = resnet32(num_classes=4).eval()
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        ref_logits, ref_emb = model(x, return_embedding=True)
        logits, emb = Embedder(model)(x)
    assert torch.allclose(emb, ref_emb) and torch.allclose(logits, ref_logits)


def test_cosine_classifier_counts_as_the_classifier():
    model = resnet32(num_classes=4, normed_classifier=True).eval()
    x = torch.rand(2, 3, 32, 32)
    embedder = Embedder(model)
    with torch.no_grad():
        _, ref = model(x, return_embedding=True)
        _, emb = embedder(x)
    assert embedder.classifier == "fc" and torch.allclose(emb, ref)


def test_named_layer_output_flattened():
    model = torchvision.models.resnet18(num_classes=3).eval()
    x = torch.rand(2, 3, 64, 64)
    box, h = capture(model.avgpool, output=True)
    with torch.no_grad():
        _, emb = Embedder(model, "avgpool")(x)
    h.remove()
    assert emb.shape == (2, 512) and torch.allclose(emb, box["t"].flatten(1))
    with torch.no_grad():
        _, emb = Embedder(model, "layer4")(x)  # a feature map, flattened
    assert emb.shape == (2, 512 * 2 * 2)


def test_gradients_flow_through_the_embedding():
    model = resnet32(num_classes=3).eval()
    x = torch.rand(2, 3, 32, 32, requires_grad=True)
    logits, emb = Embedder(model)(x)
    (emb.sum() + logits.sum()).backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_hooks_removed_when_the_forward_raises():
    class Breaks(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 2)

        def forward(self, x):
            self.fc(x)
            raise RuntimeError("boom")

    model = Breaks()
    with pytest.raises(RuntimeError, match="boom"):
        Embedder(model)(torch.rand(1, 4))
    with pytest.raises(RuntimeError, match="boom"):
        Embedder(model, "fc")(torch.rand(1, 4))
    assert all_hooks(model) == 0


def test_distributed_data_parallel_wrapper(tmp_path):
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'pg'}", rank=0, world_size=1)
    try:
        inner = torchvision.models.resnet18(num_classes=3).eval()
        model = nn.parallel.DistributedDataParallel(inner)
        assert unwrap_model(model) is inner
        x = torch.rand(2, 3, 32, 32)
        logits, emb = Embedder(model, layer="avgpool")(x)  # names of the inner module
        assert logits.shape == (2, 3) and emb.shape == (2, 512)
        embedder = Embedder(model)
        embedder(x)
        assert embedder.classifier == "fc" and all_hooks(inner) == 0
    finally:
        dist.destroy_process_group()


def test_errors():
    no_linear = nn.Sequential(nn.Conv2d(3, 2, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    with pytest.raises(ValueError, match=re.escape("no nn.Linear")):
        Embedder(no_linear)
    with pytest.raises(ValueError, match=r"no sub-module named 'avgpol'.*avgpool"):
        Embedder(torchvision.models.resnet18(), "avgpol")
    with pytest.raises(TypeError, match=re.escape("nn.Module")):
        Embedder(lambda x: x)
    with pytest.raises(TypeError, match="layer must be"):
        Embedder(nn.Linear(2, 2), layer=3)

    class Unused(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc, self.spare = nn.Linear(12, 2), nn.Linear(3, 3)  # spare: never run

        def forward(self, x):
            return self.fc(x.flatten(1))

    with pytest.raises(RuntimeError, match="did not run"):
        Embedder(Unused(), "spare")(torch.rand(1, 3, 2, 2))
    with pytest.raises(ValueError, match=r"logits \[N, C\]"):
        Embedder(nn.Sequential(nn.Linear(2, 3), nn.Flatten(0)))(torch.rand(2, 2))


def test_logits_from_tuples_and_objects():
    class HFLike(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 2)

        def forward(self, x):
            return type("Out", (), {"logits": self.fc(x)})()

    logits, emb = Embedder(HFLike())(torch.rand(3, 4))
    assert logits.shape == (3, 2) and emb.shape == (3, 4)


def test_eval_mode_restores_every_module():
    model = resnet32(num_classes=2).train()
    bn = next(m for m in model.modules() if isinstance(m, nn.BatchNorm2d)).eval()  # frozen BN
    with eval_mode(model):
        assert not any(m.training for m in model.modules())
    assert model.training and not bn.training


def test_run_inference_orders_by_index_and_keeps_modes():
    torch.manual_seed(0)
    model = resnet32(num_classes=3).train()
    x, y = torch.rand(10, 3, 32, 32), torch.randint(0, 3, (10,))
    perm = torch.randperm(10)
    batches = [(x[p], y[p], p) for p in perm.split(4)] + [
        (x[:2], y[:2], torch.arange(2))
    ]  # repeats
    out = run_inference(model, batches, embed=True, keep_logits=True)
    assert model.training
    assert out.index.tolist() == list(range(10)) and torch.equal(out.labels, y)
    with torch.no_grad(), eval_mode(model):
        ref_logits, ref_emb = model(x, return_embedding=True)
    assert torch.allclose(out.embeddings, ref_emb, atol=1e-5)
    assert torch.allclose(out.logits, ref_logits, atol=1e-5)
    assert torch.equal(out.predictions, ref_logits.argmax(1)) and out.num_classes == 3
    plain = run_inference(model, [(x, y)])
    assert plain.embeddings is None and plain.index is None and len(plain.labels) == 10
    with pytest.raises(ValueError, match="no batch"):
        run_inference(model, [])
    with pytest.raises(ValueError, match="indices for some batches only"):
        run_inference(model, [(x[:2], y[:2], torch.arange(2)), (x[2:4], y[2:4])])


def test_run_inference_shows_a_progress_bar_by_default(capsys):
    model, batch = nn.Linear(4, 2), (torch.rand(3, 4), torch.tensor([0, 1, 0]))
    run_inference(model, [batch], desc="embedding pass")
    assert "embedding pass" in capsys.readouterr().err
    run_inference(model, [batch], desc="embedding pass", progress=False)
    assert capsys.readouterr().err == ""
