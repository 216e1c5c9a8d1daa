"""How often and how patiently a call is tried again (the *when*; ``call`` holds the *whether*)."""

from __future__ import annotations

import random
from dataclasses import dataclass

from airflow_provider_globesms.client.errors import ConfigurationError


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Exponential backoff with full jitter.

    ``max_attempts`` bounds tries that failed for any reason but throttling (the first try counts);
    ``max_throttled_attempts`` bounds those refused by throttling, a refusal that only says "later":
    under a busy account cap a message may be throttled several times before it gets through.
    ``confirm_by_replay``: when a send may have reached the API without an answer, resend its exact
    bytes to learn whether it did (see ``call``); ``False`` reports it unknown at once instead.
    """

    max_attempts: int = 8
    max_throttled_attempts: int = 30
    backoff_base: float = 0.1
    backoff_cap: float = 10.0
    confirm_by_replay: bool = True

    def __post_init__(self) -> None:
        for name in ("max_attempts", "max_throttled_attempts"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigurationError(f"RetryPolicy.{name} {value!r}: must be a whole number >= 1")
        for name in ("backoff_base", "backoff_cap"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or not 0 <= value < float("inf"):
                raise ConfigurationError(f"RetryPolicy.{name} {value!r}: must be a finite number >= 0")

    def backoff(self, attempt: int) -> float:
        """Seconds to wait before try ``attempt + 1``: uniform in [0, min(cap, base * 2^(attempt-1))]."""
        return random.uniform(0, min(self.backoff_cap, self.backoff_base * (2 ** (attempt - 1))))
