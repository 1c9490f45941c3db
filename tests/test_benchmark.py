"""The reference benchmark end to end on the real CIFAR-10-LT (smoke preset), and --resume."""

import importlib.util
import json
import re

import pytest
import torch

from benchmarks import reproduce
from benchmarks.common import METHODS, load_checkpoint

from conftest import cifar10_root, needs_cifar10

pytestmark = needs_cifar10


def smoke(out, *extra):
    return reproduce.main(["--preset", "smoke", "--dataset", "cifar10-lt", "--data-root",
                           str(cifar10_root()), "--out", str(out), "--no-progress", *extra])


def test_smoke_every_method_writes_schema(tmp_path):
    assert smoke(tmp_path) == 0
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["dataset"] == "cifar10-lt" and results["imbalance_ratio"] == 100
    assert results["device"].startswith("cpu")
    assert [r["method"] for r in results["runs"]] == list(METHODS)
    keys = {"method", "epochs", "seed", "top1", "many", "med", "few", "per_class", "seconds", "img_per_s"}
    for r in results["runs"]:
        assert keys <= set(r)
        assert 0 <= r["top1"] <= 1 and len(r["per_class"]) == 10
        assert r["seconds"] > 0 and r["img_per_s"] > 0 and r["seed"] == 0
        for group in ("many", "med", "few"):
            assert r[group] is None or 0 <= r[group] <= 1
    assert {r["epochs"] for r in results["runs"]} == {2, 4}
    table = (tmp_path / "results.md").read_text()
    assert "AFR" in table and "BS+CMO" in table
    assert not re.search(r"\d ± \d", table)            # one seed: no spread in the cells
    if importlib.util.find_spec("matplotlib") is None:
        pytest.skip("matplotlib (the 'plot' extra) is not installed: no plots to check")
    for name in ("shot_accuracy.png", "per_class.png", "class_distribution.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_resume_after_kill_gives_the_same_result(tmp_path):
    args = ("--methods", "bs_cmo", "afr")
    assert smoke(tmp_path / "straight", *args) == 0
    # killed after 3 epochs: bs_cmo finished (2), afr after its first epoch
    assert smoke(tmp_path / "killed", *args, "--stop-after-epochs", "3") == 75
    state = load_checkpoint(str(tmp_path / "killed" / "ckpt" / "afr-seed0.pt"))
    assert state["epoch"] == 1 and not state["done"]
    assert smoke(tmp_path / "killed", *args, "--resume") == 0
    a = json.loads((tmp_path / "straight" / "results.json").read_text())["runs"]
    b = json.loads((tmp_path / "killed" / "results.json").read_text())["runs"]
    for ra, rb in zip(a, b):
        assert ra["method"] == rb["method"]
        assert ra["top1"] == rb["top1"] and ra["per_class"] == rb["per_class"]
    wa = load_checkpoint(str(tmp_path / "straight" / "ckpt" / "afr-seed0.pt"))["model"]
    wb = load_checkpoint(str(tmp_path / "killed" / "ckpt" / "afr-seed0.pt"))["model"]
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_multiple_seeds_give_mean_and_std(tmp_path):
    assert smoke(tmp_path, "--methods", "bs", "--seeds", "0", "1", "--max-iters", "1") == 0
    results = json.loads((tmp_path / "results.json").read_text())
    assert [r["seed"] for r in results["runs"]] == [0, 1]
    assert re.search(r"\d ± \d", (tmp_path / "results.md").read_text())


def test_bad_method_is_rejected(capsys):
    with pytest.raises(SystemExit):
        reproduce.parse_args(["--methods", "nope"])
    assert "invalid choice" in capsys.readouterr().err
