"""A fake clock for code that sleeps or waits: time moves only when that code sleeps, or the test says.

    clock.install(monkeypatch, teachers)   # teachers' time.monotonic, time.perf_counter, asyncio.sleep
    ...                                    # run the code under test
    clock.sleeps                           # [1.2]: every sleep it asked for, in seconds, in order
    clock.now                              # where time stands (starts at 1000.0)
    clock.advance(0.2)                     # move time on by hand (for a thread that waits on it)

`install` replaces the module's `time` and `asyncio` names with stand-ins that pass everything
through but monotonic, perf_counter and sleep, so only that module's view of time is fake: the
event loop, asyncio.timeout, other modules, the loopback server and the wall clock (time.time,
against which an HTTP date is read) stay real. `Loopback(clock=clock.monotonic)` logs its
requests on the same clock, so a test can read the spacing the server saw.

Sleeps add up one after another (each moves `now` by its full length), which is what code that
sleeps under a lock, or one job at a time, sees; where several tasks sleep at once it overstates
how long passed, so use it for one sleeper at a time. A fake sleep still yields to the event loop
once, so other tasks run in between.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from types import ModuleType
from typing import Any

_real_sleep = asyncio.sleep


class Through:
    """A stand-in for a module: the attributes given here, and the module's own for the rest."""

    def __init__(self, real: ModuleType, **overrides: Any):
        self._real = real
        self.__dict__.update(overrides)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


class FakeClock:
    def __init__(self, start: float = 1000.0):
        self.now = start
        self.sleeps: list[float] = []
        self._lock = threading.Lock()

    def monotonic(self) -> float:
        return self.now

    perf_counter = monotonic

    def advance(self, seconds: float) -> None:
        """Move time on by `seconds`; by one float step at least when `seconds` > 0, as a real
        clock would (a wait too short for the float to show would otherwise never end)."""
        with self._lock:
            later = self.now + seconds
            self.now = max(later, math.nextafter(self.now, math.inf)) if seconds > 0 else later

    async def sleep(self, seconds: float, result: Any = None) -> Any:
        seconds = max(0.0, float(seconds))
        self.sleeps.append(seconds)
        self.advance(seconds)
        await _real_sleep(0)
        return result

    def install(self, monkeypatch, module: ModuleType) -> FakeClock:
        """`module`'s `time` and (when it has one) `asyncio` read this clock until the test ends."""
        monkeypatch.setattr(module, "time", Through(time, monotonic=self.monotonic, perf_counter=self.perf_counter))
        if hasattr(module, "asyncio"):
            monkeypatch.setattr(module, "asyncio", Through(asyncio, sleep=self.sleep))
        return self


def wait_until(condition, timeout: float = 10.0, every: float = 0.01) -> bool:
    """Poll `condition()` on the real clock until it holds (True) or `timeout` seconds pass (False):
    for a thread or process that acts on its own time."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() >= deadline:
            return False
        time.sleep(every)
    return True
