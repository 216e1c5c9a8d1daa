"""A rate limiter that never lets a one-second window exceed the cap.

Two stages. Pacing: GCRA (the "virtual scheduling" form of a leaky bucket) hands out slots ``1/rate``
apart, a little under the cap (``headroom``), so sends are spread evenly. Guard: at the moment a
caller is admitted, the admissions of the trailing second are counted and the caller waits if the
cap is reached. Pacing alone is not enough: a caller that wakes late (a busy event loop, the GIL)
sends late, bunching with the next ones, and a window the gateway counts could then hold more than
the cap. The headroom absorbs the jitter added after admission, on the network and on the server.

Time lost is made up (``CATCH_UP``): slots that went by unused while no caller was ready (the event loop
busy writing the ledger, a stalled producer) may still be taken for a little while, so a short stall
does not lower the average below the cap (without it, every slot a stall skipped is lost for good); the
guard keeps the catching up inside the cap. ``tests/test_at_the_cap.py`` checks both on generated schedules.

One limiter serves threads (``pace``, ``admit``) and coroutines (``pace_async``, ``admit_async``): the
bookkeeping is a few operations under a lock, the waiting happens outside it.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from collections.abc import Callable

CATCH_UP = 0.1  # seconds of unused slots a late caller may still take (a burst of at most rate x this)


class RateLimiter:
    """Paces callers to at most ``rate`` per second, less ``headroom``: see the module docstring."""

    def __init__(self, rate: float, headroom: float = 0.0, clock: Callable[[], float] = time.monotonic) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        if not 0.0 <= headroom < 1.0:
            raise ValueError("headroom must be a share between 0 and 1")
        self.rate = float(rate)
        # Admissions allowed in any one-second window: the cap, less half the headroom for the jitter
        # that arrives after admission (network, the server's own queue).
        self.cap = max(1, int(rate * (1.0 - headroom / 2)))
        self._interval = 1.0 / (self.rate * (1.0 - headroom))
        self._clock = clock
        self._lock = threading.Lock()
        self._next_slot = 0.0
        self._admitted: deque[float] = deque()

    def reserve(self) -> float:
        """Take the next paced slot; return how many seconds to wait until it (0 when it is now)."""
        with self._lock:
            now = self._clock()
            slot = max(self._next_slot, now - CATCH_UP)
            self._next_slot = slot + self._interval
        return max(0.0, slot - now)

    def _admit(self) -> float:
        """Admit now if the trailing second has room; else return how long until it has.

        Call it as close as possible to the moment the request is written: what the gateway counts.
        """
        with self._lock:
            now = self._clock()
            edge = now - 1.0
            admitted = self._admitted
            while admitted and admitted[0] <= edge:
                admitted.popleft()
            if len(admitted) < self.cap:
                admitted.append(now)
                return 0.0
            return admitted[0] - edge

    def hold(self, seconds: float) -> None:
        """Push every later slot back, e.g. when the server said to wait (throttled)."""
        with self._lock:
            self._next_slot = max(self._next_slot, self._clock() + seconds)

    def pace(self) -> None:
        """Wait for the next paced slot (first stage)."""
        delay = self.reserve()
        if delay > 0:
            time.sleep(delay)

    def admit(self) -> None:
        """Wait until the trailing second has room (second stage, right before writing)."""
        while (delay := self._admit()) > 0:
            time.sleep(delay)

    async def pace_async(self) -> None:
        """Wait for the next paced slot (first stage), without blocking the event loop."""
        delay = self.reserve()
        if delay > 0:
            await asyncio.sleep(delay)

    async def admit_async(self) -> None:
        """Wait until the trailing second has room (second stage), without blocking the event loop."""
        while (delay := self._admit()) > 0:
            await asyncio.sleep(delay)
