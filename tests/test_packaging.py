"""Dependency hygiene: installing afr-aug must not downgrade a user's ``requests``.

torchattacks 3.4.0-3.5.1 declare ``requests~=2.25.1``. The test below resolves afr-aug's real
declared requirements with pip's real resolver, offline, against a local wheelhouse of
stand-in distributions that carry exactly those published dependency declarations, in an
environment that already holds requests 2.32.3. A control run with a naive
``torchattacks>=3.3`` requirement shows that the set-up does catch the downgrade.
"""

import importlib.metadata as md
import json
import os
import subprocess
import sys
import venv
import zipfile

import pytest
from packaging.requirements import Requirement

# name -> {version: [Requires-Dist, ...]}; torchattacks entries mirror the published metadata
TORCHATTACKS_RELEASES = {
    "3.3.0": [],
    "3.4.0": ["requests~=2.25.1"],
    "3.5.0": ["requests~=2.25.1"],
    "3.5.1": ["requests~=2.25.1"],
}


def _fake_wheel(folder, name, version, requires=()):
    dist = name.replace("-", "_")
    info = f"{dist}-{version}.dist-info"
    meta = ["Metadata-Version: 2.1", f"Name: {name}", f"Version: {version}"]
    meta += [f"Requires-Dist: {r}" for r in requires]
    path = folder / f"{dist}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr(f"{dist}/__init__.py", "")
        z.writestr(f"{info}/METADATA", "\n".join(meta) + "\n")
        z.writestr(
            f"{info}/WHEEL",
            "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        )
        z.writestr(f"{info}/RECORD", "")
    return path


def _declared_requirements():
    reqs = [Requirement(r) for r in md.requires("afr-aug") or []]
    return [r for r in reqs if r.marker is None]


def _pip(python, *args):
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "--python",
        str(python),
        "--disable-pip-version-check",
        "--no-input",
        *args,
    ]
    # ignore this machine's pip configuration (index mirrors, version caps): the test is offline
    env = {**os.environ, "PIP_CONFIG_FILE": os.devnull}
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)


def _lowest_allowed(req):
    lower = [s.version for s in req.specifier if s.operator in (">=", "==", "~=")]
    return lower[0] if lower else "1.0"


def _resolve(tmp_path, requirements):
    """Dry-run install of ``requirements`` into an env holding requests 2.32.3; pip's report."""
    wh = tmp_path / "wheelhouse"
    wh.mkdir()
    for version, requires in TORCHATTACKS_RELEASES.items():
        _fake_wheel(wh, "torchattacks", version, requires)
    for v in ("2.25.1", "2.32.3"):
        _fake_wheel(wh, "requests", v)
    for req in _declared_requirements():
        if req.name != "torchattacks":
            _fake_wheel(wh, req.name, _lowest_allowed(req))
    env = tmp_path / "env"
    venv.EnvBuilder(with_pip=False).create(env)
    python = env / ("Scripts/python.exe" if sys.platform == "win32" else "bin/python")
    done = _pip(python, "install", "--no-index", "--find-links", str(wh), "requests==2.32.3")
    assert done.returncode == 0, done.stderr
    report = tmp_path / "report.json"
    res = _pip(
        python,
        "install",
        "--dry-run",
        "--no-index",
        "--find-links",
        str(wh),
        "--report",
        str(report),
        *requirements,
    )
    assert res.returncode == 0, res.stderr
    return res, report


def _planned(report):
    data = json.loads(report.read_text())
    return {i["metadata"]["name"].lower(): i["metadata"]["version"] for i in data["install"]}


@pytest.fixture(scope="module")
def pip_has_python_option():
    out = subprocess.run([sys.executable, "-m", "pip", "--version"], capture_output=True, text=True)
    major, minor = (int(x) for x in out.stdout.split()[1].split(".")[:2])
    if (major, minor) < (22, 3):
        pytest.skip(f"pip {major}.{minor} has no --python option (needs >= 22.3)")


def test_declared_requirements_exclude_pinning_torchattacks():
    ta = next(r for r in _declared_requirements() if r.name == "torchattacks")
    allowed = {v for v in TORCHATTACKS_RELEASES if ta.specifier.contains(v)}
    assert allowed == {"3.3.0"}
    assert ta.specifier.contains("3.6.0")  # a future, fixed release stays allowed


def test_install_keeps_users_requests(tmp_path, pip_has_python_option):
    reqs = [str(r) for r in _declared_requirements()]
    _, report = _resolve(tmp_path, reqs)
    planned = _planned(report)
    assert "requests" not in planned, planned
    assert planned["torchattacks"] == "3.3.0"


def test_naive_requirement_would_downgrade(tmp_path, pip_has_python_option):
    """Control: the same set-up catches the downgrade a plain torchattacks>=3.3 causes."""
    _, report = _resolve(tmp_path, ["torchattacks>=3.3"])
    assert _planned(report).get("requests") == "2.25.1"


def test_sdist_and_wheel_build_and_pass_twine_check(tmp_path):
    """``python -m build`` makes both, ``twine check`` passes them, and the sdist holds the
    tests, the license and the changelog; the wheel the typing marker and the license."""
    import tarfile
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    out = tmp_path / "dist"
    built = subprocess.run(
        [sys.executable, "-m", "build", "--sdist", "--wheel", "--outdir", str(out), str(root)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert built.returncode == 0, built.stdout[-2000:] + built.stderr[-2000:]
    import afr_aug

    sdist = out / f"afr_aug-{afr_aug.__version__}.tar.gz"
    wheel = out / f"afr_aug-{afr_aug.__version__}-py3-none-any.whl"
    check = subprocess.run(
        [sys.executable, "-m", "twine", "check", str(sdist), str(wheel)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert check.returncode == 0, check.stdout + check.stderr
    with tarfile.open(sdist) as t:
        names = {n.split("/", 1)[1] for n in t.getnames() if "/" in n}
    assert {"LICENSE", "CHANGELOG.md", "tests/test_faults.py", "afr_aug/py.typed"} <= names
    with zipfile.ZipFile(wheel) as z:
        files = set(z.namelist())
    assert "afr_aug/py.typed" in files and any(f.endswith("licenses/LICENSE") for f in files)
    meta = zipfile.ZipFile(wheel).read(f"afr_aug-{afr_aug.__version__}.dist-info/METADATA").decode()
    assert "License :: OSI Approved :: MIT License" in meta and "Python :: 3.11" in meta


@pytest.mark.skipif(
    not os.path.isdir(
        os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "cifar-10-batches-py")
    )
    and not os.environ.get("AFR_DATA"),
    reason="needs CIFAR-10",
)
def test_the_wheel_runs_the_benchmark_from_anywhere(tmp_path):
    """After ``pip install`` of the built wheel into a fresh environment (its dependencies
    borrowed from this one through a .pth file), ``afr-aug reproduce`` runs from another
    folder, with the data from ``$AFR_DATA``, and writes results.json: no clone needed."""
    import sysconfig
    from pathlib import Path

    from conftest import cifar10_root

    root = Path(__file__).resolve().parents[1]
    built = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            str(root),
            "-w",
            str(tmp_path / "dist"),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert built.returncode == 0, built.stderr[-2000:]
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    python = env_dir / "bin" / "python"
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
    ).stdout.strip()
    Path(site, "_borrowed.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    wheel = next((tmp_path / "dist").glob("afr_aug-*.whl"))
    done = subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--no-deps", str(wheel)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(AFR_DATA=str(cifar10_root()), OMP_NUM_THREADS="1")
    run = subprocess.run(
        [
            str(env_dir / "bin" / "afr-aug"),
            "reproduce",
            "--preset",
            "smoke",
            "--methods",
            "bs_cmo",
            "afr",
            "--out",
            "out",
            "--no-progress",
        ],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    results = json.loads((elsewhere / "out" / "results.json").read_text())
    assert [r["method"] for r in results["runs"]] == ["bs_cmo", "afr"]
    where = subprocess.run(
        [str(python), "-c", "import afr_aug.bench; print(afr_aug.bench.__file__)"],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
    )
    assert str(env_dir) in where.stdout and str(root) not in where.stdout
