"""Fig. 1 and Fig. 4-style figures of ``afr_aug.bench.reproduce`` results: accuracy by shot
group, per-class accuracy, reliability diagrams and the class-distribution figure.

matplotlib is imported only inside the plotting functions (it is the optional ``plot`` extra).
Figures are drawn on a private Agg canvas, never through ``pyplot``, so a user's interactive
backend and pyplot's figure registry are left untouched.
"""

import math
import operator
from pathlib import Path

from .tables import (
    check_counts,
    check_results,
    method_name,
    per_class_means,
    results_header,
    summarize,
)

__all__ = [
    "plot_class_distribution",
    "plot_per_class",
    "plot_reliability",
    "plot_shot_accuracy",
    "reliability_bins",
]

_PLOT_HINT = 'plotting needs matplotlib: pip install "afr-aug[plot]"'


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
    ax.legend(
        handles,
        labels,
        loc="upper center",
        bbox_to_anchor=(0.5, y - 0.01),
        ncol=ncol,
        frameon=False,
        fontsize=9,
    )


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
    ...        "runs": [{"method": "bs", "seed": 0, "top1": 0.5, "many": 0.7, "med": 0.4,
    ...                  "few": None}]}
    >>> p = plot_shot_accuracy(res, os.path.join(tempfile.mkdtemp(), "shot.png"))
    >>> p.stat().st_size > 0
    True
    """
    rows = summarize(check_results(results))
    groups = [
        (label, key)
        for label, key in (
            ("Many", "many"),
            ("Med", "med"),
            ("Few", "few"),
            ("All (top-1)", "top1"),
        )
        if any(row[f"{key}_mean"] is not None for row in rows)
    ]
    dataset, ratio, _ = results_header(results)

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
        label = method_name(row["method"]) + (f" (n={row['n']})" if row["n"] > 1 else "")
        ax.bar(
            xs,
            heights,
            width * 0.92,
            color=color,
            label=label,
            yerr=errs if any(errs) else None,
            capsize=3 if any(errs) else 0,
            error_kw={"elinewidth": 1, "ecolor": "0.25"},
        )
        for x, h, e in zip(xs, heights, errs):  # above the error bar, where bar_label would clash
            if not math.isnan(h):
                ax.annotate(
                    f"{h:.1f}",
                    (x, h + e),
                    xytext=(0, 4),
                    textcoords="offset points",
                    ha="center",
                    va="bottom",
                    fontsize=7,
                    rotation=90 if len(rows) > 3 else 0,
                )
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
    runs = check_results(results)
    counts = check_counts(class_counts)
    means = per_class_means(runs, len(counts))
    if class_names is not None and len(class_names) != len(counts):
        raise ValueError(f"class_names has {len(class_names)} entries, class_counts {len(counts)}")
    dataset, ratio, _ = results_header(results)
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
        ax.plot(
            xs,
            [100 * a for a in acc],
            marker="o",
            markersize=marker_size,
            linewidth=1.4,
            color=color,
            label=method_name(method),
        )
    ax.set_ylim(0, 105)
    ax.set_xlim(-0.6, num_classes - 0.4)
    ax.set_ylabel("per-class accuracy (%)")
    ax.set_xlabel("class (head → tail)")
    _class_ticks(ax, num_classes, class_names)
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
    pooled: dict[str, list[list]] = {}
    for run in runs:
        cal = run.get("calibration")
        if not cal:
            continue
        count = [int(c) for c in cal["count"]]
        if not len(count) == len(cal["confidence"]) == len(cal["accuracy"]):
            raise ValueError(f"method {run['method']!r}: calibration lists differ in length")
        sums = pooled.setdefault(
            run["method"], [[0] * len(count), [0.0] * len(count), [0.0] * len(count)]
        )
        if len(sums[0]) != len(count):
            raise ValueError(f"method {run['method']!r}: seeds used different numbers of bins")
        for b, n in enumerate(count):
            if n:
                sums[0][b] += n
                sums[1][b] += n * float(cal["confidence"][b])
                sums[2][b] += n * float(cal["accuracy"][b])
    return {
        m: (
            n,
            [c / k if k else None for c, k in zip(conf, n)],
            [a / k if k else None for a, k in zip(acc, n)],
        )
        for m, (n, conf, acc) in pooled.items()
    }


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
    runs = check_results(results)
    bins = reliability_bins(runs)
    if not bins:
        raise ValueError("no run has 'calibration' bins (results written before issue 10?)")
    ece = {row["method"]: row for row in summarize(runs)}
    cols = min(4, len(bins))
    rows = math.ceil(len(bins) / cols)
    fig = _new_figure((3.0 * cols, 3.2 * rows + 0.5))
    fig.set_layout_engine("constrained")  # titles clear of the panel above's tick labels
    dataset, ratio, _ = results_header(results)
    for i, (method, (count, conf, acc)) in enumerate(bins.items()):
        ax = fig.add_subplot(rows, cols, i + 1)
        n_bins = len(count)
        width = 1.0 / n_bins
        centres = [(b + 0.5) * width for b in range(n_bins)]
        full = [b for b in range(n_bins) if count[b]]
        ax.bar(
            [centres[b] for b in full],
            [acc[b] for b in full],
            width * 0.95,
            color="tab:blue",
            label="accuracy",
        )
        # the gap from accuracy to confidence: red above (over-confident), green inside the
        # accuracy bar (under-confident)
        ax.bar(
            [centres[b] for b in full],
            [conf[b] - acc[b] for b in full],
            width * 0.95,
            bottom=[acc[b] for b in full],
            alpha=0.45,
            label="gap",
            color=["tab:red" if conf[b] > acc[b] else "tab:green" for b in full],
        )
        ax.plot([0, 1], [0, 1], color="0.3", lw=1, ls="--")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_aspect("equal")
        row = ece.get(method, {})
        title = method_name(method)
        if row.get("ece_mean") is not None:
            title += f"\nECE {100 * row['ece_mean']:.1f}%"
        ax.set_title(title, fontsize=9)
        if i % cols == 0:
            ax.set_ylabel("accuracy")
        if i >= (rows - 1) * cols:
            ax.set_xlabel("confidence")
        ax.tick_params(labelsize=7)
    fig.suptitle(
        f"{dataset} (imbalance ratio {ratio}): reliability. Blue: accuracy per "
        "confidence bin; red: over-confident, green: under-confident by that much",
        fontsize=10,
    )
    return _save(fig, path)


def _to_numpy(x, name):
    import numpy as np

    if hasattr(x, "detach"):  # torch tensor, without importing torch here
        x = x.detach().cpu().numpy()
    arr = np.asarray(x)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D (one value per image), got shape {arr.shape}")
    return arr


def _class_index(name, c, num_classes):
    try:
        index = operator.index(c)  # int, numpy int or 0-d integer tensor, not 1.0 or True
    except TypeError:
        index = None
    if index is None or isinstance(c, bool) or not 0 <= index < num_classes:
        raise ValueError(f"{name} must be a class index in [0, {num_classes}), got {c!r}")
    return index


def _similarity_by_role(
    class_counts, similarity, labels, head_class, tail_class, class_names, thresholds
):
    """The checked inputs of :func:`plot_class_distribution`: the counts, ``{"head": (class,
    similarities), "tail": ...}`` and the thresholds as floats (or ``None``)."""
    import numpy as np

    counts = check_counts(class_counts)
    num_classes = len(counts)
    sim = _to_numpy(similarity, "similarity").astype(float)
    lab = _to_numpy(labels, "labels")
    if len(sim) != len(lab):
        raise ValueError(f"similarity has {len(sim)} entries but labels has {len(lab)}")
    if not np.all(np.isfinite(sim)):
        raise ValueError("similarity contains NaN or inf")
    if lab.size and (
        not np.issubdtype(lab.dtype, np.integer) or lab.min() < 0 or lab.max() >= num_classes
    ):
        raise ValueError(f"labels must be integer class indices in [0, {num_classes})")
    head_class = _class_index("head_class", head_class, num_classes)
    tail_class = _class_index("tail_class", tail_class, num_classes)
    if head_class == tail_class:
        raise ValueError("head_class and tail_class must differ")
    if class_names is not None and len(class_names) != num_classes:
        raise ValueError(f"class_names has {len(class_names)} entries, class_counts {num_classes}")
    if thresholds is not None:
        thresholds = [float(t) for t in _to_numpy(thresholds, "thresholds")]
        if len(thresholds) != num_classes:
            raise ValueError(
                f"thresholds has {len(thresholds)} entries, class_counts {num_classes}"
            )
    picked = {}
    for role, c in (("head", head_class), ("tail", tail_class)):
        values = sim[lab == c]
        if values.size == 0:
            raise ValueError(f"{role} class {c} has no images in labels")
        picked[role] = (int(c), values)
    return counts, picked, thresholds


def _class_ticks(ax, num_classes, class_names=None):
    """Every class on the x axis when there are at most 20 (named when names are given), else
    about 10 integer ticks."""
    if num_classes <= 20:
        ax.set_xticks(range(num_classes))
        if class_names is not None:
            ax.set_xticklabels([str(n) for n in class_names], rotation=45, ha="right")
    else:
        from matplotlib.ticker import MaxNLocator

        ax.xaxis.set_major_locator(MaxNLocator(nbins=10, integer=True))


_ROLE_COLORS = {"head": "tab:blue", "tail": "tab:red"}


def _draw_class_counts(ax, counts, picked, class_names):
    """Training images per class, the head and the tail class in their colours."""
    num_classes = len(counts)
    bar_colors = ["0.7"] * num_classes
    for role, (c, _) in picked.items():
        bar_colors[c] = _ROLE_COLORS[role]
    ax.bar(range(num_classes), counts, color=bar_colors, width=0.8)
    positive = [c for c in counts if c > 0]
    if positive and max(positive) / min(positive) > 20:  # a linear axis hides the tail classes
        ax.set_yscale("log")
    ax.set_ylabel("training images" + (" (log)" if ax.get_yscale() == "log" else ""))
    ax.set_xlabel("class (head → tail)")
    ax.set_title("Training images per class")
    _class_ticks(ax, num_classes, class_names)


def _draw_similarity(ax, picked, thresholds, class_names):
    """The head and the tail class's similarity histograms on shared bins, with their λ."""
    import numpy as np

    def name(c):
        return str(class_names[c]) if class_names is not None else f"class {c}"

    lo = min(v.min() for _, v in picked.values())
    hi = max(v.max() for _, v in picked.values())
    if thresholds is not None:
        lo = min([lo] + [thresholds[c] for c, _ in picked.values()])
        hi = max([hi] + [thresholds[c] for c, _ in picked.values()])
    pad = max(0.01, 0.02 * (hi - lo))
    bins = np.linspace(lo - pad, hi + pad, 31)  # shared bins: the two densities are comparable
    for role, (c, values) in picked.items():
        color = _ROLE_COLORS[role]
        ax.hist(
            values,
            bins=bins,
            density=True,
            alpha=0.5,
            color=color,
            edgecolor=color,
            linewidth=0.6,
            label=f"{name(c)} ({role}, n={values.size})",
        )
        if thresholds is not None:
            ax.axvline(
                thresholds[c],
                color=color,
                linestyle="--",
                linewidth=1.5,
                label=f"λ {name(c)} = {thresholds[c]:.2f}",
            )
    ax.set_xlabel("cosine similarity to class-mean feature")
    ax.set_ylabel("density")
    ax.set_title("Similarity to class mean")
    ax.set_ylim(0, ax.get_ylim()[1] * 1.3)  # room for the legend above the histograms
    ax.legend(loc="best", fontsize=8, framealpha=0.85)


def plot_class_distribution(
    class_counts,
    similarity,
    labels,
    head_class,
    tail_class,
    path,
    class_names=None,
    thresholds=None,
):
    """Fig.-1-style figure: images per class (left) and, for one head and one tail class, the
    distribution of each image's cosine similarity to its class-mean feature (right).

    It shows the paper's motivation: a tail class's few images are spread differently around their
    mean than a head class's. ``similarity`` and ``labels`` (one entry per image) may be tensors,
    arrays or lists; ``thresholds`` (one λ per class) adds dashed lines at the two classes' λ.

    >>> import tempfile, os
    >>> sim = [0.9, 0.8, 0.85, 0.95, 0.5, 0.6]
    >>> lab = [0, 0, 0, 0, 1, 1]
    >>> p = plot_class_distribution([4, 2], sim, lab, 0, 1,
    ...                             os.path.join(tempfile.mkdtemp(), "f1.png"),
    ...                             class_names=["cat", "dog"], thresholds=[0.8, 0.55])
    >>> p.exists()
    True
    """
    counts, picked, thresholds = _similarity_by_role(
        class_counts, similarity, labels, head_class, tail_class, class_names, thresholds
    )
    fig = _new_figure((11.0, 4.2))
    left, right = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1, 1.15]})
    _draw_class_counts(left, counts, picked, class_names)
    _draw_similarity(right, picked, thresholds, class_names)
    fig.tight_layout()
    return _save(fig, path)
