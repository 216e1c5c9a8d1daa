"""The inbox's text search: a trigram index of every message's text, kept by SQLite as the store writes.

``LIKE '%term%'`` reads every row, so a search cost 17-80x more at 200,000 messages than at 1,000, on the
emulator's one event loop, and each open tab with a search asked again every second. An FTS5 index with the
trigram tokenizer answers any substring of three characters or more (case-blind) from the index: a page of
matches is read from its newest end and stops when full, and a count stops at ``COUNT_CAP`` (shown
"1,000+"). A term of one or two characters has no trigram: it is looked for in the newest ``SHORT_SCAN``
messages only, and the page says so.

The index is an external-content FTS5 table over ``messages`` (the texts are not stored twice); a trigger adds
each row as it is inserted, in the same transaction. Messages are never deleted one by one, only all at once
(``clear``), which empties the index with them.
"""

from __future__ import annotations

import sqlite3
from typing import Any

MIN_TERM = 3  # the trigram tokenizer's shortest match
COUNT_CAP = 1000  # a search counts its matches up to this many ("1,000+")
SHORT_SCAN = 10_000  # a one- or two-character term is looked for among the newest this many messages

SCHEMA = """
CREATE VIRTUAL TABLE IF NOT EXISTS messages_text
USING fts5(message, content='messages', content_rowid='rowid', tokenize='trigram');
CREATE TRIGGER IF NOT EXISTS messages_indexed AFTER INSERT ON messages BEGIN
    INSERT INTO messages_text (rowid, message) VALUES (NEW.rowid, NEW.message);
END;
"""


def create(db: sqlite3.Connection) -> None:
    """Create the index and its trigger; a file that had messages but no index gets it built once."""
    fresh = db.execute("SELECT 1 FROM sqlite_master WHERE name = 'messages_indexed'").fetchone() is None
    rebuild = "INSERT INTO messages_text (messages_text) VALUES ('rebuild');" if fresh else ""
    db.executescript(f"BEGIN IMMEDIATE; {SCHEMA} {rebuild} COMMIT;")


def clear(db: sqlite3.Connection) -> None:
    """Empty the index (with the messages, in the caller's transaction)."""
    db.execute("INSERT INTO messages_text (messages_text) VALUES ('delete-all')")


def indexed(term: str) -> bool:
    """Whether the index can answer ``term`` (three characters or more)."""
    return len(term) >= MIN_TERM


def phrase(term: str) -> str:
    """``term`` as an FTS5 string: matched as written, every character plain (quotes doubled)."""
    return '"' + term.replace('"', '""') + '"'


def matches(
    term: str, columns: str, others: str, others_args: list[Any], *, newest_first: bool
) -> tuple[str, list[Any]]:
    """A query for the messages whose text holds ``term`` and that meet ``others`` (a condition on the
    messages, or ``""``), in insertion order (newest first if asked), for the caller's ``LIMIT``/``OFFSET``."""
    order = "DESC" if newest_first else "ASC"
    more = f" AND {others}" if others else ""
    if indexed(term):
        sql = (
            f"SELECT {columns} FROM messages_text AS found JOIN messages ON messages.rowid = found.rowid "
            f"WHERE found.messages_text MATCH ?{more} ORDER BY found.rowid {order}"
        )
        return sql, [phrase(term), *others_args]
    escaped = term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    newest = f"SELECT rowid FROM messages ORDER BY rowid DESC LIMIT {SHORT_SCAN}"
    sql = (
        f"SELECT {columns} FROM messages WHERE rowid IN ({newest}) AND message LIKE ? ESCAPE '\\'{more} "
        f"ORDER BY rowid {order}"
    )
    return sql, [f"%{escaped}%", *others_args]
