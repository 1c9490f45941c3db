"""``python -m benchmarks.reproduce``: the reference benchmark's ``reproduce`` command in a clone
(the code is ``afr_aug.bench.reproduce``; after ``pip install afr-aug``: ``afr-aug reproduce``)."""

import sys

from afr_aug.bench.reproduce import main

if __name__ == "__main__":
    sys.exit(main())
