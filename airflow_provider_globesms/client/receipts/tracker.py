"""Delivery tracking: pushed receipts first, QueryMessage for the rest, in constant memory.

``DeliveryTracker`` keeps one row per message in a SQLite file (the receipts of a million-message
campaign never sit in memory). It takes the receipts Alibaba pushed (``read_pushed``: the campaign's
objects in the push store it has not read yet, matched on MessageId), polls the ones still pending under
QueryMessage's 300/s cap (only those loaded before a grace period when receipts come by push), and
reports delivered, failed by error code, pending, the delivery rate and time-to-deliver percentiles,
computed inside SQLite.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import IO, Any

import msgspec

from airflow_provider_globesms.client.aio import AsyncGlobeSmsClient
from airflow_provider_globesms.client.errors import (
    AuthenticationError,
    BusinessError,
    ConfigurationError,
    GlobeSmsError,
)
from airflow_provider_globesms.client.files.sqlite import open_sqlite
from airflow_provider_globesms.client.receipts.push_store import PushStore
from airflow_provider_globesms.client.receipts.pushed import PushedReceipt
from airflow_provider_globesms.client.receipts.updates import (
    DELIVERED,
    EXPIRED,
    FAILED,
    FINAL,
    PENDING,
    QUERY_FAILED,
    UNTRACKED,
    PushRound,
    ReceiptUpdate,
    Round,
    epoch,
    read_jsonl,
    receipt_status,
    receipt_update,
    seconds_to_deliver,
)
from airflow_provider_globesms.client.rules.models import DeliveryStatus, QueryMessageResult
from airflow_provider_globesms.client.rules.phone import mask_number

__all__ = [
    "DELIVERED",
    "EXPIRED",
    "FAILED",
    "FINAL",
    "PENDING",
    "QUERY_FAILED",
    "UNTRACKED",
    "DeliveryTracker",
    "PushRound",
    "ReceiptUpdate",
    "Round",
    "read_jsonl",
    "receipt_status",
]

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
CREATE TABLE IF NOT EXISTS pushed_read (name TEXT PRIMARY KEY);
CREATE TABLE IF NOT EXISTS campaigns (campaign_id TEXT PRIMARY KEY);
"""
# Added after 0.2: when a message was first loaded (the push grace counts from it), its receipt's time as a
# number (a later final receipt wins), and whether the receipt came by push.
_ADDED_COLUMNS = {"loaded_at": "REAL", "receive_ts": "REAL", "pushed": "INTEGER NOT NULL DEFAULT 0"}
_NOT_FINAL = (PENDING, QUERY_FAILED)
_SENDING = DeliveryStatus.SENDING.label
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


class DeliveryTracker:
    """Receipts of one campaign, kept in SQLite at ``path`` (reopened, it carries on where it stopped)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._db = open_sqlite(str(self.path), schema=_SCHEMA)
        present = {row[1] for row in self._db.execute("PRAGMA table_info(receipts)")}
        for column, kind in _ADDED_COLUMNS.items():
            if column not in present:  # a tracker file from before: carried on where it stopped
                self._db.execute(f"ALTER TABLE receipts ADD COLUMN {column} {kind}")

    @property
    def source(self) -> str | None:
        """What was loaded last (``load(..., source=...)``), to tell when the input has changed."""
        row = self._db.execute("SELECT value FROM meta WHERE name = 'source'").fetchone()
        return str(row[0]) if row else None

    def load(self, messages: Iterable[Mapping[str, Any]], source: str = "", loaded_at: float | None = None) -> int:
        """Take the messages to track: results-file lines (``message_id``, ``to``, ``status``,
        ``campaign_id``...) or bare ``{"message_id": ...}``. Lines without a MessageId are kept, as untracked,
        for the report. ``loaded_at``: when they were first seen (default now; the push grace counts from it).

        Loading again adds new messages and keeps the receipts of known ones (a re-run send task)."""
        now = time.time() if loaded_at is None else loaded_at
        campaigns: set[str] = set()
        self._db.execute("BEGIN")
        self._db.execute("DELETE FROM receipts WHERE message_id IS NULL")  # reloaded below
        count = 0
        for count, record in enumerate(messages, 1):
            message_id = record.get("message_id")
            status = PENDING if message_id else UNTRACKED
            if message_id and record.get("campaign_id"):
                campaigns.add(str(record["campaign_id"]))
            self._db.execute(
                "INSERT OR IGNORE INTO receipts (row, to_number, message_id, segments, send_status, status, error_code,"
                " error_description, loaded_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    record.get("row", count),
                    record.get("to"),
                    message_id,
                    int(record.get("segments") or 0),
                    record.get("status"),
                    status,
                    None if message_id else record.get("error_code"),
                    None if message_id else record.get("error"),
                    now,
                ),
            )
        self._db.executemany("INSERT OR IGNORE INTO campaigns VALUES (?)", [(c,) for c in campaigns])
        self._db.execute("INSERT OR REPLACE INTO meta VALUES ('source', ?)", (source,))
        self._db.execute("COMMIT")
        return count

    def campaigns(self) -> list[str]:
        """The campaign ids (the sends' ``TaskId``) named by the loaded messages: where their receipts are pushed."""
        return [str(r[0]) for r in self._db.execute("SELECT campaign_id FROM campaigns ORDER BY 1")]

    def first_loaded_at(self) -> float | None:
        """When the first message was loaded (epoch seconds), or ``None`` before any was."""
        value = self._db.execute("SELECT MIN(loaded_at) FROM receipts").fetchone()[0]
        return None if value is None else float(value)

    # --- pushed receipts --------------------------------------------------------------------------

    def read_pushed(self, store: PushStore, campaign_ids: Iterable[str]) -> PushRound:
        """Take the receipts pushed for these campaigns that this tracker has not read yet."""
        started = time.monotonic()
        objects = receipts = became_final = 0
        for campaign_id in campaign_ids:
            read = {str(r[0]) for r in self._db.execute("SELECT name FROM pushed_read")}
            for name, batch in store.receipts(campaign_id, skip=read):
                final = self.apply_pushed(batch, name)
                objects, receipts, became_final = objects + 1, receipts + len(batch), became_final + final
        return PushRound(objects, receipts, became_final, time.monotonic() - started)

    def apply_pushed(self, receipts: Iterable[PushedReceipt], name: str | None = None) -> int:
        """Apply pushed receipts (matched on MessageId; a MessageId not tracked here is ignored) in one
        transaction, marking the object ``name`` read; returns how many messages became final. A receipt
        replaces a pending state, or a final one only with a strictly later ReceiveDate: a duplicate or an
        older receipt changes nothing."""
        rows = [
            (
                r.status,
                r.error_code or None,
                r.error_description or None,
                r.send_date or None,
                r.receive_date or None,
                seconds_to_deliver(r),
                r.receive_ts,
                "+" + r.to,
                r.message_id,
                r.to,
                mask_number(r.to).lstrip("+"),
            )
            for r in receipts
            if r.status != _SENDING
        ]
        update = (
            "UPDATE receipts SET status = ?, error_code = ?, error_description = ?, send_date = ?, receive_date = ?,"
            " seconds = ?, receive_ts = ?, to_number = COALESCE(to_number, ?), pushed = 1 WHERE message_id = ?"
            # The receipt's number must be the message's, as sent (or masked, as a line of an earlier try
            # shows it; with or without "+"): a MessageId with another number is not this message's receipt.
            " AND (to_number IS NULL OR REPLACE(to_number, '+', '') IN (?, ?))"
        )
        self._db.execute("BEGIN")
        # First what was not final (counted here: counting pending messages before and after would walk a
        # million-message campaign's index for every push), then a later final receipt over an earlier one,
        # whichever came first.
        became_final = self._db.executemany(f"{update} AND status IN (?, ?)", [(*row, *_NOT_FINAL) for row in rows])
        self._db.executemany(
            f"{update} AND status NOT IN (?, ?) AND ? IS NOT NULL AND (receive_ts IS NULL OR receive_ts < ?)",
            [(*row, *_NOT_FINAL, row[6], row[6]) for row in rows],
        )
        if name is not None:
            self._db.execute("INSERT OR IGNORE INTO pushed_read VALUES (?)", (name,))
        self._db.execute("COMMIT")
        return int(became_final.rowcount)

    def pending(self) -> int:
        """How many messages still await a final receipt."""
        return int(self._db.execute("SELECT COUNT(*) FROM receipts WHERE status = ?", (PENDING,)).fetchone()[0])

    def due(self, loaded_before: float | None = None) -> int:
        """How many pending messages a polling round would ask about (those loaded before ``loaded_before``)."""
        limit = float("inf") if loaded_before is None else loaded_before
        return int(
            self._db.execute(
                "SELECT COUNT(*) FROM receipts WHERE status = ? AND COALESCE(loaded_at, 0) <= ?", (PENDING, limit)
            ).fetchone()[0]
        )

    def _pending_ids(self, after: int, limit: int, loaded_before: float) -> list[tuple[int, str]]:
        rows = self._db.execute(
            "SELECT id, message_id FROM receipts WHERE status = ? AND id > ? AND COALESCE(loaded_at, 0) <= ?"
            " ORDER BY id LIMIT ?",
            (PENDING, after, loaded_before, limit),
        ).fetchall()
        return [(int(r[0]), str(r[1])) for r in rows]

    async def poll_round(
        self,
        client: AsyncGlobeSmsClient,
        concurrency: int = 64,
        batch: int = 2000,
        loaded_before: float | None = None,
    ) -> Round:
        """Query every pending message once (paced by the client's QueryMessage limiter); with
        ``loaded_before``, only those loaded before then (the others still wait for their pushed receipt)."""
        limit = float("inf") if loaded_before is None else loaded_before
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
        while chunk := self._pending_ids(after, batch, limit):
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
            update = receipt_update(answer)
            # A pushed receipt read meanwhile is never overwritten by a poll's older or pending answer.
            changed = self._db.execute(
                "UPDATE receipts SET status = ?, error_code = ?, error_description = ?, send_date = ?,"
                " receive_date = ?, seconds = ?, to_number = COALESCE(to_number, ?), receive_ts = ?,"
                " checks = checks + 1 WHERE id = ? AND status IN (?, ?)",
                (*update, epoch(update.receive_date), row_id, *_NOT_FINAL),
            ).rowcount
            became_final += changed and update.status != PENDING
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
            "receipts_pushed": int(self._db.execute("SELECT COUNT(*) FROM receipts WHERE pushed = 1").fetchone()[0]),
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
