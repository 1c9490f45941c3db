"""``python -m benchmarks.report``: the reference benchmark's ``report`` command in a clone
(the code is ``afr_aug.bench.report``; after ``pip install afr-aug``: ``afr-aug report``)."""

import sys

from afr_aug.bench.report import main

if __name__ == "__main__":
    sys.exit(main())
