"""``python -m benchmarks.reproduce``: the reference benchmark's ``reproduce`` command in a clone
(the code is ``afr_aug.bench.reproduce``; after ``pip install afr-aug``: ``afr-aug reproduce``)."""

from afr_aug.bench.reproduce import main
from afr_aug.bench.runtime import exit_process

if __name__ == "__main__":
    exit_process(main())
