"""Delivery tracking: poll QueryMessage until every message is final, in constant memory.

``DeliveryTracker`` keeps one row per message in a SQLite file (the receipts of a million-message
campaign never sit in memory), polls the ones still pending under QueryMessage's 300/s cap, and
reports delivered, failed by error code, pending, the delivery rate and time-to-deliver percentiles,
computed inside SQLite.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, NamedTuple

import msgspec

from airflow_provider_globesms.client.aio import AsyncGlobeSmsClient
from airflow_provider_globesms.client.errors import (
    AuthenticationError,
    BusinessError,
    ConfigurationError,
    GlobeSmsError,
)
from airflow_provider_globesms.client.files.sqlite import open_sqlite
from airflow_provider_globesms.client.rules.models import DeliveryStatus, QueryMessageResult

# A receipt's state: the API's final statuses by their DeliveryStatus names, and the tracker's own.
DELIVERED, FAILED, EXPIRED = DeliveryStatus.DELIVERED.label, DeliveryStatus.FAILED.label, DeliveryStatus.EXPIRED.label
PENDING, QUERY_FAILED, UNTRACKED = "pending", "query_failed", "untracked"
FINAL = (DELIVERED, FAILED, EXPIRED, QUERY_FAILED)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS receipts (
    id INTEGER PRIMARY KEY,
    row INTEGER,
    to_number TEXT,
    message_id TEXT,
    segments INTEGER NOT NULL DEFAULT 0,
    send_status TEXT,
    status TEXT NOT NULL,
    error_code TEXT,
    error_description TEXT,
    send_date TEXT,
    receive_date TEXT,
    seconds REAL,
    checks INTEGER NOT NULL DEFAULT 0
);
CREATE UNIQUE INDEX IF NOT EXISTS receipts_message ON receipts (message_id) WHERE message_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS receipts_status ON receipts (status);
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT);
"""
_COLUMNS = (
    "row",
    "to_number",
    "message_id",
    "segments",
    "send_status",
    "status",
    "error_code",
    "error_description",
    "send_date",
    "receive_date",
    "seconds",
    "checks",
)


@dataclass(frozen=True, slots=True)
class Round:
    """What one polling round did: queries made, receipts that became final, failed queries and time taken."""

    queried: int
    became_final: int
    errors: int
    seconds: float
    errors_by_code: dict[str, int] = field(default_factory=dict)

    def describe(self, pending: int) -> str:
        """A log line for the round, given how many messages are still ``pending``."""
        text = (
            f"receipts: queried {self.queried} in {self.seconds:.1f} s, {self.became_final} became final, "
            f"{pending} still pending"
        )
        if self.errors:
            codes = ", ".join(f"{code} x{n}" for code, n in sorted(self.errors_by_code.items()))
            text += f"; {self.errors} queries failed and will be asked again ({codes})"
        return text


def receipt_status(result: QueryMessageResult) -> str:
    """The tracker's status of a ``QueryMessage`` answer: delivered, failed, expired or pending."""
    if result.delivered:
        return DELIVERED
    if result.failed:
        return EXPIRED if result.status == DeliveryStatus.EXPIRED else FAILED
    return PENDING


class DeliveryTracker:
    """Receipts of one campaign, kept in SQLite at ``path`` (reopened, it carries on where it stopped)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._db = open_sqlite(str(self.path), schema=_SCHEMA)

    @property
    def source(self) -> str | None:
        """What was loaded last (``load(..., source=...)``), to tell when the input has changed."""
        row = self._db.execute("SELECT value FROM meta WHERE name = 'source'").fetchone()
        return str(row[0]) if row else None

    def load(self, messages: Iterable[Mapping[str, Any]], source: str = "") -> int:
        """Take the messages to track: results-file lines (``message_id``, ``to``, ``status``...) or bare
        ``{"message_id": ...}``. Lines without a MessageId are kept, as untracked, for the report.

        Loading again adds new messages and keeps the receipts of known ones (a re-run send task)."""
        self._db.execute("BEGIN")
        self._db.execute("DELETE FROM receipts WHERE message_id IS NULL")  # reloaded below
        count = 0
        for count, record in enumerate(messages, 1):
            message_id = record.get("message_id")
            status = PENDING if message_id else UNTRACKED
            self._db.execute(
                "INSERT OR IGNORE INTO receipts (row, to_number, message_id, segments, send_status, status, error_code,"
                " error_description) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    record.get("row", count),
                    record.get("to"),
                    message_id,
                    int(record.get("segments") or 0),
                    record.get("status"),
                    status,
                    None if message_id else record.get("error_code"),
                    None if message_id else record.get("error"),
                ),
            )
        self._db.execute("INSERT OR REPLACE INTO meta VALUES ('source', ?)", (source,))
        self._db.execute("COMMIT")
        return count

    def pending(self) -> int:
        """How many messages still await a final receipt."""
        return int(self._db.execute("SELECT COUNT(*) FROM receipts WHERE status = ?", (PENDING,)).fetchone()[0])

    def _pending_ids(self, after: int, limit: int) -> list[tuple[int, str]]:
        rows = self._db.execute(
            "SELECT id, message_id FROM receipts WHERE status = ? AND id > ? ORDER BY id LIMIT ?",
            (PENDING, after, limit),
        ).fetchall()
        return [(int(r[0]), str(r[1])) for r in rows]

    async def poll_round(self, client: AsyncGlobeSmsClient, concurrency: int = 64, batch: int = 2000) -> Round:
        """Query every pending message once (paced by the client's QueryMessage limiter)."""
        started = time.monotonic()
        queried = became_final = errors = 0
        slots = asyncio.Semaphore(concurrency)

        failures: Counter[str] = Counter()

        async def check(row_id: int, message_id: str) -> tuple[int, QueryMessageResult | BusinessError | None]:
            async with slots:
                try:
                    return row_id, await client.query_message(message_id)
                except BusinessError as exc:  # e.g. a MessageId the API does not know
                    return row_id, exc
                except (AuthenticationError, ConfigurationError):
                    raise  # wrong key or settings: polling on would only wait for the timeout
                except GlobeSmsError as exc:
                    failures[str(getattr(exc, "code", None) or type(exc).__name__)] += 1
                    return row_id, None  # still pending; asked again next round

        after = 0
        while chunk := self._pending_ids(after, batch):
            after = chunk[-1][0]
            answers = await asyncio.gather(*(check(row_id, message_id) for row_id, message_id in chunk))
            final, unanswered = self._record(answers)
            queried, became_final, errors = queried + len(answers), became_final + final, errors + unanswered
        return Round(queried, became_final, errors, time.monotonic() - started, dict(failures))

    def _record(self, answers: list[tuple[int, QueryMessageResult | BusinessError | None]]) -> tuple[int, int]:
        """Store one chunk of answers in one transaction; returns (became final, unanswered)."""
        became_final = unanswered = 0
        self._db.execute("BEGIN")
        for row_id, answer in answers:
            if answer is None:
                unanswered += 1
                self._db.execute("UPDATE receipts SET checks = checks + 1 WHERE id = ?", (row_id,))
                continue
            update = _receipt_update(answer)
            if update.status != PENDING:
                became_final += 1
            self._db.execute(
                "UPDATE receipts SET status = ?, error_code = ?, error_description = ?, send_date = ?,"
                " receive_date = ?, seconds = ?, to_number = COALESCE(to_number, ?), checks = checks + 1"
                " WHERE id = ?",
                (*update, row_id),
            )
        self._db.execute("COMMIT")
        return became_final, unanswered

    # --- reporting --------------------------------------------------------------------------------

    def _percentile(self, share: float) -> float | None:
        count = int(
            self._db.execute(
                "SELECT COUNT(*) FROM receipts WHERE status = ? AND seconds IS NOT NULL", (DELIVERED,)
            ).fetchone()[0]
        )
        if not count:
            return None
        offset = min(count - 1, max(0, round(share * count) - 1))
        value = self._db.execute(
            "SELECT seconds FROM receipts WHERE status = ? AND seconds IS NOT NULL ORDER BY seconds LIMIT 1 OFFSET ?",
            (DELIVERED, offset),
        ).fetchone()[0]
        return round(float(value), 3)

    def summary(self) -> dict[str, Any]:
        """Totals by status, failures by error code, the delivery rate and time-to-deliver percentiles."""
        counts = dict(self._db.execute("SELECT status, COUNT(*) FROM receipts GROUP BY status").fetchall())
        by_code = self._db.execute(
            "SELECT COALESCE(error_code, status), COUNT(*) FROM receipts WHERE status IN (?, ?, ?)"
            " GROUP BY COALESCE(error_code, status) ORDER BY 2 DESC",
            (FAILED, EXPIRED, QUERY_FAILED),
        ).fetchall()
        segments = self._db.execute(
            "SELECT COALESCE(SUM(segments), 0) FROM receipts WHERE message_id IS NOT NULL"
        ).fetchone()[0]
        tracked = sum(v for k, v in counts.items() if k != UNTRACKED)
        delivered = counts.get(DELIVERED, 0)
        return {
            "tracked": tracked,
            "delivered": delivered,
            "failed": counts.get(FAILED, 0) + counts.get(EXPIRED, 0),
            "failed_by_code": {str(code): int(n) for code, n in by_code},
            "query_failed": counts.get(QUERY_FAILED, 0),
            "pending": counts.get(PENDING, 0),
            "untracked": counts.get(UNTRACKED, 0),
            "delivery_rate": round(delivered / tracked, 4) if tracked else None,
            "p50_seconds_to_deliver": self._percentile(0.50),
            "p95_seconds_to_deliver": self._percentile(0.95),
            "segments": int(segments),
        }

    def records(self) -> Iterator[dict[str, Any]]:
        """Every message with its receipt, in row order (streamed)."""
        cursor = self._db.execute(f"SELECT {', '.join(_COLUMNS)} FROM receipts ORDER BY row, id")  # noqa: S608
        for values in cursor:
            record = dict(zip(_COLUMNS, values, strict=True))
            record["to"] = record.pop("to_number")
            record["delivery_status"] = record.pop("status")
            yield {k: v for k, v in record.items() if v is not None}

    def write_results(self, handle: IO[bytes]) -> int:
        """Write every record as a JSON line to ``handle``; return the number of lines."""
        encode = msgspec.json.Encoder().encode
        lines = 0
        for record in self.records():
            handle.write(encode(record) + b"\n")
            lines += 1
        return lines

    def close(self) -> None:
        """Close the database."""
        self._db.close()

    def __enter__(self) -> DeliveryTracker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_jsonl(handle: IO[bytes] | IO[str]) -> Iterator[dict[str, Any]]:
    """The JSON objects of a JSON Lines file, skipping blank lines and values that are not objects."""
    decode = msgspec.json.Decoder().decode
    for line in handle:
        if line.strip():
            record = decode(line)
            if isinstance(record, dict):
                yield record


class ReceiptUpdate(NamedTuple):
    """A receipts row's new values, in the order of the tracker's UPDATE statement."""

    status: str
    error_code: str | None
    error_description: str | None
    send_date: str | None
    receive_date: str | None
    seconds: float | None
    to_number: str | None


def _receipt_update(answer: QueryMessageResult | BusinessError) -> ReceiptUpdate:
    """What one QueryMessage answer (or its refusal) changes in the message's receipts row."""
    if isinstance(answer, BusinessError):  # e.g. a MessageId the API does not know
        return ReceiptUpdate(QUERY_FAILED, answer.code, answer.message, None, None, None, None)
    status = receipt_status(answer)
    sent, received = answer.sent_at, answer.received_at
    seconds = (received - sent).total_seconds() if status == DELIVERED and sent and received else None
    return ReceiptUpdate(
        status,
        answer.error_code or None,
        answer.error_description or None,
        answer.send_date,
        answer.receive_date or None,
        seconds,
        answer.to,
    )
