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
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import msgspec

from airflow_provider_globesms.client.errors import SealedRequestError
from airflow_provider_globesms.client.files.sqlite import WriteBehind, open_sqlite
from airflow_provider_globesms.client.rules.phone import mask_number
from airflow_provider_globesms.client.wire.signing import SignedRequest


class Status(str, enum.Enum):
    """Where a message stands: one vocabulary for the ledger, the results file and the summary.

    The ledger keeps the first five (where a message stands with the API); the last four are decided before
    any request and are only reported.
    """

    PENDING = "pending"  # the request may be on its way; its outcome is not known yet
    ACCEPTED = "accepted"  # the API answered OK (MessageId known)
    # In the API's hands, outcome unknown: a replay of its request was refused as already seen, which a
    # throttled or refused request's nonce is too. Counted and treated like unknown, never as accepted.
    ARRIVED = "arrived"
    RECEIVED = "arrived"  # deprecated alias of ARRIVED (its name before 0.3); goes in 0.4
    UNKNOWN = "unknown"  # it may or may not have been accepted; never resent unless asked
    FAILED = "failed"  # the API refused it or it never left: safe to send again
    INVALID = "invalid"  # its row was refused by validation: never sent
    SUPPRESSED = "suppressed"  # on a suppression list: never sent
    HELD = "held"  # in its recipient's quiet hours: sent in a later round
    DRY_RUN = "dry_run"  # validated and priced; a dry run sends nothing

    @classmethod
    def _missing_(cls, value: object) -> Status | None:
        # Ledgers and results files written before 0.3 say "received" for what is now "arrived".
        return cls.ARRIVED if value == "received" else None


# The API accepted it: never sent again, its segments billed.
SENT_STATES = frozenset({Status.ACCEPTED})
# Its outcome is not known (it may have been accepted): never sent again unless resend_unknown says so.
UNCONFIRMED_STATES = frozenset({Status.ARRIVED, Status.UNKNOWN})


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    """One message's record in the send ledger: status, outcome and the signed request to replay."""

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

    def to_json(self, cipher: Cipher | None = None) -> dict[str, Any]:
        """The entry as stored: the number masked, the signed request sealed by ``cipher`` when given."""
        return {
            "key": self.key,
            "status": self.status.value,
            "row": self.row,
            "to": mask_number(self.to) if self.to.lstrip("+").isdigit() else self.to,  # masked once
            "message_id": self.message_id,
            "segments": self.segments,
            "error_code": self.error_code,
            "error": self.error,
            "request": seal(self.request, cipher),
            "updated_at": self.updated_at,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any], cipher: Cipher | None = None) -> LedgerEntry:
        """An entry read back from ``to_json``'s form."""
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
            request=unseal(request, cipher),
            updated_at=float(data.get("updated_at") or 0.0),
        )


class Cipher(Protocol):
    """Seals stored requests (they hold the message text and, with STS, the token): ``cryptography``'s
    ``Fernet`` fits; the operator passes Airflow's own, keyed by ``[core] fernet_key``."""

    def encrypt(self, data: bytes) -> bytes:
        """Seal ``data``."""

    def decrypt(self, token: bytes) -> bytes:
        """Open a ``token`` sealed by ``encrypt``."""


SEALED = "fernet:"


def seal(request: SignedRequest | None, cipher: Cipher | None) -> str | None:
    """A request as stored: JSON, sealed when a cipher is given."""
    if request is None:
        return None
    text = _encode(request.to_json())
    return SEALED + cipher.encrypt(text).decode() if cipher is not None else text.decode()


def unseal(stored: object, cipher: Cipher | None) -> SignedRequest | None:
    """The request stored by ``seal`` (or, from older ledgers, as a JSON object)."""
    if not stored:
        return None
    if isinstance(stored, dict):
        return SignedRequest.from_json(stored)
    text = str(stored)
    if text.startswith(SEALED):
        if cipher is None:
            raise SealedRequestError(f"the ledger's requests in doubt are sealed but no key is configured; {_KEY_HELP}")
        try:
            text = cipher.decrypt(text[len(SEALED) :].encode()).decode()
        except Exception:  # cryptography's InvalidToken says nothing: say what happened and what to do
            raise SealedRequestError(
                f"a request in doubt in the ledger was sealed with another key than the one configured; {_KEY_HELP}"
            ) from None
    return SignedRequest.from_json(json.loads(text))


_KEY_HELP = (
    "nothing was sent. Configure [core] fernet_key with the key they were sealed with: after a rotation, "
    "'new_key,old_key' (Airflow's rotation: the first key seals, every key opens), then retry; the messages in "
    "doubt are then settled by replay. Without the old key they cannot be confirmed (moving the ledger aside with "
    "resend_without_ledger=True sends every message again)"
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
_encode = msgspec.json.Encoder().encode
_COLUMNS = ("key", "status", "row", "to", "message_id", "segments", "error_code", "error", "request", "updated_at")
_SELECT = "SELECT key, status, row, to_number, message_id, segments, error_code, error, request, updated_at FROM ledger"


class SqliteLedger:
    """A ledger in one local SQLite file, shared by the sending threads of one task instance.

    Pending records are committed before ``write_many`` returns. Outcomes are buffered and
    committed in batches (``FLUSH_EVERY`` entries or ``FLUSH_AFTER`` seconds): an outcome lost in a
    crash leaves its message pending, which recovery settles by replay. WAL with ``synchronous=OFF``:
    a commit survives the process being killed (it is in the OS page cache), which is the failure
    this ledger is for; a power loss on the worker is not.
    """

    FLUSH_EVERY = 256
    FLUSH_AFTER = 0.2

    def __init__(self, path: str | os.PathLike[str], cipher: Cipher | None = None) -> None:
        self._cipher = cipher
        self.path = Path(path)
        # secure_delete: a settled request's bytes do not linger in free pages
        self._db = open_sqlite(str(self.path), secure_delete=True, timeout=60, schema=_SCHEMA)
        self._lock = threading.Lock()
        self._held_outcomes = WriteBehind(self._insert_locked, size=self.FLUSH_EVERY, age=self.FLUSH_AFTER)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.path)!r})"

    def _db_row(self, entry: LedgerEntry) -> tuple[Any, ...]:
        data = entry.to_json(self._cipher)
        return tuple(
            data[k]
            for k in (
                "key",
                "status",
                "row",
                "to",
                "message_id",
                "segments",
                "error_code",
                "error",
                "request",
                "updated_at",
            )
        )

    def _from_db(self, row: Sequence[Any]) -> LedgerEntry:
        request = unseal(row[8], self._cipher)
        return LedgerEntry(row[0], Status(row[1]), row[2], row[3], row[4], row[5], row[6], row[7], request, row[9])

    def upsert(self, entries: Sequence[LedgerEntry]) -> None:
        """Store entries as they are, in one transaction, past the outcome buffer (replays, snapshots)."""
        if entries:
            with self._lock:
                self._insert_locked(entries)

    def get(self, key: str) -> LedgerEntry | None:
        """The entry for ``key``, buffered or stored, or ``None``."""
        with self._lock:
            buffered = self._held_outcomes.get(key)
            if buffered is not None:
                return buffered
            found = self._db.execute(f"{_SELECT} WHERE key = ?", (key,)).fetchone()
        return self._from_db(found) if found else None

    def write_many(self, entries: Sequence[LedgerEntry]) -> None:
        """Durably record a batch of entries (pending ones, refusals) in one transaction."""
        with self._lock:
            for entry in entries:
                self._held_outcomes.discard(entry.key)
            self._insert_locked(entries)

    def _insert_locked(self, entries: Sequence[LedgerEntry]) -> None:
        self._db.execute("BEGIN")
        self._db.executemany(_UPSERT, [self._db_row(e) for e in entries])
        self._db.execute("COMMIT")

    def record(self, entry: LedgerEntry) -> None:
        """Record an outcome (buffered; see the class notes)."""
        with self._lock:
            self._held_outcomes.add(entry.key, entry)

    def flush(self) -> None:
        """Write the buffered outcomes."""
        with self._lock:
            self._held_outcomes.flush()

    def pending(self) -> list[LedgerEntry]:
        """Messages whose outcome was never recorded (a crash, or an unfinished run)."""
        self.flush()
        with self._lock:
            rows = self._db.execute(f"{_SELECT} WHERE status = ? ORDER BY row", (Status.PENDING.value,)).fetchall()
        return [self._from_db(r) for r in rows]

    def in_doubt(self) -> list[LedgerEntry]:
        """Messages that may have reached the API and can still be settled by replaying their request:
        pending ones, and unknown ones that kept their signed request."""
        self.flush()
        with self._lock:
            rows = self._db.execute(
                f"{_SELECT} WHERE status = ? OR (status = ? AND request IS NOT NULL) ORDER BY row",
                (Status.PENDING.value, Status.UNKNOWN.value),
            ).fetchall()
        return [self._from_db(r) for r in rows]

    def unsettled(self) -> list[LedgerEntry]:
        """Messages whose outcome is not known: pending, arrived and unknown ones, with or without their
        request."""
        self.flush()
        with self._lock:
            rows = self._db.execute(
                f"{_SELECT} WHERE status IN (?, ?, ?, 'received') ORDER BY row",  # 'received': arrived, before 0.3
                (Status.PENDING.value, Status.ARRIVED.value, Status.UNKNOWN.value),
            ).fetchall()
        return [self._from_db(r) for r in rows]

    def counts(self) -> dict[str, int]:
        """How many entries have each status (after a flush)."""
        self.flush()
        with self._lock:
            rows = self._db.execute("SELECT status, COUNT(*) FROM ledger GROUP BY status").fetchall()
        return {status: count for status, count in rows}

    def entries(self) -> Iterator[LedgerEntry]:
        """Every entry, in row order (after a flush)."""
        self.flush()
        with self._lock:
            rows = self._db.execute(f"{_SELECT} ORDER BY row").fetchall()
        for row in rows:
            yield self._from_db(row)

    def close(self) -> None:
        """Flush, then close the database."""
        self.flush()
        with self._lock:
            self._db.close()

    def __enter__(self) -> SqliteLedger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
