"""How many requests a teacher has in flight: additive increase, multiplicative decrease.

    limit = AdaptiveLimit(ceiling=plan.concurrency)
    ticket = await limit.acquire()        # waits while `limit.current` requests are in flight
    ...send...
    limit.release(ticket, "ok")           # +1/current: about one more slot per round trip
    limit.release(ticket, "overloaded")   # a 429 or 503: halve, at most once per round trip

A fixed `concurrency` either wastes requests on 429s (too high for the provider's capacity)
or leaves throughput unused (too low). TCP's answer works here too: grow by one request per
round of answers, halve on a sign of overload, never below 1 or above the teacher's
`concurrency`. A decrease counts only for requests sent after the last decrease (their
`ticket` is newer), so one burst of 429s from a full server halves once, not once per
rejected request (TCP's "once per window").

The provider's own numbers beat guessing: `ratelimit_pause(headers)` reads OpenAI-style
`x-ratelimit-remaining-requests` / `x-ratelimit-reset-requests` (and the `-tokens` pair) and
says how long to pause the teacher when a budget is spent.

Written here rather than taken from a library: the AIMD limiters on PyPI are either
thread-based (`limits`, `ratelimit` count requests per period, not requests in flight) or
wrap a whole client; this is 50 lines over a queue of futures.
"""

from __future__ import annotations

import asyncio
import re
from collections import deque
from collections.abc import Mapping
from typing import Literal

Signal = Literal["ok", "overloaded", "other"]

DECREASE = 0.5  # multiplicative: halve on overload


class AdaptiveLimit:
    """At most `current` acquisitions at once; `current` moves within [1, ceiling] (see module doc).

    >>> limit = AdaptiveLimit(8)
    >>> limit.current
    8.0
    >>> t = limit._take(); limit.release(t, "overloaded"); limit.current
    4.0
    >>> t = limit._take(); limit.release(t, "ok"); limit.current
    4.25
    """

    def __init__(self, ceiling: int, *, adaptive: bool = True):
        self.ceiling = max(1, int(ceiling))
        self.adaptive = adaptive
        self.current = float(self.ceiling)  # start at the ceiling: the first 429s find the capacity
        self.in_flight = 0
        self.decreases = 0
        self._sent = 0  # tickets handed out: a request's ticket tells when it was sent
        self._last_decrease = -1  # ticket count at the last decrease
        self._waiters: deque[asyncio.Future] = deque()

    def _take(self) -> int:
        self.in_flight += 1
        self._sent += 1
        return self._sent

    async def acquire(self) -> int:
        """A ticket for one request; waits while the limit is reached (no future made when not)."""
        while self.in_flight >= int(self.current):
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            except asyncio.CancelledError:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)
                raise
        return self._take()

    def release(self, ticket: int, signal: Signal) -> None:
        self.in_flight -= 1
        if self.adaptive:
            if signal == "overloaded":
                if ticket > self._last_decrease:
                    self.current = max(1.0, self.current * DECREASE)
                    self._last_decrease = self._sent
                    self.decreases += 1
            elif signal == "ok":
                self.current = min(float(self.ceiling), self.current + 1.0 / self.current)
        free = int(self.current) - self.in_flight
        while free > 0 and self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                free -= 1


# A number with a unit, repeated ("6m0s"), or one bare number of seconds ("2.5").
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")
_SCALE = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_reset(value: str | None) -> float | None:
    """Seconds in an OpenAI reset header: "1s", "6m0s", "20ms", "1h2m3.5s", or plain seconds.

    >>> parse_reset("6m0s"), parse_reset("20ms"), parse_reset("1h2m3.5s"), parse_reset("2.5")
    (360.0, 0.02, 3723.5, 2.5)
    >>> parse_reset("soon") is None
    True
    """
    text = "" if value is None else str(value).strip()
    if re.fullmatch(r"\d+(?:\.\d+)?", text):
        text += "s"
    parts = _DURATION.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        return None
    return sum(float(n) * _SCALE[u] for n, u in parts)


def ratelimit_pause(headers: Mapping[str, str]) -> float | None:
    """How long to pause when a rate-limit budget the provider reports is spent, else None.

    >>> ratelimit_pause({"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "1.5s"})
    1.5
    >>> ratelimit_pause({"x-ratelimit-remaining-requests": "12", "x-ratelimit-reset-requests": "1s"}) is None
    True
    """
    pause = None
    for budget in ("requests", "tokens"):
        remaining = headers.get(f"x-ratelimit-remaining-{budget}")
        if remaining is None:
            continue
        try:
            spent = float(remaining) <= 0
        except ValueError:
            continue
        reset = parse_reset(headers.get(f"x-ratelimit-reset-{budget}"))
        if spent and reset is not None:
            pause = max(pause or 0.0, reset)
    return pause
