"""Turn ``benchmarks.reproduce`` results into a Table-1-style markdown table and Fig. 1/4-style plots.

The reference run writes raw per-seed numbers (``results.json``); readers need the paper's view:
mean ± std over seeds per method, split into Many/Med/Few shot groups. This module computes
that view and draws it, so every published number can be regenerated from ``results.json``::

    python -m benchmarks.report path/to/results.json     # writes results.md and PNGs next to it

matplotlib is imported only inside the plotting functions (it is the optional ``plot`` extra):
importing this module, :func:`summarize` and :func:`markdown_table` need only the standard library.
Figures are drawn on a private Agg canvas, never through ``pyplot``, so a user's interactive
backend and pyplot's figure registry are left untouched.
"""

import argparse
import json
import math
import numbers
import operator
import os
from pathlib import Path

__all__ = [
    "METHOD_NAMES",
    "summarize",
    "markdown_table",
    "paired_differences",
    "paired_table",
    "plot_shot_accuracy",
    "plot_per_class",
    "plot_class_distribution",
    "plot_reliability",
    "reliability_bins",
    "write_report",
]

#: Display names of the methods ``benchmarks.reproduce`` runs; unknown names are shown as-is.
METHOD_NAMES = {
    "ce": "Cross Entropy (CE)",
    "ce_drw": "CE-DRW",
    "ldam_drw": "LDAM-DRW",
    "bs": "Balanced Softmax (BS)",
    "bs_cmo": "BS+CMO",
    "bs_cmo_ft": "BS+CMO + fine-tune (control)",
    "afr": "AFR (ours)",
    "ce_posthoc": "CE + post-hoc logit adj.",
    "la": "Logit-adjusted loss (LA)",
    "bs_cmo_eff": "BS+CMO, effective prior",
    "bs_cmo_posthoc": "BS+CMO + post-hoc prior fix",
    "bs_cmo_tau": "BS+CMO + τ-norm",
    "bs_cmo_crt": "BS+CMO + cRT",
    "afr_tau": "AFR + τ-norm",
}

_DATASET_NAMES = {
    "cifar10-lt": "CIFAR-10-LT",
    "cifar100-lt": "CIFAR-100-LT",
    "imagenet-lt": "ImageNet-LT",
    "places-lt": "Places-LT",
    "inaturalist2018": "iNaturalist 2018",
}

_GROUPS = ("many", "med", "few")  # all-or-none per method: a group is empty for the whole dataset
_PLOT_HINT = 'plotting needs matplotlib: pip install "afr-aug[plot]"'


# ----------------------------------------------------------------------------------------- checks
def _is_number(x):
    return isinstance(x, numbers.Real) and not isinstance(x, bool) and math.isfinite(float(x))


def _check_accuracy(value, where, key, allow_none):
    if value is None:
        if allow_none:
            return None
        raise ValueError(f"{where}: '{key}' is missing or null")
    if not _is_number(value) or not 0.0 <= float(value) <= 1.0:
        raise ValueError(
            f"{where}: '{key}' must be an accuracy fraction in [0, 1], got {value!r}"
            " (percentages? divide by 100)"
        )
    return float(value)


def _check_runs(runs):
    """Validate runs once, up front, so later errors cannot be half-written reports."""
    if isinstance(runs, dict):  # a whole results.json dict is accepted too
        runs = runs.get("runs")
    if not isinstance(runs, (list, tuple)) or not runs:
        raise ValueError("expected a non-empty list of runs (results['runs'])")
    for i, run in enumerate(runs):
        if not isinstance(run, dict):
            raise ValueError(f"run {i}: expected a dict, got {type(run).__name__}")
        method = run.get("method")
        if not isinstance(method, str) or not method:
            raise ValueError(f"run {i}: 'method' must be a non-empty string, got {method!r}")
        where = f"run {i} (method {method!r})"
        _check_accuracy(run.get("top1"), where, "top1", allow_none=False)
        for key in ("best_top1",) + _GROUPS:
            _check_accuracy(run.get(key), where, key, allow_none=True)
        per_class = run.get("per_class")
        if per_class is not None:
            if not isinstance(per_class, (list, tuple)) or not per_class:
                raise ValueError(f"{where}: 'per_class' must be a non-empty list of accuracies")
            for c, acc in enumerate(per_class):
                _check_accuracy(acc, where, f"per_class[{c}]", allow_none=False)
    return list(runs)


def _check_results(results):
    if not isinstance(results, dict):
        raise ValueError(f"expected the results.json dict, got {type(results).__name__}")
    return _check_runs(results.get("runs"))


def _check_counts(class_counts):
    if not isinstance(class_counts, (list, tuple)) and not hasattr(class_counts, "tolist"):
        raise ValueError("class_counts must be a list of non-negative ints, one per class")
    counts = list(class_counts.tolist() if hasattr(class_counts, "tolist") else class_counts)
    if not counts or not all(_is_number(c) and float(c) >= 0 and float(c) == int(c) for c in counts):
        raise ValueError(f"class_counts must be a non-empty list of non-negative ints, got {counts!r}")
    return [int(c) for c in counts]


# ---------------------------------------------------------------------------------------- numbers
def _mean_std(values):
    """Mean and sample std (ddof=1; 0.0 for one value): seeds are a sample of possible runs."""
    n = len(values)
    mean = math.fsum(values) / n
    if n == 1:
        return mean, 0.0
    return mean, math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (n - 1))


def _epochs_label(run: dict):
    """``"200+50"`` for a fine-tuning run that records its stages, else ``run["epochs"]``."""
    if run.get("stage2_epochs") and run.get("stage1_epochs") is not None:
        return f"{run['stage1_epochs']}+{run['stage2_epochs']}"
    return run.get("epochs")


def summarize(runs):
    """One row per method (first-appearance order) with mean and sample std over its seeds.

    ``runs`` is ``results["runs"]`` (the whole results dict is accepted too). Each row holds
    ``method, seeds, n, epochs`` and ``{top1,best_top1,many,med,few}_{mean,std}``; a mean/std is
    ``None`` where the value is null in every seed (e.g. Few on CIFAR-10-LT). ``best_top1`` may be
    missing in some seeds, so ``best_top1_n`` says how many seeds it averages.

    >>> runs = [{"method": "bs", "epochs": 200, "seed": s, "top1": t, "many": 0.9, "few": None}
    ...         for s, t in enumerate([0.40, 0.42, 0.44])]
    >>> row = summarize(runs)[0]
    >>> row["method"], row["seeds"], row["n"], round(row["top1_mean"], 4), round(row["top1_std"], 4)
    ('bs', [0, 1, 2], 3, 0.42, 0.02)
    >>> row["few_mean"], row["few_std"]
    (None, None)
    """
    runs = _check_runs(runs)
    by_method = {}
    for run in runs:  # dicts keep insertion order: first appearance wins
        by_method.setdefault(run["method"], []).append(run)

    rows = []
    for method, group in by_method.items():
        seeds = [run.get("seed") for run in group]
        known = [s for s in seeds if s is not None]
        if len(known) != len(set(known)):
            raise ValueError(f"method {method!r}: duplicate seeds {seeds} (a run recorded twice?)")
        epochs = [_epochs_label(run) for run in group]
        if any(e != epochs[0] for e in epochs):
            raise ValueError(f"method {method!r}: seeds ran for different epochs {epochs}; "
                             "averaging them would mix two settings")
        row = {"method": method, "seeds": seeds, "n": len(group)}
        for key in ("top1",) + _GROUPS:
            values = [run.get(key) for run in group]
            present = [float(v) for v in values if v is not None]
            if present and len(present) != len(values):
                raise ValueError(f"method {method!r}: '{key}' is null in some seeds but not others "
                                 "(runs from different datasets or class splits?)")
            mean, std = _mean_std(present) if present else (None, None)
            row[f"{key}_mean"], row[f"{key}_std"] = mean, std
        ece = [float(run["ece"]) for run in group if run.get("ece") is not None]
        row["ece_mean"], row["ece_std"] = _mean_std(ece) if ece else (None, None)
        row["ece_n"] = len(ece)
        best = [float(run["best_top1"]) for run in group if run.get("best_top1") is not None]
        row["best_top1_mean"], row["best_top1_std"] = _mean_std(best) if best else (None, None)
        row["best_top1_n"] = len(best)
        row["epochs"] = epochs[0]
        rows.append(row)
    return rows


def _per_class_means(runs, num_classes):
    """{method: per-class mean accuracy} over the method's seeds."""
    grouped = {}
    for i, run in enumerate(runs):
        per_class = run.get("per_class")
        if per_class is None:
            raise ValueError(f"run {i} (method {run['method']!r}) has no 'per_class' accuracies")
        if len(per_class) != num_classes:
            raise ValueError(f"run {i} (method {run['method']!r}): per_class has {len(per_class)} "
                             f"entries but class_counts has {num_classes}")
        grouped.setdefault(run["method"], []).append([float(a) for a in per_class])
    return {m: [math.fsum(col) / len(col) for col in zip(*accs)] for m, accs in grouped.items()}


# ------------------------------------------------------------------------------------------ table
def _method_name(method):
    """The display name; a variant's tags follow it: ``afr[mixup,0.5]`` -> ``AFR (ours) [mixup,0.5]``."""
    base, bracket, tags = str(method).partition("[")
    if bracket and base in METHOD_NAMES:
        return f"{METHOD_NAMES[base]} [{tags}"
    return METHOD_NAMES.get(method, method)


def _dataset_name(dataset):
    return _DATASET_NAMES.get(str(dataset).lower(), str(dataset))


def _cell(mean, std, n):
    if mean is None:
        return "–"
    if n > 1:
        return f"{100 * mean:.2f} ± {100 * std:.2f}"
    return f"{100 * mean:.2f}"


def _md(text):
    return str(text).replace("|", "\\|")


def _header(results):
    dataset = _dataset_name(results.get("dataset", "unknown dataset"))
    ratio = results.get("imbalance_ratio", "?")
    device = results.get("device", "unknown device")
    return dataset, ratio, device


def markdown_table(results):
    """Table-1-style markdown: mean ± sample std over seeds, in percent, per method.

    A "Best top-1" column is added when any run records ``best_top1``, because the paper reports
    best-epoch accuracy while ``top1`` is the final epoch.

    >>> res = {"dataset": "cifar10-lt", "imbalance_ratio": 100, "device": "cpu",
    ...        "runs": [{"method": "afr", "epochs": 200, "seed": 0, "top1": 0.4613,
    ...                  "many": 0.6, "med": 0.45, "few": None}]}
    >>> print(markdown_table(res))
    **CIFAR-10-LT**, imbalance ratio 100, device: cpu
    <BLANKLINE>
    | Method | Epochs | Top-1 | Many | Med | Few | Seeds |
    |:--|--:|--:|--:|--:|--:|:--|
    | AFR (ours) | 200 | 46.13 | 60.00 | 45.00 | – | 0 |
    """
    runs = _check_results(results)
    rows = summarize(runs)
    show_best = any(row["best_top1_n"] for row in rows)
    dataset, ratio, device = _header(results)

    columns = ["Method", "Epochs", "Top-1"] + (["Best top-1"] if show_best else [])
    show_ece = any(row["ece_n"] for row in rows)
    columns += ["Many", "Med", "Few"] + (["ECE"] if show_ece else []) + ["Seeds"]
    align = [":--", "--:"] + ["--:"] * (len(columns) - 3) + [":--"]
    lines = [
        f"**{_md(dataset)}**, imbalance ratio {_md(ratio)}, device: {_md(device)}",
        "",
        "| " + " | ".join(columns) + " |",
        "|" + "|".join(align) + "|",
    ]
    for row in rows:
        n = row["n"]
        cells = [_md(_method_name(row["method"])), _md(row["epochs"] if row["epochs"] is not None else "–"),
                 _cell(row["top1_mean"], row["top1_std"], n)]
        if show_best:
            cells.append(_cell(row["best_top1_mean"], row["best_top1_std"], row["best_top1_n"]))
        cells += [_cell(row[f"{g}_mean"], row[f"{g}_std"], n) for g in _GROUPS]
        if show_ece:
            cells.append(_cell(row["ece_mean"], row["ece_std"], row["ece_n"]))
        cells.append(", ".join("?" if s is None else _md(s) for s in row["seeds"]))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def paired_differences(runs, method="afr", baseline="bs_cmo_ft"):
    """Per-seed ``method - baseline`` differences, for the seeds both ran.

    Two methods that share a seed share their starting point (stage 2 fine-tunes the same
    ``bs_cmo`` model) and their random streams, so the paired difference has far less spread
    than the two means: it is the number that says whether a gain is larger than seed noise.
    Returns ``None`` when no seed has both, else ``{"seeds", "top1", "many", "med", "few"}``
    with a list of differences per key (``None`` entries where the group is empty) and
    ``{key}_mean`` / ``{key}_std`` (sample std, 0.0 for one seed).

    >>> runs = [{"method": m, "seed": s, "top1": t, "many": None, "med": None, "few": None}
    ...         for m, s, t in [("afr", 0, 0.65), ("afr", 1, 0.64), ("bs_cmo_ft", 0, 0.64),
    ...                         ("bs_cmo_ft", 1, 0.64), ("bs_cmo_ft", 2, 0.63)]]
    >>> d = paired_differences(runs)
    >>> d["seeds"], [round(x, 4) for x in d["top1"]], round(d["top1_mean"], 4)
    ([0, 1], [0.01, 0.0], 0.005)
    """
    runs = _check_runs(runs)
    a = {r.get("seed"): r for r in runs if r["method"] == method}
    b = {r.get("seed"): r for r in runs if r["method"] == baseline}
    seeds = [s for s in a if s in b and s is not None]
    if not seeds:
        return None
    out = {"method": method, "baseline": baseline, "seeds": seeds}
    for key in ("top1",) + _GROUPS:
        diffs = [None if a[s].get(key) is None or b[s].get(key) is None
                 else float(a[s][key]) - float(b[s][key]) for s in seeds]
        out[key] = diffs
        present = [d for d in diffs if d is not None]
        out[f"{key}_mean"], out[f"{key}_std"] = _mean_std(present) if present else (None, None)
    return out


def paired_table(results, method="afr", baseline="bs_cmo_ft"):
    """Markdown for :func:`paired_differences` (in points), or ``""`` when no seed has both."""
    d = paired_differences(_check_results(results), method, baseline)
    if d is None:
        return ""
    keys = [k for k in ("top1",) + _GROUPS if d[f"{k}_mean"] is not None]
    names = {"top1": "Top-1", "many": "Many", "med": "Med", "few": "Few"}
    lines = [f"**Paired difference {_md(_method_name(method))} − {_md(_method_name(baseline))}** "
             "(same seed, same starting model), in points", "",
             "| Seed | " + " | ".join(names[k] for k in keys) + " |",
             "|:--|" + "--:|" * len(keys)]
    for i, s in enumerate(d["seeds"]):
        lines.append(f"| {_md(s)} | " + " | ".join(
            "–" if d[k][i] is None else f"{100 * d[k][i]:+.2f}" for k in keys) + " |")
    n = len(d["seeds"])
    lines.append(f"| mean{' ± std' if n > 1 else ''} | " + " | ".join(
        f"{100 * d[f'{k}_mean']:+.2f}" + (f" ± {100 * d[f'{k}_std']:.2f}" if n > 1 else "")
        for k in keys) + " |")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------- figures
def _new_figure(figsize):
    """A Figure on its own Agg canvas: no pyplot, so no global backend switch or figure leak."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise ImportError(_PLOT_HINT) from exc
    fig = Figure(figsize=figsize)
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120, bbox_inches="tight", format="png")
    return path


def _legend_below(fig, ax, handles, labels, ncol):
    """Legend under the axes' tick and axis labels: inside, it would hide bars or lines."""
    fig.canvas.draw()  # tick label extents are known only after a draw
    bottom = ax.get_tightbbox(fig.canvas.get_renderer()).y0
    y = ax.transAxes.inverted().transform((0.0, bottom))[1]
    ax.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, y - 0.01), ncol=ncol,
              frameon=False, fontsize=9)


def _colors(n):
    from matplotlib import colormaps

    cmap = colormaps["tab10"]
    return [cmap(i % 10) for i in range(n)]


def plot_shot_accuracy(results, path):
    """Fig.-4-style grouped bars: Many / Med / Few / All accuracy per method, mean ± std over seeds.

    Shows whether a method's gain comes from tail classes or is bought with head accuracy.
    Groups empty for every method (Few on CIFAR-10-LT) are left out. Returns the PNG path.

    >>> import tempfile, os
    >>> res = {"dataset": "cifar10-lt", "imbalance_ratio": 100,
    ...        "runs": [{"method": "bs", "seed": 0, "top1": 0.5, "many": 0.7, "med": 0.4, "few": None}]}
    >>> p = plot_shot_accuracy(res, os.path.join(tempfile.mkdtemp(), "shot.png"))
    >>> p.stat().st_size > 0
    True
    """
    rows = summarize(_check_results(results))
    groups = [(label, key) for label, key in
              (("Many", "many"), ("Med", "med"), ("Few", "few"), ("All (top-1)", "top1"))
              if any(row[f"{key}_mean"] is not None for row in rows)]
    dataset, ratio, _ = _header(results)

    fig = _new_figure((max(6.0, 1.1 + 0.45 * len(rows) * len(groups)), 4.6))
    ax = fig.add_subplot()
    width = 0.8 / len(rows)
    top = 0.0
    for i, (row, color) in enumerate(zip(rows, _colors(len(rows)))):
        xs = [g + (i - (len(rows) - 1) / 2) * width for g in range(len(groups))]
        heights, errs = [], []
        for _, key in groups:
            mean, std = row[f"{key}_mean"], row[f"{key}_std"]
            heights.append(math.nan if mean is None else 100 * mean)
            errs.append(100 * std if mean is not None and row["n"] > 1 else 0.0)
        top = max([top] + [h + e for h, e in zip(heights, errs) if not math.isnan(h)])
        label = _method_name(row["method"]) + (f" (n={row['n']})" if row["n"] > 1 else "")
        ax.bar(xs, heights, width * 0.92, color=color, label=label,
                      yerr=errs if any(errs) else None, capsize=3 if any(errs) else 0,
                      error_kw={"elinewidth": 1, "ecolor": "0.25"})
        for x, h, e in zip(xs, heights, errs):  # above the error bar, where bar_label would clash
            if not math.isnan(h):
                ax.annotate(f"{h:.1f}", (x, h + e), xytext=(0, 4), textcoords="offset points",
                            ha="center", va="bottom", fontsize=7,
                            rotation=90 if len(rows) > 3 else 0)
    ax.set_xticks(range(len(groups)))
    ax.set_xticklabels([label for label, _ in groups])
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(0, top + 12)  # head-room for the value labels above the tallest bar
    ax.yaxis.grid(True, color="0.9")
    ax.set_axisbelow(True)
    ax.set_title(f"{dataset} (imbalance ratio {ratio}): accuracy by shot group")
    handles, labels = ax.get_legend_handles_labels()
    _legend_below(fig, ax, handles, labels, ncol=min(len(rows), 3))
    return _save(fig, path)


def plot_per_class(results, class_counts, path, class_names=None):
    """Per-class accuracy (mean over seeds) per method, over the training class counts.

    Classes are drawn in the order given (head to tail), so accuracy can be read against the
    number of training images, which is shown as light bars on a log-scale right axis.

    >>> import tempfile, os
    >>> res = {"dataset": "cifar10-lt", "runs": [
    ...     {"method": "bs", "seed": 0, "top1": 0.5, "per_class": [0.9, 0.5, 0.1]}]}
    >>> p = plot_per_class(res, [500, 50, 5], os.path.join(tempfile.mkdtemp(), "pc.png"))
    >>> p.read_bytes()[:4] == b"\\x89PNG"
    True
    """
    runs = _check_results(results)
    counts = _check_counts(class_counts)
    means = _per_class_means(runs, len(counts))
    if class_names is not None and len(class_names) != len(counts):
        raise ValueError(f"class_names has {len(class_names)} entries, class_counts {len(counts)}")
    dataset, ratio, _ = _header(results)
    num_classes = len(counts)
    xs = list(range(num_classes))

    fig = _new_figure((max(6.5, min(14.0, 0.12 * num_classes + 5)), 4.6))
    ax = fig.add_subplot()
    ax2 = ax.twinx()
    ax2.bar(xs, [max(c, 0) for c in counts], width=0.8, color="0.88", label="training images")
    ax2.set_yscale("log")
    positive = [c for c in counts if c > 0]
    if positive:  # head room: the tallest bar stays below the head classes' accuracy markers
        ax2.set_ylim(min(positive) / 2, max(positive) * 4)
    ax2.set_ylabel("training images per class (log)", color="0.45")
    ax2.tick_params(axis="y", colors="0.45")
    ax.set_zorder(ax2.get_zorder() + 1)  # lines over the bars, but ax's background must go
    ax.patch.set_visible(False)

    marker_size = 5 if num_classes <= 20 else 3 if num_classes <= 60 else 2
    for (method, acc), color in zip(means.items(), _colors(len(means))):
        ax.plot(xs, [100 * a for a in acc], marker="o", markersize=marker_size, linewidth=1.4,
                color=color, label=_method_name(method))
    ax.set_ylim(0, 105)
    ax.set_xlim(-0.6, num_classes - 0.4)
    ax.set_ylabel("per-class accuracy (%)")
    ax.set_xlabel("class (head → tail)")
    if num_classes <= 20:
        ax.set_xticks(xs)
        if class_names is not None:
            ax.set_xticklabels([str(n) for n in class_names], rotation=45, ha="right")
    else:
        from matplotlib.ticker import MaxNLocator

        ax.xaxis.set_major_locator(MaxNLocator(nbins=10, integer=True))
    ax.yaxis.grid(True, color="0.9")
    ax.set_title(f"{dataset} (imbalance ratio {ratio}): per-class accuracy")
    handles = ax.get_legend_handles_labels()[0] + ax2.get_legend_handles_labels()[0]
    _legend_below(fig, ax, handles, [h.get_label() for h in handles], ncol=min(len(handles), 4))
    return _save(fig, path)


def reliability_bins(runs):
    """{method: (count, confidence, accuracy)} pooled over its seeds from the runs'
    ``calibration`` bins (count-weighted means; ``None`` for an empty bin). Runs without
    ``calibration`` are skipped; methods whose seeds used different bin counts are refused.

    >>> runs = [{"method": "bs", "calibration": {"count": [1, 0], "confidence": [0.5, None],
    ...                                          "accuracy": [1.0, None]}},
    ...         {"method": "bs", "calibration": {"count": [3, 2], "confidence": [0.3, 0.9],
    ...                                          "accuracy": [0.0, 0.5]}}]
    >>> reliability_bins(runs)["bs"]
    ([4, 2], [0.35, 0.9], [0.25, 0.5])
    """
    pooled = {}
    for run in runs:
        cal = run.get("calibration")
        if not cal:
            continue
        count = [int(c) for c in cal["count"]]
        if not len(count) == len(cal["confidence"]) == len(cal["accuracy"]):
            raise ValueError(f"method {run['method']!r}: calibration lists differ in length")
        sums = pooled.setdefault(run["method"], [[0] * len(count), [0.0] * len(count),
                                                 [0.0] * len(count)])
        if len(sums[0]) != len(count):
            raise ValueError(f"method {run['method']!r}: seeds used different numbers of bins")
        for b, n in enumerate(count):
            if n:
                sums[0][b] += n
                sums[1][b] += n * float(cal["confidence"][b])
                sums[2][b] += n * float(cal["accuracy"][b])
    return {m: (n, [c / k if k else None for c, k in zip(conf, n)],
                [a / k if k else None for a, k in zip(acc, n)]) for m, (n, conf, acc) in pooled.items()}


def plot_reliability(results, path):
    """Reliability diagrams, one panel per method: accuracy against confidence per bin (seeds
    pooled), the gap to the diagonal shaded, ECE in the title.

    Shows *how* a method is miscalibrated (over-confident bars below the diagonal), which the
    ECE number alone hides; re-balancing losses and mixing change this as much as accuracy.

    >>> import tempfile, os
    >>> run = {"method": "bs", "seed": 0, "top1": 0.5, "ece": 0.1,
    ...        "calibration": {"count": [2, 3], "confidence": [0.3, 0.8], "accuracy": [0.5, 0.6]}}
    >>> p = plot_reliability({"dataset": "cifar10-lt", "runs": [run]},
    ...                      os.path.join(tempfile.mkdtemp(), "rel.png"))
    >>> p.stat().st_size > 0
    True
    """
    runs = _check_results(results)
    bins = reliability_bins(runs)
    if not bins:
        raise ValueError("no run has 'calibration' bins (results written before issue 10?)")
    ece = {row["method"]: row for row in summarize(runs)}
    cols = min(4, len(bins))
    rows = math.ceil(len(bins) / cols)
    fig = _new_figure((3.0 * cols, 3.2 * rows + 0.5))
    fig.set_layout_engine("constrained")      # titles clear of the panel above's tick labels
    dataset, ratio, _ = _header(results)
    for i, (method, (count, conf, acc)) in enumerate(bins.items()):
        ax = fig.add_subplot(rows, cols, i + 1)
        n_bins = len(count)
        width = 1.0 / n_bins
        centres = [(b + 0.5) * width for b in range(n_bins)]
        full = [b for b in range(n_bins) if count[b]]
        ax.bar([centres[b] for b in full], [acc[b] for b in full], width * 0.95,
               color="tab:blue", label="accuracy")
        # the gap from accuracy to confidence: red above (over-confident), green inside the
        # accuracy bar (under-confident)
        ax.bar([centres[b] for b in full], [conf[b] - acc[b] for b in full], width * 0.95,
               bottom=[acc[b] for b in full], alpha=0.45, label="gap",
               color=["tab:red" if conf[b] > acc[b] else "tab:green" for b in full])
        ax.plot([0, 1], [0, 1], color="0.3", lw=1, ls="--")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_aspect("equal")
        row = ece.get(method, {})
        title = _method_name(method)
        if row.get("ece_mean") is not None:
            title += f"\nECE {100 * row['ece_mean']:.1f}%"
        ax.set_title(title, fontsize=9)
        if i % cols == 0:
            ax.set_ylabel("accuracy")
        if i >= (rows - 1) * cols:
            ax.set_xlabel("confidence")
        ax.tick_params(labelsize=7)
    fig.suptitle(f"{dataset} (imbalance ratio {ratio}): reliability. Blue: accuracy per "
                 "confidence bin; red: over-confident, green: under-confident by that much",
                 fontsize=10)
    return _save(fig, path)


def _to_numpy(x, name):
    import numpy as np

    if hasattr(x, "detach"):  # torch tensor, without importing torch here
        x = x.detach().cpu().numpy()
    arr = np.asarray(x)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D (one value per image), got shape {arr.shape}")
    return arr


def plot_class_distribution(class_counts, similarity, labels, head_class, tail_class, path,
                            class_names=None, thresholds=None):
    """Fig.-1-style figure: images per class (left) and, for one head and one tail class, the
    distribution of each image's cosine similarity to its class-mean feature (right).

    It shows the paper's motivation: a tail class's few images are spread differently around their
    mean than a head class's. ``similarity`` and ``labels`` (one entry per image) may be tensors,
    arrays or lists; ``thresholds`` (one λ per class) adds dashed lines at the two classes' λ.

    >>> import tempfile, os
    >>> sim = [0.9, 0.8, 0.85, 0.95, 0.5, 0.6]
    >>> lab = [0, 0, 0, 0, 1, 1]
    >>> p = plot_class_distribution([4, 2], sim, lab, 0, 1, os.path.join(tempfile.mkdtemp(), "f1.png"),
    ...                             class_names=["cat", "dog"], thresholds=[0.8, 0.55])
    >>> p.exists()
    True
    """
    import numpy as np

    counts = _check_counts(class_counts)
    num_classes = len(counts)
    sim = _to_numpy(similarity, "similarity").astype(float)
    lab = _to_numpy(labels, "labels")
    if len(sim) != len(lab):
        raise ValueError(f"similarity has {len(sim)} entries but labels has {len(lab)}")
    if not np.all(np.isfinite(sim)):
        raise ValueError("similarity contains NaN or inf")
    if lab.size and (not np.issubdtype(lab.dtype, np.integer) or lab.min() < 0 or lab.max() >= num_classes):
        raise ValueError(f"labels must be integer class indices in [0, {num_classes})")
    indices = []
    for name, c in (("head_class", head_class), ("tail_class", tail_class)):
        try:
            index = operator.index(c)  # int, numpy int or 0-d integer tensor, not 1.0 or True
        except TypeError:
            index = None
        if index is None or isinstance(c, bool) or not 0 <= index < num_classes:
            raise ValueError(f"{name} must be a class index in [0, {num_classes}), got {c!r}")
        indices.append(index)
    head_class, tail_class = indices
    if head_class == tail_class:
        raise ValueError("head_class and tail_class must differ")
    if class_names is not None and len(class_names) != num_classes:
        raise ValueError(f"class_names has {len(class_names)} entries, class_counts {num_classes}")
    if thresholds is not None:
        thresholds = [float(t) for t in _to_numpy(thresholds, "thresholds")]
        if len(thresholds) != num_classes:
            raise ValueError(f"thresholds has {len(thresholds)} entries, class_counts {num_classes}")
    picked = {}
    for role, c in (("head", head_class), ("tail", tail_class)):
        values = sim[lab == c]
        if values.size == 0:
            raise ValueError(f"{role} class {c} has no images in labels")
        picked[role] = (int(c), values)

    def name(c):
        return str(class_names[c]) if class_names is not None else f"class {c}"

    colors = {"head": "tab:blue", "tail": "tab:red"}
    fig = _new_figure((11.0, 4.2))
    left, right = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1, 1.15]})

    bar_colors = ["0.7"] * num_classes
    bar_colors[head_class], bar_colors[tail_class] = colors["head"], colors["tail"]
    left.bar(range(num_classes), counts, color=bar_colors, width=0.8)
    positive = [c for c in counts if c > 0]
    if positive and max(positive) / min(positive) > 20:  # a linear axis hides the tail classes
        left.set_yscale("log")
    left.set_ylabel("training images" + (" (log)" if left.get_yscale() == "log" else ""))
    left.set_xlabel("class (head → tail)")
    left.set_title("Training images per class")
    if num_classes <= 20:
        left.set_xticks(range(num_classes))
        if class_names is not None:
            left.set_xticklabels([str(n) for n in class_names], rotation=45, ha="right")
    else:
        from matplotlib.ticker import MaxNLocator

        left.xaxis.set_major_locator(MaxNLocator(nbins=10, integer=True))

    lo = min(v.min() for _, v in picked.values())
    hi = max(v.max() for _, v in picked.values())
    if thresholds is not None:
        lo = min(lo, thresholds[head_class], thresholds[tail_class])
        hi = max(hi, thresholds[head_class], thresholds[tail_class])
    pad = max(0.01, 0.02 * (hi - lo))
    bins = np.linspace(lo - pad, hi + pad, 31)  # shared bins: the two densities are comparable
    for role, (c, values) in picked.items():
        right.hist(values, bins=bins, density=True, alpha=0.5, color=colors[role],
                   edgecolor=colors[role], linewidth=0.6,
                   label=f"{name(c)} ({role}, n={values.size})")
        if thresholds is not None:
            right.axvline(thresholds[c], color=colors[role], linestyle="--", linewidth=1.5,
                          label=f"λ {name(c)} = {thresholds[c]:.2f}")
    right.set_xlabel("cosine similarity to class-mean feature")
    right.set_ylabel("density")
    right.set_title("Similarity to class mean")
    right.set_ylim(0, right.get_ylim()[1] * 1.3)  # room for the legend above the histograms
    right.legend(loc="best", fontsize=8, framealpha=0.85)
    fig.tight_layout()
    return _save(fig, path)


# ----------------------------------------------------------------------------------------- report
_NOTES = """\
- **Top-1**: accuracy of the *final-epoch* model on the balanced test set, mean ± sample std
  (ddof=1) over seeds, in percent; "± x" is omitted for a single seed.
- **Best top-1** (`best_top1`, shown when recorded): top-1 of the best evaluated epoch. The paper
  reports best top-1, so compare that column with its tables; choosing the epoch on the test set
  makes it optimistic.
- **Many / Med / Few**: mean accuracy of classes with > 100, 20–100 and < 20 training images;
  "–" marks an empty group (CIFAR-10-LT at ratio 100 has no Few class).
- **ECE** (shown when recorded): expected calibration error of the final model's softmax
  confidence on the test set, 15 equal-width bins, in percent (lower is better);
  `reliability.png` draws the bins.
- Rows made from another row's finished model (post-hoc logit adjustment, τ-norm, cRT) have no
  per-epoch evaluations, so no best top-1; "200+10" for cRT is stage 1 plus its classifier epochs.
"""


def write_report(results, out_dir, class_counts=None):
    """Write ``results.md`` and, when matplotlib is installed, ``shot_accuracy.png`` and (given
    ``class_counts``, or a ``class_counts`` entry in ``results``) ``per_class.png``.

    Plots are skipped rather than failing without matplotlib, so a headless reference run still
    leaves its table. Returns the written paths.

    >>> import tempfile
    >>> res = {"dataset": "cifar10-lt", "imbalance_ratio": 100, "device": "cpu",
    ...        "runs": [{"method": "ce", "epochs": 200, "seed": 0, "top1": 0.7, "many": 0.8,
    ...                  "med": 0.6, "few": None, "per_class": [0.8, 0.6]}]}
    >>> [p.name for p in write_report(res, tempfile.mkdtemp(), class_counts=[500, 50])]
    ['results.md', 'shot_accuracy.png', 'per_class.png']
    """
    _check_results(results)
    if class_counts is None:
        class_counts = results.get("class_counts")
    if class_counts is not None:
        class_counts = _check_counts(class_counts)
        _per_class_means(results["runs"], len(class_counts))  # fail before writing anything
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)

    table = markdown_table(results)
    md = out / "results.md"
    paired = paired_table(results)
    if paired:
        table += "\n\n" + paired
    md.write_text(f"# Results\n\n{table}\n\n{_NOTES}", encoding="utf-8")
    written = [md]
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return written
    written.append(plot_shot_accuracy(results, out / "shot_accuracy.png"))
    if class_counts is not None:
        written.append(plot_per_class(results, class_counts, out / "per_class.png"))
    if any(run.get("calibration") for run in results["runs"]):
        written.append(plot_reliability(results, out / "reliability.png"))
    return written


def main(argv=None):
    """``python -m benchmarks.report results.json [--out DIR]``: regenerate the report."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.report", description=main.__doc__)
    parser.add_argument("results", help="results.json written by benchmarks.reproduce, or its folder")
    parser.add_argument("--out", help="output folder (default: the folder of results.json)")
    args = parser.parse_args(argv)
    path = Path(args.results)
    if path.is_dir():
        path = path / "results.json"
    with open(path, encoding="utf-8") as f:
        results = json.load(f)
    for p in write_report(results, args.out or path.parent):
        print(os.fspath(p))


if __name__ == "__main__":
    main()
