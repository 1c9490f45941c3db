"""Issue 10's long-tail toolbox: logit adjustment, CMO's effective prior, calibration, readers."""

import json
import math
import re

import numpy as np
import pytest
import torch

from afr_aug import LongTailSampler
from afr_aug.data import ImageList, INaturalist
from afr_aug.losses import BalancedSoftmaxLoss, LogitAdjustedLoss, adjust_logits
from afr_aug.metrics import calibration_bins, expected_calibration_error, shot_groups
from afr_aug.mixing import CutMixBalancer, cutmix_area_mean, effective_class_counts


# --- logit adjustment --------------------------------------------------------------------------
def test_logit_adjusted_loss_by_hand_and_tau():
    counts = [6, 3, 1]
    logits = torch.tensor([[1.0, 0.0, -1.0], [0.5, 0.5, 0.5]])
    y = torch.tensor([2, 0])
    prior = [0.6, 0.3, 0.1]
    for tau in (0.0, 1.0, 1.5):
        want = 0.0
        for row, label in zip(logits.tolist(), y.tolist()):
            z = [v + tau * math.log(p) for v, p in zip(row, prior)]
            want += -(z[label] - math.log(sum(math.exp(v) for v in z))) / 2
        assert LogitAdjustedLoss(counts, tau=tau)(logits, y).item() == pytest.approx(want, rel=1e-6)
    # tau = 1 is Balanced Softmax (log prior and log counts differ by a constant per row)
    assert LogitAdjustedLoss(counts)(logits, y).item() == pytest.approx(
        BalancedSoftmaxLoss(counts)(logits, y).item(), rel=1e-6
    )
    with pytest.raises(ValueError, match="tau"):
        LogitAdjustedLoss(counts, tau=-1)
    with pytest.raises(ValueError, match="3 entries"):
        LogitAdjustedLoss(counts)(torch.zeros(2, 4), y)


def test_adjust_logits_by_hand_keeps_device_and_dtype():
    logits = torch.tensor([[2.0, 1.0]], dtype=torch.float64)
    out = adjust_logits(logits, [9, 1], tau=0.5)
    assert out.dtype == torch.float64
    assert out[0].tolist() == pytest.approx([2.0 - 0.5 * math.log(0.9), 1.0 - 0.5 * math.log(0.1)])
    assert torch.equal(logits, torch.tensor([[2.0, 1.0]], dtype=torch.float64))  # not in place
    meta = adjust_logits(torch.zeros(3, 2, device="meta"), [1, 1])
    assert meta.device.type == "meta"
    with pytest.raises(ValueError, match="2 entries"):
        adjust_logits(torch.zeros(1, 3), [1, 1])
    with pytest.raises(ValueError, match="positive"):
        adjust_logits(torch.zeros(1, 2), [1, 0])


# --- the prior CMO trains on -------------------------------------------------------------------
def test_cutmix_area_mean_matches_the_balancer_boxes():
    mixer = CutMixBalancer(p=1.0, seed=0)
    for h, w in ((32, 32), (7, 20)):
        boxes = [mixer.box(h, w) for _ in range(40000)]
        mc = np.mean([(y1 - y0) * (x1 - x0) / (h * w) for y0, y1, x0, x1 in boxes])
        assert cutmix_area_mean(h, w) == pytest.approx(mc, abs=0.005)
    assert cutmix_area_mean(32, 32) == pytest.approx(0.299, abs=0.001)


def test_effective_counts_give_the_issue_numbers_on_cifar10_lt():
    counts = [5000, 2997, 1796, 1077, 645, 387, 232, 139, 83, 50]
    eff = effective_class_counts(counts, p=0.5)
    assert float(eff.sum()) == pytest.approx(sum(counts))
    gain = (eff / torch.tensor(counts, dtype=torch.float64)).log()
    assert float(gain[-1]) == pytest.approx(1.52, abs=0.02)  # tail: about +1.5 nats
    assert float(gain[0]) == pytest.approx(-0.12, abs=0.01)  # head: -0.12
    # no mixing, or a sampler that follows the counts (exponent 0): the counts themselves
    assert torch.allclose(effective_class_counts(counts, p=0.0), torch.tensor(counts).double())
    assert torch.allclose(
        effective_class_counts(counts, p=0.5, exponent=0.0), torch.tensor(counts).double()
    )
    # by hand with lam_mean given
    two = effective_class_counts([3, 1], p=1.0, lam_mean=0.5)
    assert two.tolist() == pytest.approx(
        [4 * (0.5 * 0.75 + 0.5 * 0.5), 4 * (0.5 * 0.25 + 0.5 * 0.5)]
    )
    BalancedSoftmaxLoss(eff.tolist())  # accepted as (fractional) counts
    with pytest.raises(ValueError, match="lam_mean"):
        effective_class_counts(counts, p=0.5, lam_mean=1.5)


def test_effective_counts_and_area_keep_their_old_keywords():
    counts = [500, 50, 5]
    with pytest.warns(DeprecationWarning, match="'sampler_alpha' is deprecated, use 'exponent'"):
        old = effective_class_counts(counts, p=0.5, sampler_alpha=0.5)
    assert torch.equal(old, effective_class_counts(counts, p=0.5, exponent=0.5))
    with pytest.warns(DeprecationWarning, match="'mix_alpha' is deprecated, use 'beta'"):
        old = effective_class_counts(counts, p=0.5, mix_alpha=2.0)
    assert torch.equal(old, effective_class_counts(counts, p=0.5, beta=2.0))
    assert not torch.equal(old, effective_class_counts(counts, p=0.5))
    with pytest.warns(DeprecationWarning, match="'alpha' is deprecated, use 'beta'"):
        assert cutmix_area_mean(8, 8, alpha=2.0) == cutmix_area_mean(8, 8, beta=2.0)


# --- calibration -------------------------------------------------------------------------------
def test_ece_by_hand():
    # confidences 0.85 (right), 0.85 (wrong), 0.65 (right) in 10 bins
    a, b = math.log(0.85 / 0.15), math.log(0.65 / 0.35)
    logits = torch.tensor([[a, 0.0], [a, 0.0], [0.0, b]], dtype=torch.float64)
    labels = torch.tensor([0, 1, 1])
    bins = calibration_bins(logits, labels, n_bins=10)
    assert bins["count"].tolist() == [0, 0, 0, 0, 0, 0, 1, 0, 2, 0]
    assert bins["accuracy"][8] == 0.5 and bins["confidence"][6] == pytest.approx(0.65)
    assert math.isnan(float(bins["accuracy"][0]))
    want = 2 / 3 * abs(0.85 - 0.5) + 1 / 3 * abs(0.65 - 1.0)
    assert expected_calibration_error(logits, labels, n_bins=10) == pytest.approx(want)
    # perfectly confident and right: 0
    assert expected_calibration_error(
        torch.tensor([[50.0, 0.0]]), torch.tensor([0])
    ) == pytest.approx(0, abs=1e-12)
    with pytest.raises(ValueError, match="NaN"):
        expected_calibration_error(torch.tensor([[float("nan"), 0.0]]), torch.tensor([0]))
    with pytest.raises(ValueError, match="n_bins"):
        expected_calibration_error(logits, labels, n_bins=0)


# --- readers -----------------------------------------------------------------------------------
def _images(root, names, size=(12, 10)):
    from PIL import Image

    for i, name in enumerate(names):
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", size, (10 * i, 0, 0)).save(path)


def test_image_list_reads_lazily_and_feeds_the_sampler(tmp_path):
    names = [f"train/c{c}/{i}.png" for c, n in enumerate([6, 3, 1]) for i in range(n)]
    _images(tmp_path, names)
    labels = [int(n.split("/")[1][1]) for n in names]
    (tmp_path / "ImageNet_LT_train.txt").write_text(
        "".join(f"{n} {y}\n" for n, y in zip(names, labels)) + "\n"
    )
    ds = ImageList(tmp_path, tmp_path / "ImageNet_LT_train.txt")
    assert ds.class_counts == [6, 3, 1] and ds.targets == labels and len(ds) == 10
    x, y = ds[9]
    assert x.shape == (3, 10, 12) and x.dtype == torch.float32 and y == 2
    assert float(x[0].max()) == pytest.approx(90 / 255)
    assert shot_groups(ds.class_counts, many=5, few=2) == ["many", "med", "few"]
    sampler = LongTailSampler(ds.targets, exponent=1.0, seed=0)
    drawn = torch.bincount(torch.tensor(ds.targets)[torch.tensor(list(iter(sampler)))], minlength=3)
    assert drawn.min() >= 1  # the one-image class is drawn too
    ds_t = ImageList(
        tmp_path, tmp_path / "ImageNet_LT_train.txt", transform=lambda im: im.size, num_classes=5
    )
    assert ds_t[0][0] == (12, 10) and ds_t.class_counts == [6, 3, 1, 0, 0]


def test_image_list_errors(tmp_path):
    (tmp_path / "bad.txt").write_text("a.jpg 0\nb.jpg\n")
    with pytest.raises(ValueError, match="line 2"):
        ImageList(tmp_path, tmp_path / "bad.txt")
    (tmp_path / "range.txt").write_text("a.jpg 3\n")
    with pytest.raises(ValueError, match="out of range"):
        ImageList(tmp_path, tmp_path / "range.txt", num_classes=2)
    (tmp_path / "empty.txt").write_text("\n")
    with pytest.raises(ValueError, match="no images"):
        ImageList(tmp_path, tmp_path / "empty.txt")
    ds = ImageList(tmp_path, tmp_path / "range.txt")
    with pytest.raises(FileNotFoundError, match=re.escape("a.jpg")):
        ds[0]


def test_inaturalist_json_and_the_lazy_afr_balancer(tmp_path):
    from afr_aug import AFRDataset

    names = [f"train_val2018/Plantae/{i}.jpg" for i in range(7)]
    _images(tmp_path, names, size=(8, 8))
    cats = [5, 5, 5, 5, 2, 2, 9]
    ann = {
        "images": [{"id": 100 + i, "file_name": n} for i, n in enumerate(names)],
        "annotations": [
            {"id": i, "image_id": 100 + i, "category_id": c} for i, c in enumerate(cats)
        ],
        "categories": [{"id": c, "name": f"sp{c}"} for c in (9, 2, 5)],
    }
    (tmp_path / "train2018.json").write_text(json.dumps(ann))
    ds = INaturalist(tmp_path, tmp_path / "train2018.json")
    assert ds.classes == ["sp2", "sp5", "sp9"] and ds.class_counts == [2, 4, 1]
    assert ds.targets == [1, 1, 1, 1, 0, 0, 2]
    balancer = AFRDataset(ds, num_classes=3, progress=False)  # labels from .targets: no image read
    assert len(balancer) == 12  # 3 classes x 4
    ann["annotations"].pop()
    (tmp_path / "broken.json").write_text(json.dumps(ann))
    with pytest.raises(ValueError, match="no annotation"):
        INaturalist(tmp_path, tmp_path / "broken.json")
    (tmp_path / "other.json").write_text(json.dumps({"foo": 1}))
    with pytest.raises(ValueError, match="not an iNaturalist"):
        INaturalist(tmp_path, tmp_path / "other.json")


def test_evaluate_reports_ece():
    from afr_aug.metrics import evaluate

    model = torch.nn.Linear(2, 2, bias=False)
    with torch.no_grad():
        model.weight.copy_(torch.eye(2) * 3)
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    y = torch.tensor([0, 1, 1])
    res = evaluate(model, [(x, y)])
    assert res["ece"] == pytest.approx(expected_calibration_error(model(x).detach(), y))
    cal = res["calibration"]
    assert sum(cal["count"]) == 3 and len(cal["count"]) == 15
    # softmax([3, 0]) = 0.9526 (bin 15) for all three; two of them right
    assert cal["count"][14] == 3 and cal["accuracy"][14] == pytest.approx(2 / 3)
    assert cal["confidence"][14] == pytest.approx(1 / (1 + math.exp(-3)))
    assert all(math.isnan(a) for a in cal["accuracy"][:14])
