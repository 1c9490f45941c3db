"""The benchmark's running-time clock leaves out the time a process was stopped."""

import os
import signal
import subprocess
import sys
import time

import pytest

from afr_aug.bench.clock import RunningClock, recorded_seconds

CHILD = """
import sys, time
from afr_aug.bench.clock import RunningClock
clock = RunningClock(beat=0.05, gap=0.5).start()
w0, r0 = time.monotonic(), clock.now()
print("ready", flush=True)
while time.monotonic() - w0 < 4.0:
    time.sleep(0.01)
print(time.monotonic() - w0, clock.now() - r0, flush=True)
"""


@pytest.mark.skipif(not hasattr(signal, "SIGSTOP"), reason="needs POSIX stop/continue")
def test_a_stopped_process_does_not_count_the_stop():
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD], stdout=subprocess.PIPE, text=True, env=os.environ
    )
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "ready"
    time.sleep(0.5)
    os.kill(child.pid, signal.SIGSTOP)
    time.sleep(2.0)
    os.kill(child.pid, signal.SIGCONT)
    out, _ = child.communicate(timeout=30)
    wall, running = map(float, out.split())
    assert wall >= 4.0
    # about 2 s of the wall time was the stop; one beat (0.05 s) of it counts as running
    assert wall - 2.3 < running < wall - 1.7


def test_a_reading_right_after_a_stop_leaves_it_out_before_the_next_beat():
    t = [10.0]
    clock = RunningClock(beat=1.0, gap=5.0, monotonic=lambda: t[0])
    t[0] = 11.0
    clock.beat()
    t[0] = 14.0  # no beat for 3 s: shorter than the gap, counted as running
    assert clock.now() == 14.0 and clock.stopped == 0.0
    t[0] = 114.0  # 100 s without a beat: stopped; read before the heartbeat notices
    assert clock.now() == 15.0 and clock.stopped == 99.0
    clock.beat()  # the heartbeat after the stop does not count it twice
    assert clock.now() == 15.0


def test_bad_beat_and_gap_are_rejected():
    with pytest.raises(ValueError, match="0 < beat < gap"):
        RunningClock(beat=5.0, gap=1.0)
    with pytest.raises(ValueError, match="0 < beat < gap"):
        RunningClock(beat=0.0)


def test_recorded_seconds_estimates_only_the_pauses_of_an_older_run():
    hist = [{"epoch": e, "seconds": 30.0 + (e % 3)} for e in range(1, 101)]
    hist[40]["seconds"] = 30.0 + 1500.0  # a 25-minute pause in epoch 41
    hist[41]["seconds"] = 75.0  # slower (a second run beside it): not a pause
    total = sum(h["seconds"] for h in hist)
    seconds, estimated = recorded_seconds(total, hist)
    assert estimated == 1
    assert seconds == pytest.approx(total - 1500.0, abs=2.0)
    # too short a history to tell: taken as recorded
    assert recorded_seconds(9.0, hist[:3]) == (9.0, 0)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_starts_its_own_clock():
    from afr_aug.bench import clock

    clock.running_time()  # the parent's clock, with its heartbeat thread
    assert clock._clock is not None
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: no heartbeat thread came along, so no clock either
        os.write(write, b"1" if clock._clock is None else b"0")
        os._exit(0)
    os.waitpid(pid, 0)
    assert os.read(read, 1) == b"1"
    assert clock._clock is not None
