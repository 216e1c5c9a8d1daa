"""Accepted messages, kept in SQLite (in memory unless ``--db`` names a file).

The simulated carrier needs no background job: each message is stored with the moment its receipt
becomes final and the final verdict (drawn at acceptance with ``failure_rate``). Until that moment
QueryMessage reports it as being sent (Status 3); after it, delivered (1) or failed (2).
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
from typing import Any

from airflow_provider_globesms.client.files.sqlite import WriteBehind, open_sqlite
from airflow_provider_globesms.client.rules.models import DeliveryStatus
from airflow_provider_globesms.emulator import search, totals

_log = logging.getLogger(__name__)
_STATUS_NAMES: dict[int, str] = {s: s.label for s in DeliveryStatus}  # the inspection API's names

GATEWAY_TZ = timezone(timedelta(hours=8))  # receipt dates come in +0800, as the real ones do

_SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    message_id TEXT PRIMARY KEY,
    access_key_id TEXT NOT NULL,
    action TEXT NOT NULL,
    to_number TEXT NOT NULL,
    sender TEXT,
    message TEXT NOT NULL,
    segments INTEGER NOT NULL,
    encoding TEXT NOT NULL,
    sms_type TEXT,
    task_id TEXT,
    channel_id TEXT,
    validity_period INTEGER,
    country TEXT,
    region TEXT,
    carrier TEXT,
    submitted_at REAL NOT NULL,
    final_at REAL NOT NULL,
    final_status INTEGER NOT NULL,
    error_code TEXT NOT NULL,
    error_description TEXT NOT NULL,
    request_id TEXT NOT NULL
);
-- Receipts becoming final, and the messages still in flight by verdict (a covering range).
CREATE INDEX IF NOT EXISTS messages_in_flight ON messages (final_at, final_status);
-- The inbox's lists, newest first: all messages, one number's, one campaign's (each a range, never a sort).
CREATE INDEX IF NOT EXISTS messages_submitted ON messages (submitted_at);
CREATE INDEX IF NOT EXISTS messages_number ON messages (to_number, submitted_at);
CREATE INDEX IF NOT EXISTS messages_campaign ON messages (COALESCE(task_id, ''), submitted_at);
-- A campaign's latest receipts of one verdict (its time to deliver).
CREATE INDEX IF NOT EXISTS messages_receipts ON messages (COALESCE(task_id, ''), final_status, final_at);
DROP INDEX IF EXISTS messages_final;
DROP INDEX IF EXISTS messages_to;
DROP INDEX IF EXISTS messages_task;
"""

_COLUMNS = (
    "message_id",
    "access_key_id",
    "action",
    "to_number",
    "sender",
    "message",
    "segments",
    "encoding",
    "sms_type",
    "task_id",
    "channel_id",
    "validity_period",
    "country",
    "region",
    "carrier",
    "submitted_at",
    "final_at",
    "final_status",
    "error_code",
    "error_description",
    "request_id",
)
RECEIPTS_TIMED = 10_000  # a campaign's time to deliver is taken over its latest receipts, at most this many
_SELECTED = ", ".join(f"messages.{c}" for c in _COLUMNS)  # qualified: the search index has a "message" too
_INSERT = f"INSERT INTO messages ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' * len(_COLUMNS))})"


def receipt_date(epoch: float | None) -> str:
    """A receipt date as the gateway writes it (RFC 2822, +0800), or ``""`` for none."""
    if epoch is None:
        return ""
    return format_datetime(datetime.fromtimestamp(epoch, GATEWAY_TZ))


@dataclass(frozen=True, slots=True)
class StoredMessage:
    """A message the emulator accepted, with its simulated final status and when it becomes final."""

    message_id: str
    access_key_id: str
    action: str
    to_number: str
    sender: str | None
    message: str
    segments: int
    encoding: str
    sms_type: str | None
    task_id: str | None
    channel_id: str | None
    validity_period: int | None
    country: str | None
    region: str | None
    carrier: str | None
    submitted_at: float
    final_at: float
    final_status: int
    error_code: str
    error_description: str
    request_id: str

    def status(self, now: float) -> int:
        """The Status QueryMessage reports at ``now``: sending until the receipt is final."""
        return self.final_status if now >= self.final_at else DeliveryStatus.SENDING

    def as_json(self, now: float) -> dict[str, Any]:
        """The message as the inspection API shows it, its status as of ``now``."""
        status = self.status(now)
        final = status != DeliveryStatus.SENDING
        return {
            "message_id": self.message_id,
            "to": self.to_number,
            "from": self.sender,
            "message": self.message,
            "segments": self.segments,
            "encoding": self.encoding,
            "type": self.sms_type,
            "task_id": self.task_id,
            "channel_id": self.channel_id,
            "validity_period": self.validity_period,
            "action": self.action,
            "access_key_id": self.access_key_id,
            "status": _STATUS_NAMES.get(status, DeliveryStatus.SENDING.label),
            "status_code": status,
            "error_code": self.error_code if final else None,
            "submitted_at": self.submitted_at,
            "final_at": self.final_at,
            "send_date": receipt_date(self.submitted_at),
            "receive_date": receipt_date(self.final_at) if final else None,
            "number_detail": {"country": self.country, "region": self.region, "carrier": self.carrier},
            "request_id": self.request_id,
        }


STATUSES = tuple(s.label for s in (DeliveryStatus.SENDING, DeliveryStatus.DELIVERED, DeliveryStatus.FAILED))


@dataclass(frozen=True)
class MessageFilter:
    """Which stored messages an inspection asks for; ``None`` leaves a field unfiltered."""

    to: str | None = None  # "" (a number without a digit) matches nothing
    task_id: str | None = None  # "": the messages sent without a TaskId
    status: str | None = None  # sending, delivered or failed, as of ``now`` (default: the wall clock)
    text: str | None = None  # a part of the text (case-blind; see ``search``)
    now: float | None = None

    def where(self) -> tuple[str, list[Any]]:
        """A WHERE clause and its arguments, for every field but ``text`` (``search.matches`` adds it)."""
        conditions: list[str] = []
        args: list[Any] = []
        if self.to is not None:
            conditions.append("to_number = ?")
            args.append(self.to)
        if self.task_id is not None:
            conditions.append("COALESCE(task_id, '') = ?")
            args.append(self.task_id)
        if self.status:
            if self.status not in STATUSES:
                raise ValueError(f"status must be one of {', '.join(STATUSES)}, not {self.status!r}")
            now = time.time() if self.now is None else self.now
            wanted = DeliveryStatus[self.status.upper()]
            if wanted is DeliveryStatus.SENDING:
                conditions.append("final_at > ?")
                args.append(now)
            else:
                conditions.append("final_at <= ? AND final_status = ?")
                args += [now, wanted]
        return (f"WHERE {' AND '.join(conditions)}" if conditions else ""), args


ANY_MESSAGE = MessageFilter()


class MessageStore:
    """Used from the server's event loop thread only.

    Inserts are buffered and written in one transaction per batch (at most ``FLUSH_EVERY`` messages
    or ``FLUSH_AFTER`` seconds old); every read writes the buffer first, so reads see everything.
    """

    FLUSH_EVERY = 256
    FLUSH_AFTER = 0.25

    def __init__(self, path: str = ":memory:", *, flush_every: int = FLUSH_EVERY) -> None:
        self.path = path
        self._db = open_sqlite(path, synchronous="NORMAL", schema=_SCHEMA)
        self._pending = WriteBehind(self._store, size=flush_every, age=self.FLUSH_AFTER)
        totals.create(self._db)
        search.create(self._db)
        self.store_errors = 0
        self.added = 0  # messages ever added, and times cleared: a live view's cue that the list changed
        self.generation = 0
        self.search_cut = False  # whether the last search ran out of its budget (see _within_budget)
        self._shared_deadline: float | None = None  # set by one_search_budget
        # Told of every message added (the receipt pusher): called on the adding thread, so they must be quick.
        self.listeners: list[Callable[[StoredMessage], None]] = []

    def add(self, message: StoredMessage) -> None:
        """Buffer a message; flush when the buffer is full or old enough; tell the ``listeners``."""
        self.added += 1
        for listener in self.listeners:
            listener(message)
        self._pending.add(message.message_id, message)

    def add_many(self, messages: list[StoredMessage]) -> None:
        """Buffer several messages."""
        for message in messages:
            self.add(message)

    def flush(self) -> None:
        """Write the buffered messages."""
        self._pending.flush()

    def _store(self, messages: list[StoredMessage]) -> None:
        """Write messages in one transaction; if that fails, roll back and write row by row.

        A row SQLite refuses is dropped, logged and counted (``store_errors``): one bad message must
        never leave a transaction open and wedge every later write and read.
        """
        rows = [tuple(getattr(m, c) for c in _COLUMNS) for m in messages]
        if self._write(rows):
            return
        for row in rows:
            if not self._write([row]):
                self.store_errors += 1
                _log.error("emulator store: message %s could not be stored and is dropped", row[0])

    def _write(self, rows: list[tuple[Any, ...]]) -> bool:
        try:
            self._db.execute("BEGIN")
            self._db.executemany(_INSERT, rows)
            self._db.execute("COMMIT")
        except (sqlite3.Error, OverflowError, ValueError, TypeError):
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            return False
        return True

    def get(self, message_id: str) -> StoredMessage | None:
        """The message with ``message_id``, buffered or stored, or ``None``."""
        pending = self._pending.get(message_id)
        if pending is not None:
            return pending
        row = self._db.execute(f"SELECT {', '.join(_COLUMNS)} FROM messages WHERE message_id = ?", (message_id,))
        found = row.fetchone()
        return StoredMessage(*found) if found else None

    def find(
        self, match: MessageFilter = ANY_MESSAGE, *, limit: int = 1000, offset: int = 0, newest_first: bool = False
    ) -> list[StoredMessage]:
        """The stored messages ``match`` selects, in submission order (or newest first)."""
        self.flush()
        if match.text and search.searchable(match.text):  # in insertion order, from the index (see ``search``)
            query, args = self._text_query(match, _SELECTED, newest_first=newest_first)
            return [StoredMessage(*r) for r in self._within_budget(f"{query} LIMIT ? OFFSET ?", [*args, limit, offset])]
        clause, args = match.where()
        order = "DESC" if newest_first else ""
        rows = self._db.execute(
            f"SELECT {', '.join(_COLUMNS)} FROM messages {clause} "
            f"ORDER BY submitted_at {order}, rowid {order} LIMIT ? OFFSET ?",
            (*args, limit, offset),
        )
        return [StoredMessage(*r) for r in rows.fetchall()]

    def count(self, match: MessageFilter = ANY_MESSAGE, *, up_to: int | None = None) -> int:
        """How many stored messages ``match`` selects; with ``up_to``, counting stops there (a search of a
        common term in a large store: the inbox shows "1,000+")."""
        self.flush()
        if match == ANY_MESSAGE:
            return totals.messages(self._db)
        if match.text and search.searchable(match.text):
            query, args = self._text_query(match, "1", newest_first=True)
            limit = f" LIMIT {int(up_to)}" if up_to is not None else ""
            return len(self._within_budget(f"{query}{limit}", args))
        clause, args = match.where()
        return int(self._db.execute(f"SELECT COUNT(*) FROM messages {clause}", args).fetchone()[0])

    def _text_query(self, match: MessageFilter, columns: str, *, newest_first: bool) -> tuple[str, list[Any]]:
        clause, args = match.where()
        term = search.searchable(match.text or "")
        few = match.to is not None or match.status == "sending"  # one number's, or the messages in flight
        lookup = search.rarest(self._db, term) if search.indexed(term) and not few else None
        others = clause.removeprefix("WHERE ")
        return search.matches(term, columns, others, args, newest_first=newest_first, few_others=few, lookup=lookup)

    def _within_budget(self, query: str, args: list[Any]) -> list[tuple[Any, ...]]:
        """The rows of a search, read for at most ``search.BUDGET`` seconds: a term whose every three-letter
        piece is common reads long index lists, and the emulator's one event loop must not wait on it. When
        the budget ran out, ``search_cut`` says so and the rows found so far are the answer."""
        shared = self._shared_deadline
        deadline = shared if shared is not None else time.perf_counter() + search.BUDGET
        self._db.set_progress_handler(lambda: int(time.perf_counter() > deadline), 1000)
        rows: list[tuple[Any, ...]] = []
        self.search_cut = False
        try:
            rows.extend(self._db.execute(query, args))
        except sqlite3.OperationalError as exc:
            if "interrupted" not in str(exc):
                raise
            self.search_cut = True
        finally:
            self._db.set_progress_handler(None, 0)
        return rows

    @contextmanager
    def one_search_budget(self) -> Iterator[None]:
        """The searches inside share one ``search.BUDGET`` (a page's list and its count), not one each."""
        self._shared_deadline = time.perf_counter() + search.BUDGET
        try:
            yield
        finally:
            self._shared_deadline = None

    def version(self) -> tuple[int, int, int]:
        """What a live page compares: messages added and clears by this store, and SQLite's count of commits
        by other connections to the same file (another emulator on the same ``--db``)."""
        self.flush()
        return self.added, self.generation, int(self._db.execute("PRAGMA data_version").fetchone()[0])

    def became_final(self, after: float, upto: float) -> int:
        """How many receipts became final in ``(after, upto]`` (a live view's cue to refresh)."""
        self.flush()
        query = "SELECT COUNT(*) FROM messages WHERE final_at > ? AND final_at <= ?"
        return int(self._db.execute(query, (after, upto)).fetchone()[0])

    def campaigns(self, now: float, limit: int = 100, task_id: str | None = None) -> list[dict[str, Any]]:
        """Per TaskId (or only ``task_id``; ``""`` for messages without one), newest first: messages,
        segments, how many are sending, delivered, failed, and when the first and last were submitted."""
        self.flush()
        return totals.campaigns(self._db, now, limit, task_id)

    def delivery_seconds(self, task_id: str, now: float, latest: int = RECEIPTS_TIMED) -> list[float]:
        """Seconds from submission to a delivered receipt, sorted, for the campaign's ``latest`` messages
        delivered by ``now`` (a range of an index, however large the campaign)."""
        self.flush()
        rows = self._db.execute(
            "SELECT final_at - submitted_at FROM messages "
            "WHERE COALESCE(task_id, '') = ? AND final_status = ? AND final_at <= ? ORDER BY final_at DESC LIMIT ?",
            (task_id, DeliveryStatus.DELIVERED, now, latest),
        )
        return sorted(row[0] for row in rows.fetchall())

    def status_counts(self, now: float | None = None) -> dict[str, int]:
        """Messages still sending, delivered and failed as of ``now``, and their total segments."""
        self.flush()
        return totals.status_counts(self._db, time.time() if now is None else now)

    def clear(self) -> int:
        """Delete every message; return how many were deleted."""
        self.flush()
        self.generation += 1
        self._db.execute("BEGIN")
        deleted = int(self._db.execute("DELETE FROM messages").rowcount)
        totals.clear(self._db)
        search.clear(self._db)
        self._db.execute("COMMIT")
        return deleted

    def close(self) -> None:
        """Flush, then close the database."""
        self.flush()
        self._db.close()
