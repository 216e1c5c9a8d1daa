"""The inbox's text search: a trigram index of every message's text, kept by SQLite as the store writes.

``LIKE '%term%'`` reads every row, so a search cost 17-80x more at 200,000 messages than at 1,000, on the
emulator's one event loop, and each open tab with a search asked again every second. An FTS5 index with the
trigram tokenizer answers any substring of three characters or more from the index: looked up by the term's
least common three-character pieces (``rarest``), each candidate checked against the text (``LIKE``: the
answers are a case-blind substring search's), a page read from the index's newest end and stopped when full,
and a count stopped at ``COUNT_CAP`` (shown "1,000+"). A term whose every piece is common and that matches
little reads long lists: the store stops it after ``BUDGET`` seconds and the page says so. One number's
messages, or those in flight, are read by their own index and checked. A term of one or two characters has
no piece: it is looked for in the newest ``SHORT_SCAN`` messages only, and the page says so.

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
PROBED = 24  # pieces of a term probed for how common they are
COMMON = 1000  # a piece with this many matches is common (see ``rarest``)
BUDGET = 0.05  # seconds a search may read for, on the emulator's one event loop (see store._within_budget)

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


def pieces(term: str) -> list[str]:
    """The distinct three-character pieces of ``term`` (case folded, as the index keeps them), at most
    ``PROBED`` of them, spread over the term."""
    folded = term.lower()
    found = list(dict.fromkeys(folded[i : i + MIN_TERM] for i in range(len(folded) - MIN_TERM + 1)))
    step = max(1, len(found) // PROBED)
    return found[::step][:PROBED]


def rarest(db: sqlite3.Connection, term: str) -> str:
    """An FTS5 query for the texts holding ``term``'s rarest pieces (up to three; each probed for at most
    ``COMMON`` matches). An index lookup costs about what its rarest piece's list does, so a rare term made of
    common pieces ("code is 0042") is found as fast as a rare word; the text check that follows (``LIKE``)
    keeps only the texts that hold the whole term. Every piece common: the whole term as a phrase."""
    probe = f"SELECT COUNT(*) FROM (SELECT 1 FROM messages_text WHERE messages_text MATCH ? LIMIT {COMMON})"
    counts = {piece: int(db.execute(probe, (phrase(piece),)).fetchone()[0]) for piece in pieces(term)}
    rare = sorted((n, piece) for piece, n in counts.items() if n < COMMON)[:3]  # the three least common
    return " AND ".join(phrase(piece) for _, piece in rare) if rare else phrase(term)


def searchable(term: str) -> str:
    """``term`` as searched: without NUL characters (SQLite's parsers stop at one; nobody types them)."""
    return term.replace("\x00", "")


def matches(
    term: str,
    columns: str,
    others: str,
    others_args: list[Any],
    *,
    newest_first: bool,
    few_others: bool = False,
    lookup: str | None = None,
) -> tuple[str, list[Any]]:
    """A query for the messages whose text holds ``term`` (see ``searchable``) and that meet ``others`` (a
    condition on the messages, or ``""``), in insertion order (newest first if asked), for the caller's
    ``LIMIT``/``OFFSET``. ``few_others``: ``others`` selects few messages by an index (one number's, those in
    flight): they are read and their texts checked, not the index. Every match is checked against the text
    itself (``LIKE``): the same answers whichever path, and a stale index never shows a wrong message.
    ``lookup``: the FTS5 query to read the index with (``rarest``); by default the whole term."""
    order = "DESC" if newest_first else "ASC"
    escaped = term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    like = "messages.message LIKE ? ESCAPE '\\'"
    more = f" AND {others}" if others else ""
    if indexed(term) and not few_others:
        sql = (
            f"SELECT {columns} FROM messages_text AS found JOIN messages ON messages.rowid = found.rowid "
            f"WHERE found.messages_text MATCH ? AND {like}{more} ORDER BY found.rowid {order}"
        )
        return sql, [lookup or phrase(term), f"%{escaped}%", *others_args]
    if few_others:  # read by the index of the other condition, then checked
        candidates = f"rowid IN (SELECT rowid FROM messages WHERE {others})"
        return f"SELECT {columns} FROM messages WHERE {candidates} AND {like} ORDER BY rowid {order}", [
            *others_args,
            f"%{escaped}%",
        ]
    newest = f"rowid IN (SELECT rowid FROM messages ORDER BY rowid DESC LIMIT {SHORT_SCAN})"
    return f"SELECT {columns} FROM messages WHERE {newest} AND {like}{more} ORDER BY rowid {order}", [
        f"%{escaped}%",
        *others_args,
    ]
