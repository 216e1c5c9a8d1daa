"""Settings of the emulator: keys, caps, simulated network and carrier, injected faults."""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar
from urllib.parse import urlsplit

from airflow_provider_globesms.client.wire.endpoint import is_loopback

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

    Receipt pushes (``push``) have their own shares, of pushes: ``push_drop`` (never sent, never retried;
    its receipts are counted and their MessageIds listed), ``push_duplicate`` (sent again, later),
    ``push_reorder`` (its receipts shuffled, and it is held back a random moment).
    """

    throttle: float = 0.0
    unavailable: float = 0.0
    reset: float = 0.0
    hang: float = 0.0
    hang_seconds: float = 30.0
    push_drop: float = 0.0
    push_duplicate: float = 0.0
    push_reorder: float = 0.0
    script: deque[str] = field(default_factory=deque)

    # Shares of send calls: the gateway draws each of these for every send (so push shares are kept apart).
    RATIOS: ClassVar[tuple[str, ...]] = ("throttle", "unavailable", "reset", "hang")
    PUSH_RATIOS: ClassVar[tuple[str, ...]] = ("push_drop", "push_duplicate", "push_reorder")

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
            known = (*self.RATIOS, *self.PUSH_RATIOS, "hang_seconds")
            if name not in known:
                raise ValueError(f"unknown fault setting {name!r}; known: {', '.join((*known, 'script'))}")
            number = float(value)
            if name != "hang_seconds" and not 0.0 <= number <= 1.0:
                raise ValueError(f"fault {name!r} must be a share between 0 and 1, got {value!r}")
            if name == "hang_seconds" and not 0 <= number < math.inf:
                raise ValueError(f"hang_seconds must be a finite number of seconds, not negative, got {value!r}")
            setattr(self, name, number)

    def as_dict(self) -> dict[str, Any]:
        """The fault settings and the remaining script, as a plain mapping."""
        names = (*self.RATIOS, "hang_seconds", *self.PUSH_RATIOS)
        out: dict[str, Any] = {name: getattr(self, name) for name in names}
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
    # Delivery receipts pushed as Alibaba's HTTP batch push does (see ``push``): to this URL, http(s) on
    # loopback only (the emulator must never post numbers elsewhere); ``None``: nothing is pushed.
    push_url: str | None = None
    push_interval: float = 0.2  # receipts that became final within this many seconds share one push
    push_batch: int = 100  # receipts in one push, at most
    push_timeout: float = 3.0  # seconds for the receiver's answer; later counts as a failed attempt
    push_retry: tuple[float, ...] = (60.0, 300.0, 600.0)  # waits before each retry of a failed push

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

    # Push settings; all may change at run time (``PATCH /_emulator/push``).
    PUSH: ClassVar[tuple[str, ...]] = ("push_url", "push_interval", "push_batch", "push_timeout", "push_retry")

    def __post_init__(self) -> None:
        # The same checks as at run time: a bad push URL given in code or on the command line fails at once.
        self.update_push(self.push_settings())

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
        out["push"] = self.push_settings()
        return out

    def update_push(self, values: dict[str, Any]) -> None:
        """Change push settings; unknown names and bad values raise ``ValueError`` and change nothing."""
        checked: dict[str, Any] = {}
        for name, value in values.items():
            if name not in self.PUSH:
                raise ValueError(f"unknown push setting {name!r}; known: {', '.join(self.PUSH)}")
            checked[name] = _PUSH_CHECKS[name](value)
        for name, value in checked.items():  # all or nothing: a PATCH with one bad value changes nothing
            setattr(self, name, value)

    def push_settings(self) -> dict[str, Any]:
        """The push settings, as JSON."""
        out = {name: getattr(self, name) for name in self.PUSH}
        out["push_retry"] = list(self.push_retry)
        return out


MAX_PUSH_BATCH = 10_000
MAX_PUSH_RETRIES = 10


def check_push_url(value: Any) -> str | None:
    """A push URL as given, if it is http(s) to this machine; ``None`` or ``""`` for none; else ``ValueError``.

    Only loopback: the emulator holds every number and text sent, and must never post them anywhere else.
    """
    if value is None or value == "":
        return None
    if not isinstance(value, str) or any(c.isspace() or not c.isprintable() for c in value):
        raise ValueError(f"push_url must be a URL without spaces, got {value!r}")
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError on a port that is no number or out of range
    except ValueError:
        raise ValueError(f"push_url {value!r} is not a valid URL") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"push_url must be an http:// or https:// URL, got {value!r}")
    if parts.username is not None or parts.password is not None:
        raise ValueError(f"push_url must not carry a user name or password, got {value!r}")
    if not is_loopback(parts.hostname):
        raise ValueError(
            f"push_url must point at this machine (localhost or a loopback address), not {parts.hostname!r}: "
            "the emulator pushes receipts nowhere else"
        )
    return value


def _seconds(name: str, low: float, high: float, *, zero: bool = True) -> Callable[[Any], float]:
    def check(value: Any) -> float:
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"{name}: {value!r} is not a number") from None
        if isinstance(value, bool) or not low <= number <= high or (not zero and number == 0):
            above = "" if zero else "above "
            raise ValueError(f"{name}: {value!r} is out of range ({above}{low:g} to {high:g} seconds)")
        return number

    return check


def _push_batch(value: Any) -> int:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"push_batch: {value!r} is not a number") from None
    if isinstance(value, bool) or not number.is_integer() or not 1 <= number <= MAX_PUSH_BATCH:
        raise ValueError(f"push_batch: {value!r} must be a whole number from 1 to {MAX_PUSH_BATCH}")
    return int(number)


def parse_push_retry(value: Any) -> tuple[float, ...]:
    """Waits before each retry, from ``"60,300,600"`` or a list of numbers (``""`` or ``[]``: no retries)."""
    items = [part for part in value.split(",") if part.strip()] if isinstance(value, str) else value
    if not isinstance(items, list | tuple):
        raise ValueError(f"push_retry must be a list of seconds (or '60,300,600'), got {value!r}")
    if len(items) > MAX_PUSH_RETRIES:
        raise ValueError(f"push_retry: at most {MAX_PUSH_RETRIES} retries, got {len(items)}")
    check = _seconds("push_retry", 0.0, 86_400.0)
    return tuple(check(item) for item in items)


_PUSH_CHECKS: dict[str, Callable[[Any], Any]] = {
    "push_url": check_push_url,
    "push_interval": _seconds("push_interval", 0.0, 3600.0),
    "push_batch": _push_batch,
    "push_timeout": _seconds("push_timeout", 0.0, 600.0, zero=False),
    "push_retry": parse_push_retry,
}


def _current_fault_name(entry: str) -> str:
    """A script entry with an old fault name (``error_5xx:QueryMessage``) in today's name."""
    kind, sep, action = entry.partition(":")
    return OLD_FAULT_NAMES.get(kind, kind) + sep + action
