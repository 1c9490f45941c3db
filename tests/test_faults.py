"""Faults injected into AFR's stage-2 set: after each one the set serves exactly the previous
generation's bytes, or the error is one clear line, and no process dies of a signal.

Cases: an exception (and Ctrl-C) at each step of a refresh, a read-only directory, a full disk
(a small tmpfs where this machine lets the test mount one, else an injected ENOSPC), a short
write, a corrupted and a truncated file, two sets loaded from one checkpoint, and ``kill -9``
at each phase of a refresh in a subprocess.
"""

import errno
import gc
import os
import pickle
import signal
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import pytest
import torch

import afr_aug.stage2.pipeline as pipeline
import afr_aug.store as store_module
from afr_aug import AFRDataset
from afr_aug.models import resnet32
from afr_aug.store import StoreError

ROOT = Path(__file__).resolve().parents[1]
LABELS = torch.tensor([0] * 24 + [1] * 10 + [2] * 6)


def images(size=8):
    g = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (len(LABELS), 3, size, size), dtype=torch.uint8, generator=g)


def new_set(storage="memory", size=8, seed=0, **kw):
    return AFRDataset(images(size), LABELS, storage=storage, progress=False, seed=seed, **kw)


def model():
    torch.manual_seed(0)
    return resnet32(num_classes=3)


def refresh(b, m=None):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return b.refresh(m or model())


def served(b):
    """Every item's bytes and label, as the set serves them now."""
    x, y = b.get_batch(torch.arange(len(b)))
    return x.clone(), y.clone()


def same(a, b):
    return torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def open_fds():
    return len(os.listdir("/proc/self/fd"))


def partials(path):
    return sorted(p.name for p in Path(path).glob("*.partial")) if path != "memory" else []


class Boom(RuntimeError):
    pass


def _raise_in(monkeypatch, b, step):
    """Make ``step`` of the next refresh raise (``ctrl-c``: KeyboardInterrupt mid-attack)."""
    if step == "embed":
        monkeypatch.setattr(pipeline, "embed", lambda *a, **k: (_ for _ in ()).throw(Boom(step)))
    elif step == "split":
        monkeypatch.setattr(b.splitter, "split", lambda *a, **k: (_ for _ in ()).throw(Boom(step)))
    elif step == "fit":
        monkeypatch.setattr(b.attack, "fit", lambda *a, **k: (_ for _ in ()).throw(Boom(step)))
    elif step in ("generate", "ctrl-c"):
        real = b.attack.generate
        error = KeyboardInterrupt if step == "ctrl-c" else Boom

        def generate(batches):
            for i, out in enumerate(real(batches)):
                if i == 1:
                    raise error(step)
                yield out

        monkeypatch.setattr(b.attack, "generate", generate)
    elif step in ("write", "finish"):
        real = getattr(b.store, step)
        calls = []

        def fail(*a, **k):
            calls.append(1)
            if step == "finish" or len(calls) == 2:
                raise Boom(step)
            return real(*a, **k)

        monkeypatch.setattr(b.store, step, fail)


STEPS = ["embed", "split", "fit", "generate", "write", "finish", "ctrl-c"]


@pytest.mark.parametrize("where", ["memory", "disk"])
@pytest.mark.parametrize("step", STEPS)
def test_a_failure_at_any_step_keeps_the_previous_generation(tmp_path, monkeypatch, where, step):
    storage = "memory" if where == "memory" else str(tmp_path)
    b = new_set(storage, batch_size=8)  # several attack batches: fail in the middle
    refresh(b)
    gc.collect()  # an earlier test's unreachable file must not close during this one's count
    before, fds, state = served(b), open_fds(), b.generator.get_state()
    with monkeypatch.context() as m:
        _raise_in(m, b, step)
        with pytest.raises((Boom, KeyboardInterrupt)) as err:
            refresh(b)
    if hasattr(err.value, "__notes__"):
        assert "the set still holds generation 1" in err.value.__notes__[-1]
    assert same(served(b), before) and b.generation == b.store.generation == 1
    assert b.store._pending is None and open_fds() == fds and partials(storage) == []
    assert torch.equal(b.generator.get_state(), state)  # a retry draws the same slots
    refresh(b)
    twin = new_set(storage if where == "memory" else str(tmp_path / "twin"), batch_size=8)
    refresh(twin)
    refresh(twin)
    assert same(served(b), served(twin)) and b.generation == 2


def _writable_for_root_too(monkeypatch, tmp_path):
    """A read-only directory: chmod for a normal user; root writes anyway, so for root every
    open of a new file there fails with EACCES, as a read-only mount would."""
    if os.geteuid() != 0:
        os.chmod(tmp_path, 0o555)
        return
    real = os.open

    def deny(path, flags, *a, **k):
        if str(path).startswith(str(tmp_path)) and flags & os.O_CREAT:
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real(path, flags, *a, **k)

    monkeypatch.setattr(store_module.os, "open", deny)


def test_a_read_only_directory_is_one_clear_error_and_bumps_nothing(tmp_path, monkeypatch):
    b = new_set(str(tmp_path))
    refresh(b)
    before, state = served(b), b.state_dict()
    with monkeypatch.context() as m:
        _writable_for_root_too(m, tmp_path)
        with pytest.raises(
            StoreError,
            match=r"cannot write .* while starting generation 2; the "
            r"set still holds generation 1",
        ) as err:
            refresh(b)
        assert err.value.errno == errno.EACCES
    os.chmod(tmp_path, 0o755)
    assert same(served(b), before) and b.store.generation == 1
    refresh(b)  # generation 2, not 3: nothing was bumped
    assert b.store.generation == 2
    again = new_set(str(tmp_path / "other"))
    again.load_state_dict(state)  # the last checkpoint's file is still there
    assert same(served(again), before)


def _mount_tmpfs(path, size):
    path.mkdir()
    r = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True
    )
    return r.returncode == 0


def test_a_full_disk_keeps_the_previous_generation_and_never_sigbus(tmp_path):
    """In a subprocess, so a SIGBUS would show as a signal instead of killing pytest."""
    disk = tmp_path / "small"
    mounted = _mount_tmpfs(disk, "160k")
    script = textwrap.dedent(f"""
        import errno, os, sys, warnings
        sys.path.insert(0, {str(ROOT / "tests")!r})
        import torch
        import afr_aug.store as store_module
        from test_faults import new_set, refresh, served, same
        from afr_aug.store import StoreError
        disk = {str(disk)!r}
        if not {mounted}:                         # no tmpfs here: the disk fills up on write
            os.makedirs(disk, exist_ok=True)
            real = os.posix_fallocate
            def full(fd, offset, length):
                if length:
                    raise OSError(errno.ENOSPC, "No space left on device")
            store_module.os.posix_fallocate = full
        b = new_set(disk, size=32)                  # about 91 KB of adversarial rows
        if not {mounted}:
            store_module.os.posix_fallocate = real
        refresh(b)
        before = served(b)
        if not {mounted}:
            store_module.os.posix_fallocate = full
        try:
            refresh(b)
            raise SystemExit("the second generation fitted: no full disk to test")
        except StoreError as e:
            assert "disk full (ENOSPC)" in str(e) and "still holds generation 1" in str(e), e
            assert e.errno == errno.ENOSPC
        assert same(served(b), before) and b.store.generation == 1
        assert not [f for f in os.listdir(disk) if f.endswith(".partial")]
        print("ok", {mounted})
    """)
    try:
        proc = subprocess.run(
            [sys.executable, "-c", script], capture_output=True, text=True, timeout=300, cwd=ROOT
        )
    finally:
        if mounted:
            subprocess.run(["umount", str(disk)], capture_output=True)
    assert proc.returncode == 0, (proc.returncode, proc.stdout[-2000:], proc.stderr[-3000:])
    assert proc.stdout.strip().startswith("ok")


def test_a_short_write_is_caught(tmp_path, monkeypatch):
    b = new_set(str(tmp_path))
    refresh(b)
    before = served(b)
    monkeypatch.setattr(store_module.os, "pwrite", lambda fd, data, offset: 0)
    with pytest.raises(StoreError, match=r"disk full \(ENOSPC\) in .* while writing generation 2"):
        refresh(b)
    monkeypatch.undo()
    assert same(served(b), before) and partials(tmp_path) == []


def test_a_corrupted_file_is_caught_on_load_and_on_read(tmp_path):
    b = new_set(str(tmp_path / "a"))
    refresh(b)
    state, path = b.state_dict(), b.store.file
    size = os.path.getsize(path)
    with open(path, "r+b") as f:  # random bytes of the same size
        f.write(os.urandom(size))
    with pytest.raises(ValueError, match="fail their checksums"):
        new_set(str(tmp_path / "b")).load_state_dict(state)
    worker = pickle.loads(pickle.dumps(b))  # what a DataLoader worker reads with
    with pytest.raises(StoreError, match="fail their checksum"):
        worker.get_batch(torch.nonzero(worker.is_adversarial).flatten()[:1])


def test_a_truncated_file_is_caught_on_load_and_on_read(tmp_path):
    b = new_set(str(tmp_path / "a"))
    refresh(b)
    state, path = b.state_dict(), b.store.file
    size = os.path.getsize(path)
    os.truncate(path, size // 2)
    with pytest.raises(ValueError, match=rf"which is {size // 2} bytes, not {size} bytes"):
        new_set(str(tmp_path / "b")).load_state_dict(state)
    worker = pickle.loads(pickle.dumps(b))
    with pytest.raises(StoreError, match="truncated or deleted"):
        worker.get_batch(torch.nonzero(worker.is_adversarial).flatten()[:1])


def test_two_sets_from_one_checkpoint_never_share_a_file(tmp_path):
    origin = new_set(str(tmp_path / "run"))
    refresh(origin)
    state, before = origin.state_dict(), served(origin)
    a, b = new_set(str(tmp_path / "run")), new_set(str(tmp_path / "run"))
    a.load_state_dict(state)
    b.load_state_dict(state)
    assert len({origin.store.file, a.store.file, b.store.file}) == 3
    refresh(b)
    refresh(b)
    refresh(b)
    assert same(served(a), before)  # B's refreshes never touched A's rows
    c = new_set(str(tmp_path / "run"))
    c.load_state_dict(state)  # nor the checkpoint's file
    assert same(served(c), before)


def test_a_checkpoint_older_than_the_retention_says_so(tmp_path):
    b = new_set(str(tmp_path), keep_generations=1)
    refresh(b)
    old = b.state_dict()
    refresh(b)
    with pytest.raises(ValueError, match="older than its keep_generations"):
        new_set(str(tmp_path / "other")).load_state_dict(old)


KILL_PHASES = ["embed", "attack", "write", "rename", "swap"]


@pytest.mark.parametrize("phase", KILL_PHASES)
def test_kill_9_at_each_phase_leaves_the_checkpoint_loadable(tmp_path, phase):
    disk, ckpt = tmp_path / "adv", tmp_path / "state.pt"
    script = textwrap.dedent(f"""
        import os, signal, sys
        sys.path.insert(0, {str(ROOT / "tests")!r})
        import torch
        import afr_aug.store as store_module
        import afr_aug.stage2.pipeline as pipeline
        from test_faults import new_set, refresh, served

        def die(*a, **k):
            os.kill(os.getpid(), signal.SIGKILL)

        b = new_set({str(disk)!r}, batch_size=8)
        refresh(b)
        torch.save({{"state": b.state_dict(), "served": served(b)}}, {str(ckpt)!r})
        phase = {phase!r}
        if phase == "embed":
            pipeline.embed = die
        elif phase == "attack":
            real = b.attack.generate
            def generate(batches):
                for i, out in enumerate(real(batches)):
                    if i == 1:
                        die()
                    yield out
            b.attack.generate = generate
        elif phase == "write":
            real_write = b.store.write
            calls = []
            def write(*a, **k):
                calls.append(1)
                if len(calls) == 2:
                    die()
                return real_write(*a, **k)
            b.store.write = write
        elif phase == "rename":
            store_module.os.replace = die
        elif phase == "swap":
            b.store._retire = die
        refresh(b)
        raise SystemExit("not killed")
    """)
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300, cwd=ROOT
    )
    assert proc.returncode == -signal.SIGKILL, (proc.returncode, proc.stderr[-3000:])
    saved = torch.load(ckpt, weights_only=True)
    resumed = new_set(str(tmp_path / "resumed"))
    resumed.load_state_dict(saved["state"])
    assert same(served(resumed), saved["served"])
    refresh(resumed)  # and it goes on
    assert resumed.generation == 2
