"""``python -m benchmarks.bundle``: the reference benchmark's ``bundle`` command in a clone
(the code is ``afr_aug.bench.bundle``; after ``pip install afr-aug``: ``afr-aug bundle``)."""

import sys

from afr_aug.bench.bundle import main

if __name__ == "__main__":
    sys.exit(main())
