"""``python -m benchmarks.refresh_scale``: the reference benchmark's ``refresh-scale`` command in a
clone (the code is ``afr_aug.bench.refresh_scale``; after ``pip install afr-aug``:
``afr-aug refresh-scale``)."""

import sys

from afr_aug.bench.refresh_scale import main

if __name__ == "__main__":
    sys.exit(main())
