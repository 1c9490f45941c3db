"""The reference benchmark's committed results (``benchmarks/results/``), the device script
(``device_table.sh``) and thin entry points: ``python -m benchmarks.reproduce`` runs
``afr_aug.bench.reproduce`` (``afr-aug reproduce`` after ``pip install afr-aug``)."""
