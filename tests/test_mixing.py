import pytest
import torch
import torch.nn.functional as F

from afr_aug import CutMixBalancer, MixUpBalancer, mixed_loss


def batches(n=8, size=32):
    x = torch.zeros(n, 3, size, size)
    x_bal = torch.ones(n, 3, size, size)
    return x, torch.arange(n), x_bal, torch.arange(n) + 100


def test_cutmix_lam_is_exact_pixel_share():
    mixer = CutMixBalancer(p=1.0, seed=0)
    x, y, xb, yb = batches()
    seen = set()
    for _ in range(200):
        out, y_a, y_b, lam = mixer(x, y, xb, yb)
        from_x = (out == 0).all(1).float().mean(dim=(1, 2))  # per image share of x pixels
        assert torch.allclose(from_x, torch.full_like(from_x, lam))
        assert torch.equal(y_a, y) and torch.equal(y_b, yb)
        seen.add(round(lam, 2))
    assert len(seen) > 20  # box sizes vary
    assert torch.equal(x, torch.zeros_like(x))  # input untouched


def test_cutmix_applied_about_p_of_the_time():
    mixer = CutMixBalancer(p=0.25, seed=1)
    x, y, xb, yb = batches(n=2, size=8)
    applied = 0
    for _ in range(4000):
        out, y_a, y_b, lam = mixer(x, y, xb, yb)
        if lam < 1.0 or not torch.equal(y_b, y_a):
            applied += 1
        else:
            assert out is x and torch.equal(y_b, y)
    assert abs(applied / 4000 - 0.25) < 0.03


def test_cutmix_deterministic_and_resumable():
    x, y, xb, yb = batches()
    a, b = CutMixBalancer(p=0.5, seed=3), CutMixBalancer(p=0.5, seed=3)
    for _ in range(5):
        a(x, y, xb, yb)
    state = a.state_dict()
    b.load_state_dict(state)
    for _ in range(5):
        assert a(x, y, xb, yb)[3] == b(x, y, xb, yb)[3]


@pytest.mark.parametrize("cls", [CutMixBalancer, MixUpBalancer])
def test_state_round_trip_continues_the_stream(cls):
    x, y, xb, yb = batches(n=2, size=16)
    straight, stopped = cls(p=0.5, seed=8), cls(p=0.5, seed=8)
    for _ in range(7):
        straight(x, y, xb, yb)
        stopped(x, y, xb, yb)
    state = stopped.state_dict()
    assert (
        set(state) == {"type", "p", "beta", "in_batch", "generator"}
        and state["type"] == cls.__name__
    )
    resumed = cls(p=0.5, seed=123)
    resumed.load_state_dict(state)
    for _ in range(20):
        a, b = straight(x, y, xb, yb), resumed(x, y, xb, yb)
        assert a[3] == b[3] and torch.equal(a[0], b[0]) and torch.equal(a[2], b[2])


@pytest.mark.parametrize(
    "cls,other", [(CutMixBalancer, MixUpBalancer), (MixUpBalancer, CutMixBalancer)]
)
def test_load_state_dict_bad_input(cls, other):
    mixer = cls(p=0.5, seed=0)
    good = mixer.state_dict()
    before = mixer.generator.get_state()
    bad = [
        ([1, 2], TypeError, "expects the dict"),
        ({"generator": good["generator"]}, ValueError, r"missing keys \['beta', 'p', 'type'\]"),
        (dict(good, extra=1), ValueError, r"unexpected keys \['extra'\]"),
        (other(p=0.5).state_dict(), ValueError, f"saved by '{other.__name__}'"),
        (cls(p=0.25).state_dict(), ValueError, f"p=0.25 but this {cls.__name__} has p=0.5"),
        (cls(p=0.5, beta=2.0).state_dict(), ValueError, "beta=2.0"),
        (
            dict(good, generator="seed 0"),
            ValueError,
            "'generator' must be a CPU torch.Generator state",
        ),
        (dict(good, generator=good["generator"][:100]), ValueError, r"shape \(100,\)"),
        (dict(good, generator=good["generator"].long()), ValueError, "torch.int64"),
    ]
    for state, exc, match in bad:
        with pytest.raises(exc, match=match):
            mixer.load_state_dict(state)
    assert torch.equal(mixer.generator.get_state(), before)  # rejected states change nothing


@pytest.mark.parametrize("cls", [CutMixBalancer, MixUpBalancer])
def test_state_of_the_numpy_era_is_refused_clearly(cls):
    mixer = cls(p=0.5)
    before = mixer.generator.get_state()
    old = {
        "type": cls.__name__,
        "p": 0.5,
        "alpha": 1.0,
        "rng": {
            "bit_generator": "PCG64",
            "state": {"state": 1, "inc": 1},
            "has_uint32": 0,
            "uinteger": 0,
        },
    }
    with pytest.raises(ValueError, match="comes from an older afr-aug version"):
        mixer.load_state_dict(old)
    assert torch.equal(mixer.generator.get_state(), before)


@pytest.mark.parametrize("cls", [CutMixBalancer, MixUpBalancer])
def test_old_alpha_keyword_and_attribute(cls):
    x, y, xb, yb = batches(n=2, size=16)
    with pytest.warns(DeprecationWarning, match="'alpha' is deprecated, use 'beta'"):
        old = cls(p=1.0, alpha=0.5, seed=2)
    new = cls(p=1.0, beta=0.5, seed=2)
    assert old.beta == 0.5 and [old(x, y, xb, yb)[3] for _ in range(5)] == [
        new(x, y, xb, yb)[3] for _ in range(5)
    ]
    with pytest.warns(DeprecationWarning, match=f"{cls.__name__}.alpha is deprecated"):
        assert old.alpha == 0.5
    with pytest.raises(TypeError, match="both 'beta' and its deprecated name 'alpha'"):
        cls(beta=1.0, alpha=1.0)
    with pytest.warns(DeprecationWarning, match="'state' is deprecated, use 'state_dict'"):
        cls(p=1.0, beta=0.5, seed=9).load_state_dict(state=new.state_dict())


@pytest.mark.parametrize("a", [0.2, 1.0, 2.0, 7.5])
def test_lam_follows_beta_a_a(a):
    """The mixers' own Beta(a, a) sampler (Gamma draws from the torch.Generator): mean 1/2 and
    variance 1 / (4 (2a + 1)) on 20,000 draws, within 4 standard errors."""
    mixer = MixUpBalancer(p=1.0, beta=a, seed=5)
    lams = torch.tensor([mixer._lam() for _ in range(20_000)], dtype=torch.float64)
    var = 1 / (4 * (2 * a + 1))
    fourth = 3 * (1 / (4 * (2 * a + 1))) ** 2 * (2 * a + 1) / (2 * a + 3)  # E[(lam - 1/2)^4]
    assert bool(((lams >= 0) & (lams <= 1)).all())
    assert abs(float(lams.mean()) - 0.5) < 4 * (var / len(lams)) ** 0.5
    sample_var = float(((lams - 0.5) ** 2).mean())
    assert abs(sample_var - var) < 4 * ((fourth - var**2) / len(lams)) ** 0.5


def test_beta_with_unequal_shapes_and_tiny_shapes():
    from afr_aug.random_variates import beta_draw

    g = torch.Generator().manual_seed(0)
    draws = torch.tensor([beta_draw(2.0, 5.0, g) for _ in range(20_000)], dtype=torch.float64)
    a, b = 2.0, 5.0
    mean, var = a / (a + b), a * b / ((a + b) ** 2 * (a + b + 1))
    assert abs(float(draws.mean()) - mean) < 4 * (var / len(draws)) ** 0.5
    assert abs(float(draws.var()) - var) < 0.05 * var
    tiny = [beta_draw(1e-3, 1e-3, g) for _ in range(200)]  # U ** (1 / a) underflows
    assert all(0.0 <= t <= 1.0 for t in tiny) and 0.2 < sum(t > 0.5 for t in tiny) / 200 < 0.8


@pytest.mark.parametrize("cls", [CutMixBalancer, MixUpBalancer])
def test_seed_defaults_to_zero_and_none_is_fresh(cls):
    x, y, xb, yb = batches(n=2, size=16)

    def lams(m):
        return [m(x, y, xb, yb)[3] for _ in range(10)]

    assert lams(cls(p=1.0)) == lams(cls(p=1.0, seed=0))
    assert lams(cls(p=1.0, seed=None)) != lams(cls(p=1.0, seed=None))


def test_cutmix_box_mean_area_matches_beta():
    mixer = CutMixBalancer(p=1.0, beta=1.0, seed=4)
    lams = [mixer(*batches(n=1, size=64))[3] for _ in range(3000)]
    # Beta(1,1) box, clipped at borders: more of x survives than 1 - E[box] = 0.5
    assert 0.55 < sum(lams) / len(lams) < 0.8


def test_mixup_interpolates():
    mixer = MixUpBalancer(p=1.0, seed=0)
    x, y, xb, yb = batches(n=4, size=4)
    out, _y_a, _y_b, lam = mixer(x, y, xb, yb)
    assert 0.0 <= lam <= 1.0
    assert torch.allclose(out, torch.full_like(out, 1 - lam))
    never = MixUpBalancer(p=0.0, seed=0)
    assert never(x, y, xb, yb)[3] == 1.0


def test_mixed_loss_hand_computed():
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.0, 1.0, 0.0]])
    y_a, y_b = torch.tensor([0, 1]), torch.tensor([2, 0])
    expected = 0.3 * F.cross_entropy(logits, y_a) + 0.7 * F.cross_entropy(logits, y_b)
    assert torch.isclose(mixed_loss(F.cross_entropy, logits, y_a, y_b, 0.3), expected)
    with pytest.raises(ValueError, match="lam"):
        mixed_loss(F.cross_entropy, logits, y_a, y_b, 1.5)


@pytest.mark.parametrize("cls", [CutMixBalancer, MixUpBalancer])
def test_bad_shapes(cls):
    mixer = cls(p=1.0, seed=0)
    x, y, xb, yb = batches()
    with pytest.raises(ValueError, match="same shape"):
        mixer(x, y, xb[:4], yb[:4])
    with pytest.raises(ValueError, match=r"x must be a 4-D image batch \[N, C, H, W\]"):
        mixer(x[0], y, xb, yb)
    with pytest.raises(ValueError, match="y_bal must be a 1-D label tensor with 8 entries"):
        mixer(x, y, xb, yb[:3])
    with pytest.raises(ValueError, match="probability"):
        cls(p=1.5)
    with pytest.raises(ValueError, match="beta must be a finite number > 0"):
        cls(beta=0)
