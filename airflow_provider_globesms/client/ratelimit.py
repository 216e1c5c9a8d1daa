"""A rate limiter that never lets a one-second window exceed the cap.

GCRA (the "virtual scheduling" form of a leaky bucket): each call reserves the next free slot, slots
are ``1/rate`` apart, and a caller sleeps until its slot. With no burst allowance, any one-second window
holds at most ``rate`` slots, which is what the gateway counts. One limiter serves threads (``acquire``)
and coroutines (``acquire_async``) alike: reserving is a few arithmetic operations under a lock, the
waiting happens outside it.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable


class RateLimiter:
    def __init__(self, rate: float, clock: Callable[[], float] = time.monotonic) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = float(rate)
        self._interval = 1.0 / self.rate
        self._clock = clock
        self._lock = threading.Lock()
        self._next_slot = 0.0

    def reserve(self) -> float:
        """Take the next slot; return how many seconds to wait until it (0 when it is now)."""
        with self._lock:
            now = self._clock()
            slot = self._next_slot if self._next_slot > now else now
            self._next_slot = slot + self._interval
        return slot - now

    def hold(self, seconds: float) -> None:
        """Push every later slot back, e.g. when the server said to wait (throttled)."""
        with self._lock:
            self._next_slot = max(self._next_slot, self._clock() + seconds)

    def acquire(self) -> None:
        delay = self.reserve()
        if delay > 0:
            time.sleep(delay)

    async def acquire_async(self) -> None:
        delay = self.reserve()
        if delay > 0:
            await asyncio.sleep(delay)
