"""Campaign controls applied in the validation pass: who must never be sent anything, and what it may cost.

``SuppressionList``: opt-outs, matched on the number's E.164 form, kept in an SQLite index on disk (millions of
entries, flat memory). ``Budget``: segments and estimated cost by country, and the cap the campaign must stay
under; it is checked before the first message goes.
"""

from __future__ import annotations

import csv
import math
import tempfile
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import IO

import phonenumbers

from airflow_provider_globesms.client.bulk.suppression_sources import (  # re-exported: their home before 0.3
    is_number_name,
    suppression_entries,
    suppression_from_values,
)
from airflow_provider_globesms.client.errors import ConfigurationError
from airflow_provider_globesms.client.phone import number_readings, reads_as_written
from airflow_provider_globesms.client.sqlite import open_sqlite

BATCH = 10_000  # entries per transaction while a list is loaded
__all__ = [
    "Budget",
    "SuppressionList",
    "check_max_segments",
    "is_number_name",
    "prices_from",
    "region_of",
    "suppression_entries",
    "suppression_from_values",
]


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


def region_of(wire: str) -> str:
    """The country a number is billed in, for the cost table: its ISO region (``HK``, ``CA``), or for a
    number outside any country its calling code (``882``: each international network is priced apart);
    ``??`` when unknown."""
    try:
        parsed = phonenumbers.parse(f"+{wire}")
    except phonenumbers.NumberParseException:
        return "??"
    region = phonenumbers.region_code_for_number(parsed)
    if region in (None, "001", "ZZ"):
        return str(parsed.country_code) if parsed.country_code else "??"
    return str(region)


def check_max_segments(value: object) -> int | None:
    """``max_segments`` as a whole number of segments (``None``: no cap), or a ``ConfigurationError`` naming
    it: a string, a bool, a negative, a fraction, ``nan`` or ``inf`` would otherwise disable the cap."""
    if value is None:
        return None
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        value = int(value)  # 1e6
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ConfigurationError(
            f"max_segments must be a whole number of segments, 0 or more (or None for no cap), not {value!r:.40}"
        )
    return value


def prices_from(source: Mapping[str, object] | IO[str] | None) -> dict[str, float]:
    """Price per segment by country: a mapping, or a CSV ``country,price`` (a header is allowed). A country
    is an ISO region (``HK``) or a calling code (``852``, ``+852``)."""
    if source is None:
        return {}
    pairs = source.items() if isinstance(source, Mapping) else _price_rows(source)
    prices: dict[str, float] = {}
    for country, price in pairs:
        key = str(country).strip().upper().lstrip("+")
        try:
            value = float(str(price).strip())
        except ValueError:
            raise ConfigurationError(f"prices: {country!r} has no number for a price ({price!r})") from None
        if not value >= 0 or not math.isfinite(value):
            raise ConfigurationError(
                f"prices: {country!r} has a negative, missing or infinite price ({str(price)[:40]!r})"
            )
        prices[key] = value
    return prices


def _price_rows(handle: IO[str]) -> Iterator[tuple[str, str]]:
    for line, record in enumerate(csv.reader(handle), start=1):
        if len(record) < 2 or not record[0].strip() or record[0].lstrip().startswith("#"):
            continue
        if line == 1 and not _is_number(record[1]):
            continue  # a header
        yield record[0], record[1]


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


@dataclass
class Budget:
    """Recipients, segments and estimated cost by country, and the caps they must stay under."""

    max_segments: int | None = None
    prices: dict[str, float] = field(default_factory=dict)
    recipients: Counter[str] = field(default_factory=Counter)
    segments: Counter[str] = field(default_factory=Counter)

    def add(self, wire: str, segments: int) -> None:
        """Count one message that is to be sent."""
        region = region_of(wire)
        self.recipients[region] += 1
        self.segments[region] += segments

    def price(self, region: str) -> float | None:
        """The price per segment of a region: by its ISO code, else by its calling code (``1`` prices
        every +1 country). Never another country's price: Canada is not priced as the US, nor Guernsey
        as GB; without a price a region is listed as unpriced."""
        if region in self.prices:
            return self.prices[region]
        code = phonenumbers.country_code_for_region(region) if region.isalpha() else 0
        return self.prices.get(str(code)) if code else None

    def __post_init__(self) -> None:
        self.max_segments = check_max_segments(self.max_segments)

    def cost(self) -> tuple[float, list[str]]:
        """The estimated total, and the regions without a price (not in the total). A total too large for a
        float is a ``ConfigurationError`` naming the dearest region (a summary never holds ``inf``)."""
        total, unpriced = 0.0, []
        costs: dict[str, float] = {}
        for region, segments in self.segments.items():
            price = self.price(region)
            if price is None:
                unpriced.append(region)
            else:
                costs[region] = price * segments
                total += costs[region]
        if not math.isfinite(total):
            dearest = max(costs, key=costs.__getitem__)
            raise ConfigurationError(
                f"prices: the estimated cost is too large to count (the price of {dearest!r}, "
                f"{self.price(dearest)!r} a segment, times {self.segments[dearest]:,} segments)"
            )
        return total, sorted(unpriced)

    def over(self) -> str | None:
        """Why the campaign is over its cap, naming the totals; ``None`` when it is within it."""
        total = sum(self.segments.values())
        if self.max_segments is not None and total > self.max_segments:
            return (
                f"{total:,} segments to {sum(self.recipients.values()):,} recipients is over max_segments="
                f"{self.max_segments:,}"
            )
        return None
