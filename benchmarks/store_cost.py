"""``python -m benchmarks.store_cost``: the reference benchmark's ``store-cost`` command in a
clone (the code is ``afr_aug.bench.store_cost``; after ``pip install afr-aug``:
``afr-aug store-cost``)."""

import sys

from afr_aug.bench.store_cost import main

if __name__ == "__main__":
    sys.exit(main())
