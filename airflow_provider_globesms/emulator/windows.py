"""The gateway's QPS counters: arrivals per (AccessKeyId, action) over the trailing second."""

from __future__ import annotations

from collections import deque


class Window:
    """Arrivals of one (AccessKeyId, action) over the last second: the gateway's QPS counter."""

    __slots__ = ("accepted", "offered", "peak_accepted", "peak_offered")

    def __init__(self) -> None:
        self.accepted: deque[float] = deque()
        self.offered: deque[float] = deque()
        self.peak_accepted = 0
        self.peak_offered = 0

    @staticmethod
    def _trim(times: deque[float], now: float) -> None:
        edge = now - 1.0
        while times and times[0] <= edge:
            times.popleft()

    def offer(self, now: float, cap: float) -> float | None:
        """Count an arrival; return the seconds left until a slot frees if it is over the cap."""
        self._trim(self.offered, now)
        self.offered.append(now)
        self.peak_offered = max(self.peak_offered, len(self.offered))
        self._trim(self.accepted, now)
        if len(self.accepted) >= cap:
            return max(0.001, self.accepted[0] + 1.0 - now)
        self.accepted.append(now)
        self.peak_accepted = max(self.peak_accepted, len(self.accepted))
        return None

    def rate(self, now: float) -> int:
        """Arrivals in the trailing second."""
        self._trim(self.offered, now)
        return len(self.offered)
