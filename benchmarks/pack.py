"""``python -m benchmarks.pack``: the reference benchmark's ``pack`` command in a clone
(the code is ``afr_aug.bench.pack``; after ``pip install afr-aug``: ``afr-aug pack``)."""

import sys

from afr_aug.bench.pack import main

if __name__ == "__main__":
    sys.exit(main())
