"""``SegmentLedger``: the send ledger in object storage (any path-like object, e.g. Airflow's
``ObjectStoragePath``), shared by every worker, mirrored in a local SQLite file. See ``ledger``."""

from __future__ import annotations

import contextlib
import json
import os
import re
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO, Any, Protocol

import msgspec

from airflow_provider_globesms.client.ledger.sqlite_ledger import Cipher, LedgerEntry, SqliteLedger

_encode = msgspec.json.Encoder().encode


def forget_listings(path: object) -> None:
    """Drop the file system's cached listings of ``path``, so the next listing or read asks the store."""
    # fsspec stores (s3fs...) cache listings for ever by default, and answer exists() from them: drop them.
    # Airflow's ObjectStoragePath wraps a UPath (``__wrapped__``) whose file system, the one its listings
    # and reads go through, is another instance than its own ``fs``: forget in both.
    for layer in (path, getattr(path, "__wrapped__", None)):
        invalidate = getattr(getattr(layer, "fs", None), "invalidate_cache", None)
        if callable(invalidate):
            invalidate(getattr(layer, "path", None))


class StoragePath(Protocol):
    """What ``SegmentLedger`` needs of a path: ``pathlib.Path`` and ``ObjectStoragePath`` both fit."""

    @property
    def name(self) -> str:
        """The last path segment."""

    def __truediv__(self, other: str) -> StoragePath: ...

    def mkdir(self, mode: int = ..., parents: bool = ..., exist_ok: bool = ...) -> None:
        """Create the directory."""

    def iterdir(self) -> Iterator[StoragePath]:
        """The directory's children."""

    def open(self, mode: str) -> IO[Any]:
        """Open the file."""


class SegmentPath(StoragePath, Protocol):
    """A ``StoragePath`` whose objects can be deleted (compaction replaces segments by a snapshot)."""

    def __truediv__(self, other: str) -> SegmentPath: ...

    def iterdir(self) -> Iterator[SegmentPath]:
        """The directory's children."""

    def unlink(self, missing_ok: bool = ...) -> None:
        """Delete the object."""


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

    ``close`` compacts the log into one snapshot segment (numbers masked; signed requests, which hold the
    texts and any STS token, only for messages still in doubt, and sealed by ``cipher`` when given) and
    deletes the segments it replaces: settled requests do not stay in the store.
    """

    def __init__(
        self, remote: SegmentPath, local_dir: str | os.PathLike[str] | None = None, cipher: Cipher | None = None
    ) -> None:
        self.remote = remote
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        if local_dir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="globesms-ledger-")
            local_dir = self._tmp.name
        super().__init__(Path(local_dir) / "mirror.sqlite3", cipher)
        self._replayed: list[str] = []  # segment names the mirror was built from (compaction deletes them)
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
        forget_listings(self.remote)
        try:
            names = sorted(p.name for p in self.remote.iterdir() if _SEGMENT_NAME.fullmatch(p.name))
        except (FileNotFoundError, NotADirectoryError):  # an object store has no empty "folders" (S3)
            names = []
        batch: list[LedgerEntry] = []
        for name in names:
            self._clock = max(self._clock, int(name[:20]))
            with (self.remote / name).open("r") as handle:
                for line in handle:
                    if line.strip():
                        batch.append(LedgerEntry.from_json(json.loads(line), self._cipher))
            if len(batch) >= 5000:
                self.upsert(batch)
                batch = []
        self.upsert(batch)
        self._replayed = names

    def _next_name(self, kind: str) -> str:
        with self._name_lock:
            self._clock = max(time.time_ns(), self._clock + 1)
            self._sequence += 1
            return f"{self._clock:020d}-{self._writer}-{self._sequence:010d}-{kind}.jsonl"

    def _write_segment(self, entries: Sequence[LedgerEntry], kind: str) -> None:
        if not entries:
            return
        name = self._next_name(kind)
        payload = "".join(_encode(e.to_json(self._cipher)).decode() + "\n" for e in entries)
        with (self.remote / name).open("w") as handle:
            handle.write(payload)

    def write_many(self, entries: Sequence[LedgerEntry]) -> None:
        """Record the entries locally, then write them as a remote segment."""
        super().write_many(entries)
        self._write_segment(entries, "w")

    def record(self, entry: LedgerEntry) -> None:
        """Record an outcome locally; kept for the next remote segment."""
        super().record(entry)
        with self._outcomes_lock:
            self._outcomes.append(entry)

    def flush(self) -> None:
        """Flush locally, then write the outcomes recorded since as a remote segment."""
        super().flush()
        with self._outcomes_lock:
            outcomes, self._outcomes = self._outcomes, []
        self._write_segment(outcomes, "o")

    def compact(self) -> None:
        """Write the whole ledger as one snapshot segment, then delete every segment it replaces.

        Only the lease holder writes, so nothing is lost: a crash between the two leaves old segments
        that replay before the snapshot, which wins."""
        self.flush()
        written: list[str] = []
        forget_listings(self.remote)
        with self._name_lock, contextlib.suppress(FileNotFoundError, NotADirectoryError):
            written = [p.name for p in self.remote.iterdir() if _SEGMENT_NAME.fullmatch(p.name)]
        entries = list(self.entries())
        if not entries or len(written) <= 1:
            return
        self._write_segment(entries, "s")
        for name in written:
            (self.remote / name).unlink(missing_ok=True)

    def close(self) -> None:
        """Compact the remote segments, then close the local copy."""
        try:
            self.compact()
        finally:
            super().close()
            if self._tmp is not None:
                self._tmp.cleanup()
