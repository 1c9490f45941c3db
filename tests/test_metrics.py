"""Tests for afr_aug.metrics: hand-computed accuracies, shot groups and evaluate()."""

import math
import re

import numpy as np
import pytest
import torch
from torch import nn

from afr_aug.metrics import (
    evaluate,
    expected_calibration_error,
    per_class_accuracy,
    shot_accuracy,
    top1_accuracy,
)

# 3 classes, 8 samples; predictions chosen by hand:
#   class 0: 3 samples, 2 correct  -> 2/3
#   class 1: 3 samples, 3 correct  -> 1
#   class 2: 2 samples, 0 correct  -> 0
TARGETS = torch.tensor([0, 0, 0, 1, 1, 1, 2, 2])
PREDS = torch.tensor([0, 0, 1, 1, 1, 1, 0, 1])


def _logits(preds, num_classes=3):
    out = torch.full((len(preds), num_classes), -1.0)
    out[torch.arange(len(preds)), preds] = 2.0
    return out


def test_top1_labels_and_logits():
    assert top1_accuracy(PREDS, TARGETS) == pytest.approx(5 / 8)
    assert top1_accuracy(_logits(PREDS), TARGETS) == pytest.approx(5 / 8)
    assert top1_accuracy(PREDS.numpy(), TARGETS.tolist()) == pytest.approx(5 / 8)
    assert top1_accuracy(TARGETS, TARGETS) == 1.0
    assert isinstance(top1_accuracy(PREDS, TARGETS), float)


def test_per_class_hand_computed():
    acc = per_class_accuracy(PREDS, TARGETS, 3)
    assert acc.dtype == torch.float64 and acc.shape == (3,)
    assert torch.allclose(acc, torch.tensor([2 / 3, 1.0, 0.0], dtype=torch.float64))
    assert torch.equal(per_class_accuracy(_logits(PREDS), TARGETS, 3), acc)


def test_per_class_nan_for_absent_class():
    acc = per_class_accuracy(torch.tensor([0, 1, 3]), torch.tensor([0, 1, 1]), 4)
    assert acc[0] == 1.0 and acc[1] == 0.5
    assert math.isnan(acc[2]) and math.isnan(acc[3])


def test_shot_accuracy_groups():
    acc = torch.tensor([0.9, 0.8, 0.6, 0.4, 0.2, 0.0], dtype=torch.float64)
    counts = [1000, 101, 100, 20, 19, 1]
    res = shot_accuracy(acc, counts)
    assert res == pytest.approx({"many": 0.85, "med": 0.5, "few": 0.1})
    # CIFAR-10-LT (ratio 100) has no Few class
    c10 = [5000, 2997, 1796, 1077, 645, 387, 232, 139, 83, 50]
    res = shot_accuracy([1.0] * 8 + [0.5, 0.25], c10)
    assert res["many"] == 1.0 and res["med"] == pytest.approx(0.375) and res["few"] is None
    # custom thresholds, NaN classes left out, all-NaN group is None
    res = shot_accuracy([1.0, float("nan"), 0.5, float("nan")], [50, 40, 5, 4], many=30, few=10)
    assert res == {"many": 1.0, "med": None, "few": 0.5}


@pytest.mark.parametrize(
    "call, exc, match",
    [
        (lambda: top1_accuracy(PREDS[:7], TARGETS), ValueError, "outputs has 7 entries, targets 8"),
        (
            lambda: top1_accuracy(torch.zeros(2, 3, 4), TARGETS[:2]),
            ValueError,
            r"outputs must be logits \[N, C\] or predicted labels \[N\], got shape \(2, 3, 4\)",
        ),
        (
            lambda: top1_accuracy(PREDS, TARGETS.view(2, 4)),
            ValueError,
            r"targets must be 1-D \(one label per item\), got shape \(2, 4\)",
        ),
        (
            lambda: top1_accuracy(PREDS.float(), TARGETS),
            TypeError,
            "1-D outputs are read as predicted labels .* must be integers, got dtype torch.float32",
        ),
        (
            lambda: top1_accuracy(PREDS, TARGETS.float() + 0.5),
            TypeError,
            "targets must be integer class indices, got fractional",
        ),
        (
            lambda: top1_accuracy(_logits(PREDS), TARGETS + 1),
            ValueError,
            r"targets must lie in \[0, 2\] for 3 classes, got 3",
        ),
        (
            lambda: top1_accuracy(
                torch.tensor([], dtype=torch.long), torch.tensor([], dtype=torch.long)
            ),
            ValueError,
            "outputs and targets are empty",
        ),
        (
            lambda: per_class_accuracy(PREDS, TARGETS, 2),
            ValueError,
            r"targets must lie in \[0, 1\] for 2 classes, got 2",
        ),
        (
            lambda: per_class_accuracy(PREDS, torch.tensor([0, 0, 0, 1, 1, 1, -1, 2]), 3),
            ValueError,
            r"targets must be >= 0, got -1",
        ),
        (
            lambda: per_class_accuracy(torch.tensor([0, 5]), torch.tensor([0, 1]), 3),
            ValueError,
            r"predicted labels must lie in \[0, 2\] for 3 classes, got 5",
        ),
        (
            lambda: per_class_accuracy(_logits(PREDS), TARGETS, 4),
            ValueError,
            "outputs has 3 columns .*, num_classes is 4",
        ),
        (
            lambda: per_class_accuracy(PREDS, TARGETS, 0),
            ValueError,
            "num_classes must be >= 1, got 0",
        ),
        (lambda: per_class_accuracy(PREDS, TARGETS, 3.0), TypeError, "num_classes must be an int"),
        (
            lambda: shot_accuracy([0.5, 0.5], [100, 10, 1]),
            ValueError,
            "per_class_acc has 2 entries, class_counts 3",
        ),
        (
            lambda: shot_accuracy([[0.5, 0.5]], [100, 10]),
            ValueError,
            r"per_class_acc must be 1-D \[C\]",
        ),
        (
            lambda: shot_accuracy([0.5, 0.5], [100, 10], many=10, few=50),
            ValueError,
            "few must be <= many",
        ),
    ],
)
def test_errors(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


# --------------------------------------------------------------------------------------------
# evaluate
# --------------------------------------------------------------------------------------------


class LookupModel(nn.Module):
    """Returns fixed logits for sample ids fed as inputs; records the mode seen in forward."""

    def __init__(self, preds, num_classes=3):
        super().__init__()
        self.register_buffer("table", _logits(preds, num_classes))
        self.scale = nn.Parameter(torch.ones(()))
        self.bn = nn.BatchNorm1d(1)
        self.seen = []

    def forward(self, x):
        self.seen.append((self.training, self.bn.training, torch.is_grad_enabled()))
        return self.table[x.long().view(-1)] * self.scale


def _loader(batch=3):
    ids = torch.arange(len(TARGETS))
    return [(ids[i : i + batch], TARGETS[i : i + batch]) for i in range(0, len(ids), batch)]


def test_evaluate_hand_computed_and_restores_mode():
    model = LookupModel(PREDS)
    model.train()
    res = evaluate(model, _loader(), class_counts=[500, 50, 5])
    assert res["top1"] == pytest.approx(5 / 8)
    assert res["per_class"] == pytest.approx([2 / 3, 1.0, 0.0])
    assert isinstance(res["per_class"], list)
    assert res["many"] == pytest.approx(2 / 3) and res["med"] == 1.0 and res["few"] == 0.0
    assert all(seen == (False, False, False) for seen in model.seen)  # eval + no_grad inside
    assert model.training and model.bn.training  # restored
    model.eval()
    evaluate(model, _loader())
    assert not model.training and not model.bn.training


def test_evaluate_restores_mixed_modes_and_after_error():
    model = LookupModel(PREDS)
    model.train()
    model.bn.eval()  # e.g. frozen BatchNorm inside a training model
    evaluate(model, _loader())
    assert model.training and not model.bn.training

    def bad_loader():
        yield torch.arange(3), TARGETS[:3]
        yield "not a batch"

    with pytest.raises(
        TypeError, match=r"loader must yield \(images, labels\[, indices\]\); batch 1 is str"
    ):
        evaluate(model, bad_loader())
    assert model.training and not model.bn.training


def test_evaluate_without_counts_infers_classes_and_extra_items():
    model = LookupModel(PREDS, num_classes=4)
    ids = torch.arange(len(TARGETS))
    loader = [(ids, TARGETS, torch.zeros(8))]  # extra items are ignored
    res = evaluate(model, loader, device="cpu")
    assert len(res["per_class"]) == 4 and math.isnan(res["per_class"][3])
    assert res["many"] is None and res["med"] is None and res["few"] is None
    res = evaluate(model, loader, num_classes=4, progress=True)
    assert res["top1"] == pytest.approx(5 / 8)


def test_evaluate_shows_a_progress_bar_by_default(capsys):
    model = LookupModel(PREDS)
    evaluate(model, _loader())
    assert "evaluate" in capsys.readouterr().err  # tqdm's bar, cleared when done
    evaluate(model, _loader(), progress=False)
    assert capsys.readouterr().err == ""


def test_evaluate_does_not_move_model():
    model = LookupModel(PREDS)
    device_before = model.scale.device
    evaluate(model, _loader(), device=torch.device("cpu"))
    assert model.scale.device == device_before and model.table.device == device_before


def test_evaluate_with_real_dataloader():
    from torch.utils.data import DataLoader, TensorDataset

    torch.manual_seed(0)
    x = torch.randn(30, 5)
    y = torch.randint(0, 3, (30,))
    model = nn.Linear(5, 3)
    loader = DataLoader(TensorDataset(x, y), batch_size=7)
    res = evaluate(model, loader, num_classes=3)
    with torch.no_grad():
        expected = top1_accuracy(model(x), y)
    assert res["top1"] == pytest.approx(expected)
    assert np.allclose(
        np.nan_to_num(res["per_class"], nan=-1),
        np.nan_to_num(per_class_accuracy(model(x).detach(), y, 3).numpy(), nan=-1),
    )


def test_evaluate_logit_scale_changes_calibration_not_accuracy():
    # a cosine classifier's outputs are in [-1, 1]; its loss trains s * cos (LDAM: s = 30)
    model = LookupModel(PREDS)
    with torch.no_grad():
        model.scale.fill_(0.1)
    plain = evaluate(model, _loader(), progress=False)
    scaled = evaluate(model, _loader(), progress=False, logit_scale=10.0)
    assert scaled["top1"] == plain["top1"] and scaled["per_class"] == plain["per_class"]
    ids = torch.arange(len(TARGETS))
    assert plain["ece"] == pytest.approx(expected_calibration_error(model(ids), TARGETS))
    assert scaled["ece"] == pytest.approx(expected_calibration_error(model(ids) * 10, TARGETS))
    assert scaled["ece"] != pytest.approx(plain["ece"])


def test_evaluate_logit_scale_torchvision_model_on_an_image_folder(tmp_path):
    # a user's torchvision classifier on their own ImageFolder (read from disk batch by batch,
    # 64 x 80 images): logit_scale scales what the softmax sees and nothing else
    from PIL import Image
    from torch.utils.data import DataLoader
    from torchvision import datasets, models, transforms

    rng = np.random.default_rng(0)
    for c in ("cat", "dog", "fox"):
        (tmp_path / c).mkdir()
        for i in range(3):
            img = rng.integers(0, 256, (64, 80, 3), dtype=np.uint8)
            Image.fromarray(img).save(tmp_path / c / f"{i}.png")
    folder = datasets.ImageFolder(tmp_path, transform=transforms.ToTensor())
    torch.manual_seed(0)
    model = models.resnet18(num_classes=3).eval()
    loader = DataLoader(folder, batch_size=4)
    with torch.no_grad():
        logits = torch.cat([model(x) for x, _ in loader])
    targets = torch.tensor(folder.targets)
    res = evaluate(model, loader, num_classes=3, progress=False, logit_scale=2.5)
    assert res["top1"] == pytest.approx(top1_accuracy(logits, targets))
    assert res["ece"] == pytest.approx(expected_calibration_error(logits * 2.5, targets), abs=1e-6)
    assert res["ece"] != pytest.approx(expected_calibration_error(logits, targets), abs=1e-3)
    assert not model.training


@pytest.mark.parametrize(
    "bad, exc, match",
    [
        (0, ValueError, "logit_scale must be a positive finite number, got 0"),
        (-1.0, ValueError, "logit_scale must be a positive finite number, got -1.0"),
        (float("nan"), ValueError, "logit_scale must be a positive finite number, got nan"),
        (float("inf"), ValueError, "logit_scale must be a positive finite number, got inf"),
        (True, TypeError, "logit_scale must be a number, got bool"),
        ("30", TypeError, "logit_scale must be a number, got str"),
    ],
)
def test_evaluate_rejects_bad_logit_scale(bad, exc, match):
    with pytest.raises(exc, match=match):
        evaluate(LookupModel(PREDS), _loader(), logit_scale=bad)


@pytest.mark.parametrize(
    "kwargs, loader, exc, match",
    [
        (
            {"class_counts": [5, 5]},
            None,
            ValueError,
            "model returns 3 logits per sample, num_classes is 2",
        ),
        (
            {"num_classes": 3, "class_counts": [5, 5]},
            None,
            ValueError,
            "class_counts has 2 entries, num_classes is 3",
        ),
        ({}, [], ValueError, "loader yielded no batch"),
        (
            {},
            [(torch.arange(3), TARGETS[:2])],
            ValueError,
            "batch 0: labels has 2 entries, model outputs 3",
        ),
        (
            {},
            [(torch.arange(3), torch.tensor([0, 1, 7]))],
            ValueError,
            r"targets must lie in \[0, 2\] for 3 classes, got 7",
        ),
        (
            {},
            [([0, 1, 2], TARGETS[:3])],
            TypeError,
            "loader must yield image tensors; batch 0 has list",
        ),
        ({"num_classes": 0}, None, ValueError, "num_classes must be >= 1, got 0"),
        ({"num_classes": 3.0}, None, TypeError, "num_classes must be an int, got float"),
    ],
)
def test_evaluate_errors(kwargs, loader, exc, match):
    model = LookupModel(PREDS)
    model.train()
    with pytest.raises(exc, match=match):
        evaluate(model, _loader() if loader is None else loader, **kwargs)
    assert model.training


def test_evaluate_rejects_non_module_and_non_logits():
    with pytest.raises(TypeError, match=re.escape("model must be a torch.nn.Module, got function")):
        evaluate(lambda x: x, _loader())

    class Flat(nn.Module):
        def forward(self, x):
            return x.float()

    with pytest.raises(
        ValueError, match=r"batch 0: model\(x\) must return logits \[N, C\], got \(3,\)"
    ):
        evaluate(Flat(), _loader())


def test_running_accuracy_counts_per_class_and_overall():
    from afr_aug.metrics import RunningAccuracy

    acc = RunningAccuracy(3)
    assert torch.isnan(acc.per_class()).all() and acc.overall() != acc.overall()
    acc.update(torch.tensor([[1.0, 0, 0], [0, 1.0, 0], [1.0, 0, 0]]), torch.tensor([0, 1, 1]))
    acc.update(torch.tensor([2, 2]), torch.tensor([2, 0]))  # predictions work too
    assert acc.per_class().tolist() == pytest.approx([0.5, 0.5, 1.0])
    assert acc.overall() == pytest.approx(3 / 5)
    other = RunningAccuracy(3)
    other.load_state_dict(acc.state_dict())
    assert other.per_class().tolist() == acc.per_class().tolist()
    acc.reset()
    assert acc.overall() != acc.overall()
    with pytest.raises(ValueError, match="columns"):
        acc.update(torch.zeros(2, 4), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="num_classes"):
        RunningAccuracy(0)
