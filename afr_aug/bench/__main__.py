"""``afr-aug COMMAND ...`` / ``python -m afr_aug.bench COMMAND ...``: the benchmark's commands."""

from __future__ import annotations

import importlib
import sys

# command -> (module of afr_aug.bench, what it does)
COMMANDS = {
    "reproduce": ("reproduce", "train and report the paper's tables (presets smoke, paper, ...)"),
    "report": ("report", "write results.md and the figures from a results.json"),
    "pack": ("pack", "write a CIFAR-LT data pack (one file to carry to another machine)"),
    "bundle": ("bundle", "a pack plus the wheels a lent GPU image lacks"),
    "plan": ("plan", "calibrate, then plan a reproduce --jobs grid for a time budget"),
    "preflight": ("preflight", "what this machine runs on, and what is missing"),
    "throughput": ("throughput", "training img/s of the loops, alone and side by side"),
    "attack-balance": ("attack_balance", "what each attack setting does on a checkpoint"),
    "label-safe": ("label_safe", "what each label_safe option keeps, on checkpoints"),
    "refresh-scale": ("refresh_scale", "speed and memory of a refresh at scale"),
    "sampler-scale": ("sampler_scale", "LongTailSampler on tens of millions of labels"),
    "store-cost": ("store_cost", "what the adversarial store's checksums cost"),
}


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = [
        "usage: afr-aug COMMAND [options]   (afr-aug COMMAND --help for its options)",
        "",
        "the reference benchmark of afr-aug:",
    ]
    lines += [f"  {name:<{width}}  {what}" for name, (_, what) in COMMANDS.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0 if argv else 2
    name = argv[0].replace("_", "-")
    if name not in COMMANDS:
        print(f"afr-aug: error: unknown command {argv[0]!r}\n{usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(f"afr_aug.bench.{COMMANDS[name][0]}")
    code = module.main(argv[1:])
    return 0 if code is None else int(code)


def run() -> None:
    """The ``afr-aug`` console script: :func:`main`, then the process ends as
    :func:`~afr_aug.bench.runtime.exit_process` ends a command under torchrun."""
    from .runtime import exit_process  # torch is imported only for a command, not for --help

    exit_process(main())


if __name__ == "__main__":
    run()
