"""The benchmark's registry of rows (``benchmarks.methods``): every entry's builders exist,
the authors' recipes give their codes' learning rates epoch by epoch, and the new rows (IB,
Remix, MiSLAS) train through the one loop."""

import json
from dataclasses import replace

import pytest
import torch
from conftest import cifar10_root, fabricated_lt, needs_cifar10

from afr_aug.bench import grid, presets, reproduce
from afr_aug.bench.checkpoints import load_checkpoint, state_of
from afr_aug.bench.derived import DERIVES, derive_model
from afr_aug.bench.factories import LOSSES, MIXERS, make_criterion
from afr_aug.bench.loop import new_run, train_epoch
from afr_aug.bench.methods import METHODS, PAPER_METHODS, STAGE1_BASES, Recipe, method
from afr_aug.bench.schedule import Schedule


def test_every_entry_names_builders_that_exist():
    for m in METHODS.values():
        assert m.loss in LOSSES and (m.mixer is None or m.mixer in MIXERS), m.name
        assert (m.stage == 0) == (m.derive is not None) == (m.starts_from is not None), m.name
        if m.derive is not None:
            assert m.derive in DERIVES and m.starts_from in METHODS, m.name
        assert (m.stage == 2) == (m.stage2_set is not None), m.name
        for dataset, published in m.published.items():
            assert dataset in ("cifar10-lt", "cifar100-lt") and 0 < published.top1 < 100
    assert set(PAPER_METHODS) <= set(METHODS) and "ldam_drw" not in STAGE1_BASES
    with pytest.raises(ValueError, match="unknown method 'nope'"):
        method("nope")
    with pytest.raises(ValueError, match="lr_schedule must be one of"):
        Recipe(lr_schedule="linear")


def _lrs(name, recipe="authors", schedule=None):
    s = (schedule or Schedule(recipe=recipe)).for_stage1(METHODS[name])
    return s, [s.lr_at(e, 0, 10, 1) for e in range(s.epochs)]


def test_ldam_code_schedule_and_drw():
    s, lr = _lrs("ce_drw")
    assert lr[:5] == pytest.approx([0.02, 0.04, 0.06, 0.08, 0.1])
    assert lr[159] == 0.1 and lr[160] == pytest.approx(1e-3) and lr[180] == pytest.approx(1e-5)
    assert s.at(s.drw_from) == 160 and s.augment == "crop_flip"
    assert _lrs("ce")[0].drw_from is None  # no DRW without drw


def test_balanced_softmax_code_schedule():
    s, lr = _lrs("bs")
    assert (s.epochs, s.batch_size, s.weight_decay, s.augment) == (
        520,
        512,
        5e-4,
        "autoaugment_cutout",
    )
    # CosineAnnealingLRWarmup(warmup 32, base 0.05, warmup_lr 0.1), stepped before each epoch
    assert lr[0] == pytest.approx(0.05) and lr[1] == pytest.approx(0.05 + 0.05 / 31)
    assert lr[31] == pytest.approx(0.1) and lr[519] == pytest.approx(0.0)
    assert lr[275] == pytest.approx(0.05, abs=2e-4)  # half-way down the cosine


def test_ib_code_schedule_and_switch():
    s, lr = _lrs("ib")
    assert lr[4] == 0.1 and lr[99] == 0.1 and lr[100] == pytest.approx(1e-3)
    assert lr[160] == pytest.approx(1e-5) and lr[180] == pytest.approx(1e-7)
    loss = make_criterion("ib", fabricated_lt([20, 6]), "cpu", s)
    assert loss.start_epoch == 100 and loss.weighting == "inverse" and loss.alpha == 1000


def test_remix_and_mislas_schedules():
    s, lr = _lrs("remix_drw")
    assert s.epochs == 300 and s.at(s.drw_from) == 250
    assert lr[149] == 0.1 and lr[150] == pytest.approx(0.01) and lr[250] == pytest.approx(1e-3)
    assert _lrs("remix")[0].drw_from is None
    s, lr = _lrs("mislas_stage1")
    assert lr[160] == pytest.approx(0.01) and lr[180] == pytest.approx(1e-3)


def test_paper_recipe_is_the_preset_for_every_row():
    for name in ("ce", "bs", "ib", "remix_drw", "mislas_stage1"):
        s, lr = _lrs(name, recipe="paper")
        assert (s.epochs, s.batch_size, s.augment) == (200, 128, "autoaugment_cutout")
        assert lr[160] == pytest.approx(1e-3) and lr[180] == pytest.approx(1e-5)
    assert _lrs("remix_drw", "paper")[0].drw_from == 0.8
    assert _lrs("ib", "paper")[0].switch_from == 0.5


def test_authors_recipes_scale_with_the_preset():
    short = Schedule(recipe="authors", epochs=20, warmup_epochs=1)
    assert short.for_stage1(METHODS["bs"]).epochs == 52
    assert short.for_stage1(METHODS["bs"]).warmup_epochs == 3
    assert short.for_stage1(METHODS["remix"]).epochs == 30
    assert short.for_stage1(METHODS["ce"]).warmup_epochs == 1  # the preset's warm-up


SMALL = Schedule(
    epochs=4, stage2_epochs=1, warmup_epochs=1, batch_size=16, crt_epochs=1, recipe="authors"
)


def test_ib_row_trains_with_the_embedding_after_its_switch():
    data = fabricated_lt([40, 12, 4])
    run = new_run("ib", 0, SMALL, data, "cpu")
    for epoch in range(4):
        before = {k: v.clone() for k, v in run.model.state_dict().items()}
        train_epoch(run, progress=False)
        assert run.criterion.active is (epoch >= 2)
        assert any(not torch.equal(before[k], v) for k, v in run.model.state_dict().items())
    assert run.embedder is not None and run.embedder.classifier == "fc"


def test_remix_rows_mix_every_batch_and_drw_switches_on():
    data = fabricated_lt([40, 12, 4])
    run = new_run("remix_drw", 0, SMALL, data, "cpu")
    assert run.schedule.epochs == 6 and run.schedule.at(run.schedule.drw_from) == 5
    lams = []
    loader_lam = run.mixer.__class__.__call__

    def spy(self, *a, **k):
        out = loader_lam(self, *a, **k)
        lams.append(out[3])
        return out

    run.mixer.__class__.__call__ = spy
    try:
        for _ in range(6):
            train_epoch(run, progress=False)
    finally:
        run.mixer.__class__.__call__ = loader_lam
    assert len(lams) == 6 and all(isinstance(x, torch.Tensor) for x in lams)  # 1 batch of 128
    assert run.criterion.weight is not None and run.criterion.weight[2] > run.criterion.weight[0]


def test_mislas_row_retrains_only_the_classifier_of_its_stage1_model():
    data = fabricated_lt([40, 12, 4])
    stage1 = new_run("mislas_stage1", 0, SMALL, data, "cpu")
    train_epoch(stage1, progress=False)
    source = state_of(stage1, done=True)
    model, images = derive_model("mislas", source, data, "cpu", SMALL, seed=0)
    after = model.state_dict()
    assert images == 1 * 4 * 16
    assert not torch.equal(after["fc.weight"], source["model"]["fc.weight"])
    assert all(
        torch.equal(after[k], v) for k, v in source["model"].items() if not k.startswith("fc")
    )


@needs_cifar10
def test_authors_recipe_rows_in_results_json(tmp_path):
    code = reproduce.main(
        [
            "--preset",
            "smoke",
            "--recipe",
            "authors",
            "--methods",
            "ib",
            "remix_drw",
            "mislas",
            "--data-root",
            str(cifar10_root()),
            "--out",
            str(tmp_path),
            "--no-progress",
        ]
    )
    assert code == 0
    runs = {r["method"]: r for r in json.loads((tmp_path / "results.json").read_text())["runs"]}
    assert set(runs) == {"ib", "remix_drw", "mislas"}
    assert {r["recipe"] for r in runs.values()} == {"authors"}
    assert runs["ib"]["epochs"] == 2 and runs["remix_drw"]["epochs"] == 3
    assert runs["mislas"]["derived_from"] == "mislas_stage1" and runs["mislas"]["epochs"] == 3
    assert "against the published numbers" in (tmp_path / "results.md").read_text()


def test_new_rows_on_a_fabricated_cifar100_lt(tmp_path, monkeypatch):
    from test_data import write_fake_cifar100

    import afr_aug.bench.derived as derived

    write_fake_cifar100(tmp_path / "data", train_per_class=20, test_per_class=2)
    seen = {}
    real = derived.retrain_mislas

    def spy(*args, **kwargs):
        seen.update(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(derived, "retrain_mislas", spy)
    code = reproduce.main(
        [
            "--preset",
            "smoke",
            "--dataset",
            "cifar100-lt",
            "--imbalance-ratio",
            "10",
            "--recipe",
            "authors",
            "--methods",
            "bs",
            "ib",
            "remix_drw",
            "mislas",
            "--data-root",
            str(tmp_path / "data"),
            "--out",
            str(tmp_path / "out"),
            "--no-progress",
        ]
    )
    assert code == 0
    runs = json.loads((tmp_path / "out" / "results.json").read_text())["runs"]
    assert [r["method"] for r in runs] == ["bs", "ib", "remix_drw", "mislas"]
    assert all(len(r["per_class"]) == 100 for r in runs)
    # MiSLAS's CIFAR-100 settings: stronger smoothing, a smaller classifier lr, BN shifted
    assert (seen["smooth_head"], seen["smooth_tail"], seen["lr_factor"], seen["shift_bn"]) == (
        0.4,
        0.1,
        0.2,
        True,
    )
    assert "| 42.14 |" in (tmp_path / "out" / "results.md").read_text()  # IB's CIFAR-100 number


def test_stage2_rows_control_balanced_stream_and_label_safe():
    data = fabricated_lt([40, 12, 4])
    base = {"model": new_run("bs_cmo", 0, SMALL, data, "cpu").model.state_dict()}
    s = Schedule(epochs=4, stage2_epochs=1, batch_size=16, refresh_every=1, slots_per_class=8)
    control = new_run("bs_cmo_ft", 0, s, data, "cpu", init_state=base)
    assert control.stage2.control and control.entry.refreshes
    bal = new_run("afr_bal", 0, s, data, "cpu", init_state=base)
    assert bal.loader.stream == "balanced" and isinstance(bal.criterion, torch.nn.CrossEntropyLoss)
    assert new_run("afr", 0, s, data, "cpu", init_state=base).loader.stream == "long_tailed"
    args = reproduce.parse_args(["--label-safe", "label"])
    safe = presets.schedule_from(args)
    assert safe.label_safe == "label" and grid.run_label("afr", safe) == "afr[safe=label]"
    assert grid.run_label("bs_cmo_ft", safe) == "bs_cmo_ft"  # the control never attacks
    assert (
        new_run(
            "afr", 0, replace(s, label_safe=0.6), data, "cpu", init_state=base
        ).stage2.parts.label_safe
        == 0.6
    )
    with pytest.raises(SystemExit):
        reproduce.parse_args(["--label-safe", "2"])


def test_weight_decay_flag_changes_stage1_and_names_every_row():
    s = presets.schedule_from(
        reproduce.parse_args(["--recipe", "authors", "--weight-decay", "5e-4"])
    )
    plain = presets.schedule_from(reproduce.parse_args(["--recipe", "authors"]))
    assert s.for_stage1(METHODS["mislas_stage1"]).weight_decay == 5e-4
    assert plain.for_stage1(METHODS["mislas_stage1"]).weight_decay == 2e-4
    assert (
        s.for_stage1(METHODS["bs"]).weight_decay
        == 5e-4
        == plain.for_stage1(METHODS["bs"]).weight_decay
    )
    assert s.weight_decay == 2e-4  # stage 2 and the re-trained classifiers keep the preset's
    for name in ("mislas_stage1", "mislas", "afr", "bs_cmo_crt"):
        assert grid.run_label(name, s) == f"{name}[wd=0.0005]"
        assert grid.run_label(name, plain) == name
    paper = presets.schedule_from(reproduce.parse_args(["--weight-decay", "0"]))
    assert paper.for_stage1(METHODS["ce"]).weight_decay == 0.0
    assert grid.run_label("bs_cmo_tau", replace(paper, tau=0.5)) == "bs_cmo_tau[tau=0.5,wd=0]"
    for bad in ("-1e-4", "nan", "inf", "lots"):
        with pytest.raises(SystemExit):
            reproduce.parse_args([f"--weight-decay={bad}"])


@needs_cifar10
def test_weight_decay_run_trains_stage1_with_it_and_keeps_its_checkpoints_apart(tmp_path):
    argv = ["--preset", "smoke", "--recipe", "authors", "--methods", "mislas", "--seeds", "0"]
    argv += ["--data-root", str(cifar10_root()), "--out", str(tmp_path), "--no-progress"]
    assert reproduce.main([*argv, "--weight-decay", "5e-4"]) == 0
    runs = json.loads((tmp_path / "results.json").read_text())["runs"]
    assert [r["method"] for r in runs] == ["mislas[wd=0.0005]"]
    assert "MiSLAS [wd=0.0005]" in (tmp_path / "results.md").read_text()
    stage1 = load_checkpoint(str(tmp_path / "ckpt" / "mislas_stage1[wd=0.0005]-seed0.pt"))
    assert {g["weight_decay"] for g in stage1["optimizer"]["param_groups"]} == {5e-4}
    assert not (tmp_path / "ckpt" / "mislas_stage1-seed0.pt").exists()
