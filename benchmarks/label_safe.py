"""``python -m benchmarks.label_safe``: the reference benchmark's ``label-safe`` command in a
clone (the code is ``afr_aug.bench.label_safe``; after ``pip install afr-aug``:
``afr-aug label-safe``)."""

import sys

from afr_aug.bench.label_safe import main

if __name__ == "__main__":
    sys.exit(main())
