"""examples/own_model.py end to end, as a user runs it, on a tiny long-tailed ImageFolder."""

import os
import re
import subprocess
import sys
from pathlib import Path

from conftest import cifar10_root, needs_cifar10

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "own_model.py"
TINY = [
    "--classes",
    "3",
    "--per-class-max",
    "24",
    "--ratio",
    "4",
    "--val-per-class",
    "6",
    "--size",
    "32",
    "--batch-size",
    "8",
    "--max-iters",
    "2",
    "--no-progress",
]


def run_example(cwd, *args):
    # one thread, as in the other tests: CI's two cores also run the DataLoader workers
    env = {**os.environ, "AFR_DATA": str(cifar10_root()), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, str(EXAMPLE), *TINY, *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


@needs_cifar10
def test_own_model_example_runs(tmp_path):
    out = run_example(
        tmp_path,
        "--out",
        "run",
        "--storage",
        str(tmp_path / "afr"),
        "--stage1-epochs",
        "1",
        "--stage2-epochs",
        "2",
        "--refresh-every",
        "1",
        "--num-workers",
        "2",
    )
    assert "per class [24, 12, 6]" in out  # the long-tailed ImageFolder
    assert "AFR embeds the input of '1.fc' (512-d)" in out  # resnet18's classifier input
    assert "stage 1: 1 epochs" in out and "stage 2: 2 epochs" in out
    assert out.count("stage 2 refresh:") == 2
    result = r"^result: top-1 \d+\.\d%  many -  med \d+\.\d%  few \d+\.\d%$"
    assert re.search(result, out, re.M), out
    train = tmp_path / "run" / "imagefolder" / "train"
    assert sorted(len(list(d.iterdir())) for d in train.iterdir()) == [6, 12, 24]
    assert len(list((tmp_path / "afr").glob("afr-adversarial-*.u8"))) == 2  # one per refresh

    # a second run with the same settings reuses the written folder
    files = {p: p.stat().st_mtime_ns for p in train.rglob("*.png")}
    out = run_example(
        tmp_path,
        "--out",
        "run",
        "--storage",
        "memory",
        "--stage1-epochs",
        "0",
        "--stage2-epochs",
        "0",
    )
    assert re.search(result, out, re.M), out
    assert {p: p.stat().st_mtime_ns for p in train.rglob("*.png")} == files
