"""Seconds a run spent running: the time its process was stopped is left out.

A long benchmark run is paused (``kill -STOP`` ... ``kill -CONT``: while the test suite runs
beside it, or a machine is shared) and the wall clock keeps counting, so a 3-hour run that
was paused twice for 20 minutes would report 3.7 hours. :func:`running_time` is a clock that
stands still while the process is stopped: a daemon thread beats every ``beat`` seconds, and a
gap of more than ``gap`` seconds between two beats (or between the last beat and a reading) is
time the process did not run. Stops shorter than ``gap`` count as running time.

Usage, as ``time.perf_counter``::

    from afr_aug.bench.clock import running_time

    start = running_time()
    train_one_epoch()
    seconds = running_time() - start  # a pause in between is not counted

Runs recorded before this clock (their checkpoints lack ``"clock": "running"``) counted their
pauses; :func:`recorded_seconds` estimates those pauses from the run's per-epoch seconds.
"""

from __future__ import annotations

import os
import statistics
import threading
import time
from collections.abc import Callable

#: the checkpoint tag of a run timed by :func:`running_time`
CLOCK = "running"


class RunningClock:
    """A monotonic clock that leaves out the gaps between its beats longer than ``gap``.

    ``beat()`` is called every ``beat`` seconds (by :meth:`start`'s daemon thread, or by
    hand); a reading counts a gap itself, so it is right even before the thread has woken up
    after a stop. ``monotonic`` is the underlying clock (a fake one in tests).

    >>> t = [0.0]
    >>> clock = RunningClock(beat=1.0, gap=5.0, monotonic=lambda: t[0])
    >>> t[0] = 1.0; clock.beat(); t[0] = 2.0; clock.beat()
    >>> t[0] = 602.0                      # stopped for ten minutes
    >>> clock.now(), clock.stopped        # one beat interval of the gap counts as running
    (3.0, 599.0)
    """

    def __init__(
        self, beat: float = 0.5, gap: float = 20.0, monotonic: Callable[[], float] = time.monotonic
    ):
        if not 0 < beat < gap:
            raise ValueError(f"need 0 < beat < gap, got beat={beat}, gap={gap}")
        self.interval, self.gap, self._monotonic = float(beat), float(gap), monotonic
        self.stopped = 0.0
        self._last = monotonic()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def _account(self) -> float:
        t = self._monotonic()
        with self._lock:
            if t - self._last > self.gap:
                self.stopped += t - self._last - self.interval
            self._last = max(self._last, t)
            return t - self.stopped

    def beat(self) -> None:
        """Note that the process is running now (the heartbeat)."""
        self._account()

    def now(self) -> float:
        """Seconds since an arbitrary origin, stopped time left out."""
        return self._account()

    def start(self) -> RunningClock:
        """Beat every ``beat`` seconds from a daemon thread; returns ``self``."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="afr-running-clock", daemon=True)
            self._thread.start()
        return self

    def _run(self) -> None:
        while True:
            time.sleep(self.interval)
            self.beat()


_clock: RunningClock | None = None
_clock_lock = threading.Lock()


def _forget_after_fork() -> None:
    """A forked child has no heartbeat thread: it starts its own clock on its first reading."""
    global _clock, _clock_lock
    _clock, _clock_lock = None, threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_after_fork)


def running_time() -> float:
    """Seconds of this process's running time since an arbitrary origin (a stop is left out);
    the first call starts the heartbeat thread."""
    global _clock
    if _clock is None:
        with _clock_lock:
            if _clock is None:
                _clock = RunningClock().start()
    return _clock.now()


def recorded_seconds(
    seconds: float,
    history: list[dict],
    clock: str | None = None,
    window: int = 10,
    factor: float = 3.0,
) -> tuple[float, int]:
    """A run's training seconds and the number of its epochs whose time was estimated.

    ``seconds`` is the time the run recorded, ``history`` its per-epoch records and ``clock``
    how it was timed (a checkpoint's ``"clock"``). A run timed by :func:`running_time`
    (``clock == "running"``) is taken as it was recorded. An older run counted its pauses: an
    epoch that took more than ``factor`` times the median of its ``window`` neighbours on each
    side spanned a pause, and counts at that median instead.

    >>> hist = [{"epoch": e, "seconds": 30.0} for e in range(1, 41)]
    >>> hist[19]["seconds"] = 1230.0      # epoch 20 spanned a 20-minute pause
    >>> recorded_seconds(2400.0, hist)
    (1200.0, 1)
    >>> recorded_seconds(2400.0, hist, clock="running")
    (2400.0, 0)
    """
    seconds = float(seconds)
    if clock == CLOCK:
        return seconds, 0
    times = [float(h["seconds"]) for h in history if "seconds" in h]
    paused, estimated = 0.0, 0
    for i, s in enumerate(times):
        near = times[max(0, i - window) : i] + times[i + 1 : i + 1 + window]
        if len(near) < 4:
            continue
        typical = statistics.median(near)
        if s > factor * typical:
            paused += s - typical
            estimated += 1
    return seconds - paused, estimated
