"""benchmarks/device_table.sh as the lent GPU machine will run it, rehearsed on the CPU; the
planner's arithmetic; the bundle; calibration that cannot stall."""

import json
import os
import subprocess
import sysconfig
import tarfile
import time
import venv
from pathlib import Path

import pytest
from conftest import needs_cifar10

import afr_aug
from afr_aug.bench import bundle, grid, plan, throughput
from afr_aug.bench.methods import PAPER_METHODS as METHODS
from afr_aug.bench.schedule import Schedule

ROOT = Path(__file__).resolve().parents[1]
CORE = ["bs_cmo", "bs_cmo_ft", "afr"]


def test_simulate_waits_for_bs_cmo_and_fills_the_jobs():
    seconds = dict.fromkeys(METHODS, 10.0)
    # one job: everything in a row
    assert plan.simulate(["bs_cmo", "afr"], [0, 1], 1, seconds, 1.0) == 40.0
    # two jobs: both bs_cmo at once, then both afr; a slowdown stretches every run
    assert plan.simulate(["bs_cmo", "afr"], [0, 1], 2, seconds, 1.0) == 20.0
    assert plan.simulate(["bs_cmo", "afr"], [0, 1], 2, seconds, 1.5) == 30.0
    # afr needs its bs_cmo even when bs_cmo is not asked for: 2 in a row at best
    assert plan.simulate(["afr"], [0], 4, seconds, 1.0) == 20.0
    # one bs_cmo feeding both seeds' afr: bs_cmo alone, then the two afr together
    assert plan.simulate(["bs_cmo", "afr"], [0, 1], 2, seconds, 1.0, stage1_seed=0) == 20.0


def test_simulate_slows_only_the_runs_that_really_share_the_device():
    # 2 concurrent runs go at 3/4 of their alone speed, 4 at 1/2
    f = plan.speed_factor({2: 1500.0, 4: 2000.0}, base=1000.0)
    assert f(1) == 1.0 and f(2) == pytest.approx(0.75) and f(4) == pytest.approx(0.5)
    assert f(3) == pytest.approx(1750 / 3000)  # interpolated aggregate
    assert f(8) == pytest.approx(2000 / 8000)  # no gain assumed beyond the largest J
    seconds = dict.fromkeys(METHODS, 10.0)
    # --jobs 4 but bs_cmo runs alone (its stage-2 runs wait): full speed for it, then the two
    # stage-2 runs together at 0.75: 10 + 10 / 0.75
    wall = plan.simulate(["bs_cmo", "bs_cmo_ft", "afr"], [0], 4, seconds, f)
    assert wall == pytest.approx(10 + 10 / 0.75)
    # a run that ends frees the device for the other: 5 s and 10 s of work, two at 0.75
    seconds = dict(seconds, ce=5.0)
    assert plan.simulate(["ce", "bs"], [0], 2, seconds, f) == pytest.approx(5 / 0.75 + 5)


def test_run_seconds_counts_the_fixed_costs():
    s = Schedule(epochs=10, stage2_epochs=2, refresh_every=1, eval_every=4)
    assert [e for e in range(1, 11) if s.evaluates(e, 1)] == [4, 8, 10]  # and the final one
    single = {
        "img_per_s": {"ce": 1000.0, "bs_cmo": 800.0, "stage2": 1000.0},
        "refresh_s": 3.0,
        "startup_s": 7.0,
        "eval_s": 0.5,
        "checkpoint_s": 0.1,
    }
    n = 1280
    assert plan.run_seconds("bs_cmo", n, s, single) == pytest.approx(
        7.0 + 10 * (1280 / 800 + 0.1) + 4 * 0.5
    )
    assert plan.run_seconds("afr", n, s, single) == pytest.approx(
        7.0 + 2 * (1280 / 1000 + 0.1) + 2 * 0.5 + 2 * 3.0
    )  # evaluated after epoch 2, then the final
    assert plan.run_seconds("bs_cmo_tau", n, s, single) == pytest.approx(7.5)


def test_make_plan_falls_back_grid_by_grid_and_names_what_it_left_out():
    s = Schedule(epochs=10, stage2_epochs=2, refresh_every=1)
    single = {"img_per_s": {"ce": 1000.0, "bs_cmo": 800.0, "stage2": 1000.0}, "refresh_s": 3.0}
    n = 1280  # 10 batches of 128
    assert plan.run_seconds("ce", n, s, single) == pytest.approx(10 * 1280 / 1000)
    assert plan.run_seconds("bs_cmo", n, s, single) == pytest.approx(10 * 1280 / 800)
    assert plan.run_seconds("afr", n, s, single) == pytest.approx(2 * 1280 / 1000 + 2 * 3.0)
    # two jobs reach 1.5x one job's rate
    concurrency = {1: 800.0, 2: 1200.0}
    roomy = plan.make_plan(single, concurrency, n, s, [0, 1, 2], budget_s=1000)
    assert roomy["fits"] and roomy["methods"] == list(METHODS) and roomy["left_out"] == []
    assert roomy["jobs"] == 2 and roomy["tier"] == "full" and roomy["stage1_seed"] is None
    tight = plan.make_plan(single, concurrency, n, s, [0, 1, 2], budget_s=80)
    assert tight["methods"] == CORE and tight["tier"] == "core" and tight["fits"]
    assert tight["left_out"] == [m for m in METHODS if m not in CORE]
    # the control redraws AFR's slots, so it pays a refresh like AFR does
    assert plan.run_seconds("bs_cmo_ft", n, s, single) == plan.run_seconds("afr", n, s, single)
    # three bs_cmo models do not fit, one feeding every stage-2 seed does
    one = plan.make_plan(single, concurrency, n, s, [0, 1, 2], budget_s=55)
    assert one["tier"] == "one_stage1" and one["stage1_seed"] == 0 and one["fits"]
    assert (
        one["projected_s"]
        <= 55
        < min(o["projected_s"] for o in one["options"] if o["tier"] == "core")
    )
    # nothing fits: the smallest grid anyway, to be cut and reported as partial rows
    hopeless = plan.make_plan(single, concurrency, n, s, [0, 1, 2], budget_s=1)
    assert not hopeless["fits"] and hopeless["partial"] and hopeless["methods"] == CORE[1:]
    assert hopeless["stage1_seed"] == 0 and hopeless["left_out"] == [
        m for m in METHODS if m not in CORE[1:]
    ]
    assert "does NOT fit" in plan.describe(hopeless) and "--stage1-seed 0" in plan.describe(
        hopeless
    )


def test_make_plan_never_plans_more_workers_than_runs():
    s = Schedule(epochs=10, stage2_epochs=2, refresh_every=1)
    single = {"img_per_s": {"ce": 1000.0, "bs_cmo": 800.0, "stage2": 1000.0}, "refresh_s": 3.0}
    p = plan.make_plan(single, {1: 800.0, 8: 6400.0}, 1280, s, [0], 1000, methods=CORE)
    assert all(o["jobs"] <= 3 for o in p["options"]) and p["jobs"] == 1


def test_default_plan_is_the_smallest_grid():
    d = plan.default_plan([0, 1, 2], "cuda")
    assert d["methods"] == CORE[1:] and d["stage1_seed"] == 0 and d["jobs"] == 6
    assert d["partial"] and not d["calibrated"] and d["projected_s"] is None
    assert plan.default_plan([0, 1, 2], "cpu")["jobs"] == 1
    assert "not calibrated" in plan.describe(d)


def test_aggregate_rate_is_all_images_over_one_shared_window():
    stats = [
        {"bs_cmo": 100.0, "images": 1000, "t0": 0.0, "t1": 10.0, "startup_s": 3.0},
        {"bs_cmo": 200.0, "images": 1000, "t0": 5.0, "t1": 10.0, "startup_s": 4.0},
    ]
    a = throughput.aggregate(stats)
    # the sum of per-process rates would say 300; 2000 images in 10 s is 200
    assert a["aggregate"] == 200.0 and a["window_s"] == 10.0 and a["startup_s"] == 4.0


def test_a_failing_concurrent_process_stops_the_round():
    # the children cannot read their data: the round fails at once instead of waiting at the
    # barrier for siblings that never come
    start = time.monotonic()
    with pytest.raises(RuntimeError, match="failed"):
        throughput.concurrent_rate(
            ["--data", "/nonexistent/pack.afrpack", "--device", "cpu"], 2, 1, timeout=120
        )
    assert time.monotonic() - start < 100


def test_barrier_gives_up_when_a_sibling_never_arrives(tmp_path):
    with pytest.raises(TimeoutError, match="1 of 2"):
        throughput._wait_for(str(tmp_path), 2, timeout=0.3)


def test_bundle_refuses_the_wrong_pack_and_names_its_parts(tmp_path):
    assert bundle.pack_name("cifar10-lt", 100) == "cifar10lt.afrpack"
    assert bundle.pack_name("cifar100-lt", 50) == "cifar100lt-r50.afrpack"
    fake = tmp_path / "x.afrpack"
    fake.write_bytes(b"not a pack")
    with pytest.raises(ValueError, match="not a cifar10-lt pack"):
        bundle.make_bundle(str(tmp_path / "b"), pack=str(fake))


def test_device_table_runs_python_from_the_python_variable(tmp_path):
    """Every step of device_table.sh runs $PYTHON: a stand-in that records its arguments and
    fails like a preflight that misses a package stops the script at step (1)."""
    calls = tmp_path / "calls.txt"
    fake = tmp_path / "fake-python"
    fake.write_text(f'#!/bin/sh\necho "$@" >> {calls}\nexit 3\n')
    fake.chmod(0o755)
    pack = tmp_path / "x.afrpack"
    pack.write_bytes(b"")
    proc = subprocess.run(
        ["bash", str(ROOT / "benchmarks" / "device_table.sh"), str(pack), str(tmp_path / "work")],
        env=dict(os.environ, PYTHON=str(fake)),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 3, proc.stdout + proc.stderr
    first = calls.read_text().split("\n")[0]  # the first call is the preflight
    assert "afr_aug/bench/preflight.py" in first and first.endswith(
        " --out " + str(tmp_path / "work" / "results" / "environment.txt")
    )
    assert f"python {fake}" in proc.stdout  # the log line names the interpreter


# -- the dress rehearsal ------------------------------------------------------------------------
def lent_image_python(root: Path) -> Path:
    """A Python like the lent GPU image's: this environment's packages (torch, numpy, scipy,
    tqdm, matplotlib, pip) but neither torchattacks nor an installed afr_aug."""
    site = Path(sysconfig.get_paths()["purelib"])
    shadow = root / "site"
    shadow.mkdir(parents=True)
    skip = ("torchattacks", "autoattack", "__editable__", "afr_aug")
    for entry in site.iterdir():
        if not entry.name.lower().startswith(skip):
            (shadow / entry.name).symlink_to(entry)
    venv.create(root / "venv", with_pip=False)
    py = root / "venv" / "bin" / "python"
    venv_site = subprocess.run(
        [str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    Path(venv_site, "_lent_image.pth").write_text(
        f"import site; site.addsitedir({str(shadow)!r})\n"
    )
    return py


@needs_cifar10
def test_dress_rehearsal_on_a_python_without_torchattacks(tmp_path, cifar10_lt_pack):
    py = lent_image_python(tmp_path / "image")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    probe = subprocess.run(
        [str(py), "-c", "import torch, torchattacks"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )
    assert probe.returncode != 0 and "torchattacks" in probe.stderr  # the rehearsal is real

    script = ["bash", str(ROOT / "benchmarks" / "device_table.sh")]
    env = dict(
        env, PYTHON=str(py), AFR_TABLE_BUDGET_S="900", AFR_TABLE_SEEDS="0 1", OMP_NUM_THREADS="1"
    )
    # a bare pack: the preflight names what is missing and stops within seconds
    bare = subprocess.run(
        [*script, str(cifar10_lt_pack), str(tmp_path / "bare")],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bare.returncode == 3, bare.stdout[-2000:] + bare.stderr[-2000:]
    assert "preflight: missing torchattacks" in bare.stdout + bare.stderr
    assert not (tmp_path / "bare" / "ckpt").exists()

    # the bundle: the pack and the torchattacks wheel, within what a call may carry
    b = tmp_path / "bundle"
    manifest = bundle.make_bundle(str(b), pack=str(cifar10_lt_pack))
    assert manifest["bytes"] <= 50 * 2**20
    assert [f["path"] for f in manifest["files"]] == [
        "cifar10lt.afrpack",
        "wheels/torchattacks-3.3.0-py3-none-any.whl",
    ]

    results = tmp_path / "out"
    proc = subprocess.run(
        [*script, str(b), str(tmp_path / "work"), "--results", str(results), "--preset", "smoke"],
        env=env,
        capture_output=True,
        text=True,
        timeout=1500,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    log = (results / "device_table.log").read_text()
    assert "installed torchattacks-3.3.0-py3-none-any.whl" in log
    assert "== calibration" in log and "plan: --jobs" in log and "device_table.sh done" in log
    env_txt = (results / "environment.txt").read_text()
    assert (
        "torchattacks 3.3.0" in env_txt
        and f"afr_aug {afr_aug.__version__}" in env_txt
        and "device:" in env_txt
    )
    p = json.loads((results / "plan.json").read_text())
    assert p["fits"] and p["methods"] == list(METHODS) and p["jobs"] in (1, 2)
    assert p["single"]["startup_s"] > 0 and p["single"]["eval_s"] > 0
    r = json.loads((results / "results.json").read_text())
    assert sorted((x["method"], x["seed"]) for x in r["runs"]) == sorted(
        (m, s) for m in METHODS for s in (0, 1)
    )
    assert "Paired difference" in (results / "results.md").read_text()
    # what comes back from a device call: at most 8 files of at most 16 MiB
    files = sorted(f.name for f in results.iterdir())
    assert len(files) <= 8 and all((results / f).stat().st_size <= 16 * 2**20 for f in files)
    with tarfile.open(results / "logs.tar.gz") as t:
        names = t.getnames()
    runs = len(grid.grid(METHODS, [0, 1])[0])  # the rows and what they start from
    assert sum(n.startswith("logs/") and n.endswith(".log") for n in names) == runs
    assert "ckpt/bs_cmo-seed0.pt" in names
    if (results / "plots.tar").exists():
        with tarfile.open(results / "plots.tar") as t:
            assert "per_class.png" in t.getnames()
