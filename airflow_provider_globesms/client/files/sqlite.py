"""One way to open the SQLite files the client keeps (ledger, receipts, dedupe keys; the emulator's store):
autocommit (callers open their own transactions) and the durability each file needs, named. And one
write-behind buffer for the two that batch their inserts (the ledger's outcomes, the emulator's messages)."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from typing import Generic, TypeVar

from airflow_provider_globesms.client.files.private import narrow_path, private_file


def open_sqlite(
    path: str,
    *,
    journal: str = "WAL",
    synchronous: str = "OFF",
    secure_delete: bool = False,
    threads: bool = True,
    timeout: float = 5.0,
    schema: str | None = None,
) -> sqlite3.Connection:
    """A connection in autocommit mode with these pragmas; ``:memory:`` keeps its own journal.

    ``synchronous=OFF`` with WAL survives the process being killed (the commit is in the OS page cache),
    which is the failure these files are for; ``secure_delete`` zeroes deleted content (no secret lingers).
    The file, and so its ``-wal`` and ``-shm`` (SQLite gives them the database's mode), is owner-only.
    """
    if path != ":memory:":
        private_file(path)
        for suffix in ("-wal", "-shm", "-journal"):  # left by a version before owner-only files
            narrow_path(path + suffix)
    db = sqlite3.connect(path, check_same_thread=not threads, isolation_level=None, timeout=timeout)
    if path != ":memory:":
        db.execute(f"PRAGMA journal_mode={journal}")
        db.execute(f"PRAGMA synchronous={synchronous}")
    if secure_delete:
        db.execute("PRAGMA secure_delete=ON")
    if schema:
        db.executescript(schema)
    return db


T = TypeVar("T")


class WriteBehind(Generic[T]):
    """Keyed items held in memory and written in one batch: when ``size`` are held, when the oldest has
    waited ``age`` seconds, or on ``flush``. A newer item for a key replaces the held one. Readers look
    here first (``get``) or flush before they query. Not thread-safe: the owner holds its own lock."""

    def __init__(self, write: Callable[[list[T]], None], *, size: int, age: float) -> None:
        self._write = write
        self.size, self.age = size, age
        self._held: dict[str, T] = {}
        self._since = 0.0

    def __len__(self) -> int:
        return len(self._held)

    def add(self, key: str, item: T) -> None:
        """Hold ``item``; write the batch if it is now full or old enough."""
        if not self._held:
            self._since = time.monotonic()
        self._held[key] = item
        if len(self._held) >= self.size or time.monotonic() - self._since > self.age:
            self.flush()

    def get(self, key: str) -> T | None:
        """The item held for ``key``, if any."""
        return self._held.get(key)

    def discard(self, key: str) -> None:
        """Forget the item held for ``key`` (a newer one was written past the buffer)."""
        self._held.pop(key, None)

    def flush(self) -> None:
        """Hand every held item to ``write``; the buffer is empty before it runs, whatever it raises."""
        if self._held:
            items = list(self._held.values())
            self._held.clear()
            self._write(items)
