"""benchmarks.report, .tables and .plots: seed statistics, the markdown table, the figures and
input checks."""

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/ is not installed

from afr_aug.bench import plots, report, tables

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
COUNTS = [5000, 2997, 1796, 1077, 645, 387, 232, 139, 83, 50]  # CIFAR-10-LT, ratio 100


def _run(method, seed, top1, many, med, few=None, **extra):
    per_class = [min(1.0, max(0.0, top1 + 0.4 - 0.09 * c + 0.01 * seed)) for c in range(10)]
    return {
        "method": method,
        "epochs": 200,
        "seed": seed,
        "top1": top1,
        "many": many,
        "med": med,
        "few": few,
        "per_class": per_class,
        "seconds": 10.0,
        "img_per_s": 100.0,
        **extra,
    }


@pytest.fixture
def results():
    runs = []
    for seed, (t, m, d) in enumerate(
        [(0.4613, 0.60, 0.40), (0.4513, 0.62, 0.41), (0.4563, 0.64, 0.45)]
    ):
        runs.append(_run("bs_cmo", seed, t, m, d, best_top1=t + 0.01))
    for seed, (t, m, d) in enumerate([(0.50, 0.70, 0.30), (0.52, 0.72, 0.34), (0.54, 0.71, 0.38)]):
        runs.append(_run("afr", seed, t, m, d, best_top1=t + 0.02))
    runs.insert(1, _run("ce", 0, 0.70, 0.90, 0.55))  # single seed, interleaved
    return {"dataset": "cifar10-lt", "imbalance_ratio": 100, "device": "cpu (test)", "runs": runs}


def test_summarize_means_and_sample_stds(results):
    rows = tables.summarize(results["runs"])
    assert [r["method"] for r in rows] == ["bs_cmo", "ce", "afr"]  # first appearance order
    bs, ce, afr = rows
    assert bs["seeds"] == [0, 1, 2] and bs["n"] == 3 and bs["epochs"] == 200
    # bs_cmo top1: 0.4613, 0.4513, 0.4563 -> mean 0.4563, deviations +-.005, 0 -> std .005
    assert bs["top1_mean"] == pytest.approx(0.4563)
    assert bs["top1_std"] == pytest.approx(0.005)
    assert bs["many_mean"] == pytest.approx(0.62) and bs["many_std"] == pytest.approx(0.02)
    assert bs["med_mean"] == pytest.approx(0.42) and bs["med_std"] == pytest.approx(
        np.std([0.40, 0.41, 0.45], ddof=1)
    )
    assert bs["best_top1_mean"] == pytest.approx(0.4663) and bs["best_top1_n"] == 3
    assert afr["top1_mean"] == pytest.approx(0.52) and afr["top1_std"] == pytest.approx(0.02)
    assert afr["med_mean"] == pytest.approx(0.34) and afr["med_std"] == pytest.approx(0.04)
    assert afr["many_std"] == pytest.approx(np.std([0.70, 0.72, 0.71], ddof=1))
    # a single seed: std is 0.0, not NaN
    assert ce["n"] == 1 and ce["seeds"] == [0]
    assert ce["top1_mean"] == pytest.approx(0.70) and ce["top1_std"] == 0.0
    assert ce["best_top1_mean"] is None and ce["best_top1_n"] == 0
    # Few is null in every run: None, not 0
    for row in rows:
        assert row["few_mean"] is None and row["few_std"] is None


def test_summarize_accepts_whole_results_and_keeps_epoch_strings(results):
    assert tables.summarize(results) == tables.summarize(results["runs"])
    row = tables.summarize([{"method": "bs_cmo_ft", "epochs": "200+50", "seed": 0, "top1": 0.5}])[0]
    assert row["epochs"] == "200+50" and row["many_mean"] is None


def test_markdown_table_cells(results):
    table = tables.markdown_table(results)
    lines = table.splitlines()
    assert "CIFAR-10-LT" in lines[0] and "100" in lines[0] and "cpu (test)" in lines[0]
    assert "| Method | Epochs | Top-1 | Best top-1 | Many | Med | Few | Seeds |" in table
    bs = next(line for line in lines if line.startswith("| BS+CMO |"))
    assert "| 200 | 45.63 ± 0.50 | 46.63 ± 0.50 |" in bs and bs.endswith("| 0, 1, 2 |")
    assert "| 62.00 ± 2.00 |" in bs
    ce = next(line for line in lines if line.startswith("| Cross Entropy (CE) |"))
    assert ce == "| Cross Entropy (CE) | 200 | 70.00 | – | 90.00 | 55.00 | – | 0 |"
    assert "| AFR (ours) | 200 | 52.00 ± 2.00 | 54.00 ± 2.00 |" in table


def test_markdown_table_example_cell_and_names():
    runs = [
        {"method": m, "epochs": 200, "seed": s, "top1": t}
        for m, s, t in [
            ("bs_cmo", 0, 0.4613 - 0.0052),
            ("bs_cmo", 1, 0.4613 + 0.0052),
            ("mystery", 0, 0.3),
            ("ldam_drw", 0, 0.4),
        ]
    ]
    table = tables.markdown_table({"dataset": "cifar100-lt", "imbalance_ratio": 50, "runs": runs})
    assert "46.13 ± 0.74" in table  # ±0.0052 around the mean: sample std 0.0052*sqrt(2)
    one = {
        "dataset": "x",
        "runs": [
            {"method": "bs_cmo", "seed": s, "top1": t}
            for s, t in [(0, 0.4561), (1, 0.4613), (2, 0.4665)]
        ],
    }
    assert "46.13 ± 0.52" in tables.markdown_table(one)
    assert "| mystery |" in table and "| LDAM-DRW |" in table and "CIFAR-100-LT" in table
    assert "Best top-1" not in table  # no run records it
    assert "Few" in table and table.count("–") >= 3 * 3


def test_plots_write_pngs(tmp_path, results):
    pytest.importorskip("matplotlib")
    paths = [
        plots.plot_shot_accuracy(results, tmp_path / "shot.png"),
        plots.plot_per_class(
            results,
            COUNTS,
            tmp_path / "per_class.png",
            class_names=[
                "plane",
                "car",
                "bird",
                "cat",
                "deer",
                "dog",
                "frog",
                "horse",
                "ship",
                "truck",
            ],
        ),
    ]
    gen = torch.Generator().manual_seed(0)
    labels = torch.cat([torch.full((c // 10,), i) for i, c in enumerate(COUNTS)])
    centre = torch.linspace(0.85, 0.6, 10)[labels]
    spread = torch.linspace(0.03, 0.12, 10)[labels]
    similarity = (centre + spread * torch.randn(len(labels), generator=gen)).clamp(-1, 1)
    paths.append(
        plots.plot_class_distribution(
            COUNTS,
            similarity,
            labels,
            0,
            9,
            tmp_path / "fig1.png",
            class_names=[
                "plane",
                "car",
                "bird",
                "cat",
                "deer",
                "dog",
                "frog",
                "horse",
                "ship",
                "truck",
            ],
            thresholds=[0.8] * 9 + [0.55],
        )
    )
    # numpy arrays and lists work too
    paths.append(
        plots.plot_class_distribution(
            COUNTS, similarity.numpy(), labels.tolist(), 1, 8, tmp_path / "fig1_np.png"
        )
    )
    for p in paths:
        data = Path(p).read_bytes()
        assert len(data) > 1000 and data.startswith(PNG_SIGNATURE), p


def test_write_report(tmp_path, results):
    written = report.write_report(results, tmp_path / "out", class_counts=COUNTS)
    names = [Path(p).name for p in written]
    assert names[0] == "results.md"
    md = (tmp_path / "out" / "results.md").read_text(encoding="utf-8")
    assert tables.markdown_table(results) in md
    assert "final-epoch" in md and "best" in md.lower()
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        assert names == ["results.md"]
    else:
        assert names == ["results.md", "shot_accuracy.png", "per_class.png"]
        for p in written[1:]:
            assert Path(p).read_bytes().startswith(PNG_SIGNATURE)
    # class_counts stored in the results are used when none are passed
    again = report.write_report({**results, "class_counts": COUNTS}, tmp_path / "again")
    assert len(again) == len(written)


def test_cli(tmp_path, results):
    import json

    (tmp_path / "results.json").write_text(json.dumps(results))
    report.main([str(tmp_path)])
    assert (tmp_path / "results.md").is_file()


@pytest.mark.parametrize(
    "runs, match",
    [
        ([{"method": "ce", "seed": 0}], "top1"),
        ([{"method": "ce", "seed": 0, "top1": None}], "top1"),
        ([{"method": "ce", "seed": 0, "top1": 46.1}], r"\[0, 1\]"),
        ([{"seed": 0, "top1": 0.4}], "method"),
        ([], "non-empty"),
        (
            [{"method": "ce", "seed": 0, "top1": 0.4}, {"method": "ce", "seed": 0, "top1": 0.5}],
            "duplicate",
        ),
        (
            [
                {"method": "ce", "seed": 0, "top1": 0.4, "epochs": 200},
                {"method": "ce", "seed": 1, "top1": 0.5, "epochs": 100},
            ],
            "epochs",
        ),
        (
            [
                {"method": "ce", "seed": 0, "top1": 0.4, "few": 0.1},
                {"method": "ce", "seed": 1, "top1": 0.5, "few": None},
            ],
            "few",
        ),
    ],
)
def test_summarize_rejects_bad_runs(runs, match):
    with pytest.raises(ValueError, match=match):
        tables.summarize(runs)


def test_plot_errors(tmp_path, results):
    with pytest.raises(ValueError, match="per_class has 10 entries but class_counts has 9"):
        plots.plot_per_class(results, COUNTS[:9], tmp_path / "x.png")
    with pytest.raises(ValueError, match="per_class has 10 entries"):  # checked before writing
        report.write_report(results, tmp_path / "never", class_counts=COUNTS[:9])
    assert not (tmp_path / "never").exists()
    no_pc = {"runs": [{"method": "ce", "top1": 0.5}]}
    with pytest.raises(ValueError, match="no 'per_class'"):
        plots.plot_per_class(no_pc, [10, 1], tmp_path / "x.png")
    with pytest.raises(ValueError, match="runs"):
        tables.markdown_table({"dataset": "x"})

    sim, lab = [0.9, 0.8, 0.7], [0, 0, 2]
    with pytest.raises(ValueError, match="tail class 1 has no images"):
        plots.plot_class_distribution([2, 1, 1], sim, lab, 0, 1, tmp_path / "x.png")
    with pytest.raises(ValueError, match="head_class"):
        plots.plot_class_distribution([2, 1, 1], sim, lab, 3, 1, tmp_path / "x.png")
    with pytest.raises(ValueError, match="entries but labels"):
        plots.plot_class_distribution([2, 1, 1], sim, lab[:2], 0, 2, tmp_path / "x.png")
    with pytest.raises(ValueError, match="thresholds"):
        plots.plot_class_distribution(
            [2, 1, 1], sim, lab, 0, 2, tmp_path / "x.png", thresholds=[0.5]
        )
    with pytest.raises(ValueError, match="differ"):
        plots.plot_class_distribution([2, 1, 1], sim, lab, 0, 0, tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()


def test_import_does_not_need_matplotlib():
    import subprocess

    code = (
        "import sys; sys.modules['matplotlib'] = None\n"
        "from afr_aug.bench import plots, report, tables\n"
        "print(tables.markdown_table({'runs': [{'method': 'afr', 'top1': 0.5}]}))\n"
        "try:\n    plots.plot_shot_accuracy({'runs': [{'method': 'afr', 'top1': 0.5}]}, 'x.png')\n"
        "except ImportError as e:\n    print(e)\n"
    )
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert "AFR (ours)" in out.stdout and 'pip install "afr-aug[plot]"' in out.stdout


def test_reliability_bins_pool_seeds_and_refuse_mismatched_bins(tmp_path):
    cal = {"count": [2, 0, 2], "confidence": [0.2, None, 0.9], "accuracy": [0.5, None, 1.0]}
    other = {"count": [2, 1, 0], "confidence": [0.4, 0.5, None], "accuracy": [0.0, 1.0, None]}
    runs = [
        _run("bs", 0, 0.5, 0.6, 0.4, calibration=cal),
        _run("bs", 1, 0.5, 0.6, 0.4, calibration=other),
        _run("ce", 0, 0.5, 0.6, 0.4),
    ]  # no bins: left out
    count, conf, acc = plots.reliability_bins(runs)["bs"]
    assert count == [4, 1, 2] and conf == pytest.approx([0.3, 0.5, 0.9])
    assert acc == pytest.approx([0.25, 1.0, 1.0]) and "ce" not in plots.reliability_bins(runs)
    short = dict(other, count=[2, 1])
    with pytest.raises(ValueError, match="differ in length"):
        plots.reliability_bins([_run("bs", 0, 0.5, 0.6, 0.4, calibration=short)])
    four = {k: [*v, v[0]] for k, v in other.items()}
    with pytest.raises(ValueError, match="different numbers of bins"):
        plots.reliability_bins([*runs[:1], _run("bs", 1, 0.5, 0.6, 0.4, calibration=four)])
    with pytest.raises(ValueError, match="no run has 'calibration' bins"):
        plots.plot_reliability({"dataset": "cifar10-lt", "runs": runs[2:]}, tmp_path / "r.png")


def test_published_table_sets_each_row_beside_its_paper():
    from afr_aug.bench.tables import published_table

    runs = [
        {
            "method": "ldam_drw",
            "epochs": 200,
            "seed": 0,
            "top1": 0.75,
            "best_top1": 0.7753,
            "many": 0.8,
            "med": 0.7,
            "few": None,
            "ece": 0.1,
            "seconds": 3600,
            "device": "cpu (AMD EPYC)",
            "recipe": "authors",
        },
        {
            "method": "afr",
            "epochs": 250,
            "seed": 0,
            "top1": 0.78,
            "many": 0.8,
            "med": 0.7,
            "few": None,
        },
    ]
    table = published_table({"dataset": "cifar10-lt", "imbalance_ratio": 100, "runs": runs})
    ldam, afr = table.splitlines()[4:6]
    assert "| 77.03 | +0.50 |" in ldam and "| 75.00 | 77.53 |" in ldam and "1.0 h" in ldam
    assert afr.endswith("| – | – | – |")  # no published CIFAR-10 number
    assert published_table({"dataset": "cifar10-lt", "runs": runs[1:]}) == ""
    c100 = published_table({"dataset": "cifar100-lt", "runs": runs[:1]})
    assert "| 42.04 |" in c100 and "CIFAR-100-LT" in c100
    # a wall time whose pauses were estimated says so
    older = [{**runs[0], "paused_epochs_estimated": 2}]
    row = published_table({"dataset": "cifar10-lt", "runs": older}).splitlines()[4]
    assert "| ≈1.0 h |" in row and "| 1.0 h |" in ldam


def test_each_refresh_sums_what_the_epochs_it_served_trained_on():
    from afr_aug.bench.runner import trained_row

    def mix(batches, mixed, images, share):
        return {"batches": batches, "mixed": mixed, "images": images, "balanced_share": share}

    history = [
        {"epoch": 1, "mix": mix(9, 9, 900, 0.5)},  # before any refresh: belongs to none
        {"epoch": 2, "refresh": {"generation": 1}, "mix": mix(10, 2, 1000, 0.1)},
        {"epoch": 3, "mix": mix(10, 4, 1000, 0.3)},
        {"epoch": 4, "refresh": {"generation": 2}},  # served no epoch with mix stats
    ]
    final = {"top1": 0.5, "many": 0.5, "med": 0.5, "few": None, "per_class": [0.5, 0.5]}
    row = trained_row("afr", 0, final, [0.4], 10.0, 100, 2, 2, history)
    first, second = row["refreshes"]
    assert first == {
        "generation": 1,
        "trained": {"batches": 20, "mixed": 6, "images": 2000, "set_share": 0.2},
    }
    assert second == {"generation": 2}
    assert history[1]["refresh"] == {"generation": 1}  # the history is not changed
    assert "refreshes" not in trained_row("ce", 0, final, [], 1.0, 1, 2, 0, history[:1])
