"""Campaign controls applied in the validation pass: who must never be sent anything, and what it may cost.

``SuppressionList``: opt-outs, matched on the number's E.164 form, kept in an SQLite index on disk (millions of
entries, flat memory). ``Budget``: segments and estimated cost by country, and the cap the campaign must stay
under; it is checked before the first message goes.
"""

from __future__ import annotations

import csv
import decimal
import json
import re
import tempfile
import unicodedata
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import IO

import phonenumbers

from airflow_provider_globesms.client.errors import ConfigurationError, InvalidFieldError
from airflow_provider_globesms.client.phone import parse_number
from airflow_provider_globesms.client.sqlite import open_sqlite

BATCH = 10_000  # entries per transaction while a list is loaded
# A column or key is a number when its name, lower-cased without separators, is one of these, or has one of
# the words in it: "MobilePhone", "Mobile Phone Number", "alt_phone", "Tel.", "phone_e164".
NUMBER_NAMES = frozenset({"to", "number", "tel", "recipient", "destination"})
NUMBER_WORDS = ("phone", "mobile", "cell", "msisdn", "e164")


class SuppressionList:
    """Numbers that must never receive anything, on disk: ``wire in suppression`` for each recipient.

    Entries may be written in any form the validator accepts (``+852 9123 4567``, ``85291234567``; national
    forms with ``default_region``). An entry that is no phone number cannot match any valid recipient: it
    is counted (``unreadable``) and its line kept for the log, never fatal. Entries already in E.164 form are
    indexed as written, unchecked (checking costs more than the look-up; a wrong one matches nobody).
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
        """The number an entry means, read as recipients are (so the same writing gives the same number).
        Bare digits are also read as international: an opt-out list errs on the side of not sending."""
        text = entry.strip()
        digits = text[1:]
        # E.164 as written (the common case, a thousand times cheaper than parsing): ASCII digits, and no
        # trunk 0 right after the country code ("+44 07911..." is read by the validator as +44 7911...).
        plain = digits.isascii() and digits.isdigit() and 7 <= len(digits) <= 15 and "0" not in digits[1:4]
        if text.startswith("+") and plain:
            return {digits}
        text = cleaned_entry(text)
        readings: set[str] = set()
        attempts = [(text, self.default_region)]
        if text.startswith("00"):
            attempts.append(("+" + text[2:], None))  # the international prefix of most countries
        elif not text.startswith("+"):
            attempts.append(("+" + text, None))
        for written, region in attempts:
            try:
                readings.add(parse_number(written, "suppression", default_region=region).wire)
            except InvalidFieldError:
                continue
        return readings

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


def suppression_entries(handle: IO[str], name: str) -> Iterator[tuple[int, str]]:
    """``(line, entry)`` from a text file: one number a line (``.txt``), a CSV with a number column (or its
    first column), or JSON Lines with a ``to`` or ``number`` key. Blank lines and ``#`` comments are skipped."""
    lowered = name.lower().removesuffix(".gz")
    if lowered.endswith(".csv"):
        yield from _csv_entries(handle)
        return
    jsonl = lowered.endswith((".jsonl", ".ndjson"))
    for line, text in enumerate(handle, start=1):
        text = text.strip()
        if not text or text.startswith("#"):
            continue
        for entry in _json_entries(text) if jsonl else [text.rstrip(",;")]:
            yield line, entry


def _csv_entries(handle: IO[str]) -> Iterator[tuple[int, str]]:
    """Every number column of every line (a CRM export's ``Phone`` and ``Mobile``: an opt-out covers both)."""
    reader = csv.reader(handle)
    header = next(reader, None)
    if header is None:
        return
    columns = [n for n, name in enumerate(header) if is_number_name(name)]
    if not columns:
        if not header or not _looks_like_a_number(header[0]):
            raise ConfigurationError(
                f"suppression CSV: no number column among {[h[:40] for h in header[:20]]}; name one to, "
                "number, phone, mobile, msisdn... (or give no header and the numbers in the first column)"
            )
        columns = [0]  # no header: the first line is an entry too
        yield 1, header[0]
    lines = found = 0
    for line, record in enumerate(reader, start=2):
        lines += 1
        for column in columns:
            if len(record) > column and record[column].strip():
                found += 1
                yield line, record[column]
    if lines and not found and is_number_name(header[columns[0]]):
        raise ConfigurationError(f"suppression CSV: {lines} lines and no number in {[header[c] for c in columns]}")


def is_number_name(name: str) -> bool:
    """Whether a CSV column or JSON key holds phone numbers, by its name (see ``NUMBER_WORDS``)."""
    squashed = re.sub(r"[^a-z0-9]", "", name.lower())
    return squashed in NUMBER_NAMES or any(word in squashed for word in NUMBER_WORDS)


def _looks_like_a_number(text: str) -> bool:
    return sum(c.isdigit() for c in text) >= 6


def _json_entries(text: str) -> list[str]:
    """The numbers of one JSON line: every number key of an object (``""`` when there is none)."""
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        return [""]
    if isinstance(value, dict):
        values = [v for k, v in value.items() if is_number_name(str(k)) and v not in (None, "")]
    else:
        values = [value]
    return [_json_text(v) for v in values] or [""]


def _json_text(value: object) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))  # 85291234567.0: a number column that went through a float
    return str(value)


def cleaned_entry(text: str) -> str:
    """An entry as spreadsheets and CRMs export it, made a plain number: ``tel:`` URIs, Excel's ``'`` and
    ``="..."`` text markers, invisible format characters, and ``85291234567.0`` or ``8.5291234567E+10``
    (a number column that went through a float) when that is exactly an integer."""
    text = "".join(c for c in text if unicodedata.category(c) != "Cf").strip()
    text = text.removeprefix("tel:").removeprefix("TEL:").strip()
    if text.startswith('="') and text.endswith('"'):
        text = text[2:-1]
    text = text.lstrip("'").strip()
    if len(text) <= 40 and any(c in text for c in ".eE"):
        try:
            number = decimal.Decimal(text)
        except decimal.InvalidOperation:
            return text
        # Up to 16 digits (a phone number's 15, and room): 1e999999 must not become a million-digit integer.
        if number.is_finite() and 0 <= number.adjusted() <= 15 and number == number.to_integral_value():
            return ("+" if text.startswith("+") else "") + str(int(number))
    return text


def suppression_from_values(values: Iterable[object]) -> Iterator[tuple[int, str]]:
    """``(position, entry)`` from a list given in the DAG."""
    return ((n, str(v)) for n, v in enumerate(values, start=1))


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
        if not value >= 0:
            raise ConfigurationError(f"prices: {country!r} has a negative or missing price ({price!r})")
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

    def cost(self) -> tuple[float, list[str]]:
        """The estimated total, and the regions without a price (not in the total)."""
        total, unpriced = 0.0, []
        for region, segments in self.segments.items():
            price = self.price(region)
            if price is None:
                unpriced.append(region)
            else:
                total += price * segments
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
