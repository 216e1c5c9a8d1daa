"""Reading opt-out lists as people export them: ``(line, entry)`` pairs for ``SuppressionList.load``.

A list errs on the side of not sending: every column or key named like a number is read (``Phone`` and
``Mobile``; ``From`` of an inbound STOP log as well as ``To``), every number-like cell of a line without a
header, every number of a line that holds several, nested JSON and lists. A line where nothing reads as a
number is yielded whole, so that the list counts it as unreadable and the log names it.
"""

from __future__ import annotations

import csv
import itertools
import json
import re
from collections.abc import Iterable, Iterator, Mapping
from typing import IO

from airflow_provider_globesms.client.errors import ConfigurationError
from airflow_provider_globesms.client.rules.phone import scrub_numbers

# A column or key is a number when its name, lower-cased without separators, is one of these, or has one of
# the words in it: "MobilePhone", "Mobile Phone Number", "alt_phone", "Tel.", "phone_e164". "from", "sender"
# and "originator": who wrote in, in an inbound message log (a STOP reply's number is its sender).
NUMBER_NAMES = frozenset({"to", "from", "number", "tel", "recipient", "destination", "sender", "originator"})
NUMBER_WORDS = ("phone", "mobile", "cell", "msisdn", "e164")
_DELIMITERS = (",", ";", "\t", "|")  # what spreadsheets write between cells (European Excel: ";")
_PIECES = re.compile(r"[,;\t|]")
# The line breaks str.splitlines() knows beyond \n and \r; one regex search a line (a loop over them cost a
# sixth of loading a million-entry list).
_OTHER_BREAKS = re.compile("[\x85\u2028\u2029\x0b\x0c\x1c\x1d\x1e]")
_MAX_DEPTH = 8  # nested JSON read for numbers (a contact inside a record); deeper is not an export
_SHOWN = 40


def suppression_entries(handle: IO[str], name: str) -> Iterator[tuple[int, str]]:
    """``(line, entry)`` from a text file: numbers a line (``.txt``), a CSV with number columns (or, without a
    header, every number-like column), or JSON Lines with number keys. Blank lines and ``#`` comments are
    skipped; a ``.csv`` that holds JSON Lines is read as such."""
    lowered = name.lower().removesuffix(".gz")
    rest = _lines(handle)
    first = next(rest, None)
    if first is None:
        return
    jsonl = lowered.endswith((".jsonl", ".ndjson")) or first[1].lstrip().startswith("{")
    if lowered.endswith(".csv") and not jsonl:
        yield from _csv_entries(first[1], (text for _, text in rest))
        return
    for line, text in itertools.chain([first], rest):
        text = text.strip()
        if text and not text.startswith("#"):
            for entry in _json_entries(text) if jsonl else _text_entries(text):
                yield line, entry


def _lines(handle: IO[str]) -> Iterator[tuple[int, str]]:
    """Numbered lines, also split where an export used a Unicode line break (NEL, LS, PS) that files read
    whole."""
    number = 0
    for raw in handle:
        parts = raw.splitlines() if _OTHER_BREAKS.search(raw) else [raw]
        for part in parts or [raw]:
            number += 1
            yield number, part


def _text_entries(text: str) -> list[str]:
    """A text line's numbers: the line less a ``#`` comment, split at commas, semicolons, tabs and bars when it
    holds several cells; the line itself when no cell looks like a number (counted unreadable)."""
    text = text.split("#", 1)[0].strip().rstrip(",;")
    pieces = [p.strip() for p in _PIECES.split(text)] if _PIECES.search(text) else [text]
    numbers = [p for p in pieces if looks_like_a_number(p)]
    return numbers or [text]


def _csv_entries(first: str, rest: Iterable[str]) -> Iterator[tuple[int, str]]:
    """Every number column of every line (a CRM export's ``Phone`` and ``Mobile``: an opt-out covers both);
    the delimiter is the header line's most frequent of ``, ; tab |``."""
    delimiter = max(_DELIMITERS, key=first.count) if any(d in first for d in _DELIMITERS) else ","
    reader = csv.reader(itertools.chain([first], rest), delimiter=delimiter)
    header = next(reader, None)
    if header is None:
        return
    columns = [n for n, name in enumerate(header) if is_number_name(name)]
    if not columns:
        columns = [n for n, cell in enumerate(header) if looks_like_a_number(cell)]
        if not columns:
            shown = [scrub_numbers(h[:_SHOWN]) for h in header[:20]]
            raise ConfigurationError(
                f"suppression CSV: no number column among {shown}; name one to, number, phone, mobile, "
                "msisdn... (or give no header and the numbers in the first column)"
            )
        for column in columns:  # no header: the first line is entries too
            yield 1, header[column]
    yield from _csv_rows(reader, header, columns)


def _csv_rows(reader: Iterable[list[str]], header: list[str], columns: list[int]) -> Iterator[tuple[int, str]]:
    lines = found = 0
    for line, record in enumerate(reader, start=2):
        lines += 1
        for column in columns:
            if len(record) > column and record[column].strip():
                found += 1
                yield line, record[column]
    if lines and not found and is_number_name(header[columns[0]]):
        named = [scrub_numbers(header[c][:_SHOWN]) for c in columns]
        raise ConfigurationError(f"suppression CSV: {lines} lines and no number in {named}")


def is_number_name(name: str) -> bool:
    """Whether a CSV column or JSON key holds phone numbers, by its name (see ``NUMBER_WORDS``)."""
    squashed = re.sub(r"[^a-z0-9]", "", name.lower())
    return squashed in NUMBER_NAMES or any(word in squashed for word in NUMBER_WORDS)


_PHONE_LIKE = re.compile(r"(?:tel:|TEL:)?[\s+＋'=\"()\-./\d]{6,40}|[+＋]?\d\.\d+[eE]\+?\d{1,2}")  # and E-notation
_DATE = re.compile(r"\d{4}[-/.]\d{1,2}[-/.]\d{1,2}|\d{1,2}[-/.]\d{1,2}[-/.]\d{2,4}")


def looks_like_a_number(text: str) -> bool:
    """A cell worth reading as a number: six digits or more, written only with what numbers are written
    with (not a name, not a date)."""
    text = text.strip()
    if sum(c.isdigit() for c in text) < 6 or _DATE.fullmatch(text):
        return False
    return _PHONE_LIKE.fullmatch(text) is not None or not any(c.isalpha() for c in text)


def _json_entries(text: str) -> list[str]:
    """The numbers of one JSON line (``""`` when there is none)."""
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        return [""]
    return numbers_in(value) or [""]


def numbers_in(value: object, depth: int = 0, *, named: bool = True) -> list[str]:
    """The numbers of a JSON value or a DAG's list item: a scalar is one; an object gives every value under a
    number key (each item of a list there) and searches its other objects and lists for number keys (a
    ``contact`` holding a ``phone``). ``named=False``: scalars found here are not numbers (no number key)."""
    if depth > _MAX_DEPTH or value is None or value == "" or isinstance(value, bool):
        return []
    if isinstance(value, Mapping):
        found = []
        for key, item in value.items():
            number_key = is_number_name(str(key))
            if number_key or isinstance(item, Mapping | list | tuple):
                found += numbers_in(item, depth + 1, named=number_key)
        return found
    if isinstance(value, list | tuple):
        return [n for item in value for n in numbers_in(item, depth + 1, named=named)]
    if not named:
        return []
    if isinstance(value, float) and value.is_integer():
        return [str(int(value))]  # 85291234567.0: a number column that went through a float
    return [str(value)]


def suppression_from_values(values: Iterable[object]) -> Iterator[tuple[int, str]]:
    """``(position, entry)`` from a list given in the DAG or by XCom: numbers, or records (read by their
    number keys, as JSON Lines are); an item with no number is yielded as written (counted unreadable)."""
    for position, value in enumerate(values, start=1):
        numbers = numbers_in(value) if isinstance(value, Mapping | list | tuple) else [str(value)]
        for entry in numbers or [str(value)[:_SHOWN]]:
            yield position, entry
