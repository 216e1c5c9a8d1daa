"""Opt-outs: who must never be sent anything, matched on every number an entry may mean, in an SQLite index on
disk (millions of entries, flat memory). Where the entries come from (files, lists): ``suppression_sources``."""

from __future__ import annotations

import tempfile
from collections.abc import Iterable

from airflow_provider_globesms.client.files.sqlite import open_sqlite
from airflow_provider_globesms.client.rules.phone import number_readings, reads_as_written

BATCH = 10_000  # entries per transaction while a list is loaded


class SuppressionList:
    """Numbers that must never receive anything, on disk: ``wire in suppression`` for each recipient.

    Entries may be written in any form the validator accepts (``+852 9123 4567``, ``85291234567``; national
    forms with ``default_region``). An entry that is no phone number cannot match any valid recipient: it
    is counted (``unreadable``) and its line kept for the log, never fatal. Entries in plain E.164 form that
    phonenumbers keeps as written are indexed unchecked (checking costs more than the look-up; a wrong one
    matches nobody); every other writing is indexed under each number it may mean (``number_readings``).
    """

    def __init__(self, directory: str | None = None, default_region: str | None = None) -> None:
        self._dir = tempfile.TemporaryDirectory(prefix="globesms-suppression-", dir=directory)
        self._db = open_sqlite(
            f"{self._dir.name}/numbers.sqlite3",
            journal="OFF",  # scratch: rebuilt by every try
            threads=False,
            schema="CREATE TABLE numbers (wire TEXT PRIMARY KEY) WITHOUT ROWID",
        )
        self.default_region = default_region
        self.entries = 0
        self.unreadable = 0
        self.first_unreadable: list[int] = []

    def load(self, entries: Iterable[tuple[int, str]]) -> SuppressionList:
        """Add ``(line, entry)`` pairs, ``BATCH`` per transaction; returns itself."""
        pending: list[tuple[str]] = []
        for line, entry in entries:
            wires = self._wires(entry)
            if not wires:
                self.unreadable += 1
                if len(self.first_unreadable) < 10:
                    self.first_unreadable.append(line)
            pending.extend((wire,) for wire in wires)
            if len(pending) >= BATCH:
                self._insert(pending)
        self._insert(pending)
        self.entries = int(self._db.execute("SELECT COUNT(*) FROM numbers").fetchone()[0])
        return self

    def _wires(self, entry: str) -> set[str]:
        """The numbers an entry may mean (``number_readings``): the sender's reading of the same writing, and
        any other valid reading (bare digits as international too): an opt-out list errs on the side of not
        sending."""
        text = entry.strip()
        digits = text[1:]
        # Plain E.164 whose digits phonenumbers keeps as written (the common case, a thousand times cheaper
        # than parsing): ASCII digits, no trunk prefix after the country code ("+1 1 212...", "+44 07911...").
        plain = text.startswith("+") and digits.isascii() and digits.isdigit() and 7 <= len(digits) <= 15
        if plain and reads_as_written(digits):
            return {digits}
        return number_readings(text, self.default_region)

    def _insert(self, pending: list[tuple[str]]) -> None:
        if pending:
            self._db.execute("BEGIN")
            self._db.executemany("INSERT OR IGNORE INTO numbers VALUES (?)", pending)
            self._db.execute("COMMIT")
            pending.clear()

    def __contains__(self, wire: object) -> bool:
        return self._db.execute("SELECT 1 FROM numbers WHERE wire = ?", (wire,)).fetchone() is not None

    def close(self) -> None:
        """Close the index and delete its directory."""
        self._db.close()
        self._dir.cleanup()

    def __enter__(self) -> SuppressionList:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
