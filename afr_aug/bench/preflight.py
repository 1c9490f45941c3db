"""The first seconds of a device run: is everything there, and on what are we?

    afr-aug preflight [--out environment.txt]

Why: a lent GPU comes for minutes and its image is not ours: a missing package found after
calibration wastes the window. This imports what the benchmark needs (torch, torchvision,
torchattacks, numpy, scipy, tqdm, then ``afr_aug`` itself), prints each version, the device
(GPU name, compute capability and memory, or the CPU and its threads) and Python, and writes
the same lines to ``--out``. If anything is missing it prints one line naming it and how to
bring it, and exits with status 3; matplotlib (plots only) is reported but not required.
"""

from __future__ import annotations

import argparse
import importlib
import platform
import sys

REQUIRED = ("torch", "torchvision", "torchattacks", "numpy", "scipy", "tqdm")
OPTIONAL = ("matplotlib",)


def _version(name: str) -> str:
    module = importlib.import_module(name)
    return getattr(module, "__version__", "?")


def check() -> tuple[list[str], list[str]]:
    """``(lines, missing)``: one line per package and for the device; the required modules
    that failed to import, each with its error."""
    lines = [f"python {platform.python_version()} ({sys.executable})"]
    missing = []
    for name in REQUIRED + OPTIONAL:
        try:
            lines.append(f"{name} {_version(name)}")
        except Exception as e:
            lines.append(f"{name}: MISSING ({type(e).__name__}: {e})")
            if name in REQUIRED:
                missing.append(name)
    if "torch" not in missing:
        import torch

        lines.append(f"torch cuda {torch.version.cuda}")
        if torch.cuda.is_available():
            for i in range(torch.cuda.device_count()):
                p = torch.cuda.get_device_properties(i)
                lines.append(
                    f"device: cuda:{i} {p.name}, compute capability {p.major}.{p.minor}, "
                    f"{p.total_memory / 2**30:.0f} GiB"
                )
        else:
            lines.append(f"device: cpu, {torch.get_num_threads()} threads, {platform.machine()}")
    if not missing:
        try:
            import afr_aug

            lines.append(f"afr_aug {afr_aug.__version__} ({afr_aug.__file__})")
        except Exception as e:
            lines.append(f"afr_aug: IMPORT FAILED ({type(e).__name__}: {e})")
            missing.append("afr_aug")
    return lines, missing


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        prog="afr-aug preflight",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--out", default=None, help="also write the lines here")
    args = p.parse_args(argv)
    lines, missing = check()
    text = "\n".join(lines)
    print(text, flush=True)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")
    if missing:
        print(
            f"preflight: missing {', '.join(missing)}: carry the wheels in a bundle "
            f"(afr-aug bundle DIR, then device_table.sh DIR ...) or install them",
            file=sys.stderr,
            flush=True,
        )
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
