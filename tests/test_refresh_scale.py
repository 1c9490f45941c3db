"""benchmarks.refresh_scale end to end on a tiny synthetic set: the report's schema, not timings."""

import json
import os

import torch

from afr_aug.bench import refresh_scale


def _positive(x):
    return isinstance(x, (int, float)) and not isinstance(x, bool) and x > 0


def test_tiny_run_prints_the_json_schema(tmp_path, capsys):
    result = refresh_scale.main(
        [
            "--images",
            "60",
            "--size",
            "8",
            "--classes",
            "4",
            "--batch-size",
            "32",
            "--calibration-images",
            "0",
            "--threads",
            "1",
            "--storage-dir",
            str(tmp_path),
            "--skip-cifar",
            "--sampler-labels",
            "1000",
        ]
    )
    last = capsys.readouterr().out.strip().splitlines()[-1]
    report = json.loads(last)
    assert report == json.loads(json.dumps(result))
    assert {
        "images",
        "size",
        "malloc",
        "dataset_mb",
        "attacked_mb",
        "memory",
        "disk",
        "calibration",
        "cifar10_lt",
        "sampler",
        "targets",
        "targets_beyond_batch",
        "device",
    } <= set(report)
    assert report["images"] == 60 and report["size"] == 8 and report["malloc"] == "fixed"
    assert _positive(report["dataset_mb"]) and _positive(report["attacked_mb"])
    for run in ("memory", "disk"):
        r = report[run]
        for key in ("img_per_s", "peak_rss_mb", "seconds"):
            assert _positive(r[key]), (run, key, r[key])
        assert r["attacked"] > 0
    assert report["memory"]["originals"] == report["disk"]["originals"] == 60
    assert report["calibration"] is None and report["targets_beyond_batch"] is None  # skipped
    assert report["memory"]["attacked"] == report["disk"]["attacked"]  # same seed, same model
    assert report["disk"]["file_mb"] > 0
    assert report["cifar10_lt"] is None  # --skip-cifar
    assert report["sampler"]["labels"] == 1000 and report["sampler"]["construct_s"] >= 0
    t = report["targets"]
    assert set(t) == {
        "disk_peak_below_25pct_dataset",
        "memory_peak_below_attacked_plus_25pct",
        "dataset_path_ge_0.8x_tensor",
    }
    assert isinstance(t["disk_peak_below_25pct_dataset"], bool)
    assert isinstance(t["memory_peak_below_attacked_plus_25pct"], bool)
    assert t["dataset_path_ge_0.8x_tensor"] is None
    assert report["device"].startswith("cpu (")


def test_compare_paths_schema():
    torch.manual_seed(0)
    images = torch.randint(0, 256, (48, 3, 8, 8), dtype=torch.uint8)
    labels = torch.tensor([0] * 30 + [1] * 12 + [2] * 6)
    r = refresh_scale.compare_paths(images, labels, 3, batch_size=16, warmup_images=8, repeats=2)
    assert r["images"] == 48
    assert [len(v) for v in r["runs_img_per_s"].values()] == [2, 2]  # tensor, Dataset
    assert r["tensor_img_per_s"] == max(r["runs_img_per_s"]["tensor"])
    for key in (
        "tensor_img_per_s",
        "dataset_img_per_s",
        "ratio",
        "tensor_seconds",
        "dataset_seconds",
    ):
        assert _positive(r[key]), key
    assert r["attacked"][0] == r["attacked"][1] > 0  # both paths attack the same images


def test_synthetic_dataset_is_deterministic_and_long_tailed():
    ds = refresh_scale.SyntheticLongTail(500, size=8, num_classes=5, imbalance_ratio=50)
    counts = torch.bincount(ds.targets, minlength=5)
    assert int(counts.sum()) == 500 and counts[0] > counts[-1] > 0
    a, la = ds[17]
    b, lb = refresh_scale.SyntheticLongTail(500, size=8, num_classes=5, imbalance_ratio=50)[17]
    assert torch.equal(a, b) and la == lb == int(ds.targets[17])
    assert a.dtype == torch.uint8 and tuple(a.shape) == (3, 8, 8)
    assert not torch.equal(ds[17][0], ds[18][0])


def test_targets_follow_the_definitions(monkeypatch, capsys):
    """The target arithmetic, with canned subprocess results (no refresh is run)."""

    def fake(peaks):
        def run_child(spec):
            kind = "memory" if spec["storage"] == "memory" else os.path.basename(spec["storage"])
            return {
                "img_per_s": 10.0,
                "seconds": 1.0,
                "cpu_seconds": 1.0,
                "peak_rss_mb": peaks[kind],
                "hwm_growth_mb": None,
                "retained_mb": 0.0,
                "baseline_rss_mb": 800.0,
                "originals": spec["images"],
                "minority": 0,
                "attacked": spec["images"] // 2,
            }

        return run_child

    args = ["--images", "4096", "--size", "32", "--skip-cifar", "--sampler-labels", "0"]
    # 4096 images of 3x32x32 = 12 MiB, 2048 attacked = 6 MiB
    monkeypatch.setattr(
        refresh_scale, "run_child", fake({"calibration": 40.0, "memory": 60.0, "disk": 45.0})
    )
    r = refresh_scale.main(args)
    assert r["dataset_mb"] == 12.0 and r["attacked_mb"] == 6.0
    # raw: disk 45 >= 0.25 x 12 = 3, memory 60 >= 1.25 x 6 = 7.5; beyond 40: 5 and 20
    assert r["targets"] == {
        "disk_peak_below_25pct_dataset": False,
        "memory_peak_below_attacked_plus_25pct": False,
        "dataset_path_ge_0.8x_tensor": None,
    }
    assert r["disk"]["beyond_batch_mb"] == 5.0 and r["memory"]["beyond_batch_mb"] == 20.0
    assert r["targets_beyond_batch"]["disk_peak_below_25pct_dataset"] is False
    assert r["targets_beyond_batch"]["memory_peak_below_attacked_plus_25pct"] is False

    monkeypatch.setattr(
        refresh_scale, "run_child", fake({"calibration": 40.0, "memory": 47.0, "disk": 42.5})
    )
    r = refresh_scale.main(args)
    assert r["targets"]["disk_peak_below_25pct_dataset"] is False
    assert r["targets_beyond_batch"] == {
        "disk_peak_below_25pct_dataset": True,
        "memory_peak_below_attacked_plus_25pct": True,
        "dataset_path_ge_0.8x_tensor": None,
    }
    out = capsys.readouterr().out.strip().splitlines()
    assert json.loads(out[-1]) == json.loads(json.dumps(r))
