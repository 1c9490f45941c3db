"""benchmarks/device_table.sh proven on the CPU (smoke preset), and the planner's arithmetic."""

import json
import os
import subprocess
from pathlib import Path

import pytest

from benchmarks import plan
from benchmarks.common import PAPER_METHODS as METHODS, Schedule

from conftest import needs_cifar10

ROOT = Path(__file__).resolve().parents[1]


def test_simulate_waits_for_bs_cmo_and_fills_the_jobs():
    seconds = {m: 10.0 for m in METHODS}
    # one job: everything in a row
    assert plan.simulate(["bs_cmo", "afr"], [0, 1], 1, seconds, 1.0) == 40.0
    # two jobs: both bs_cmo at once, then both afr; a slowdown stretches every run
    assert plan.simulate(["bs_cmo", "afr"], [0, 1], 2, seconds, 1.0) == 20.0
    assert plan.simulate(["bs_cmo", "afr"], [0, 1], 2, seconds, 1.5) == 30.0
    # afr needs its bs_cmo even when bs_cmo is not asked for: 2 in a row at best
    assert plan.simulate(["afr"], [0], 4, seconds, 1.0) == 20.0


def test_make_plan_falls_back_to_the_core_methods_and_names_what_it_left_out():
    s = Schedule(epochs=10, stage2_epochs=2, refresh_every=1)
    single = {"img_per_s": {"ce": 1000.0, "bs_cmo": 800.0, "stage2": 1000.0}, "refresh_s": 3.0}
    n = 1280                                 # 10 batches of 128
    assert plan.run_seconds("ce", n, s, single) == pytest.approx(10 * 1280 / 1000)
    assert plan.run_seconds("bs_cmo", n, s, single) == pytest.approx(10 * 1280 / 800)
    assert plan.run_seconds("afr", n, s, single) == pytest.approx(2 * 1280 / 1000 + 2 * 3.0)
    # two jobs reach 1.5x one job's rate: a slowdown of 2 * 800 / 1200
    concurrency = {1: 800.0, 2: 1200.0}
    roomy = plan.make_plan(single, concurrency, n, s, [0, 1, 2], budget_s=1000)
    assert roomy["fits"] and roomy["methods"] == list(METHODS) and roomy["left_out"] == []
    assert roomy["jobs"] == 2 and roomy["slowdown"] == pytest.approx(4 / 3, abs=1e-3)
    tight = plan.make_plan(single, concurrency, n, s, [0, 1, 2], budget_s=80)
    assert tight["methods"] == ["bs_cmo", "bs_cmo_ft", "afr"]
    assert tight["left_out"] == ["ce", "ce_drw", "ldam_drw", "bs"] and tight["fits"]
    hopeless = plan.make_plan(single, concurrency, n, s, [0, 1, 2], budget_s=1)
    assert not hopeless["fits"] and hopeless["methods"] == ["bs_cmo", "bs_cmo_ft", "afr"]


@needs_cifar10
def test_device_table_smoke_dry_run_on_the_cpu(tmp_path, cifar10_lt_pack):
    out = tmp_path / "table"
    env = dict(os.environ, AFR_TABLE_BUDGET_S="900", AFR_TABLE_SEEDS="0 1", OMP_NUM_THREADS="1")
    proc = subprocess.run(["bash", str(ROOT / "benchmarks" / "device_table.sh"), str(cifar10_lt_pack),
                           str(out), "--preset", "smoke"], env=env, capture_output=True,
                          text=True, timeout=1200)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    log = (out / "device_table.log").read_text()
    assert "== calibration" in log and "plan: --jobs" in log and "device_table.sh done" in log
    p = json.loads((out / "plan.json").read_text())
    assert p["fits"] and p["methods"] == list(METHODS) and p["jobs"] in (1, 2)
    r = json.loads((out / "results.json").read_text())
    assert sorted((x["method"], x["seed"]) for x in r["runs"]) == sorted(
        (m, s) for m in METHODS for s in (0, 1))
    md = (out / "results.md").read_text()
    assert "Paired difference" in md
    assert "torch" in (out / "environment.txt").read_text()
    assert len(list((out / "logs").glob("*.log"))) == 14
