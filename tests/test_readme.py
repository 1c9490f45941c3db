"""The README's code blocks run as written (on the real CIFAR-10, a few iterations)."""

import itertools
import os
import re
from pathlib import Path

import pytest

from conftest import cifar10_root

README = Path(__file__).resolve().parents[1] / "README.md"


def python_blocks():
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


@pytest.mark.parametrize("index", range(len(python_blocks())))
def test_readme_block_runs(index, monkeypatch):
    root = cifar10_root()
    if root is None:
        pytest.skip("CIFAR-10 not found ($AFR_DATA or ../shared/data)")
    monkeypatch.setenv("AFR_DATA", str(root))
    code = python_blocks()[index]
    # the only change: stop each training loop after 2 iterations
    code = re.sub(r"for (.+) in (zip\(.+\)|\w+):", r"for \1 in itertools.islice(\2, 2):", code)
    exec(compile(code, f"README.md block {index}", "exec"), {"itertools": itertools})
