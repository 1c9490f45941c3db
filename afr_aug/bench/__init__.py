"""The reference benchmark: the paper's Table 1 and Table 2 with ResNet32 on CIFAR-LT, the
baselines around AFR, and the probes of speed, memory and robustness. Built only on afr-aug's
public API, so that what it measures is what a user's loop gets.

Installed with the library: ``afr-aug reproduce --preset smoke`` (and ``afr-aug pack``,
``bundle``, ``throughput``, ...; ``afr-aug --help`` lists them), or
``python -m afr_aug.bench reproduce ...``. In a clone, ``python -m benchmarks.reproduce`` (a
thin entry point) runs the same code; ``benchmarks/results/`` holds the committed runs.
"""
