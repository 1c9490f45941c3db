"""``python -m benchmarks.plan``: the reference benchmark's ``plan`` command in a clone
(the code is ``afr_aug.bench.plan``; after ``pip install afr-aug``: ``afr-aug plan``)."""

import sys

from afr_aug.bench.plan import main

if __name__ == "__main__":
    sys.exit(main())
