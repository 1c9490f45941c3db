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


def smoke_args(out, *extra) -> list[str]:
    """The benchmark's smoke preset on the real CIFAR-10-LT into ``out``, plus ``extra`` flags."""
    data = ["--dataset", "cifar10-lt", "--data-root", str(cifar10_root())]
    return ["--preset", "smoke", *data, "--out", str(out), "--no-progress", *extra]


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


def run_markdown_block(blocks, index, monkeypatch, name, require_loop=False):
    """Run the ``index``-th ```python block of a page as a user would, on real CIFAR-10 cut to
    a 5 % per-class share, every loop stopped after 2 iterations; a block starting with
    "# continued from" runs after the blocks above it, in one namespace."""
    import itertools
    import re

    import numpy as np

    import afr_aug.data

    root = cifar10_root()
    if root is None:
        pytest.skip("CIFAR-10 not found ($AFR_DATA or ../shared/data)")
    monkeypatch.setenv("AFR_DATA", str(root))
    full = afr_aug.data.cifar_lt

    def small_cifar_lt(*args, **kwargs):
        ds = full(*args, **kwargs)
        keep = np.concatenate(
            [
                np.nonzero(np.asarray(ds.targets) == c)[0][: max(2, n // 20)]
                for c, n in enumerate(ds.class_counts)
            ]
        )
        return afr_aug.data.CIFARDataset(ds.data[keep], [ds.targets[i] for i in keep], ds.classes)

    monkeypatch.setattr(afr_aug.data, "cifar_lt", small_cifar_lt)
    first = index
    while first > 0 and blocks[first].startswith("# continued from"):
        first -= 1
    code = "\n".join(blocks[first : index + 1])
    code, loops = re.subn(
        r"^(\s*)for (.+?) in (.+):$", r"\1for \2 in itertools.islice(\3, 2):", code, flags=re.M
    )
    if require_loop:
        assert loops, f"expected a training loop in {name}"
    exec(compile(code, name, "exec"), {"itertools": itertools})
