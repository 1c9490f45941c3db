"""``python -m benchmarks.throughput``: the reference benchmark's ``throughput`` command in a
clone (the code is ``afr_aug.bench.throughput``; after ``pip install afr-aug``:
``afr-aug throughput``)."""

import sys

from afr_aug.bench.throughput import main

if __name__ == "__main__":
    sys.exit(main())
