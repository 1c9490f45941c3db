"""The documentation site builds strictly, covers the public modules, and its code runs.

``mkdocs build --strict`` (mkdocs.yml, docs/) fails on a broken link or anchor, an API block
(``::: afr_aug.x``) that does not resolve, and a docstring griffe cannot read. The code blocks
of the pages run as the README's do (tests/test_readme.py): real CIFAR-10, a share of it, two
iterations a loop; a block the README also holds runs there only. The README stays short: the
rest lives in the docs.
"""

import importlib.util
import pkgutil
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import run_markdown_block

import afr_aug
import afr_aug.data

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
README = ROOT / "README.md"
BLOCK = re.compile(r"```python\n(.*?)```", flags=re.S)

needs_mkdocs = pytest.mark.skipif(
    importlib.util.find_spec("mkdocs") is None
    or importlib.util.find_spec("mkdocstrings_handlers") is None
    or not (ROOT / "mkdocs.yml").is_file(),
    reason="mkdocs and mkdocstrings[python] not installed (pip install -e '.[docs]')",
)


def api_identifiers():
    """Every ``::: identifier`` of the docs pages."""
    found = []
    for page in sorted(DOCS.rglob("*.md")):
        found += re.findall(r"^::: *([\w.]+)", page.read_text(encoding="utf-8"), flags=re.M)
    return found


@needs_mkdocs
def test_mkdocs_build_strict(tmp_path):
    site = tmp_path / "site"
    command = [sys.executable, "-m", "mkdocs", "build", "--strict"]
    built = subprocess.run(
        [*command, "-f", str(ROOT / "mkdocs.yml"), "-d", str(site)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    log = built.stdout + built.stderr
    assert built.returncode == 0, log[-4000:]
    assert "WARNING" not in log, log[-4000:]
    # every ::: block resolved and was rendered (an unresolved one already fails the build)
    html = "\n".join(p.read_text(encoding="utf-8") for p in site.rglob("*.html"))
    identifiers = api_identifiers()
    assert identifiers, "expected ::: blocks in docs/"
    missing = [i for i in identifiers if f'id="{i}"' not in html]
    assert not missing, missing


def test_api_reference_covers_every_public_module():
    """Each public module of afr_aug (not the benchmark, afr_aug.bench) has its ::: block."""
    documented = set(api_identifiers())
    modules = {"afr_aug"} | {
        m.name
        for m in pkgutil.walk_packages(afr_aug.__path__, "afr_aug.")
        if not any(part.startswith("_") for part in m.name.split("."))
        and not m.name.startswith("afr_aug.bench")
    }
    assert not modules - documented, sorted(modules - documented)


def test_readme_is_short_and_its_links_resolve():
    text = README.read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 150
    for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", text):
        if "://" not in target:
            assert (ROOT / target).exists(), target


def docs_blocks():
    """(page, index) of every ```python block of the docs that the README does not hold."""
    readme = set(BLOCK.findall(README.read_text(encoding="utf-8")))
    return [
        (str(page.relative_to(DOCS)), i)
        for page in sorted(DOCS.rglob("*.md"))
        for i, block in enumerate(BLOCK.findall(page.read_text(encoding="utf-8")))
        if block not in readme
    ]


@pytest.mark.parametrize(("page", "index"), docs_blocks())
def test_docs_block_runs(page, index, monkeypatch):
    blocks = BLOCK.findall((DOCS / page).read_text(encoding="utf-8"))
    run_markdown_block(blocks, index, monkeypatch, f"docs/{page} block {index}")
