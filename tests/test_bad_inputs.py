"""The bad inputs that used to give silently wrong data or a raw error: each one now gives
correct data or one clear error (a row of the table below, or a test of its own)."""

import warnings

import pytest
import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset, TensorDataset

from afr_aug import AFRDataset, AFRLoader, BalancedMixLoader, CutMixBalancer, MixUpBalancer
from afr_aug.models import resnet32

LABELS = torch.tensor([0] * 20 + [1] * 7 + [2] * 5)
NUM_LABELS = len(LABELS)


def uint8_images(n=NUM_LABELS, size=8):
    return torch.randint(
        0, 256, (n, 3, size, size), dtype=torch.uint8, generator=torch.Generator().manual_seed(0)
    )


class Targets(TensorDataset):
    def __init__(self, x, y, targets=None):
        super().__init__(x, y)
        self.targets = y if targets is None else targets


class Dicts(Dataset):
    def __len__(self):
        return len(LABELS)

    def __getitem__(self, i):
        return {"image": uint8_images()[i].float() / 255, "label": int(LABELS[i])}


class OnlyImages(Dataset):
    def __len__(self):
        return len(LABELS)

    def __getitem__(self, i):
        return (uint8_images()[i].float() / 255,)


class Stream(IterableDataset):
    def __len__(self):
        return len(LABELS)

    def __iter__(self):
        return iter(zip(uint8_images().float() / 255, LABELS))


def loader(dataset, **kw):
    return DataLoader(dataset, batch_size=8, **kw)


def float_data(images=None, labels=LABELS, targets=None):
    images = uint8_images() if images is None else images
    return Targets(images.float() / 255, labels, targets)


def stage2_of(**kw):
    return AFRDataset(uint8_images(), LABELS, progress=False, **kw)


def afr_loader(data, model=None, **kw):
    return AFRLoader(
        loader(data, drop_last=True), stage2_of(), model or resnet32(num_classes=3), **kw
    )


def first(it):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return next(iter(it))


# (case, callable, exception, message) -- each one a single clear error
CASES = [
    (
        "fractional float .targets",
        lambda: BalancedMixLoader(loader(float_data(targets=LABELS.float() + 0.25))),
        TypeError,
        "fractional values",
    ),
    (
        "a loader yielding dicts",
        lambda: first(BalancedMixLoader(loader(Dicts()), num_classes=3, balanced=[])),
        TypeError,
        "yields dicts",
    ),
    (
        "a loader yielding (x,) only",
        lambda: first(BalancedMixLoader(loader(OnlyImages()), num_classes=3, balanced=[])),
        TypeError,
        "yields a list of 1",
    ),
    (
        "labels >= the number of classes",
        lambda: first(
            BalancedMixLoader(
                loader(TensorDataset(uint8_images().float() / 255, LABELS + 3)),
                num_classes=3,
                balanced=[],
            )
        ),
        ValueError,
        r"must lie in \[0, 2\] for 3 classes",
    ),
    (
        "a classifier narrower than the classes",
        lambda: afr_loader(float_data(), model=resnet32(num_classes=2)),
        ValueError,
        "gives 2 logits",
    ),
    (
        "an empty dataset under AFRLoader",
        lambda: afr_loader(float_data(uint8_images(0), LABELS[:0])),
        ValueError,
        "yields no batches",
    ),
    (
        "an IterableDataset with __len__",
        lambda: AFRDataset(Stream(), LABELS, progress=False),
        TypeError,
        "IterableDataset",
    ),
    (
        "NaN images",
        lambda: list(
            BalancedMixLoader(
                loader(float_data(torch.full((32, 3, 8, 8), float("nan")))), mixing=False
            )
        ),
        ValueError,
        "NaN or inf",
    ),
    (
        "0-255 floats pasted into [0, 1] floats",
        lambda: CutMixBalancer(p=1.0)(
            torch.rand(4, 3, 8, 8),
            torch.zeros(4, dtype=torch.long),
            torch.full((4, 3, 8, 8), 200.0),
            torch.ones(4, dtype=torch.long),
        ),
        ValueError,
        "not in the same range",
    ),
    (
        "normalised floats with uint8",
        lambda: MixUpBalancer(p=1.0)(
            torch.randn(4, 3, 8, 8),
            torch.zeros(4, dtype=torch.long),
            uint8_images(4),
            torch.ones(4, dtype=torch.long),
        ),
        ValueError,
        "mixes only with floats in",
    ),
]


@pytest.mark.parametrize("case,call,exc,message", CASES, ids=[c[0] for c in CASES])
def test_bad_input_gives_one_clear_error(case, call, exc, message):
    with pytest.raises(exc, match=message) as err:
        call()
    assert "\n" not in str(err.value)


def test_a_bad_loader_fails_before_a_refresh():
    stage2 = stage2_of()
    afr = AFRLoader(loader(Dicts()), stage2, resnet32(num_classes=3))
    with pytest.raises(TypeError, match="yields dicts"):
        first(afr)
    assert stage2.generation == 0 and afr.refreshes == 0


def test_uint8_user_batches_take_the_float_afr_set_correctly():
    mixer = CutMixBalancer(p=1.0, seed=0)
    x = torch.zeros(4, 3, 8, 8, dtype=torch.uint8)
    out, _, _, lam = mixer(
        x,
        torch.zeros(4, dtype=torch.long),
        torch.full((4, 3, 8, 8), 0.9),
        torch.ones(4, dtype=torch.long),
    )
    assert out.dtype == torch.uint8 and lam < 1
    assert set(out.unique().tolist()) == {0, 230}  # round(0.9 * 255), not 0
    mixed = MixUpBalancer(p=1.0, seed=0)(
        torch.rand(2, 3, 4, 4),
        torch.zeros(2, dtype=torch.long),
        uint8_images(2, 4),
        torch.ones(2, dtype=torch.long),
    )[0]
    assert mixed.dtype == torch.float32 and float(mixed.max()) <= 1.0


def test_uint8_user_loader_under_afr_loader():
    data = TensorDataset(torch.zeros(len(LABELS), 3, 8, 8, dtype=torch.uint8), LABELS)
    data.targets = LABELS
    afr = AFRLoader(
        loader(data, drop_last=True), stage2_of(), resnet32(num_classes=3), CutMixBalancer(p=1.0)
    )
    x, _y_a, _y_b, lam = first(afr)
    # every non-zero pixel is pasted from the float AFR set: 0..255, not truncated to 0 or 1
    assert x.dtype == torch.uint8 and lam < 1 and int(x.max()) > 100


def test_observe_checks_the_logits_width():
    mixed = BalancedMixLoader(loader(float_data()), mixing=False)
    for x, *_ in mixed:
        with pytest.raises(ValueError, match="gives 5 logits per image but the data have 3"):
            mixed.observe(torch.zeros(len(x), 5))
        break


def test_a_half_precision_model_refreshes():
    model = resnet32(num_classes=3).half()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        report = stage2_of().refresh(model)
    assert sum(report.attacked) > 0 and next(model.parameters()).dtype == torch.float16


def test_a_loader_state_of_another_seed_is_refused():
    state = BalancedMixLoader(loader(float_data()), seed=0).state_dict()
    with pytest.raises(ValueError, match="seed=0 but this BalancedMixLoader has seed=1"):
        BalancedMixLoader(loader(float_data()), seed=1).load_state_dict(state)
    old = {k: v for k, v in state.items() if k != "seed"}
    old["version"] = 1  # afr-aug 0.1's state: no seed to check
    BalancedMixLoader(loader(float_data()), seed=1).load_state_dict(old)


def test_the_report_comes_back_with_the_state():
    stage2 = stage2_of()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        report = stage2.refresh(resnet32(num_classes=3))
    again = stage2_of()
    again.load_state_dict(stage2.state_dict())
    assert again.report is not None and again.report.to_dict().keys() == report.to_dict().keys()
    assert again.report.attacked == report.attacked and again.report.dose == report.dose
    assert str(again.report).splitlines()[-1] == str(report).splitlines()[-1]
