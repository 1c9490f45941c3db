"""``python -m benchmarks.attack_balance``: the reference benchmark's ``attack-balance``
command in a clone (the code is ``afr_aug.bench.attack_balance``; after
``pip install afr-aug``: ``afr-aug attack-balance``)."""

import sys

from afr_aug.bench.attack_balance import main

if __name__ == "__main__":
    sys.exit(main())
