import os
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # lets tests import this module's helpers

# Unit tests are small: one thread avoids oversubscribing CI's two cores.
torch.set_num_threads(1)


def cifar10_root():
    """Where the real CIFAR-10 is: $AFR_DATA, else ../shared/data next to the repository."""
    candidates = []
    if os.environ.get("AFR_DATA"):
        candidates.append(Path(os.environ["AFR_DATA"]))
    candidates.append(Path(__file__).resolve().parents[2] / "shared" / "data")
    for c in candidates:
        if (c / "cifar-10-batches-py" / "data_batch_1").is_file():
            return c
    return None


needs_cifar10 = pytest.mark.skipif(
    cifar10_root() is None,
    reason="real CIFAR-10 not found in $AFR_DATA or <repo>/../shared/data (cifar-10-batches-py/)",
)


def fabricated_lt(counts, size=12):
    """A small long-tailed ``benchmarks.data.Data`` of random images: ``counts`` images per
    class at ``size`` px, 30 test images."""
    from afr_aug.bench.data import Data

    g = torch.Generator().manual_seed(0)
    y = torch.cat([torch.full((n,), c) for c, n in enumerate(counts)])
    x = torch.randint(0, 256, (len(y), 3, size, size), dtype=torch.uint8, generator=g)
    xt = torch.randint(0, 256, (30, 3, size, size), dtype=torch.uint8, generator=g)
    k = len(counts)
    return Data(
        "cifar10-lt",
        x,
        y,
        xt,
        torch.arange(30) % k,
        list(counts),
        [chr(ord("a") + c) for c in range(k)],
    )


@pytest.fixture(scope="session")
def cifar10_lt_pack(tmp_path_factory):
    """The CIFAR-10-LT pack (benchmarks.pack), written once per test session."""
    from afr_aug.bench import pack

    path = tmp_path_factory.mktemp("pack") / "cifar10lt.afrpack"
    pack.pack_dataset("cifar10-lt", path, root=cifar10_root())
    return path
