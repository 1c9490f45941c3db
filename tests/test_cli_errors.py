"""The benchmark command lines answer a usage error the way argparse does: exit status 2 and a
line ``prog: error: ...`` that names the fix; a missing data folder is one such line, never a
traceback."""

import importlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CLIS = [
    "reproduce",
    "throughput",
    "attack_balance",
    "refresh_scale",
    "sampler_scale",
    "plan",
    "preflight",
    "pack",
    "bundle",
    "report",
]


def run_cli(module, args, tmp_path, **env):
    """``python -m benchmarks.MODULE ARGS`` from an empty folder (no ./data to fall back on),
    with ``AFR_DATA`` pointing at a folder that does not exist."""
    environ = dict(
        os.environ,
        PYTHONPATH=os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p),
        AFR_DATA=str(tmp_path / "no-such-folder"),
        OMP_NUM_THREADS="1",
    )
    environ.update(env)
    cwd = tmp_path / "cwd"
    cwd.mkdir(exist_ok=True)
    return subprocess.run(
        [sys.executable, "-m", f"benchmarks.{module}", *args],
        cwd=cwd,
        env=environ,
        capture_output=True,
        text=True,
        timeout=300,
    )


def one_line_error(proc, module):
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode == 2, (proc.returncode, proc.stdout[-1000:], proc.stderr[-2000:])
    assert "Traceback" not in proc.stderr and len(lines) == 1, proc.stderr
    assert lines[0].startswith(f"afr-aug {module.replace('_', '-')}: error: "), lines[0]
    return lines[0]


@pytest.mark.parametrize(
    "module, args, fix",
    [
        ("reproduce", ["--preset", "smoke", "--out", "{tmp}/out"], "--data-root"),
        ("reproduce", ["--preset", "smoke", "--jobs", "2", "--out", "{tmp}/out"], "--download"),
        (
            "reproduce",
            ["--preset", "smoke", "--data", "{tmp}/none.afrpack", "--out", "{tmp}/out"],
            "afr-aug pack",
        ),
        ("throughput", [], "--data PACK"),
        ("attack_balance", ["--checkpoint", "{tmp}/ckpt.pt"], "--data-root"),
        ("attack_balance", ["--checkpoint", "{tmp}/none.pt"], "afr-aug reproduce"),
        ("refresh_scale", ["--images", "40", "--size", "8"], "--skip-cifar"),
        ("plan", ["--out", "{tmp}/plan.json"], "--data-root"),
        ("pack", ["--out", "{tmp}/p.afrpack"], "--download"),
        ("bundle", ["{tmp}/bundle"], "--pack PACK"),
        ("report", ["{tmp}/nothing"], "results.json"),
    ],
)
def test_missing_data_is_one_line_naming_the_fix(tmp_path, module, args, fix):
    (tmp_path / "ckpt.pt").write_bytes(b"")  # exists: the data are what is missing
    proc = run_cli(module, [a.format(tmp=tmp_path) for a in args], tmp_path)
    assert fix in one_line_error(proc, module)
    assert not (tmp_path / "out" / "ckpt").exists()


def test_a_value_out_of_range_is_one_line_too(tmp_path):
    line = one_line_error(run_cli("sampler_scale", ["--labels", "0"], tmp_path), "sampler_scale")
    assert "num_labels" in line


@pytest.mark.parametrize(
    "module, args, message",
    [
        ("reproduce", ["--weight-decay=-1e-4"], "weight decay must be a finite number >= 0"),
        ("reproduce", ["--weight-decay", "nan"], "got 'nan'"),
        ("reproduce", ["--weight-decay", "lots"], "got 'lots'"),
        ("reproduce", ["--label-safe", "1.5"], "a confidence must lie in (0, 1), got 1.5"),
        ("reproduce", ["--label-safe", "none"], "'label' or a confidence in (0, 1)"),
        ("label_safe", ["--checkpoint", "a=b", "--options", "0"], "must lie in (0, 1), got 0"),
        ("label_safe", ["--checkpoint", "a=b", "--options", "safe"], "got 'safe'"),
    ],
)
def test_a_bad_value_names_what_is_allowed(module, args, message, capsys):
    main = importlib.import_module(f"benchmarks.{module}").main
    with pytest.raises(SystemExit) as exit_:
        main(args)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert f"afr-aug {module.replace('_', '-')}: error: " in err and message in err, err


def test_label_safe_options_read_none_label_and_a_confidence():
    from afr_aug.bench.label_safe import _option

    assert [_option(t) for t in ("none", "label", "0.5")] == [None, "label", 0.5]


@pytest.mark.parametrize("module", CLIS)
def test_a_bad_flag_exits_2(module, capsys):
    main = importlib.import_module(f"benchmarks.{module}").main
    with pytest.raises(SystemExit) as exit_:
        main(["--no-such-flag"])
    assert exit_.value.code == 2
    assert f"afr-aug {module.replace('_', '-')}: error: " in capsys.readouterr().err


def test_download_offline_is_one_line_naming_the_alternatives(tmp_path):
    """``--download`` with no network (torchvision's fetch fails at once here): one line that
    names --data-root, $AFR_DATA and --data PACK, not urllib's traceback."""
    sitecustomize = tmp_path / "offline" / "sitecustomize.py"
    sitecustomize.parent.mkdir()
    sitecustomize.write_text(
        "import urllib.request, urllib.error\n"
        "def _offline(*a, **k):\n"
        "    raise urllib.error.URLError('[Errno -3] Temporary failure in name resolution')\n"
        "urllib.request.urlopen = _offline\n"
    )
    env = {"PYTHONPATH": os.pathsep.join([str(sitecustomize.parent), str(ROOT)])}
    proc = run_cli(
        "reproduce",
        [
            "--preset",
            "smoke",
            "--download",
            "--data-root",
            str(tmp_path / "dl"),
            "--out",
            str(tmp_path / "out"),
        ],
        tmp_path,
        **env,
    )
    line = one_line_error(proc, "reproduce")
    assert "could not download cifar10-lt" in line and "offline?" in line
    assert "--data-root" in line and "$AFR_DATA" in line and "--data PACK" in line


def test_a_bug_keeps_its_traceback(tmp_path, monkeypatch):
    """Only the known usage errors are one line: a ValueError from inside the code (a bug) is
    not turned into a usage error."""
    import afr_aug.bench.data as data
    from afr_aug.bench import reproduce

    def broken(*args, **kwargs):
        raise ValueError("an internal bug, not a usage error")

    monkeypatch.setattr(reproduce, "load_data", broken)
    with pytest.raises(ValueError, match="an internal bug"):
        reproduce.main(["--preset", "smoke", "--out", str(tmp_path / "out")])
    assert issubclass(data.DataError, Exception) and not issubclass(data.DataError, ValueError)
