"""``python -m benchmarks.reproduce``: the reference benchmark's ``reproduce`` command in a clone
(the code is ``afr_aug.bench.reproduce``; after ``pip install afr-aug``: ``afr-aug reproduce``)."""

from afr_aug.bench.reproduce import main, run

__all__ = ["main", "run"]

if __name__ == "__main__":
    run()
