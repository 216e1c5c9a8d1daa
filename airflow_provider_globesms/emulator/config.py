"""Settings of the emulator: keys, caps, simulated network and carrier, injected faults."""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from typing import Any, ClassVar

DEFAULT_KEYS = {"AKID": "SECRET"}
REQUEST_TIMEOUT = 30.0  # seconds for a request to arrive whole; far above what any real client needs


FAULT_KINDS = ("throttle", "unavailable", "reset", "hang", "internal_error")
OLD_FAULT_NAMES = {"error_5xx": "unavailable"}  # names before 0.2, still accepted


@dataclass
class Faults:
    """Faults injected on purpose: shares of send calls (0 to 1), and a script of exact next faults.

    * ``throttle``: refused with 400 ``Throttling.User``, not accepted.
    * ``unavailable``: refused with 503 ``ServiceUnavailable``, not accepted.
    * ``reset``: the TCP connection is reset before the request is processed, not accepted.
    * ``hang``: the message **is accepted**, then the reply is held for ``hang_seconds``
      (past any sane client timeout) - the case a client must never resend blindly.
    * ``internal_error`` (script only): the message is accepted, then 500 ``InternalError`` is answered.

    The shares apply to SendMessageToGlobe and BatchSendMessageToGlobe. ``script`` entries are taken
    in order by the next calls: ``"throttle"`` for the next send call, ``"hang:QueryMessage"`` for the
    next call of that action.
    """

    throttle: float = 0.0
    unavailable: float = 0.0
    reset: float = 0.0
    hang: float = 0.0
    hang_seconds: float = 30.0
    script: deque[str] = field(default_factory=deque)

    RATIOS: ClassVar[tuple[str, ...]] = ("throttle", "unavailable", "reset", "hang")

    def update(self, values: dict[str, Any]) -> None:
        """Change fault settings at run time; unknown names and out-of-range shares raise ``ValueError``."""
        for given, value in values.items():
            name = OLD_FAULT_NAMES.get(given, given)
            if name == "script":
                entries = [_current_fault_name(str(e)) for e in ([value] if isinstance(value, str) else value)]
                for entry in entries:
                    if entry.partition(":")[0] not in FAULT_KINDS:
                        raise ValueError(f"unknown fault {entry!r} in script; known: {', '.join(FAULT_KINDS)}")
                self.script.extend(entries)
                continue
            if name not in (*self.RATIOS, "hang_seconds"):
                raise ValueError(
                    f"unknown fault setting {name!r}; known: {', '.join((*self.RATIOS, 'hang_seconds', 'script'))}"
                )
            number = float(value)
            if name != "hang_seconds" and not 0.0 <= number <= 1.0:
                raise ValueError(f"fault {name!r} must be a share between 0 and 1, got {value!r}")
            if name == "hang_seconds" and not 0 <= number < math.inf:
                raise ValueError(f"hang_seconds must be a finite number of seconds, not negative, got {value!r}")
            setattr(self, name, number)

    def as_dict(self) -> dict[str, Any]:
        """The fault settings and the remaining script, as a plain mapping."""
        out: dict[str, Any] = {name: getattr(self, name) for name in (*self.RATIOS, "hang_seconds")}
        out["script"] = list(self.script)
        return out


@dataclass
class EmulatorConfig:
    """How the emulator behaves: keys, rate limits, latency, delivery simulation, storage and faults."""

    keys: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_KEYS))
    qps: float = 2000.0  # SendMessageToGlobe per AccessKeyId
    batch_qps: float = 1.0
    query_qps: float = 300.0
    latency_ms: float = 0.0
    latency_jitter_ms: float = 0.0
    delivery_delay: float = 1.0
    failure_rate: float = 0.0
    db: str = ":memory:"
    timestamp_tolerance: float = 15 * 60
    max_message_length: int = 2000
    seed: int | None = None
    faults: Faults = field(default_factory=Faults)
    # Required (as "Authorization: Bearer <token>") by /_emulator/*, which shows numbers and texts.
    inspection_token: str | None = field(default=None, repr=False)
    # Host names (lower case) that /_emulator/* also answers on loopback, besides loopback names: a proxy's.
    allowed_hosts: tuple[str, ...] = ()
    # Seconds for a request to arrive whole (from the connection opening or its first byte): then 408.
    request_timeout: float = REQUEST_TIMEOUT

    # Settings that may change while the emulator runs (``PATCH /_emulator/settings``).
    RUNTIME: ClassVar[tuple[str, ...]] = (
        "qps",
        "batch_qps",
        "query_qps",
        "latency_ms",
        "latency_jitter_ms",
        "delivery_delay",
        "failure_rate",
    )

    def update(self, values: dict[str, Any]) -> None:
        """Change ``RUNTIME`` settings at run time; others, and out-of-range values, raise ``ValueError``."""
        for name, value in values.items():
            if name not in self.RUNTIME:
                raise ValueError(f"setting {name!r} cannot change at run time; these can: {', '.join(self.RUNTIME)}")
            try:
                number = float(value)
            except (TypeError, ValueError):
                raise ValueError(f"setting {name!r}: {value!r} is not a number") from None
            if (
                not math.isfinite(number)
                or number < 0
                or (name == "failure_rate" and number > 1)
                or (name.endswith("qps") and number == 0)
            ):
                raise ValueError(f"setting {name!r}: {value!r} is out of range")
            setattr(self, name, number)

    def public(self) -> dict[str, Any]:
        """Settings as JSON, secrets left out."""
        out = {name: getattr(self, name) for name in self.RUNTIME}
        out.update(access_key_ids=sorted(self.keys), db=self.db, faults=self.faults.as_dict())
        return out


def _current_fault_name(entry: str) -> str:
    """A script entry with an old fault name (``error_5xx:QueryMessage``) in today's name."""
    kind, sep, action = entry.partition(":")
    return OLD_FAULT_NAMES.get(kind, kind) + sep + action
