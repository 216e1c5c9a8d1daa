"""One way to open the SQLite files the client keeps (ledger, receipts, dedupe keys; the emulator's store):
autocommit (callers open their own transactions) and the durability each file needs, named."""

from __future__ import annotations

import sqlite3


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
    """
    db = sqlite3.connect(path, check_same_thread=not threads, isolation_level=None, timeout=timeout)
    if path != ":memory:":
        db.execute(f"PRAGMA journal_mode={journal}")
        db.execute(f"PRAGMA synchronous={synchronous}")
    if secure_delete:
        db.execute("PRAGMA secure_delete=ON")
    if schema:
        db.executescript(schema)
    return db
