"""The reference benchmark end to end on the real CIFAR-10-LT (smoke preset), and --resume."""

import importlib.util
import json
import re

import pytest
import torch
from conftest import cifar10_root, needs_cifar10, smoke_args

from afr_aug.bench import reproduce
from afr_aug.bench.checkpoints import load_checkpoint, save_atomic
from afr_aug.bench.derived import CLASSIFIER_DERIVES
from afr_aug.bench.methods import ALL_METHODS, DERIVED_METHODS, METHODS

pytestmark = needs_cifar10


def smoke(out, *extra):
    return reproduce.main(smoke_args(out, *extra))


def test_smoke_every_method_writes_schema(tmp_path):
    assert smoke(tmp_path) == 0
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["dataset"] == "cifar10-lt" and results["imbalance_ratio"] == 100
    assert results["device"].startswith("cpu")
    # the smoke preset runs every row: the paper's and issue 10's baselines
    assert [r["method"] for r in results["runs"]] == list(ALL_METHODS)
    keys = {
        "method",
        "epochs",
        "seed",
        "top1",
        "many",
        "med",
        "few",
        "per_class",
        "seconds",
        "img_per_s",
        "ece",
        "calibration",
    }
    by = {r["method"]: r for r in results["runs"]}
    for r in results["runs"]:
        assert keys <= set(r)
        assert 0 <= r["top1"] <= 1 and len(r["per_class"]) == 10 and r["seed"] == 0
        assert 0 <= r["ece"] <= 1 and sum(r["calibration"]["count"]) == 500  # test_limit
        derived = r["method"] in DERIVED_METHODS
        trained = not derived or METHODS[r["method"]].derive in CLASSIFIER_DERIVES
        assert r["seconds"] >= 0 and (r["img_per_s"] > 0 if trained else r["img_per_s"] is None)
        for group in ("many", "med", "few"):
            assert r[group] is None or 0 <= r[group] <= 1
        if derived and trained:  # where it was made: a classifier re-trained here, in fp32
            assert r["device"].startswith("cpu (") and "autocast" not in r["device"]
        elif derived:  # post hoc: the machine its source model trained on
            assert r["device"] == by[DERIVED_METHODS[r["method"]]]["device"]
    assert {m: by[m]["derived_from"] for m in DERIVED_METHODS} == DERIVED_METHODS
    assert by["bs_cmo_crt"]["epochs"] == 3 and by["afr_tau"]["epochs"] == 4
    assert by["mislas"]["epochs"] == 3 and by["ib"]["epochs"] == 2
    assert {r["epochs"] for r in results["runs"]} == {2, 3, 4}
    table = (tmp_path / "results.md").read_text()
    assert "AFR" in table and "BS+CMO + cRT" in table and "| 2+1 |" in table
    assert not re.search(r"\d ± \d", table)  # one seed: no spread in the cells
    if importlib.util.find_spec("matplotlib") is None:
        pytest.skip("matplotlib (the 'plot' extra) is not installed: no plots to check")
    for name in ("shot_accuracy.png", "per_class.png", "class_distribution.png", "reliability.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_resume_after_kill_gives_the_same_result(tmp_path):
    args = ("--methods", "bs_cmo", "afr")
    assert smoke(tmp_path / "straight", *args) == 0
    # killed after 3 epochs: bs_cmo finished (2), afr after its first epoch
    assert smoke(tmp_path / "killed", *args, "--stop-after-epochs", "3") == 75
    state = load_checkpoint(str(tmp_path / "killed" / "ckpt" / "afr-seed0.pt"))
    assert state["epoch"] == 1 and not state["done"] and state["clock"] == "running"
    del state["clock"]  # as an older version wrote it: its seconds counted its pauses
    save_atomic(state, str(tmp_path / "killed" / "ckpt" / "afr-seed0.pt"))
    # a budget that cut the grid still gives a table: the unfinished afr as a partial row
    assert smoke(tmp_path / "killed", *args, "--report-only") == 0
    cut = json.loads((tmp_path / "killed" / "results.json").read_text())
    assert [r["method"] for r in cut["runs"]] == ["bs_cmo"] and cut["missing"] == ["afr seed 0"]
    assert smoke(tmp_path / "killed", *args, "--report-only", "--partial") == 0
    cut = json.loads((tmp_path / "killed" / "results.json").read_text())
    row = cut["runs"][1]
    assert row["method"] == "afr[partial 1/2]" and row["partial"] == {"epochs_done": 1, "epochs": 2}
    assert row["epochs"] == 3 and row["stage2_epochs"] == 1 and 0 <= row["top1"] <= 1
    assert cut["partial"] == ["afr seed 0 (1/2 epochs)"] and "missing" not in cut
    assert "AFR (ours) [partial 1/2]" in (tmp_path / "killed" / "results.md").read_text()
    assert smoke(tmp_path / "killed", *args, "--resume") == 0
    a = json.loads((tmp_path / "straight" / "results.json").read_text())["runs"]
    b = json.loads((tmp_path / "killed" / "results.json").read_text())["runs"]
    for ra, rb in zip(a, b):
        assert ra["method"] == rb["method"]
        assert ra["top1"] == rb["top1"] and ra["per_class"] == rb["per_class"]
    sa = load_checkpoint(str(tmp_path / "straight" / "ckpt" / "afr-seed0.pt"))
    sb = load_checkpoint(str(tmp_path / "killed" / "ckpt" / "afr-seed0.pt"))
    wa, wb = sa["model"], sb["model"]
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    # the resumed older run keeps its tag, so its seconds stay open to the pause estimate
    assert sa["clock"] == "running" and sb["clock"] == "wall"


def test_reevaluate_recomputes_the_final_numbers_from_the_checkpoint(tmp_path):
    from afr_aug.bench.factories import COSINE_SCALE, logit_scale, make_criterion
    from afr_aug.bench.presets import schedule_from

    # LDAM's cosine outputs are scaled by the loss's s for calibration; the other rows are not
    assert logit_scale("ldam_drw") == COSINE_SCALE and logit_scale("ce") == 1.0
    args = reproduce.parse_args(["--preset", "smoke", "--dataset", "cifar10-lt"])

    counts = type("Data", (), {"class_counts": (5, 1)})
    assert make_criterion("ldam_drw", counts, "cpu", schedule_from(args)).s == COSINE_SCALE

    assert smoke(tmp_path, "--methods", "ldam_drw") == 0
    trained = json.loads((tmp_path / "results.json").read_text())["runs"][0]
    path = str(tmp_path / "ckpt" / "ldam_drw-seed0.pt")
    state = load_checkpoint(path)
    state["result"] = {**state["result"], "top1": 0.0123, "ece": 0.999, "per_class": [0.0123] * 10}
    save_atomic(state, path)  # a row recorded by an older version, say
    assert smoke(tmp_path, "--methods", "ldam_drw", "--report-only") == 0
    stored = json.loads((tmp_path / "results.json").read_text())["runs"][0]
    assert stored["top1"] == 0.0123 and stored["ece"] == 0.999
    assert smoke(tmp_path, "--methods", "ldam_drw", "--report-only", "--reevaluate") == 0
    again = json.loads((tmp_path / "results.json").read_text())["runs"][0]
    for key in ("top1", "per_class", "many", "med"):
        assert again[key] == trained[key], key
    # the same model and test set; the sums may round differently in the last bits
    assert again["ece"] == pytest.approx(trained["ece"], rel=1e-6)
    assert again["calibration"]["count"] == trained["calibration"]["count"]
    assert again["best_top1"] == trained["best_top1"] and again["seconds"] == trained["seconds"]
    with pytest.raises(SystemExit):
        smoke(tmp_path, "--methods", "ldam_drw", "--reevaluate")
    # a run timed by an older version counted a pause: one epoch took 100 s among 1-s epochs
    state = load_checkpoint(path)
    assert state["clock"] == "running"
    del state["clock"]
    state["history"] = [{"epoch": e, "seconds": 100.0 if e == 6 else 1.0} for e in range(1, 13)]
    state["result"] = {**state["result"], "seconds": 111.0, "img_per_s": 10.0}
    save_atomic(state, path)
    assert smoke(tmp_path, "--methods", "ldam_drw", "--report-only", "--reevaluate") == 0
    old = json.loads((tmp_path / "results.json").read_text())["runs"][0]
    assert old["seconds"] == 12.0 and old["paused_epochs_estimated"] == 1
    assert old["img_per_s"] == pytest.approx(10.0 * 111 / 12)


def test_multiple_seeds_give_mean_and_std(tmp_path):
    assert smoke(tmp_path, "--methods", "bs", "--seeds", "0", "1", "--max-iters", "1") == 0
    results = json.loads((tmp_path / "results.json").read_text())
    assert [r["seed"] for r in results["runs"]] == [0, 1]
    assert re.search(r"\d ± \d", (tmp_path / "results.md").read_text())


def test_bad_method_is_rejected(capsys):
    with pytest.raises(SystemExit):
        reproduce.parse_args(["--methods", "nope"])
    assert "invalid choice" in capsys.readouterr().err


def test_jobs_give_the_serial_result(tmp_path):
    args = ("--methods", "bs_cmo", "afr", "--threads", "1")
    assert smoke(tmp_path / "serial", *args) == 0
    assert smoke(tmp_path / "jobs", *args, "--jobs", "2") == 0
    a = json.loads((tmp_path / "serial" / "results.json").read_text())["runs"]
    b = json.loads((tmp_path / "jobs" / "results.json").read_text())["runs"]
    assert [r["method"] for r in b] == ["bs_cmo", "afr"]
    for ra, rb in zip(a, b):
        assert ra["top1"] == rb["top1"] and ra["per_class"] == rb["per_class"]
    logs = sorted(p.name for p in (tmp_path / "jobs" / "logs").iterdir())
    assert logs == ["afr-seed0.log", "bs_cmo-seed0.log"]
    assert "epoch 2/2" in (tmp_path / "jobs" / "logs" / "afr-seed0.log").read_text()


def test_stage1_seed_shares_one_bs_cmo_model_and_reports_paired_differences(tmp_path):
    assert (
        smoke(
            tmp_path,
            "--methods",
            "bs_cmo_ft",
            "afr",
            "--seeds",
            "0",
            "1",
            "--stage1-seed",
            "0",
            "--jobs",
            "2",
            "--max-iters",
            "1",
        )
        == 0
    )
    ckpts = sorted(p.name for p in (tmp_path / "ckpt").glob("*.pt"))
    assert ckpts == [
        "afr-seed0.pt",
        "afr-seed1-from0.pt",
        "bs_cmo-seed0.pt",
        "bs_cmo_ft-seed0.pt",
        "bs_cmo_ft-seed1-from0.pt",
    ]
    runs = json.loads((tmp_path / "results.json").read_text())["runs"]
    assert [(r["method"], r["seed"], r["stage1_seed"]) for r in runs] == [
        ("bs_cmo_ft", 0, 0),
        ("afr", 0, 0),
        ("bs_cmo_ft", 1, 0),
        ("afr", 1, 0),
    ]
    md = (tmp_path / "results.md").read_text()
    assert "Paired difference AFR (ours) − BS+CMO + fine-tune (control)" in md
    diff = runs[1]["top1"] - runs[0]["top1"]
    assert f"| 0 | {100 * diff:+.2f} |" in md


def test_stage1_method_fine_tunes_that_model_and_pairs_its_rows(tmp_path, monkeypatch):
    from afr_aug.bench import runner

    started_from, real = [], runner.new_run

    def new_run(method, seed, *args, init_state=None, **kwargs):
        started_from.append((method, init_state and init_state["method"]))
        return real(method, seed, *args, init_state=init_state, **kwargs)

    monkeypatch.setattr(runner, "new_run", new_run)
    assert (
        smoke(
            tmp_path,
            "--methods",
            "bs_cmo_ft",
            "afr",
            "--stage1-method",
            "bs_cmo_eff",
            "--max-iters",
            "1",
        )
        == 0
    )
    assert started_from == [
        ("bs_cmo_eff", None),
        ("bs_cmo_ft", "bs_cmo_eff"),
        ("afr", "bs_cmo_eff"),
    ]
    ckpts = sorted(p.name for p in (tmp_path / "ckpt").glob("*.pt"))  # no bs_cmo model
    assert ckpts == [
        "afr[from=bs_cmo_eff]-seed0.pt",
        "bs_cmo_eff-seed0.pt",
        "bs_cmo_ft[from=bs_cmo_eff]-seed0.pt",
    ]
    results = json.loads((tmp_path / "results.json").read_text())
    runs = results["runs"]
    assert [r["method"] for r in runs] == ["bs_cmo_ft[from=bs_cmo_eff]", "afr[from=bs_cmo_eff]"]
    # each row records the machine that trained it; the report lists machines only when they differ
    assert [r["device"] for r in runs] == [results["device"]] * 2
    md = (tmp_path / "results.md").read_text()
    assert "Trained on" not in md
    assert (
        "Paired difference AFR (ours) [from=bs_cmo_eff] − BS+CMO + fine-tune (control) "
        "[from=bs_cmo_eff]"
    ) in md
    diff = runs[1]["top1"] - runs[0]["top1"]
    assert f"| 0 | {100 * diff:+.2f} |" in md


def test_jobs_resume_skips_finished_runs_and_reports_failures(tmp_path, capsys):
    args = ("--methods", "bs_cmo", "--seeds", "0", "1", "--max-iters", "1", "--jobs", "2")
    assert smoke(tmp_path, *args) == 0
    capsys.readouterr()
    assert smoke(tmp_path, *args, "--resume") == 0
    assert "0 runs to do (2 already finished)" in capsys.readouterr().out
    # a worker that fails (here: a stage-2 run whose bs_cmo file is corrupt) is reported
    (tmp_path / "ckpt" / "bs_cmo-seed1.pt").write_bytes(b"not a checkpoint")
    assert (
        smoke(
            tmp_path,
            "--methods",
            "afr",
            "--seeds",
            "1",
            "--max-iters",
            "1",
            "--jobs",
            "2",
            "--resume",
        )
        == 1
    )
    assert "failed" in capsys.readouterr().err


def test_bad_jobs_is_rejected(capsys):
    with pytest.raises(SystemExit):
        reproduce.parse_args(["--jobs", "0"])
    assert "--jobs must be at least 1" in capsys.readouterr().err


def test_quick_preset_trains_on_the_afr_set(tmp_path):
    """The quick preset's rows, cut short: stage 2 mixes every batch (--mix-p 1) with the AFR
    set, and the row and the refresh table record what each refresh put into training."""
    from afr_aug.bench.presets import PRESETS

    assert PRESETS["quick"]["methods"] == ("bs_cmo", "bs_cmo_ft", "afr")
    args = ["--preset", "quick", "--data-root", str(cifar10_root()), "--out", str(tmp_path)]
    args += ["--no-progress", "--epochs", "1", "--max-iters", "4", "--mix-p", "1"]
    assert reproduce.main(args) == 0
    rows = json.loads((tmp_path / "results.json").read_text())["runs"]
    runs = {r["method"].partition("[")[0]: r for r in rows}  # stage-2 rows tagged [cutmix,1]
    assert sorted(runs) == ["afr", "bs_cmo", "bs_cmo_ft"]
    (refresh,) = runs["afr"]["refreshes"]
    trained = refresh["trained"]
    assert trained["batches"] == trained["mixed"] == 4 and 0 < trained["set_share"] < 1
    md = (tmp_path / "results.md").read_text()
    assert "In training" in md and f"4/4, {100 * trained['set_share']:.1f} %" in md
