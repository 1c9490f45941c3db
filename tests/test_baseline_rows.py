"""Issue 10's benchmark rows: la, bs_cmo_eff and the rows made from a finished model
(post-hoc logit adjustment, tau-normalisation, cRT), on a small fabricated data set."""

import math

import pytest
import torch
from conftest import fabricated_lt

from afr_aug.bench import grid, presets, reproduce
from afr_aug.bench.checkpoints import state_of
from afr_aug.bench.derived import BalancedStream, derive_model
from afr_aug.bench.factories import make_criterion
from afr_aug.bench.loop import new_run, train_epoch
from afr_aug.bench.methods import ALL_METHODS, DERIVED_METHODS, PAPER_METHODS
from afr_aug.bench.schedule import Schedule
from afr_aug.losses import BalancedSoftmaxLoss, LogitAdjustedLoss
from afr_aug.mixing import effective_class_counts


@pytest.fixture(scope="module")
def data():
    return fabricated_lt([40, 12, 4])


SMALL = Schedule(
    epochs=1, stage2_epochs=1, warmup_epochs=1, batch_size=16, crt_epochs=2, cmo_off_epochs=-1
)


def finished(method, data, schedule=SMALL):
    run = new_run(method, 0, schedule, data, "cpu")
    train_epoch(run, progress=False)
    return state_of(run, done=True)


def logits(model, data):
    model.eval()
    with torch.no_grad():
        return model(data.x_test.float() / 255)


def test_la_and_bs_cmo_eff_losses(data):
    la = make_criterion("la", data, "cpu", Schedule(la_tau=0.5))
    assert isinstance(la, LogitAdjustedLoss) and la.tau == 0.5
    eff = make_criterion("bs_cmo_eff", data, "cpu", SMALL)
    want = effective_class_counts(data.class_counts, p=SMALL.cmo_p, image_size=(12, 12))
    plain = make_criterion("bs_cmo_eff", data, "cpu", SMALL, mixing=False)
    z, t = torch.randn(5, 3), torch.tensor([0, 1, 2, 2, 1])
    assert eff(z, t).item() == pytest.approx(BalancedSoftmaxLoss(want)(z, t).item(), rel=1e-6)
    assert plain(z, t).item() == pytest.approx(
        BalancedSoftmaxLoss(data.class_counts)(z, t).item(), rel=1e-6
    )
    # the tail gets more prior mass under mixing than its count says
    assert want[2] / want.sum() > 4 / 56


def test_bs_cmo_eff_switches_its_prior_with_the_cmo_window(data):
    # CMO mixes while 1 < epoch < 3 (0-based): only in the third epoch
    s = Schedule(epochs=4, warmup_epochs=1, batch_size=16, cmo_off_epochs=1)
    run = new_run("bs_cmo_eff", 0, s, data, "cpu")
    plain = make_criterion("bs", data, "cpu", s)(torch.zeros(1, 3), torch.tensor([2])).item()
    losses = []
    for _ in range(4):
        train_epoch(run, progress=False)
        losses.append(run.criterion(torch.zeros(1, 3), torch.tensor([2])).item())
    # zero logits: the loss is -log(prior of the tail); the mixing epoch gives the tail more prior
    assert losses[2] < plain - 0.1
    assert [losses[i] for i in (0, 1, 3)] == pytest.approx([plain] * 3)


def test_posthoc_rows_shift_the_logits_by_hand(data):
    src = finished("bs_cmo", data)
    model, images = derive_model("bs_cmo_posthoc", src, data, "cpu", SMALL, 0)
    assert images == 0
    raw = new_run("bs", 0, SMALL, data, "cpu").model
    raw.load_state_dict(src["model"])
    counts = torch.tensor(data.class_counts, dtype=torch.float64)
    eff = effective_class_counts(counts, p=SMALL.cmo_p, image_size=(12, 12))
    shift = (eff / counts).log().float()
    got, want = logits(model, data), logits(raw, data) - shift
    diff = got - want  # adjust_logits normalises the counts: a constant per row
    assert torch.allclose(diff, diff[:, :1].expand_as(diff), atol=1e-3)  # float32 logits
    # the tail's logit drops the most: CMO over-fed it
    assert shift.argmax().item() == 2
    ce = finished("ce", data)
    m, _ = derive_model("ce_posthoc", ce, data, "cpu", Schedule(la_tau=2.0), 0)
    raw.load_state_dict(ce["model"])
    d = logits(m, data) - logits(raw, data)
    prior = counts / counts.sum()
    assert torch.allclose(d, (-2.0 * prior.log()).float().expand_as(d), atol=1e-3)


def test_tau_rows_normalise_the_classifier(data):
    src = finished("bs_cmo", data)
    model, images = derive_model("bs_cmo_tau", src, data, "cpu", Schedule(tau=1.0), 0)
    name, lin = [(n, m) for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)][-1]
    assert images == 0
    assert torch.allclose(lin.weight.norm(dim=1), torch.ones(3), atol=1e-6)
    assert torch.count_nonzero(lin.bias) == 0 and torch.count_nonzero(src["model"][name + ".bias"])
    half, _ = derive_model("bs_cmo_tau", src, data, "cpu", Schedule(tau=0.5), 0)
    w = src["model"][name + ".weight"]
    got = dict(half.named_modules())[name].weight
    assert torch.allclose(got.norm(dim=1), w.norm(dim=1).sqrt(), atol=1e-5)


def test_crt_row_retrains_only_the_classifier_on_a_balanced_stream(data):
    src = finished("bs_cmo", data)
    model, images = derive_model("bs_cmo_crt", src, data, "cpu", SMALL, 0)
    stream = BalancedStream(data, SMALL, 0, "cpu")
    assert len(stream) == math.ceil(56 / 16) and images == SMALL.crt_epochs * len(stream) * 16
    labels = torch.cat([y for _, y in stream])
    assert torch.bincount(labels, minlength=3).min() >= 15  # balanced: ~21 each of 64
    after = model.state_dict()
    lin = [n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)][-1]
    for k, v in src["model"].items():
        if k.startswith(lin + "."):
            assert not torch.equal(after[k], v)
        else:
            assert torch.equal(after[k], v), k  # features and BN statistics frozen
    again, _ = derive_model("bs_cmo_crt", src, data, "cpu", SMALL, 0)
    assert all(torch.equal(again.state_dict()[k], after[k]) for k in after)  # reproducible


def test_derive_model_rejects_unknown_rows(data):
    with pytest.raises(ValueError, match="unknown derived row 'bs'"):
        derive_model("bs", {"model": {}}, data, "cpu", SMALL, 0)
    with pytest.raises(ValueError, match="fine-tunes a finished"):
        new_run("afr", 0, SMALL, data, "cpu")
    with pytest.raises(ValueError, match="derive_model"):
        new_run("afr_tau", 0, SMALL, data, "cpu")


def test_grid_orders_rows_after_what_they_start_from():
    tasks, deps = grid.grid(["afr_tau", "ce_posthoc"], [0])
    assert tasks == [("ce", 0), ("ce_posthoc", 0), ("bs_cmo", 0), ("afr", 0), ("afr_tau", 0)]
    assert deps == {
        ("ce_posthoc", 0): ("ce", 0),
        ("afr_tau", 0): ("afr", 0),
        ("afr", 0): ("bs_cmo", 0),
    }
    _, deps = grid.grid(["bs_cmo_crt", "afr_tau"], [1], stage1_seed=0)
    assert deps[("bs_cmo_crt", 1)] == ("bs_cmo", 0) and deps[("afr_tau", 1)] == ("afr", 1)
    assert grid.from_bs_cmo("afr_tau") and not grid.from_bs_cmo("ce_posthoc")


def test_jobs_start_runs_in_the_order_methods_names_them():
    named = ["remix", "ldam_drw", "ce", "mislas"]
    tasks, _ = grid.grid(named, [0, 1])
    assert [m for m, _ in tasks[:5]] != named  # the grid itself is in report order
    order = grid.start_order(tasks, methods=named)
    # the row that starts from another first, then the stage-1 rows seed by seed in --methods
    # order, the unnamed dependency (MiSLAS's stage 1) after the named ones
    stage1 = ["remix", "ldam_drw", "ce", "mislas_stage1"]
    assert order == [("mislas", 0), ("mislas", 1)] + [(m, 0) for m in stage1] + [
        (m, 1) for m in stage1
    ]


def test_stage2_from_another_stage1_model_is_a_row_of_its_own(tmp_path):
    tasks, deps = grid.grid(
        ["bs_cmo_ft", "afr_tau", "bs_cmo_crt"], [1], stage1_seed=0, stage1_method="bs_cmo_eff"
    )
    assert deps[("bs_cmo_ft", 1)] == deps[("afr", 1)] == ("bs_cmo_eff", 0)
    assert deps[("afr_tau", 1)] == ("afr", 1) and deps[("bs_cmo_crt", 1)] == ("bs_cmo", 0)
    assert tasks.index(("bs_cmo_eff", 0)) < tasks.index(("afr", 1))
    assert grid.start_order([("ce", 0), ("afr", 0), ("bs_cmo_eff", 0)], "bs_cmo_eff")[0] == (
        "bs_cmo_eff",
        0,
    )
    eff = Schedule(stage1_method="bs_cmo_eff")
    assert [
        grid.run_label(m, eff) for m in ("afr", "bs_cmo_ft", "afr_tau", "bs_cmo_eff", "bs_cmo_tau")
    ] == [
        "afr[from=bs_cmo_eff]",
        "bs_cmo_ft[from=bs_cmo_eff]",
        "afr_tau[from=bs_cmo_eff]",
        "bs_cmo_eff",
        "bs_cmo_tau",
    ]
    assert presets.schedule_from(reproduce.parse_args([])).stage1_method == "bs_cmo"
    args = reproduce.parse_args(
        ["--stage1-method", "bs_cmo_eff", "--stage1-seed", "0", "--out", str(tmp_path)]
    )
    s = presets.schedule_from(args)
    assert s.stage1_method == "bs_cmo_eff"
    assert grid.ckpt_path(args, s, grid.run_label("afr", s), 1).endswith(
        "afr[from=bs_cmo_eff]-seed1-from0.pt"
    )
    assert grid.ckpt_path(args, s, "bs_cmo_eff", 1).endswith("bs_cmo_eff-seed1.pt")
    with pytest.raises(SystemExit):  # its cosine classifier is not the stage-2 model's
        reproduce.parse_args(["--stage1-method", "ldam_drw"])


def test_methods_groups_labels_and_paths(tmp_path):
    paper = reproduce.parse_args(["--preset", "paper"])
    assert paper.methods == list(PAPER_METHODS)
    assert reproduce.parse_args(["--preset", "smoke"]).methods == list(ALL_METHODS)
    args = reproduce.parse_args(
        [
            "--methods",
            "afr_tau",
            "paper",
            "la",
            "--out",
            str(tmp_path),
            "--tau",
            "0.5",
            "--la-tau",
            "2",
            "--stage1-seed",
            "0",
        ]
    )
    assert args.methods == [m for m in ALL_METHODS if m in set(PAPER_METHODS) | {"afr_tau", "la"}]
    s = presets.schedule_from(args)
    assert (s.tau, s.la_tau) == (0.5, 2.0)
    assert grid.run_label("bs_cmo_tau", s) == "bs_cmo_tau[tau=0.5]"
    assert grid.run_label("la", s) == "la[tau=2]"
    assert grid.run_label("bs_cmo_crt", s) == "bs_cmo_crt"
    mix = Schedule(mix="mixup", mix_p=0.5, tau=0.5)
    assert grid.run_label("afr_tau", mix) == "afr_tau[mixup,0.5,tau=0.5]"
    assert grid.ckpt_path(args, s, "bs_cmo_tau", 1).endswith("bs_cmo_tau-seed1-from0.pt")
    assert grid.ckpt_path(args, s, "ce_posthoc", 1).endswith("ce_posthoc-seed1.pt")
    assert set(DERIVED_METHODS) <= set(ALL_METHODS)
