"""``python -m benchmarks.sampler_scale``: the reference benchmark's ``sampler-scale`` command in a
clone (the code is ``afr_aug.bench.sampler_scale``; after ``pip install afr-aug``:
``afr-aug sampler-scale``)."""

import sys

from afr_aug.bench.sampler_scale import main

if __name__ == "__main__":
    sys.exit(main())
