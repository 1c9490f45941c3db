"""Issue 26's screen in one table: per reading, each arm's top-1 and the paired differences
AFR − control and AFR − noise control (same stage-2 seed, same starting model).

Usage: python summarize.py [FOLDER]   (FOLDER holds balanced/, p1/ and literal/, each a
``reproduce --out`` folder; default: this script's folder)

A reading *separates* (issue 26, item 5) when AFR beats both controls by more than twice the
paired std (sample std over the seeds).
"""

import json
import sys
from pathlib import Path

from afr_aug.bench.tables import paired_differences, summarize

READINGS = {  # folder: (label, control, AFR, noise control)
    "literal": ("literal, p = 0.25", "bs_cmo_ft", "afr", "afr_noise"),
    "p1": ("literal, p = 1", "bs_cmo_ft[cutmix,1]", "afr[cutmix,1]", "afr_noise[cutmix,1]"),
    "balanced": ("balanced stream", "bs_cmo_ft_bal", "afr_bal", "afr_noise_bal"),
}


def cell(row):
    if row is None:
        return ""
    m, s = 100 * row["top1_mean"], 100 * row["top1_std"]
    return f"{m:.2f} ± {s:.2f}" if row["n"] > 1 else f"{m:.2f}"


def paired(runs, a, b):
    d = paired_differences(runs, a, b)
    if d is None:
        return "", None
    per_seed = " / ".join(f"{100 * x:+.2f}" for x in d["top1"])
    m, s = 100 * d["top1_mean"], 100 * d["top1_std"]
    return f"{m:+.2f} ± {s:.2f} ({per_seed})", (m, s, len(d["seeds"]))


def main(folder):
    print("| Reading | Seeds | Control | AFR | Noise | AFR − control | AFR − noise | Separates |")
    print("|:--|:--|--:|--:|--:|--:|--:|:--|")
    for sub, (label, control, afr, noise) in READINGS.items():
        path = Path(folder) / sub / "results.json"
        if not path.exists():
            continue
        runs = json.loads(path.read_text())["runs"]
        rows = {row["method"]: row for row in summarize(runs)}
        seeds = sorted({r["seed"] for r in runs if r["method"] == afr})
        vs_control, c = paired(runs, afr, control)
        vs_noise, n = paired(runs, afr, noise)
        separates = (
            "–"
            if c is None or n is None or c[2] < 2
            else ("yes" if all(m > 2 * s for m, s, _ in (c, n)) else "no")
        )
        print(
            f"| {label} | {' '.join(map(str, seeds))} | "
            + " | ".join(cell(rows.get(m)) for m in (control, afr, noise))
            + f" | {vs_control} | {vs_noise} | {separates} |"
        )


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).parent)
