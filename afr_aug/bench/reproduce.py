"""Reproduce the paper's Table 1, Table 2 and Fig. 4 with ResNet32 on CIFAR-LT.

    afr-aug reproduce --preset quick --out runs/quick          # BS+CMO, control, AFR: ~2 min
    afr-aug reproduce --preset smoke --out runs/smoke          # every row, a sliver (CI)
    afr-aug reproduce --preset paper --seeds 0 1 2 --out runs/paper
    afr-aug reproduce --preset paper --seeds 0 1 2 --jobs 6 --out runs/paper  # in parallel

Methods (--methods; "paper" names the first list, "all" every row; each row is one entry of
afr_aug/bench/methods.py):
  the paper's Table 1: ce, ce_drw, ldam_drw, bs, ib (IB Loss), remix, remix_drw, mislas
    (MiSLAS's stage 2, from its mixup stage 1 mislas_stage1), bs_cmo (stage 1) and afr,
    bs_cmo_ft (stage 2: 50 epochs fine-tuning the finished bs_cmo model of the same seed, with
    or without AFR's adversarial set); the default of the paper presets;
  more baselines: ib_focal (IB + focal), la (logit-adjusted loss, --la-tau), bs_cmo_eff (BS+CMO
    whose Balanced Softmax uses the prior CMO's mixed stream really has), and rows made from a
    finished model without training its features: ce_posthoc and bs_cmo_posthoc (post-hoc
    logit adjustment: CE's prior, CMO's uncorrected share), bs_cmo_tau and afr_tau
    (tau-normalised classifier, --tau), bs_cmo_crt (classifier re-trained on a balanced stream,
    --crt-epochs, which also sets MiSLAS's stage-2 epochs). The smoke preset runs every row.
--recipe paper (default) trains every stage-1 row with the preset's schedule and the AFR paper's
augmentation (the AFR comparison's equal footing); --recipe authors trains each row as its
official code does (Balanced Softmax: 520 epochs of batch 512; Remix: 300 epochs; ...), scaled
to the preset's length, and evaluates every epoch from the recipe's first change (decay, DRW,
IB's switch; the last fifth at the latest): compare it with the published numbers, which
results.md sets beside each row.
Writes results.json, results.md (Table 1 style, mean ± std over seeds, ECE), shot_accuracy.png
(Fig. 4), per_class.png, reliability.png and class_distribution.png (Fig. 1) into --out, and
checkpoints every epoch to --out/ckpt so that --resume finishes a killed run with the same result.

--jobs N runs the (method, seed) grid in N worker processes (each its own CUDA context, or its
own CPU threads: --threads per worker, default the cores divided by N). A stage-2 run starts
only once the bs_cmo checkpoint it fine-tunes is finished, the other runs start seed by seed
in the order --methods names them; each worker's output goes to
--out/logs/ and to the screen, and the parent merges every finished checkpoint into one report.
--stage1-seed S makes the stage-2 runs of every seed fine-tune the one bs_cmo model of seed S,
which isolates the stage-2 spread (the seeds then vary only the stage-2 randomness).
--stage1-method M makes them fine-tune the model of another stage-1 row instead of bs_cmo (e.g.
bs_cmo_eff: does AFR need a base without CMO's tail bias?); their rows are named
afr[from=M], bs_cmo_ft[from=M], and the report pairs those with each other.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import torch

from afr_aug.checks import check_number
from afr_aug.distributed import get_rank, get_world_size

from .checkpoints import is_finished, load_checkpoint
from .cli import data_or_fail, label_or_confidence
from .data import check_data, load_data
from .grid import grid, run_label
from .jobs import JobRunner
from .methods import ALL_METHODS, METHOD_GROUPS, RECIPES, STAGE1_BASES
from .plots import plot_class_distribution
from .presets import PRESETS
from .report import write_report
from .runner import Benchmark, Interrupted
from .runtime import exit_process, setup_distributed, training_device
from .speed import add_speed_args, speed_from
from .tables import markdown_table

PROG = "afr-aug reproduce"


def _weight_decay(text: str) -> float:
    try:
        return check_number(float(text), "weight decay", minimum=0)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"weight decay must be a finite number >= 0, got {text!r}"
        ) from None


def _grid_args(p) -> None:
    """What to run: the preset, the rows and the data."""
    p.add_argument("--preset", choices=sorted(PRESETS), default="paper")
    p.add_argument(
        "--methods",
        nargs="+",
        choices=list(ALL_METHODS) + list(METHOD_GROUPS),
        default=None,
        metavar="METHOD",
        help="rows to run, or 'paper' / 'all' (default: the preset's; see above)",
    )
    p.add_argument(
        "--dataset",
        choices=["cifar10-lt", "cifar100-lt"],
        default=None,
        help="default: the preset's (paper, paper400: cifar100-lt; smoke: cifar10-lt)",
    )
    p.add_argument("--imbalance-ratio", type=float, default=100)
    p.add_argument(
        "--data-root",
        default=None,
        help="folder holding cifar-10-batches-py/ or "
        "cifar-100-python/ (default: $AFR_DATA, else ./data)",
    )
    p.add_argument(
        "--data",
        default=None,
        metavar="PACK",
        help="read the data from a file written by afr-aug pack",
    )
    p.add_argument(
        "--download",
        action="store_true",
        help="fetch CIFAR with torchvision when it is not found (needs internet)",
    )


def _schedule_args(p) -> None:
    """The preset's schedule, changed (``presets.schedule_from``); the seeds."""
    p.add_argument("--epochs", type=int, help="stage-1 epochs (milestones scale with it)")
    p.add_argument("--stage2-epochs", type=int, help="stage-2 epochs of afr and bs_cmo_ft")
    p.add_argument("--stage2-lr", type=float, help="peak stage-2 learning rate (cosine to 0)")
    p.add_argument("--seed", type=int, default=None, help="a single seed (same as --seeds N)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--mix", choices=["cutmix", "mixup"], default=None, help="stage-2 mixer")
    p.add_argument("--mix-p", type=float, default=None, help="stage-2 mixing probability")
    p.add_argument(
        "--la-tau",
        type=float,
        default=None,
        help="temperature of la and ce_posthoc's logit adjustment (default 1)",
    )
    p.add_argument(
        "--tau",
        type=float,
        default=None,
        help="tau of bs_cmo_tau and afr_tau's normalisation (default 1)",
    )
    p.add_argument(
        "--crt-epochs",
        type=int,
        default=None,
        help="bs_cmo_crt's classifier re-training epochs (default 10)",
    )
    p.add_argument("--crt-lr", type=float, default=None, help="bs_cmo_crt's peak learning rate")
    p.add_argument(
        "--attack-target",
        choices=["head", "centroid", "slot"],
        default=None,
        help="afr's MinorityPGD target (default head)",
    )
    p.add_argument("--attack-steps", type=int, default=None, help="afr's PGD steps")
    p.add_argument(
        "--attack-step",
        type=float,
        default=None,
        help="afr's PGD step size in 1/255 units (afr_noise takes the same budget)",
    )
    p.add_argument("--label-weight", type=float, default=None, help="afr's keep-the-label weight")
    p.add_argument(
        "--grad-scale",
        choices=["pixels", "embedding"],
        default=None,
        help="where afr's attack balances its two directions (default embedding)",
    )
    p.add_argument(
        "--minority-quantile",
        type=float,
        default=None,
        help="each class's minority share in the split of afr and afr_noise",
    )
    p.add_argument(
        "--label-safe",
        type=label_or_confidence,
        default=None,
        metavar="label|CONF",
        help="afr's label-safe slots: keep an attacked slot only when the model still "
        "gives its class ('label') or gives it with this confidence (a float)",
    )
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--max-iters", type=int, default=None, help="cap iterations per epoch")
    p.add_argument("--eval-every", type=int, default=None)
    p.add_argument(
        "--recipe",
        choices=list(RECIPES),
        default=None,
        help="paper (default): the AFR paper's stage-1 augmentation for every row; "
        "authors: each row as its official code trains it (compare with "
        "published numbers); recorded in results.json",
    )
    p.add_argument(
        "--weight-decay",
        type=_weight_decay,
        default=None,
        metavar="WD",
        help="stage 1's weight decay instead of the recipe's (stage 2 and the re-trained "
        "classifiers keep theirs); every row is named ROW[wd=WD] and kept apart",
    )


def _process_args(p) -> None:
    """Where and how: output folder, device, threads, speed, workers, resuming, reporting."""
    p.add_argument("--out", default="runs/reproduce")
    p.add_argument("--device", default=None, help="default: cuda if available, else cpu")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (per worker)")
    add_speed_args(p)
    p.add_argument(
        "--stage1-seed",
        type=int,
        default=None,
        help="stage-2 runs of every seed fine-tune the bs_cmo model of this seed "
        "(default: the bs_cmo model of their own seed)",
    )
    p.add_argument(
        "--stage1-method",
        choices=STAGE1_BASES,
        default=None,
        help="the stage-1 row whose finished model the stage-2 runs fine-tune "
        "(default bs_cmo, the paper's; their rows are then named afr[from=M])",
    )
    p.add_argument(
        "--jobs",
        type=int,
        default=1,
        help="run the (method, seed) grid in this many worker processes",
    )
    p.add_argument(
        "--isolate",
        action="store_true",
        help="run each (method, seed) in a worker process of its own even with --jobs 1: "
        "a failing run does not stop the others, and each gets its log in --out/logs",
    )
    p.add_argument("--resume", action="store_true", help="continue from --out/ckpt")
    p.add_argument(
        "--report-only",
        action="store_true",
        help="write the report from the finished checkpoints in --out; train nothing",
    )
    p.add_argument(
        "--partial",
        action="store_true",
        help="with --report-only: report unfinished runs too, each as a row of its own "
        "(afr[partial 37/50]) evaluated at its last checkpoint",
    )
    p.add_argument(
        "--reevaluate",
        action="store_true",
        help="with --report-only: evaluate each finished trained row's final model again on the "
        "test set (this version's metrics; the best top-1 and times as recorded)",
    )
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--stop-after-epochs", type=int, default=None, help=argparse.SUPPRESS)


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    _grid_args(p)
    _schedule_args(p)
    _process_args(p)
    args = p.parse_args(argv)
    if args.seed is not None:
        args.seeds = [args.seed]
    if args.dataset is None:
        args.dataset = PRESETS[args.preset]["dataset"]
    wanted = args.methods or list(PRESETS[args.preset]["methods"])
    expanded = [m for name in wanted for m in METHOD_GROUPS.get(name, (name,))]
    args.methods = [m for m in ALL_METHODS if m in expanded]
    if args.jobs < 1:
        p.error(f"--jobs must be at least 1, got {args.jobs}")
    if (args.jobs > 1 or args.isolate) and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        p.error("--jobs and --isolate run their own processes; use them without torchrun")
    for flag in ("partial", "reevaluate"):
        if getattr(args, flag) and not args.report_only:
            p.error(f"--{flag} changes what --report-only reports; add --report-only")
    return args


def _run_jobs(args, argv: list[str]):
    """--jobs / --isolate: the grid in worker processes; then the arguments that merge their
    finished checkpoints into one report in this process (``None`` when a run failed)."""
    # once here, not once per worker: a missing folder is one line, not N failed runs
    data_or_fail(
        PROG,
        check_data,
        args.dataset,
        args.data_root,
        args.imbalance_ratio,
        pack=args.data,
        download=args.download,
    )
    failed = JobRunner(args, argv).run()
    if failed:
        print(
            f"{failed} run(s) failed or were skipped; finished ones resume with --resume",
            file=sys.stderr,
        )
        return None
    args = parse_args([*argv, "--jobs", "1", "--resume"])  # merge the finished runs
    args.isolate = False
    return args


def _gather(bench: Benchmark, args, tasks, wanted):
    """--report-only: the rows of the finished runs; the unfinished ones left out (``missing``)
    or, with --partial, evaluated at their last checkpoint (``partial``)."""
    runs: list[dict] = []
    missing: list[str] = []
    partial: list[str] = []
    for method, seed in tasks:
        path = bench.ckpt_path(run_label(method, bench.schedule), seed)
        if is_finished(path):
            state = bench.finished[path] = load_checkpoint(path)
            if (method, seed) in wanted:
                runs.append(
                    bench.reevaluated(method, state) if args.reevaluate else state["result"]
                )
        elif (method, seed) in wanted:
            row = bench.partial_result(method, seed, path) if args.partial else None
            if row is None:
                missing.append(f"{method} seed {seed}")
            else:
                runs.append(row)
                partial.append(
                    f"{method} seed {seed} ({row['partial']['epochs_done']}/"
                    f"{row['partial']['epochs']} epochs)"
                )
    return runs, missing, partial


def _write_results(args, bench: Benchmark, runs, missing, partial, fig1: dict | None) -> None:
    """results.json, the report and Fig. 1 into --out; the table on the screen."""
    d = bench.data
    amp = speed_from(args).resolved(bench.device).amp
    results = {
        "dataset": args.dataset,
        "imbalance_ratio": args.imbalance_ratio,
        "device": training_device(bench.device, amp),
        "world_size": get_world_size(),
        "preset": args.preset,
        "class_counts": d.class_counts,
        "runs": runs,
    }
    if missing:
        results["missing"] = missing
    if partial:
        results["partial"] = partial
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump(results, f, indent=1)
    written = [os.path.join(args.out, "results.json")]
    written += write_report(results, args.out, class_counts=d.class_counts)
    if fig1 is not None:
        try:
            path = os.path.join(args.out, "class_distribution.png")
            plot_class_distribution(
                d.class_counts,
                fig1["similarity"],
                fig1["labels"],
                head_class=0,
                tail_class=d.num_classes - 1,
                path=path,
                class_names=d.classes,
                thresholds=fig1["thresholds"],
            )
            written.append(path)
        except ImportError as e:
            print(f"skipping class_distribution.png: {e}", file=sys.stderr)
    print(markdown_table(results))
    print("wrote " + ", ".join(str(w) for w in written))


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    if (args.jobs > 1 or args.isolate) and not args.worker and not args.report_only:
        args = _run_jobs(args, argv)
        if args is None:
            return 1
    if args.threads:
        torch.set_num_threads(args.threads)
    device = setup_distributed(args.device)
    preset = PRESETS[args.preset]
    data = data_or_fail(
        PROG,
        load_data,
        args.dataset,
        args.data_root,
        args.imbalance_ratio,
        seed=0,
        device=device,
        train_fraction=preset.get("train_fraction"),
        test_limit=preset.get("test_limit"),
        pack=args.data,
        download=args.download,
    )
    bench = Benchmark(args, device, data)
    tasks, _ = grid(args.methods, args.seeds, args.stage1_seed, bench.schedule.stage1_method)
    wanted = [t for t in tasks if t[0] in args.methods and t[1] in args.seeds]
    try:
        if args.report_only:
            runs, missing, partial = _gather(bench, args, tasks, wanted)
        else:
            runs, missing, partial = [bench.run(m, s)["result"] for m, s in wanted], [], []
    except Interrupted:
        if get_rank() != 0:
            return 75
        print(
            f"stopped after {bench.epochs_this_call} epochs as asked (--stop-after-epochs); "
            f"continue with --resume",
            file=sys.stderr,
        )
        return 75
    if args.worker:
        return 0  # the parent writes the report
    if missing:
        print(
            f"--report-only: not finished, left out of the report: {', '.join(missing)}",
            file=sys.stderr,
        )
    if partial:
        print(
            f"--report-only: unfinished, reported as partial rows: {', '.join(partial)}",
            file=sys.stderr,
        )
    if not runs:
        print(f"no finished runs in {bench.ckpt_dir}", file=sys.stderr)
        return 1
    fig1 = bench.class_distribution(args.seeds[0])  # a collective under DDP: every rank
    if get_rank() != 0:
        return 0  # only rank 0 writes files
    _write_results(args, bench, runs, missing, partial, fig1)
    return 0


def run(argv: list[str] | None = None) -> None:
    """``python -m benchmarks.reproduce`` and the ``--jobs`` workers: :func:`main`, then the
    process ends as :func:`~afr_aug.bench.runtime.exit_process` ends a command under torchrun."""
    exit_process(main(argv))


if __name__ == "__main__":
    run()
