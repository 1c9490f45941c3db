"""``python -m benchmarks.preflight``: the reference benchmark's ``preflight`` command in a clone
(the code is ``afr_aug.bench.preflight``; after ``pip install afr-aug``: ``afr-aug preflight``)."""

import sys

from afr_aug.bench.preflight import main

if __name__ == "__main__":
    sys.exit(main())
