"""The send ledger: what a task instance has already submitted, so that no retry sends it twice.

Every SMS is billed on submission and the API has no idempotency key, so the bulk sender writes, for
each message, a durable **pending** record holding the exact signed request *before* its bytes leave,
and the outcome after the answer. A message is identified by a key derived from the task instance
(dag, run, task, map index), the number and a digest of the text.

After a crash, a pending record is a message whose fate is unknown: it may be in flight, or its bytes
may never have left. Its stored request is replayed as is: the gateway refuses a nonce it has seen
within 15 minutes (``SignatureNonceUsed``), so a refusal proves the first attempt arrived, and an
acceptance means it never had (and now has, once).

Two stores: ``SqliteLedger`` (a local file; durable across process kills) and ``SegmentLedger``
(any object store reachable through a path-like object, e.g. Airflow's ``ObjectStoragePath``): a
local SQLite mirror plus an append-only log of immutable segment objects. Durable records (pending
ones, and refusals) come in batches (``write_many``; the bulk sender group-commits every send that
reached that point together), so a remote store costs one write per batch, not per message.
"""

from __future__ import annotations

import enum
import hashlib
import json
import os
import re
import sqlite3
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Protocol

import msgspec

from airflow_provider_globesms.client.signing import SignedRequest


class Status(str, enum.Enum):
    PENDING = "pending"  # the request may be on its way; its outcome is not known yet
    ACCEPTED = "accepted"  # the API answered OK (MessageId known)
    RECEIVED = "received"  # the API provably received it (nonce replay), but its answer was lost
    UNKNOWN = "unknown"  # it may or may not have been accepted; never resent unless asked
    FAILED = "failed"  # the API refused it or it never left: safe to send again


# States that mean "the API has it (or may have it)": never sent again by default.
SENT_STATES = frozenset({Status.ACCEPTED, Status.RECEIVED})


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    key: str
    status: Status
    row: int
    to: str
    message_id: str | None = None
    segments: int = 0
    error_code: str | None = None
    error: str | None = None
    request: SignedRequest | None = None
    updated_at: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "status": self.status.value,
            "row": self.row,
            "to": self.to,
            "message_id": self.message_id,
            "segments": self.segments,
            "error_code": self.error_code,
            "error": self.error,
            "request": self.request.to_json() if self.request else None,
            "updated_at": self.updated_at,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LedgerEntry:
        request = data.get("request")
        return cls(
            key=str(data["key"]),
            status=Status(data["status"]),
            row=int(data.get("row") or 0),
            to=str(data.get("to") or ""),
            message_id=data.get("message_id"),
            segments=int(data.get("segments") or 0),
            error_code=data.get("error_code"),
            error=data.get("error"),
            request=SignedRequest.from_json(request) if request else None,
            updated_at=float(data.get("updated_at") or 0.0),
        )


def message_key(scope: Sequence[str], to: str, text: str) -> str:
    """Key of one message: the task instance, the number and the text's digest."""
    text_digest = hashlib.sha256(text.encode()).hexdigest()
    return hashlib.sha256("\x1f".join([*scope, to, text_digest]).encode()).hexdigest()[:40]


_SCHEMA = """
CREATE TABLE IF NOT EXISTS ledger (
    key TEXT PRIMARY KEY,
    status TEXT NOT NULL,
    row INTEGER NOT NULL,
    to_number TEXT NOT NULL,
    message_id TEXT,
    segments INTEGER NOT NULL DEFAULT 0,
    error_code TEXT,
    error TEXT,
    request TEXT,
    updated_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS ledger_status ON ledger (status);
"""
_UPSERT = (
    "INSERT OR REPLACE INTO ledger (key, status, row, to_number, message_id, segments, error_code, error, request,"
    " updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_SELECT = "SELECT key, status, row, to_number, message_id, segments, error_code, error, request, updated_at FROM ledger"


_encode = msgspec.json.Encoder().encode


def _row(entry: LedgerEntry) -> tuple[Any, ...]:
    request = _encode(entry.request.to_json()).decode() if entry.request else None
    return (
        entry.key,
        entry.status.value,
        entry.row,
        entry.to,
        entry.message_id,
        entry.segments,
        entry.error_code,
        entry.error,
        request,
        entry.updated_at,
    )


def _entry(row: Sequence[Any]) -> LedgerEntry:
    request = SignedRequest.from_json(json.loads(row[8])) if row[8] else None
    return LedgerEntry(row[0], Status(row[1]), row[2], row[3], row[4], row[5], row[6], row[7], request, row[9])


class SqliteLedger:
    """A ledger in one local SQLite file, shared by the sending threads of one task instance.

    Pending records are committed before ``mark_pending`` returns. Outcomes are buffered and
    committed in batches (``FLUSH_EVERY`` entries or ``FLUSH_AFTER`` seconds): an outcome lost in a
    crash leaves its message pending, which recovery settles by replay. WAL with ``synchronous=OFF``:
    a commit survives the process being killed (it is in the OS page cache), which is the failure
    this ledger is for; a power loss on the worker is not.
    """

    FLUSH_EVERY = 256
    FLUSH_AFTER = 0.2

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None, timeout=60)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=OFF")
        self._db.executescript(_SCHEMA)
        self._lock = threading.Lock()
        self._buffer: dict[str, LedgerEntry] = {}
        self._buffered_since = 0.0

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.path)!r})"

    def get(self, key: str) -> LedgerEntry | None:
        with self._lock:
            buffered = self._buffer.get(key)
            if buffered is not None:
                return buffered
            found = self._db.execute(f"{_SELECT} WHERE key = ?", (key,)).fetchone()
        return _entry(found) if found else None

    def mark_pending(self, key: str, row: int, to: str, request: SignedRequest) -> None:
        """Durably record that ``request`` is about to be sent. Returns once it is safe to send."""
        self.write_many([LedgerEntry(key, Status.PENDING, row, to, request=request, updated_at=time.time())])

    def write_many(self, entries: Sequence[LedgerEntry]) -> None:
        """Durably record a batch of entries (pending ones, refusals) in one transaction."""
        with self._lock:
            for entry in entries:
                self._buffer.pop(entry.key, None)
            self._db.execute("BEGIN")
            self._db.executemany(_UPSERT, [_row(e) for e in entries])
            self._db.execute("COMMIT")

    def record(self, entry: LedgerEntry) -> None:
        """Record an outcome (buffered; see the class notes)."""
        with self._lock:
            if not self._buffer:
                self._buffered_since = time.monotonic()
            self._buffer[entry.key] = entry
            due = len(self._buffer) >= self.FLUSH_EVERY or time.monotonic() - self._buffered_since > self.FLUSH_AFTER
            if due:
                self._flush_locked()

    def _flush_locked(self) -> list[LedgerEntry]:
        if not self._buffer:
            return []
        entries = list(self._buffer.values())
        self._buffer.clear()
        self._db.execute("BEGIN")
        self._db.executemany(_UPSERT, [_row(e) for e in entries])
        self._db.execute("COMMIT")
        return entries

    def flush(self) -> None:
        with self._lock:
            self._flush_locked()

    def pending(self) -> list[LedgerEntry]:
        """Messages whose outcome was never recorded (a crash, or an unfinished run)."""
        self.flush()
        with self._lock:
            rows = self._db.execute(f"{_SELECT} WHERE status = ? ORDER BY row", (Status.PENDING.value,)).fetchall()
        return [_entry(r) for r in rows]

    def in_doubt(self) -> list[LedgerEntry]:
        """Messages that may have reached the API and can still be settled by replaying their request:
        pending ones, and unknown ones that kept their signed request."""
        self.flush()
        with self._lock:
            rows = self._db.execute(
                f"{_SELECT} WHERE status = ? OR (status = ? AND request IS NOT NULL) ORDER BY row",
                (Status.PENDING.value, Status.UNKNOWN.value),
            ).fetchall()
        return [_entry(r) for r in rows]

    def counts(self) -> dict[str, int]:
        self.flush()
        with self._lock:
            rows = self._db.execute("SELECT status, COUNT(*) FROM ledger GROUP BY status").fetchall()
        return {status: count for status, count in rows}

    def entries(self) -> Iterator[LedgerEntry]:
        self.flush()
        with self._lock:
            rows = self._db.execute(f"{_SELECT} ORDER BY row").fetchall()
        for row in rows:
            yield _entry(row)

    def close(self) -> None:
        self.flush()
        with self._lock:
            self._db.close()

    def __enter__(self) -> SqliteLedger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class StoragePath(Protocol):
    """What ``SegmentLedger`` needs of a path: ``pathlib.Path`` and ``ObjectStoragePath`` both fit."""

    @property
    def name(self) -> str: ...

    def __truediv__(self, other: str) -> StoragePath: ...

    def mkdir(self, mode: int = ..., parents: bool = ..., exist_ok: bool = ...) -> None: ...

    def iterdir(self) -> Iterator[StoragePath]: ...

    def open(self, mode: str) -> IO[Any]: ...


_SEGMENT_NAME = re.compile(r"(\d{20})-[\w-]+-\d+-[a-z]\.jsonl")


class SegmentLedger(SqliteLedger):
    """A ledger kept in object storage (shared by workers), mirrored in a local SQLite file.

    The remote copy is an append-only log of immutable JSONL segments; opening replays them in name
    order. A name starts with a nanosecond timestamp kept above every name already in the log (a
    Lamport clock): a worker whose clock runs behind still writes after what it read. ``write_many``
    returns once the segment holding the batch is written. Outcomes are written as segments by
    ``flush`` (the bulk sender flushes about every second, and at the end); an outcome lost in a crash
    leaves its message pending, which recovery settles by replay. Locks are held only to name segments
    and to swap buffers, never while writing to the store.
    """

    def __init__(self, remote: StoragePath, local_dir: str | os.PathLike[str] | None = None) -> None:
        self.remote = remote
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        if local_dir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="globesms-ledger-")
            local_dir = self._tmp.name
        super().__init__(Path(local_dir) / "mirror.sqlite3")
        self._sequence = 0
        self._clock = 0  # nanoseconds; the next segment name is above it
        self._writer = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self._name_lock = threading.Lock()
        self._outcomes_lock = threading.Lock()
        self._outcomes: list[LedgerEntry] = []
        remote.mkdir(parents=True, exist_ok=True)
        self._replay()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.remote)!r})"

    def _replay(self) -> None:
        try:
            names = sorted(p.name for p in self.remote.iterdir() if _SEGMENT_NAME.fullmatch(p.name))
        except FileNotFoundError:
            names = []
        batch: list[LedgerEntry] = []
        for name in names:
            self._clock = max(self._clock, int(name[:20]))
            with (self.remote / name).open("r") as handle:
                for line in handle:
                    if line.strip():
                        batch.append(LedgerEntry.from_json(json.loads(line)))
            if len(batch) >= 5000:
                self._apply(batch)
                batch = []
        self._apply(batch)

    def _apply(self, entries: list[LedgerEntry]) -> None:
        if entries:
            with self._lock:
                self._db.execute("BEGIN")
                self._db.executemany(_UPSERT, [_row(e) for e in entries])
                self._db.execute("COMMIT")

    def _next_name(self, kind: str) -> str:
        with self._name_lock:
            self._clock = max(time.time_ns(), self._clock + 1)
            self._sequence += 1
            return f"{self._clock:020d}-{self._writer}-{self._sequence:010d}-{kind}.jsonl"

    def _write_segment(self, entries: Sequence[LedgerEntry], kind: str) -> None:
        if not entries:
            return
        name = self._next_name(kind)
        payload = "".join(_encode(e.to_json()).decode() + "\n" for e in entries)
        with (self.remote / name).open("w") as handle:
            handle.write(payload)

    def write_many(self, entries: Sequence[LedgerEntry]) -> None:
        super().write_many(entries)
        self._write_segment(entries, "w")

    def record(self, entry: LedgerEntry) -> None:
        super().record(entry)
        with self._outcomes_lock:
            self._outcomes.append(entry)

    def flush(self) -> None:
        super().flush()
        with self._outcomes_lock:
            outcomes, self._outcomes = self._outcomes, []
        self._write_segment(outcomes, "o")

    def close(self) -> None:
        super().close()
        if self._tmp is not None:
            self._tmp.cleanup()
