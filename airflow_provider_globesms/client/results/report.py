"""What a bulk send reports: every recipient's final status (``SendSummary``), one results line per
recipient (``ResultsWriter``), and a progress line every few seconds (``Progress``)."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import IO, Any, Protocol

import msgspec

from airflow_provider_globesms.client.ledger.sqlite_ledger import SENT_STATES, Status


class LineLogger(Protocol):
    """What the bulk sender logs to: a ``logging.Logger``, or Airflow's task logger."""

    def info(self, msg: str, /, *args: Any) -> Any:
        """Log at INFO level."""

    def warning(self, msg: str, /, *args: Any) -> Any:
        """Log at WARNING level."""

    def exception(self, msg: str, /, *args: Any) -> Any:
        """Log at ERROR level, with the current exception."""


class ResultsWriter:
    """One JSON line per recipient (number, status, MessageId, segments, error) into a binary file."""

    def __init__(self, handle: IO[bytes], campaign_id: str | None = None) -> None:
        self._handle = handle
        self._campaign_id = campaign_id
        self._lock = threading.Lock()  # ours write from one thread; a caller's threads may share a writer
        self._encode = msgspec.json.Encoder().encode
        self.lines = 0

    def write(self, row: int, to: str, status: Status, **fields: Any) -> None:
        """Write one recipient's JSON line (``None`` fields left out)."""
        record = {"row": row, "to": to, "status": status.value, "campaign_id": self._campaign_id}
        record.update((k, v) for k, v in fields.items() if v is not None)
        line = self._encode(record) + b"\n"
        with self._lock:
            self._handle.write(line)
            self.lines += 1


@dataclass
class SendSummary:
    """Every recipient's final status, whichever try settled it, and what this try did.

    ``accepted + arrived + unknown + failed + invalid + suppressed + held == total``: nothing is left out, so a message
    that may not have reached its recipient is counted in the last try's summary, not only in the try
    that lost its answer.
    """

    total: int = 0
    invalid: int = 0
    suppressed: int = 0  # on the suppression list: never sent
    held: int = 0  # in quiet hours: not sent yet (or, time zone unknown, not sent)
    held_unknown_zone: int = 0
    next_opening: float | None = None  # the earliest moment (epoch) a held message may go
    accepted: int = 0  # the API accepted it (a MessageId is known), in this try or an earlier one
    arrived: int = 0  # in the API's hands (a replay was refused as seen), whether accepted unknown: no MessageId
    unknown: int = 0  # may or may not have been accepted: never resent unless asked
    failed: int = 0  # refused in this try; a retry sends them again
    failed_by_code: Counter[str] = field(default_factory=Counter)
    sent: int = 0  # submitted in this try
    skipped_already_sent: int = 0  # accepted by an earlier try
    unknown_previous: int = 0  # unknown since an earlier try, not resent
    recovered: int = 0  # left in doubt by an earlier try, settled now by replay
    segments: int = 0  # billed segments of the messages accepted
    seconds: float = 0.0

    @property
    def rate(self) -> float:
        """Messages sent per second."""
        return self.sent / self.seconds if self.seconds > 0 else 0.0

    @property
    def received(self) -> int:
        """Deprecated (goes in 0.4): the count of ``arrived`` under its name before 0.3."""
        return self.arrived

    @property
    def unconfirmed(self) -> int:
        """Messages that may not have reached their recipient: arrived with their outcome unknown, or unknown."""
        return self.arrived + self.unknown

    def tally(self, status: Status, segments: int, error_code: str | None = None) -> None:
        """Count one recipient's final status."""
        if status is Status.ACCEPTED:
            self.accepted += 1
        elif status is Status.ARRIVED:
            self.arrived += 1
        elif status is Status.UNKNOWN:
            self.unknown += 1
        else:
            self.failed += 1
            self.failed_by_code[error_code or "unknown"] += 1
        if status in SENT_STATES:
            self.segments += segments

    def as_dict(self) -> dict[str, Any]:
        """The summary as a plain mapping (for XCom and logs)."""
        return {
            "total": self.total,
            "invalid": self.invalid,
            "suppressed": self.suppressed,
            "held": self.held,
            "held_unknown_timezone": self.held_unknown_zone,
            "accepted": self.accepted,
            "arrived": self.arrived,  # in the API's hands (its nonce was seen); accepted or not is unknown
            "received": self.arrived,  # deprecated: "arrived" under its name before 0.3; goes in 0.4
            "unknown": self.unknown,
            "failed": self.failed,
            "failed_by_code": dict(self.failed_by_code),
            "unconfirmed": self.unconfirmed,
            "sent": self.sent,
            "skipped_already_sent": self.skipped_already_sent,
            "unknown_previous_attempts": self.unknown_previous,
            "recovered_after_crash": self.recovered,
            "segments": self.segments,
            "seconds": round(self.seconds, 3),
            "rate_per_second": round(self.rate, 1),
        }


class Progress:
    """Logs one line every ``interval`` seconds while a bulk send runs (never one per message).

    An async context manager: the logging is a task on the send's own event loop, so it reads the summary
    between two steps of the sends, never in the middle of one, and needs no lock.
    """

    def __init__(self, summary: SendSummary, total: int, interval: float, logger: LineLogger) -> None:
        self.summary = summary
        self.total = total
        self.interval = interval
        self.logger = logger
        self.done = 0
        self._started = time.monotonic()
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Progress:
        if self.interval > 0:
            self._task = asyncio.create_task(self._log_every_interval(), name="globesms-progress")
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _log_every_interval(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            self.logger.info(self.line())

    def line(self) -> str:
        """The progress log line: share done, send rate, ETA and counts so far."""
        s = self.summary
        elapsed = max(time.monotonic() - self._started, 1e-9)
        rate = s.sent / elapsed
        left = max(self.total - self.done, 0)
        eta = f"{left / rate:.0f}s" if rate > 0 else "-"
        share = f"{100 * self.done / self.total:.0f}%" if self.total else "-"
        return (
            f"progress: {self.done}/{self.total} ({share}), {rate:.0f} sends/s, ETA {eta}; "
            f"accepted {s.accepted}, failed {s.failed}, unknown {s.unknown}, already sent {s.skipped_already_sent}"
        )
