"""The README's code blocks run as written (real CIFAR-10, a share of it, 2 iterations a loop)."""

import re
from pathlib import Path

import pytest
from conftest import run_markdown_block

README = Path(__file__).resolve().parents[1] / "README.md"


def python_blocks():
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


@pytest.mark.parametrize("index", range(len(python_blocks())))
def test_readme_block_runs(index, monkeypatch):
    run_markdown_block(
        python_blocks(), index, monkeypatch, f"README.md block {index}", require_loop=True
    )
