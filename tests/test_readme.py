"""The README's code blocks run as written (real CIFAR-10, a share of it, 2 iterations a loop)."""

import itertools
import re
from pathlib import Path

import numpy as np
import pytest
from conftest import cifar10_root

import afr_aug.data

README = Path(__file__).resolve().parents[1] / "README.md"
CONTINUED = "# continued from"


def python_blocks():
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


@pytest.mark.parametrize("index", range(len(python_blocks())))
def test_readme_block_runs(index, monkeypatch):
    root = cifar10_root()
    if root is None:
        pytest.skip("CIFAR-10 not found ($AFR_DATA or ../shared/data)")
    monkeypatch.setenv("AFR_DATA", str(root))
    # a 5 % per-class share of CIFAR-10-LT keeps the blocks (and AFR's refresh) to seconds
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
    blocks = python_blocks()
    first = index  # a block that continues the one above runs after it, in one namespace
    while first > 0 and blocks[first].startswith(CONTINUED):
        first -= 1
    code = "\n".join(blocks[first : index + 1])
    # the only change: stop each training loop after 2 iterations
    code, loops = re.subn(
        r"^(\s*)for (.+?) in (.+):$", r"\1for \2 in itertools.islice(\3, 2):", code, flags=re.M
    )
    assert loops, "expected a training loop in the README block"
    exec(compile(code, f"README.md block {index}", "exec"), {"itertools": itertools})
