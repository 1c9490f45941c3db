"""Tests for afr_aug.data: long-tailed counts/subsets, the CIFAR reader and shot groups."""

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import cifar10_root, needs_cifar10
from torch.utils.data import Subset

from afr_aug.data import (
    CIFARDataset,
    cifar_lt,
    load_cifar,
    long_tailed_counts,
    make_long_tailed,
    shot_groups,
)

CIFAR10_LT_100 = [5000, 2997, 1796, 1077, 645, 387, 232, 139, 83, 50]


# --------------------------------------------------------------------------------------------
# helpers: fabricated CIFAR folders
# --------------------------------------------------------------------------------------------


def _dump(path: Path, obj) -> None:
    with open(path, "wb") as f:
        pickle.dump(obj, f)


def write_fake_cifar10(root: Path, per_batch: int = 20, test_n: int = 10, seed: int = 0) -> Path:
    """cifar-10-batches-py/ with 5 train batches of ``per_batch`` images and a test batch."""
    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for k in range(1, 6):
        n = per_batch
        _dump(
            folder / f"data_batch_{k}",
            {
                "batch_label": f"training batch {k} of 5",
                "data": rng.integers(0, 256, size=(n, 3072), dtype=np.uint8),
                "labels": [int(i % 10) for i in range(n)],
                "filenames": [f"img_{k}_{i}.png" for i in range(n)],
            },
        )
    _dump(
        folder / "test_batch",
        {
            "batch_label": "testing batch 1 of 1",
            "data": rng.integers(0, 256, size=(test_n, 3072), dtype=np.uint8),
            "labels": [int(i % 10) for i in range(test_n)],
            "filenames": [f"test_{i}.png" for i in range(test_n)],
        },
    )
    _dump(
        folder / "batches.meta", {"label_names": [f"name{i}" for i in range(10)], "num_vis": 3072}
    )
    return folder


def write_fake_cifar100(
    root: Path, train_per_class: int = 6, test_per_class: int = 2, seed: int = 0
) -> Path:
    """cifar-100-python/ with ``train_per_class`` / ``test_per_class`` images per fine class."""
    rng = np.random.default_rng(seed)
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    for split, per in (("train", train_per_class), ("test", test_per_class)):
        fine = [c for _ in range(per) for c in range(100)]  # interleaved classes
        n = len(fine)
        _dump(
            folder / split,
            {
                "data": rng.integers(0, 256, size=(n, 3072), dtype=np.uint8),
                "fine_labels": fine,
                "coarse_labels": [c // 5 for c in fine],
                "filenames": [f"{split}_{i}.png" for i in range(n)],
                "batch_label": split,
            },
        )
    _dump(
        folder / "meta",
        {
            "fine_label_names": [f"fine{i}" for i in range(100)],
            "coarse_label_names": [f"coarse{i}" for i in range(20)],
        },
    )
    return folder


def _plant(path: Path, index: int, y: int, x: int, rgb) -> None:
    """Write an RGB value at pixel (y, x) of image ``index`` in the planar CIFAR layout."""
    with open(path, "rb") as f:
        batch = pickle.load(f, encoding="latin1")
    for plane, value in enumerate(rgb):
        batch["data"][index, plane * 1024 + y * 32 + x] = value
    _dump(path, batch)


# --------------------------------------------------------------------------------------------
# long_tailed_counts
# --------------------------------------------------------------------------------------------


def test_counts_cifar10_lt_exact():
    counts = long_tailed_counts(5000, 10, 100)
    assert counts == CIFAR10_LT_100
    assert sum(counts) == 12406
    assert all(isinstance(c, int) for c in counts)


def test_counts_cifar100_lt_exact():
    counts = long_tailed_counts(500, 100, 100)
    assert len(counts) == 100
    assert counts[0] == 500 and counts[-1] == 5
    assert sum(counts) == 10847
    assert all(a >= b for a, b in zip(counts, counts[1:]))


@pytest.mark.parametrize(
    "ratio, factor", [(100, 0.01), (50, 0.02), (10, 0.1), (200, 0.005), (20, 0.05)]
)
@pytest.mark.parametrize("n_max, classes", [(5000, 10), (500, 100)])
def test_factor_equals_ratio(ratio, factor, n_max, classes):
    assert long_tailed_counts(n_max, classes, factor) == long_tailed_counts(n_max, classes, ratio)
    assert long_tailed_counts(n_max, classes, float(ratio)) == long_tailed_counts(
        n_max, classes, ratio
    )


def test_counts_balanced_and_single_class():
    assert long_tailed_counts(7, 4, 1) == [7, 7, 7, 7]
    assert long_tailed_counts(7, 4, 1.0, profile="step") == [7, 7, 7, 7]
    assert long_tailed_counts(9, 1, 100) == [9]
    assert long_tailed_counts(9, 1, 100, profile="step") == [9]


def test_counts_step_profile():
    assert long_tailed_counts(5000, 10, 100, profile="step") == [5000] * 5 + [50] * 5
    # odd number of classes: the first C // 2 keep n_max
    assert long_tailed_counts(100, 5, 10, profile="step") == [100, 100, 10, 10, 10]


def test_counts_exact_integers_survive_float_rounding():
    # 4000 * 64 ** (-5/6) is exactly 125 but is computed as 124.99999999999999
    assert long_tailed_counts(4000, 7, 64)[5] == 125
    assert long_tailed_counts(640, 7, 64)[5] == 20
    assert long_tailed_counts(6, 100, 6)[-1] == 1


@pytest.mark.parametrize(
    "args, kwargs, exc, match",
    [
        ((0, 10), {}, ValueError, "n_max must be >= 1, got 0"),
        ((5000, 0), {}, ValueError, "num_classes must be >= 1, got 0"),
        ((5000.0, 10), {}, TypeError, "n_max must be an int"),
        ((5000, 10, 0), {}, ValueError, "imbalance_ratio must be a finite number > 0"),
        ((5000, 10, -5), {}, ValueError, "imbalance_ratio must be a finite number > 0"),
        ((5000, 10, float("nan")), {}, ValueError, "imbalance_ratio must be a finite number > 0"),
        ((5000, 10, "100"), {}, TypeError, "imbalance_ratio must be a number"),
        (
            (5000, 10, 100),
            {"profile": "linear"},
            ValueError,
            r"profile must be one of \['exp', 'step'\]",
        ),
        ((10, 10, 100), {}, ValueError, "leaves class 5 with 0 images"),
        ((10, 4, 100), {"profile": "step"}, ValueError, "leaves class 2 with 0 images"),
    ],
)
def test_counts_errors(args, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        long_tailed_counts(*args, **kwargs)


# --------------------------------------------------------------------------------------------
# make_long_tailed
# --------------------------------------------------------------------------------------------


def _balanced_targets(per_class=50, classes=5, seed=1):
    rng = np.random.default_rng(seed)
    return rng.permutation(np.repeat(np.arange(classes), per_class))


def test_make_long_tailed_counts_order_and_types():
    targets = _balanced_targets()
    idx = make_long_tailed(targets, imbalance_ratio=10, seed=0)
    expected = long_tailed_counts(50, 5, 10)
    assert idx.dtype == np.int64
    assert np.bincount(targets[idx]).tolist() == expected
    assert len(np.unique(idx)) == len(idx)
    # concatenated per class in label order, each class's indices ascending
    labels = targets[idx]
    assert (np.diff(labels) >= 0).all()
    for c in range(5):
        part = idx[labels == c]
        assert (np.diff(part) > 0).all()


def test_make_long_tailed_accepts_list_array_tensor():
    targets = _balanced_targets()
    a = make_long_tailed(targets, 10, seed=3)
    b = make_long_tailed(targets.tolist(), 10, seed=3)
    c = make_long_tailed(torch.as_tensor(targets), 10, seed=3)
    d = make_long_tailed(targets.astype(np.int32), 0.1, seed=3)
    assert (a == b).all() and (a == c).all() and (a == d).all()


def test_make_long_tailed_seeds():
    targets = _balanced_targets()
    assert (make_long_tailed(targets, 10, seed=5) == make_long_tailed(targets, 10, seed=5)).all()
    assert not np.array_equal(
        make_long_tailed(targets, 10, seed=5), make_long_tailed(targets, 10, seed=6)
    )


def test_make_long_tailed_head_uses_available_max_and_subset():
    # class 0 has the most images (8) and keeps all of them
    targets = [0] * 8 + [1] * 6 + [2] * 5
    idx = make_long_tailed(targets, imbalance_ratio=4, seed=0)
    assert (
        np.bincount(np.asarray(targets)[idx]).tolist() == long_tailed_counts(8, 3, 4) == [8, 4, 2]
    )
    assert idx[:8].tolist() == list(range(8))
    subset = Subset(list(zip(range(len(targets)), targets)), idx.tolist())
    assert [y for _, y in subset] == np.asarray(targets)[idx].tolist()


@pytest.mark.parametrize(
    "targets, kwargs, exc, match",
    [
        ([0, 0, 2, 2], {}, ValueError, r"class 1 has no images in targets"),
        (
            [0] * 10 + [1] * 2,
            {"imbalance_ratio": 2},
            ValueError,
            "class 1 has 2 images available but .* asks for 5",
        ),
        ([], {}, ValueError, "targets is empty"),
        ([[0, 1], [1, 0]], {}, ValueError, r"targets must be 1-D, got shape \(2, 2\)"),
        ([0.0, 1.0], {}, TypeError, "targets must hold integer labels, got dtype float64"),
        ([0, -1, 1], {}, ValueError, "targets must be non-negative class labels, got minimum -1"),
        ([0, 1] * 10, {"seed": 1.5}, TypeError, "seed must be an int"),
        (
            [0, 1] * 10,
            {"imbalance_ratio": 0},
            ValueError,
            "imbalance_ratio must be a finite number > 0",
        ),
    ],
)
def test_make_long_tailed_errors(targets, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        make_long_tailed(targets, **kwargs)


# --------------------------------------------------------------------------------------------
# shot_groups
# --------------------------------------------------------------------------------------------


def test_shot_groups_boundaries():
    assert shot_groups([5000, 101, 100, 50, 20, 19, 0]) == [
        "many",
        "many",
        "med",
        "med",
        "med",
        "few",
        "few",
    ]
    assert shot_groups(CIFAR10_LT_100) == ["many"] * 8 + ["med"] * 2
    assert shot_groups([10, 5, 3], many=5, few=5) == ["many", "med", "few"]
    assert shot_groups(torch.tensor([150, 10])) == ["many", "few"]


@pytest.mark.parametrize(
    "args, kwargs, exc, match",
    [
        (
            ([10, 5],),
            {"many": 10, "few": 20},
            ValueError,
            "few must be <= many, got few=20, many=10",
        ),
        (([10, -1],), {}, ValueError, r"class_counts\[1\] must be >= 0, got -1"),
        (([10, 2.5],), {}, TypeError, r"class_counts\[1\] must be an int"),
        ((5,), {}, TypeError, "class_counts must be a sequence of ints, got int"),
    ],
)
def test_shot_groups_errors(args, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        shot_groups(*args, **kwargs)


# --------------------------------------------------------------------------------------------
# load_cifar / cifar_lt on fabricated folders
# --------------------------------------------------------------------------------------------


def test_fake_cifar10_shapes_labels_and_pixel_layout(tmp_path):
    folder = write_fake_cifar10(tmp_path)
    _plant(folder / "data_batch_2", index=3, y=5, x=7, rgb=(201, 17, 99))
    ds = load_cifar("cifar10", root=tmp_path)
    assert isinstance(ds, CIFARDataset)
    assert ds.data.shape == (100, 32, 32, 3) and ds.data.dtype == np.uint8
    assert ds.data.flags["C_CONTIGUOUS"]
    assert ds.targets == [i % 10 for i in range(20)] * 5
    assert all(type(t) is int for t in ds.targets)
    assert ds.classes == [f"name{i}" for i in range(10)]
    assert ds.class_counts == [10] * 10 and ds.indices is None
    i = 20 + 3  # image 3 of the second batch
    assert tuple(ds.data[i, 5, 7]) == (201, 17, 99)
    img, y = ds[i]
    assert img.dtype == torch.float32 and img.shape == (3, 32, 32)
    assert torch.allclose(img[:, 5, 7], torch.tensor([201, 17, 99]) / 255.0)
    assert float(img.min()) >= 0.0 and float(img.max()) <= 1.0
    assert y == ds.targets[i]

    test = load_cifar("cifar10", root=tmp_path, train=False)
    assert len(test) == 10 and test.targets == list(range(10))


def test_fake_cifar100_shapes_labels_and_pixel_layout(tmp_path):
    folder = write_fake_cifar100(tmp_path)
    _plant(folder / "train", index=123, y=31, x=0, rgb=(255, 1, 2))
    ds = load_cifar("cifar100", root=tmp_path)
    assert ds.data.shape == (600, 32, 32, 3) and ds.data.dtype == np.uint8
    assert len(ds.classes) == 100 and ds.classes[42] == "fine42"
    assert ds.targets[:3] == [0, 1, 2]  # fine labels, not coarse
    assert ds.targets[123] == 23 and max(ds.targets) == 99
    assert ds.class_counts == [6] * 100
    assert tuple(ds.data[123, 31, 0]) == (255, 1, 2)
    test = load_cifar("CIFAR-100", root=tmp_path, train=False)
    assert len(test) == 200 and test.class_counts == [2] * 100


def test_transform_receives_pil_image(tmp_path):
    import torchvision.transforms as T
    from PIL import Image

    write_fake_cifar10(tmp_path, per_batch=2, test_n=2)
    seen = []

    def spy(img):
        seen.append(img)
        return T.ToTensor()(img)

    ds = load_cifar("cifar10", root=tmp_path, transform=spy)
    img, _ = ds[1]
    assert isinstance(seen[0], Image.Image) and seen[0].size == (32, 32) and seen[0].mode == "RGB"
    assert torch.allclose(img, torch.from_numpy(ds.data[1]).permute(2, 0, 1).float() / 255)


def test_cifar_lt_fake_cifar100(tmp_path):
    write_fake_cifar100(tmp_path)
    full = load_cifar("cifar100", root=tmp_path)
    lt = cifar_lt("cifar100", tmp_path, imbalance_ratio=6, seed=1)
    expected = long_tailed_counts(6, 100, 6)
    assert expected[0] == 6 and expected[-1] == 1
    assert lt.class_counts == expected and len(lt) == sum(expected)
    assert np.bincount(lt.targets, minlength=100).tolist() == expected
    assert lt.indices.dtype == np.int64 and len(np.unique(lt.indices)) == len(lt)
    assert np.array_equal(lt.data, full.data[lt.indices])
    assert lt.targets == [full.targets[i] for i in lt.indices]
    assert lt.classes == full.classes
    assert (cifar_lt("cifar100", tmp_path, imbalance_ratio=6, seed=1).indices == lt.indices).all()
    img, y = lt[0]
    assert img.shape == (3, 32, 32) and y == lt.targets[0]


def test_root_from_env_cwd_and_batches_folder(tmp_path, monkeypatch):
    write_fake_cifar10(tmp_path / "env", per_batch=2, test_n=2)
    monkeypatch.setenv("AFR_DATA", str(tmp_path / "env"))
    assert len(load_cifar("cifar10")) == 10
    # root may also point at the batches folder itself
    assert len(load_cifar("cifar10", root=tmp_path / "env" / "cifar-10-batches-py")) == 10
    # ./data is the fallback when AFR_DATA is unset
    monkeypatch.delenv("AFR_DATA")
    write_fake_cifar10(tmp_path / "cwd" / "data", per_batch=3, test_n=2)
    monkeypatch.chdir(tmp_path / "cwd")
    assert len(load_cifar("cifar10")) == 15


def test_missing_folder_error_lists_places(tmp_path, monkeypatch):
    monkeypatch.setenv("AFR_DATA", str(tmp_path / "nowhere"))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError, match="AFR_DATA") as info:
        load_cifar("cifar10")
    msg = str(info.value)
    assert str((tmp_path / "nowhere" / "cifar-10-batches-py").resolve()) in msg
    assert str((tmp_path / "data" / "cifar-10-batches-py").resolve()) in msg
    assert "root=" in msg and "download=True" in msg
    with pytest.raises(FileNotFoundError, match="cifar-100-python"):
        load_cifar("cifar100", root=tmp_path / "other")


def test_download_goes_through_torchvision_then_own_reader(tmp_path, monkeypatch):
    import torchvision

    calls = []

    class FakeCIFAR100:
        def __init__(self, root, train=True, download=False):
            calls.append((root, train, download))
            write_fake_cifar100(Path(root), train_per_class=1, test_per_class=1)

    monkeypatch.setattr(torchvision.datasets, "CIFAR100", FakeCIFAR100)
    ds = load_cifar("cifar100", root=tmp_path / "dl", train=False, download=True)
    assert calls == [(str(tmp_path / "dl"), False, True)]
    assert isinstance(ds, CIFARDataset) and len(ds) == 100
    # second call finds the folder and does not download again
    load_cifar("cifar100", root=tmp_path / "dl", download=True)
    assert len(calls) == 1


@pytest.mark.parametrize(
    "name, exc, match",
    [
        ("imagenet", ValueError, "unknown dataset 'imagenet'; expected 'cifar10' or 'cifar100'"),
        (10, TypeError, "name must be a str"),
    ],
)
def test_unknown_name(tmp_path, name, exc, match):
    with pytest.raises(exc, match=match):
        load_cifar(name, root=tmp_path)


def test_corrupt_batches(tmp_path):
    folder = write_fake_cifar10(tmp_path, per_batch=4, test_n=4)
    good = (folder / "data_batch_3").read_bytes()

    (folder / "data_batch_3").write_bytes(good[: len(good) // 2])
    with pytest.raises(ValueError, match="data_batch_3: it is truncated or corrupt"):
        load_cifar("cifar10", root=tmp_path)

    _dump(folder / "data_batch_3", {"data": np.zeros((4, 3000), np.uint8), "labels": [0] * 4})
    with pytest.raises(
        ValueError, match=r"'data' should be uint8 of shape N x 3072, got uint8 \(4, 3000\)"
    ):
        load_cifar("cifar10", root=tmp_path)

    _dump(folder / "data_batch_3", {"data": np.zeros((4, 3072), np.uint8), "labels": [0] * 3})
    with pytest.raises(ValueError, match="'labels' has 3 entries, 'data' 4 images"):
        load_cifar("cifar10", root=tmp_path)

    _dump(folder / "data_batch_3", {"data": np.zeros((4, 3072), np.uint8), "labels": [0, 1, 2, 10]})
    with pytest.raises(ValueError, match=r"'labels' should be ints in \[0, 10\)"):
        load_cifar("cifar10", root=tmp_path)

    _dump(folder / "data_batch_3", {"labels": [0] * 4})
    with pytest.raises(ValueError, match="has no 'data' entry"):
        load_cifar("cifar10", root=tmp_path)

    (folder / "data_batch_3").unlink()
    with pytest.raises(FileNotFoundError, match="data_batch_3 is missing"):
        load_cifar("cifar10", root=tmp_path)
    # the test split does not need the training batches
    assert len(load_cifar("cifar10", root=tmp_path, train=False)) == 4

    _dump(folder / "batches.meta", {"label_names": ["a", "b"]})
    with pytest.raises(ValueError, match="'label_names' should list 10 class names, got 2 names"):
        load_cifar("cifar10", root=tmp_path, train=False)


@pytest.mark.parametrize(
    "data, targets, exc, match",
    [
        (np.zeros((2, 32, 32), np.uint8), [0, 1], ValueError, "data must have shape N x H x W x 3"),
        (
            np.zeros((2, 32, 32, 3), np.float32),
            [0, 1],
            TypeError,
            "data must be uint8, got float32",
        ),
        (
            np.zeros((2, 32, 32, 3), np.uint8),
            [0, 1, 1],
            ValueError,
            "targets has 3 entries, data 2 images",
        ),
        (np.zeros((2, 32, 32, 3), np.uint8), [0, 2], ValueError, r"targets must lie in \[0, 2\)"),
    ],
)
def test_dataset_constructor_errors(data, targets, exc, match):
    with pytest.raises(exc, match=match):
        CIFARDataset(data, targets, classes=["a", "b"])


# --------------------------------------------------------------------------------------------
# the real CIFAR-10 (skipped where absent)
# --------------------------------------------------------------------------------------------


REAL_ROOT = cifar10_root()
needs_real = needs_cifar10


@pytest.fixture(scope="module")
def real_train():
    return load_cifar("cifar10", root=REAL_ROOT)


@needs_real
def test_real_cifar10_train(real_train):
    ds = real_train
    assert len(ds) == 50000
    assert ds.data.shape == (50000, 32, 32, 3) and ds.data.dtype == np.uint8
    assert ds.class_counts == [5000] * 10
    assert ds.classes[0] == "airplane" and ds.classes[9] == "truck"
    mean = ds.data.reshape(-1, 3).mean(axis=0) / 255.0
    assert np.allclose(mean, (0.4913, 0.4821, 0.4465), atol=1e-3)


@needs_real
def test_real_cifar10_test():
    ds = load_cifar("cifar10", root=REAL_ROOT, train=False)
    assert len(ds) == 10000 and ds.class_counts == [1000] * 10


@needs_real
def test_real_cifar10_lt(real_train):
    lt = cifar_lt("cifar10", REAL_ROOT)
    assert len(lt) == 12406
    assert lt.class_counts == CIFAR10_LT_100
    assert np.bincount(lt.targets, minlength=10).tolist() == CIFAR10_LT_100
    assert len(np.unique(lt.indices)) == 12406
    assert lt.indices.min() >= 0 and lt.indices.max() < 50000
    full_targets = np.asarray(real_train.targets)
    assert (full_targets[lt.indices] == np.asarray(lt.targets)).all()
    assert np.array_equal(lt.data[::997], real_train.data[lt.indices[::997]])
    # the subset drawn by cifar_lt is make_long_tailed on the full targets: seeds checked cheaply
    assert (make_long_tailed(real_train.targets, 100, seed=0) == lt.indices).all()
    other = cifar_lt("cifar10", REAL_ROOT, seed=1)
    assert other.class_counts == CIFAR10_LT_100
    assert not np.array_equal(other.indices, lt.indices)


# --------------------------------------------------------------------------------------------
# the package layout
# --------------------------------------------------------------------------------------------


def test_package_keeps_its_public_names_and_does_not_import_metrics():
    import ast

    import afr_aug.data as data
    from afr_aug import metrics

    assert sorted(data.__all__) == sorted(
        [
            "long_tailed_counts",
            "make_long_tailed",
            "CIFARDataset",
            "load_cifar",
            "cifar_lt",
            "shot_groups",
            "ImageList",
            "INaturalist",
        ]
    )
    assert all(callable(getattr(data, name)) for name in data.__all__)
    assert data.shot_groups is metrics.shot_groups
    for path in Path(data.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                assert "metrics" not in (node.module or ""), f"{path.name} imports metrics"
