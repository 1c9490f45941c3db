import pytest
import torch

from afr_aug.models import PadShortcut, ResNet32, resnet32


def _n_params(model):
    return sum(p.numel() for p in model.parameters())


def test_parameter_counts():
    # 3*16*9 stem conv + BN, 15 blocks, fc 64*C + C; option-A shortcuts add nothing.
    assert _n_params(resnet32(num_classes=10)) == 464154
    n100 = _n_params(resnet32(num_classes=100))
    assert n100 == 470004
    # "about 0.46 M": 0.470004 M, i.e. 0.47 M at the two decimals the spec states (0.45-0.47 M).
    assert 0.45 <= round(n100 / 1e6, 2) <= 0.47


def test_architecture_layout():
    model = resnet32(num_classes=10)
    assert isinstance(model, ResNet32)
    assert model.num_classes == 10 and model.embedding_dim == 64
    assert [len(s) for s in (model.layer1, model.layer2, model.layer3)] == [5, 5, 5]
    assert model.conv1.out_channels == 16
    assert [s[0].conv1.stride for s in (model.layer1, model.layer2, model.layer3)] == [
        (1, 1),
        (2, 2),
        (2, 2),
    ]
    assert [s[-1].conv2.out_channels for s in (model.layer1, model.layer2, model.layer3)] == [
        16,
        32,
        64,
    ]
    shortcuts = [m for m in model.modules() if isinstance(m, PadShortcut)]
    assert len(shortcuts) == 2 and all(_n_params(s) == 0 for s in shortcuts)
    assert model.fc.in_features == 64 and model.fc.out_features == 10


def test_option_a_shortcut():
    x = torch.randn(2, 16, 8, 8)
    y = PadShortcut(16, 32, 2)(x)
    assert y.shape == (2, 32, 4, 4)
    assert torch.equal(y[:, 8:24], x[:, :, ::2, ::2])
    assert y[:, :8].abs().sum() == 0 and y[:, 24:].abs().sum() == 0


def test_forward_and_embedding_single_pass():
    torch.manual_seed(0)
    model = resnet32(num_classes=10).eval()
    x = torch.rand(3, 3, 32, 32)
    logits = model(x)
    assert logits.shape == (3, 10)
    out, emb = model(x, return_embedding=True)
    assert emb.shape == (3, 64)
    assert torch.equal(out, logits)
    assert torch.equal(out, model.fc(emb))  # logits come from the returned embedding
    assert (emb >= 0).all()  # post-ReLU, post-pool


def test_backward_train_mode():
    model = resnet32(num_classes=5)
    logits, emb = model(torch.rand(2, 3, 16, 16), return_embedding=True)
    (logits.sum() + emb.sum()).backward()
    assert model.conv1.weight.grad is not None and model.fc.weight.grad is not None


def test_normalize_buffers_and_effect():
    mean, std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)
    torch.manual_seed(0)
    plain = resnet32(num_classes=10).eval()
    normed = resnet32(num_classes=10, normalize=(mean, std)).eval()
    normed.load_state_dict(plain.state_dict(), strict=False)
    buffers = dict(normed.named_buffers())
    assert buffers["norm_mean"].shape == (1, 3, 1, 1)
    assert "norm_mean" not in dict(plain.named_buffers())
    x = torch.rand(2, 3, 16, 16)
    m = torch.tensor(mean).view(1, 3, 1, 1)
    s = torch.tensor(std).view(1, 3, 1, 1)
    assert torch.allclose(normed(x), plain((x - m) / s), atol=1e-5)
    # .to() moves/casts the buffers
    assert normed.to(torch.float64).norm_mean.dtype == torch.float64


def test_kaiming_init_scale():
    torch.manual_seed(0)
    model = resnet32(num_classes=100)
    w = model.layer3[0].conv2.weight  # fan_in = 64 * 9
    assert w.std().item() == pytest.approx((2.0 / (64 * 9)) ** 0.5, rel=0.1)


def test_input_errors():
    model = resnet32(num_classes=10)
    with pytest.raises(ValueError, match=r"shape \[N, 3, H, W\], got shape \(3, 32, 32\)"):
        model(torch.rand(3, 32, 32))
    with pytest.raises(ValueError, match=r"shape \[N, 3, H, W\], got shape \(2, 1, 32, 32\)"):
        model(torch.rand(2, 1, 32, 32))
    with pytest.raises(TypeError, match=r"float tensor.*got dtype torch\.uint8"):
        model(torch.zeros(2, 3, 32, 32, dtype=torch.uint8))
    with pytest.raises(ValueError, match="num_classes must be >= 1, got 0"):
        resnet32(num_classes=0)
    with pytest.raises(ValueError, match=r"3 means and 3 stds.*got 1 means and 3 stds"):
        resnet32(normalize=((0.5,), (0.2, 0.2, 0.2)))
    with pytest.raises(ValueError, match="std must be positive"):
        resnet32(normalize=((0.5, 0.5, 0.5), (0.2, 0.0, 0.2)))
    with pytest.raises(TypeError, match=r"pair \(mean, std\)"):
        resnet32(normalize=0.5)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_forward():
    model = resnet32(num_classes=10, normalize=((0.5,) * 3, (0.25,) * 3)).cuda().eval()
    logits, emb = model(torch.rand(2, 3, 32, 32, device="cuda"), return_embedding=True)
    assert logits.is_cuda and emb.shape == (2, 64)


def test_normed_classifier_gives_cosine_logits():
    from afr_aug.models.resnet import NormedLinear

    model = resnet32(num_classes=5, normed_classifier=True)
    assert isinstance(model.fc, NormedLinear)
    logits, emb = model(torch.rand(3, 3, 32, 32), return_embedding=True)
    w = model.fc.weight
    expected = torch.nn.functional.cosine_similarity(emb[:, :, None], w[None], dim=1)
    assert torch.allclose(logits, expected, atol=1e-5)
    assert logits.abs().max() <= 1 + 1e-5
