"""Running totals per campaign (TaskId) and final verdict, kept by SQLite as the emulator's store writes.

The inbox reads its figures and campaign pages every second while a page is open, often while a DAG sends
many thousands of messages. Counting the whole table each time stalls the emulator's one event loop, and
with it the timing of every API call (a 26 ms scan at 100,000 messages, twice a second). So a trigger adds
each row to two small tables as it is inserted, in the same transaction: a refused batch rolls its totals
back with it, and another process writing the same ``--db`` file keeps them true too. At read time only the
messages whose receipt is not final yet are counted, a range of an index.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from airflow_provider_globesms.client.rules.models import DeliveryStatus

SCHEMA = """
CREATE TABLE IF NOT EXISTS status_totals (
    final_status INTEGER PRIMARY KEY,
    messages INTEGER NOT NULL,
    segments INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS campaign_totals (
    task_key TEXT NOT NULL,  -- COALESCE(task_id, ''): '' for messages sent without a TaskId
    final_status INTEGER NOT NULL,
    messages INTEGER NOT NULL,
    segments INTEGER NOT NULL,
    first_at REAL NOT NULL,
    last_at REAL NOT NULL,
    PRIMARY KEY (task_key, final_status)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS campaign_totals_last ON campaign_totals (last_at);
CREATE TRIGGER IF NOT EXISTS messages_counted AFTER INSERT ON messages BEGIN
    INSERT INTO status_totals VALUES (NEW.final_status, 1, NEW.segments)
    ON CONFLICT (final_status) DO UPDATE SET messages = messages + 1, segments = segments + excluded.segments;
    INSERT INTO campaign_totals
    VALUES (COALESCE(NEW.task_id, ''), NEW.final_status, 1, NEW.segments, NEW.submitted_at, NEW.submitted_at)
    ON CONFLICT (task_key, final_status) DO UPDATE SET
        messages = messages + 1,
        segments = segments + excluded.segments,
        first_at = MIN(first_at, excluded.first_at),
        last_at = MAX(last_at, excluded.last_at);
END;
"""

# A file written before the totals existed (or whose trigger was dropped): added up anew, with the trigger.
BACKFILL = """
DELETE FROM status_totals;
DELETE FROM campaign_totals;
INSERT INTO status_totals
SELECT final_status, COUNT(*), SUM(segments) FROM messages GROUP BY 1;
INSERT INTO campaign_totals
SELECT COALESCE(task_id, ''), final_status, COUNT(*), SUM(segments), MIN(submitted_at), MAX(submitted_at)
FROM messages GROUP BY 1, 2;
"""

# INDEXED BY: without it SQLite may walk a whole index in GROUP BY order rather than the range in flight.
IN_FLIGHT = (
    "SELECT final_status, COUNT(*) FROM messages INDEXED BY messages_in_flight WHERE final_at > ? GROUP BY final_status"
)
CAMPAIGN_IN_FLIGHT = (
    "SELECT COUNT(*) FROM messages INDEXED BY messages_receipts "
    "WHERE COALESCE(task_id, '') = ? AND final_status = ? AND final_at > ?"
)
CAMPAIGN_FIELDS = ("task_id", "messages", "segments", "sending", "delivered", "failed", "first_at", "last_at")
_FINAL_NAMES = {status: status.label for status in (DeliveryStatus.DELIVERED, DeliveryStatus.FAILED)}
_SENDING = DeliveryStatus.SENDING.label


def create(db: sqlite3.Connection) -> None:
    """Create the totals and their trigger; a file that had messages but no totals gets them added up once."""
    fresh = db.execute("SELECT 1 FROM sqlite_master WHERE name = 'messages_counted'").fetchone() is None
    db.executescript(f"BEGIN IMMEDIATE; {SCHEMA} {BACKFILL if fresh else ''} COMMIT;")


def status_counts(db: sqlite3.Connection, now: float) -> dict[str, int]:
    """Messages still sending, delivered and failed as of ``now``, and their total segments."""
    totals = {status: (messages, segments) for status, messages, segments in db.execute("SELECT * FROM status_totals")}
    in_flight = dict(db.execute(IN_FLIGHT, (now,)).fetchall())
    counts = {_SENDING: sum(in_flight.values()), **dict.fromkeys(_FINAL_NAMES.values(), 0)}
    for status, name in _FINAL_NAMES.items():
        counts[name] = totals.get(status, (0, 0))[0] - in_flight.get(status, 0)
    counts["segments"] = sum(segments for _, segments in totals.values())
    return counts


def messages(db: sqlite3.Connection) -> int:
    """How many messages there are."""
    return int(db.execute("SELECT COALESCE(SUM(messages), 0) FROM status_totals").fetchone()[0])


def campaigns(db: sqlite3.Connection, now: float, limit: int, task_id: str | None = None) -> list[dict[str, Any]]:
    """The newest ``limit`` campaigns (by their last message), or only ``task_id``: the ``CAMPAIGN_FIELDS``.

    Reads the totals index from its newest end until it has seen ``limit`` campaigns, however many exist.
    """
    if task_id is not None:
        keys = [task_id]
    else:
        keys = []
        for (key,) in db.execute("SELECT task_key FROM campaign_totals ORDER BY last_at DESC"):
            if key not in keys:
                keys.append(key)
                if len(keys) == limit:
                    break
    found = [_campaign(db, key, now) for key in keys]
    return [campaign for campaign in found if campaign is not None]


def _campaign(db: sqlite3.Connection, key: str, now: float) -> dict[str, Any] | None:
    rows = db.execute(
        "SELECT final_status, messages, segments, first_at, last_at FROM campaign_totals WHERE task_key = ?", (key,)
    ).fetchall()
    if not rows:
        return None
    campaign: dict[str, Any] = dict.fromkeys(CAMPAIGN_FIELDS, 0)
    campaign.update(task_id=key, first_at=min(r[3] for r in rows), last_at=max(r[4] for r in rows))
    for status, count, segments, _, _ in rows:
        in_flight = int(db.execute(CAMPAIGN_IN_FLIGHT, (key, status, now)).fetchone()[0])
        campaign["messages"] += count
        campaign["segments"] += segments
        campaign[_SENDING] += in_flight
        if status in _FINAL_NAMES:
            campaign[_FINAL_NAMES[status]] += count - in_flight
    return campaign


def clear(db: sqlite3.Connection) -> None:
    """Forget every total (with the messages, in the caller's transaction)."""
    db.execute("DELETE FROM status_totals")
    db.execute("DELETE FROM campaign_totals")
