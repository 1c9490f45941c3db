"""Turn ``afr_aug.bench.reproduce`` results into a Table-1-style markdown report and its figures.

Every published number can be regenerated from ``results.json``::

    afr-aug report path/to/results.json     # writes results.md and PNGs next to it

The tables (``afr_aug.bench.tables``) need only the standard library; the figures
(``afr_aug.bench.plots``) need matplotlib and are skipped without it.
"""

import argparse
import json
import os
from pathlib import Path

from .cli import fail
from .plots import plot_per_class, plot_reliability, plot_shot_accuracy
from .tables import (
    check_counts,
    check_results,
    markdown_table,
    paired_table,
    per_class_means,
    published_table,
    refresh_table,
)

__all__ = ["write_report"]

PROG = "afr-aug report"


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
- **Wall time** (against the published numbers): training time, evaluation excluded, while the
  process ran (a paused run's stop is left out). "≈" marks a run recorded before the clock left
  pauses out: an epoch that took over 3× its neighbours' median counts at that median.
"""


# The paired differences the report shows: (method, baseline)
_PAIRS = (
    ("afr", "bs_cmo_ft"),
    ("afr", "afr_noise"),
    ("afr", "afr_old"),
    ("afr_old", "bs_cmo_ft"),
    ("afr_noise", "bs_cmo_ft"),
    ("afr_bal", "bs_cmo_ft_bal"),
    ("afr_bal", "afr_noise_bal"),
    ("afr_noise_bal", "bs_cmo_ft_bal"),
)


def variant_pairs(runs, pairs=_PAIRS):
    """The row labels to pair: each (method, baseline) as named, and each variant that both
    rows share (``afr[from=bs_cmo_eff]`` with ``bs_cmo_ft[from=bs_cmo_eff]``), when both ran.

    >>> runs = [{"method": m} for m in ("afr", "bs_cmo_ft", "afr[from=bs_cmo_eff]",
    ...                                 "bs_cmo_ft[from=bs_cmo_eff]", "afr[steps=5]")]
    >>> variant_pairs(runs)     # afr[steps=5] has no control of its own
    [('afr', 'bs_cmo_ft'), ('afr[from=bs_cmo_eff]', 'bs_cmo_ft[from=bs_cmo_eff]')]
    """
    labels = {str(r["method"]) for r in runs}
    out = []
    for method, baseline in pairs:
        tags = sorted(
            {
                label[len(method) :]
                for label in labels
                if label == method or label.startswith(method + "[")
            }
        )
        out += [(method + t, baseline + t) for t in tags if baseline + t in labels]
    return out


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
    check_results(results)
    if class_counts is None:
        class_counts = results.get("class_counts")
    if class_counts is not None:
        class_counts = check_counts(class_counts)
        per_class_means(results["runs"], len(class_counts))  # fail before writing anything
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)

    table = markdown_table(results)
    md = out / "results.md"
    for method, baseline in variant_pairs(results["runs"]):
        paired = paired_table(results, method, baseline)
        if paired:
            table += "\n\n" + paired
    refreshes = refresh_table(results)
    if refreshes:
        table += "\n\n" + refreshes
    published = published_table(results)
    if published:
        table += "\n\n" + published
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
    """``afr-aug report results.json [--out DIR]``: regenerate the report."""
    parser = argparse.ArgumentParser(prog=PROG, description=main.__doc__)
    parser.add_argument(
        "results", help="results.json written by afr_aug.bench.reproduce, or its folder"
    )
    parser.add_argument("--out", help="output folder (default: the folder of results.json)")
    args = parser.parse_args(argv)
    path = Path(args.results)
    if path.is_dir():
        path = path / "results.json"
    try:
        with open(path, encoding="utf-8") as f:
            results = json.load(f)
        written = write_report(results, args.out or path.parent)
    except FileNotFoundError:
        fail(
            PROG,
            f"{path}: no such file (the results.json written by afr_aug.bench.reproduce, "
            "or its folder)",
        )
    except ValueError as e:  # not JSON, or not a results file (json errors are ValueErrors)
        fail(PROG, f"{path}: {e}")
    for p in written:
        print(os.fspath(p))


if __name__ == "__main__":
    main()
