"""``results.json`` as the paper shows it: mean ± std over seeds per method, Many/Med/Few shot
groups, paired differences and AFR's refreshes, as numbers and as markdown tables.

The reference run writes raw per-seed numbers; readers need the paper's view. This module needs
only the standard library, so a results file can be summarised anywhere; the figures are in
``afr_aug.bench.plots`` and ``afr-aug report`` writes both.
"""

import math
import numbers

from .methods import METHODS

__all__ = [
    "METHOD_NAMES",
    "check_counts",
    "check_results",
    "markdown_table",
    "method_name",
    "paired_differences",
    "paired_table",
    "per_class_means",
    "published_table",
    "refresh_table",
    "results_header",
    "summarize",
]

#: Display names of the methods ``afr_aug.bench.reproduce`` runs (from the registry,
#: ``afr_aug.bench.methods``); unknown names are shown as-is.
METHOD_NAMES = {name: m.display for name, m in METHODS.items()}

_DATASET_NAMES = {
    "cifar10-lt": "CIFAR-10-LT",
    "cifar100-lt": "CIFAR-100-LT",
    "imagenet-lt": "ImageNet-LT",
    "places-lt": "Places-LT",
    "inaturalist2018": "iNaturalist 2018",
}

_GROUPS = ("many", "med", "few")  # all-or-none per method: a group is empty for the whole dataset


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
        for key in ("best_top1", *_GROUPS):
            _check_accuracy(run.get(key), where, key, allow_none=True)
        per_class = run.get("per_class")
        if per_class is not None:
            if not isinstance(per_class, (list, tuple)) or not per_class:
                raise ValueError(f"{where}: 'per_class' must be a non-empty list of accuracies")
            for c, acc in enumerate(per_class):
                _check_accuracy(acc, where, f"per_class[{c}]", allow_none=False)
    return list(runs)


def check_results(results):
    if not isinstance(results, dict):
        raise ValueError(f"expected the results.json dict, got {type(results).__name__}")
    return _check_runs(results.get("runs"))


def check_counts(class_counts):
    if not isinstance(class_counts, (list, tuple)) and not hasattr(class_counts, "tolist"):
        raise ValueError("class_counts must be a list of non-negative ints, one per class")
    counts = list(class_counts.tolist() if hasattr(class_counts, "tolist") else class_counts)
    if not counts or not all(
        _is_number(c) and float(c) >= 0 and float(c) == int(c) for c in counts
    ):
        raise ValueError(
            f"class_counts must be a non-empty list of non-negative ints, got {counts!r}"
        )
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
    by_method: dict[str, list[dict]] = {}
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
            raise ValueError(
                f"method {method!r}: seeds ran for different epochs {epochs}; "
                "averaging them would mix two settings"
            )
        row = {"method": method, "seeds": seeds, "n": len(group)}
        for key in ("top1", *_GROUPS):
            values = [run.get(key) for run in group]
            present = [float(v) for v in values if v is not None]
            if present and len(present) != len(values):
                raise ValueError(
                    f"method {method!r}: '{key}' is null in some seeds but not others "
                    "(runs from different datasets or class splits?)"
                )
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


def per_class_means(runs, num_classes):
    """{method: per-class mean accuracy} over the method's seeds."""
    grouped: dict[str, list[list[float]]] = {}
    for i, run in enumerate(runs):
        per_class = run.get("per_class")
        if per_class is None:
            raise ValueError(f"run {i} (method {run['method']!r}) has no 'per_class' accuracies")
        if len(per_class) != num_classes:
            raise ValueError(
                f"run {i} (method {run['method']!r}): per_class has {len(per_class)} "
                f"entries but class_counts has {num_classes}"
            )
        grouped.setdefault(run["method"], []).append([float(a) for a in per_class])
    return {m: [math.fsum(col) / len(col) for col in zip(*accs)] for m, accs in grouped.items()}


# ------------------------------------------------------------------------------------------ table
def method_name(method):
    """The display name; a variant's tags follow it: ``afr[mixup,0.5]`` ->
    ``AFR (ours) [mixup,0.5]``."""
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


def results_header(results):
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
    runs = check_results(results)
    rows = summarize(runs)
    show_best = any(row["best_top1_n"] for row in rows)
    dataset, ratio, device = results_header(results)

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
        cells = [
            _md(method_name(row["method"])),
            _md(row["epochs"] if row["epochs"] is not None else "–"),
            _cell(row["top1_mean"], row["top1_std"], n),
        ]
        if show_best:
            cells.append(_cell(row["best_top1_mean"], row["best_top1_std"], row["best_top1_n"]))
        cells += [_cell(row[f"{g}_mean"], row[f"{g}_std"], n) for g in _GROUPS]
        if show_ece:
            cells.append(_cell(row["ece_mean"], row["ece_std"], row["ece_n"]))
        cells.append(", ".join("?" if s is None else _md(s) for s in row["seeds"]))
        lines.append("| " + " | ".join(cells) + " |")
    machines = devices_line(runs, device)
    return "\n".join([*lines, "", machines] if machines else lines)


def devices_line(runs, device):
    """Where the runs were trained, when any run records a machine other than the report's
    ``device`` (the one that wrote it); ``""`` otherwise.

    >>> runs = [{"method": "afr", "seed": 0, "device": "cpu (A)"},
    ...         {"method": "afr", "seed": 1, "device": "cpu (B)"}, {"method": "ce", "seed": 0}]
    >>> devices_line(runs, "cpu (B)")
    'Trained on: cpu (A): AFR (ours) seed 0; cpu (B): AFR (ours) seed 1.'
    """
    where: dict[str, dict[str, list[str]]] = {}
    for r in runs:
        if r.get("device") is not None:
            where.setdefault(r["device"], {}).setdefault(method_name(r["method"]), []).append(
                "?" if r.get("seed") is None else str(r["seed"])
            )
    if not where or set(where) == {device}:
        return ""
    return (
        "Trained on: "
        + "; ".join(
            f"{_md(d)}: "
            + ", ".join(
                f"{_md(m)} seed{'s' if len(s) > 1 else ''} {' '.join(s)}"
                for m, s in by_method.items()
            )
            for d, by_method in where.items()
        )
        + "."
    )


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
    for key in ("top1", *_GROUPS):
        diffs = [
            None
            if a[s].get(key) is None or b[s].get(key) is None
            else float(a[s][key]) - float(b[s][key])
            for s in seeds
        ]
        out[key] = diffs
        present = [d for d in diffs if d is not None]
        out[f"{key}_mean"], out[f"{key}_std"] = _mean_std(present) if present else (None, None)
    return out


def paired_table(results, method="afr", baseline="bs_cmo_ft"):
    """Markdown for :func:`paired_differences` (in points), or ``""`` when no seed has both."""
    d = paired_differences(check_results(results), method, baseline)
    if d is None:
        return ""
    keys = [k for k in ("top1", *_GROUPS) if d[f"{k}_mean"] is not None]
    names = {"top1": "Top-1", "many": "Many", "med": "Med", "few": "Few"}
    lines = [
        f"**Paired difference {_md(method_name(method))} − {_md(method_name(baseline))}** "
        "(same seed, same starting model), in points",
        "",
        "| Seed | " + " | ".join(names[k] for k in keys) + " |",
        "|:--|" + "--:|" * len(keys),
    ]
    for i, s in enumerate(d["seeds"]):
        lines.append(
            f"| {_md(s)} | "
            + " | ".join("–" if d[k][i] is None else f"{100 * d[k][i]:+.2f}" for k in keys)
            + " |"
        )
    n = len(d["seeds"])
    lines.append(
        f"| mean{' ± std' if n > 1 else ''} | "
        + " | ".join(
            f"{100 * d[f'{k}_mean']:+.2f}" + (f" ± {100 * d[f'{k}_std']:.2f}" if n > 1 else "")
            for k in keys
        )
        + " |"
    )
    return "\n".join(lines)


def refresh_table(results):
    """Markdown: one line per AFR refresh of every run (the ``refreshes`` of its row): the
    adversarial share (all classes and the smallest class), the crossing, the cosine to the
    class mean before → after, the labels kept and the dose; ``""`` without refreshes.

    >>> rows = [{"method": "afr", "seed": 0, "refreshes": [{"generation": 1, "layout": "slots",
    ...          "target": "head", "total_adversarial_share": 0.4, "adversarial_share": [0.4, 0.38],
    ...          "total_crossed": 0.45, "cos_before_mean": 0.93, "cos_after_mean": 0.87,
    ...          "total_label_kept": 0.96, "dose": 0.03, "rule": None, "seconds": 120.0,
    ...          "trained": {"batches": 10, "mixed": 3, "images": 1280, "set_share": 0.09}}]}]
    >>> cells = refresh_table({"runs": rows}).splitlines()[-1].split(" | ")
    >>> print(*cells[3:8], sep=" | ")
    slots, head | 40.0 % (38.0 %) | 45.0 % | 0.930 → 0.870 | 0.96
    >>> print(*cells[8:], sep=" | ")
    3.00 % | 3/10, 9.0 % (3.6 %) | – | 120 |
    """
    lines = []
    for run in results["runs"]:
        for r in run.get("refreshes") or ():
            seconds = r.get("seconds")
            t = r.get("trained")
            trained = (
                "–"
                if not t
                else f"{t['mixed']}/{t['batches']}, {100 * t['set_share']:.1f} % "
                f"({100 * t['set_share'] * r['total_adversarial_share']:.1f} %)"
            )
            lines.append(
                f"| {_md(method_name(run['method']))} | {_md(run.get('seed'))} | "
                f"{r['generation']} | "
                f"{r['layout']}, {r['target']} | {100 * r['total_adversarial_share']:.1f} % "
                f"({100 * min(r['adversarial_share']):.1f} %) | {100 * r['total_crossed']:.1f} % | "
                f"{r['cos_before_mean']:.3f} → {r['cos_after_mean']:.3f} | "
                f"{r['total_label_kept']:.2f} | {100 * r['dose']:.2f} % | {trained} | "
                f"{r.get('rule') or '–'} | {'–' if seconds is None else f'{seconds:.0f}'} |"
            )
    if not lines:
        return ""
    return "\n".join(
        [
            "**AFR refreshes** (adversarial share: all slots, in brackets the smallest "
            "class; crossed: attacked slots whose cosine to the class mean fell below "
            "λ_c; labels kept: accuracy after / before on them; dose: mix p × E[1 − lam] "
            "× adversarial share; in training: the batches mixed with the set until the next "
            "refresh, the share of the training pixels taken from the set and, in brackets, "
            "that share × the set's adversarial share; §3.3: the rule applied; seconds of the "
            "refresh)",
            "",
            "| Method | Seed | Refresh | Set | Adversarial | Crossed | Cos to mean | "
            "Labels kept | Dose | In training | §3.3 | Seconds |",
            "|:--|:--|--:|:--|--:|--:|--:|--:|--:|--:|:--|--:|",
            *lines,
        ]
    )


def _hours(seconds):
    """A wall time: minutes under an hour, else hours.

    >>> _hours(174.1), _hours(7101.2), _hours(None)
    ('3 min', '2.0 h', '–')
    """
    if seconds is None:
        return "–"
    return f"{seconds / 60:.0f} min" if seconds < 3600 else f"{seconds / 3600:.1f} h"


def published_table(results):
    """Each row beside the number its method's own paper or official code reports for this data
    set (``afr_aug.bench.methods``: ``published``), with the difference; ``""`` when no row has one.

    The official codes pick the best epoch on the test set, so the difference is taken from
    the best evaluated epoch (``best_top1``; the final epoch where none was recorded) and the
    table says so. One seed per row; wall time and machine are the run's own ("≈": pauses
    estimated, ``afr_aug.bench.clock.recorded_seconds``).

    >>> res = {"dataset": "cifar10-lt", "imbalance_ratio": 100, "device": "cpu",
    ...        "runs": [{"method": "ldam_drw", "epochs": 200, "seed": 0, "top1": 0.7650,
    ...                  "best_top1": 0.7702, "many": 0.8, "med": 0.7, "few": None, "ece": 0.05,
    ...                  "seconds": 7200, "device": "cpu (A)", "recipe": "authors"}]}
    >>> cells = published_table(res).splitlines()[4].split(" | ")
    >>> print(*cells[:9], sep=" | ")
    | LDAM-DRW | authors | 76.50 | 77.02 | 80.00 | 70.00 | 5.00 | 2.0 h | cpu (A)
    >>> print(*cells[9:], sep=" | ")
    77.03 | -0.01 | Cao et al. 2019 (LDAM-DRW), Table 2 (error 22.97) |
    """
    runs = check_results(results)
    dataset = str(results.get("dataset", "")).lower()
    lines, found = [], False
    for run in runs:
        entry = METHODS.get(str(run["method"]).partition("[")[0])
        published = entry.published.get(dataset) if entry is not None else None
        found = found or published is not None
        ours = run.get("best_top1", run["top1"])
        cells = [
            _md(method_name(run["method"])),
            _md(run.get("recipe", "paper")),
            _cell(run["top1"], 0, 1),
            _cell(run.get("best_top1"), 0, 1),
            _cell(run.get("many"), 0, 1),
            _cell(run.get("med"), 0, 1),
            _cell(run.get("ece"), 0, 1),
            ("≈" if run.get("paused_epochs_estimated") else "") + _hours(run.get("seconds")),
            _md(run.get("device", results.get("device", "?"))),
        ]
        if published is None:
            cells += ["–", "–", "–"]
        else:
            cells += [
                f"{published.top1:.2f}",
                f"{100 * ours - published.top1:+.2f}",
                _md(published.source),
            ]
        lines.append("| " + " | ".join(cells) + " |")
    if not found:
        return ""
    dataset_name, ratio, _ = results_header(results)
    head = [
        "Method",
        "Recipe",
        "Top-1 (final)",
        "Top-1 (best epoch, test set)",
        "Many",
        "Med",
        "ECE",
        "Wall time",
        "Machine",
        "Published",
        "Best − published",
        "Source",
    ]
    return "\n".join(
        [
            f"**{_md(dataset_name)}**, imbalance ratio {_md(ratio)}: against the "
            "published numbers (best epoch on the test set, as the official codes "
            "select it)",
            "",
            "| " + " | ".join(head) + " |",
            "|" + "|".join([":--", ":--"] + ["--:"] * 6 + [":--", "--:", "--:", ":--"]) + "|",
            *lines,
        ]
    )
