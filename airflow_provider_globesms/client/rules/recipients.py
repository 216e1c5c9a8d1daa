"""Recipient rows from lists, CSV, JSON Lines and JSON arrays, read as streams (constant memory for any size).

Each row comes out as ``(row_number, fields)`` with 1-based numbers counting data rows, so that an
error can say "row 1234". A line that cannot be read becomes an ``UnreadableRow`` in the stream
instead of stopping it, so validation can report it with every other bad row.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import IO, Any

from airflow_provider_globesms.client.errors import SourceError

Row = tuple[int, "Mapping[str, Any] | UnreadableRow"]

CSV_SUFFIXES = (".csv", ".csv.gz")
JSONL_SUFFIXES = (".jsonl", ".ndjson", ".jsonl.gz", ".ndjson.gz")
JSON_SUFFIXES = (".json", ".json.gz")
MAX_SHOWN = 200  # characters of a header or a value an error text may quote
MAX_OBJECT = 1024 * 1024  # one recipient object of a .json array; beyond it the JSON is taken as broken


@dataclass(frozen=True, slots=True)
class UnreadableRow:
    """A source row that could not be read as a recipient, and why."""

    reason: str


def file_format(name: str) -> str:
    """``csv``, ``jsonl`` or ``json``, from a recipient file's name (optionally ``.gz``)."""
    lowered = name.lower()
    if lowered.endswith(CSV_SUFFIXES):
        return "csv"
    if lowered.endswith(JSONL_SUFFIXES):
        return "jsonl"
    if lowered.endswith(JSON_SUFFIXES):
        return "json"
    raise SourceError(
        f"cannot tell the format of {name[:MAX_SHOWN]!r}: name recipient files *.csv, *.jsonl or *.json "
        "(an array of objects), optionally .gz"
    )


def _shown(names: list[str]) -> str:
    text = ", ".join(repr(n[:40]) for n in names[:20]) + (f" and {len(names) - 20} more" if len(names) > 20 else "")
    return text[:MAX_SHOWN]


def rows_from_records(records: Iterable[Any]) -> Iterator[Row]:
    """Numbered rows from in-memory records: mappings, or bare phone numbers."""
    for number, record in enumerate(records, 1):
        if isinstance(record, Mapping):
            yield number, record
        elif isinstance(record, str):
            yield number, {"to": record}  # a bare list of numbers
        else:
            yield number, UnreadableRow(f"expected a mapping with a 'to' field, got {type(record).__name__}")


def rows_from_csv(handle: IO[str], to_field: str = "to") -> Iterator[Row]:
    """Numbered rows of a CSV file; refuses a header with blank, repeated or missing ``to_field`` columns."""
    reader = csv.DictReader(handle)
    if reader.fieldnames is None:
        return
    columns = [c.strip() for c in reader.fieldnames]
    blank = [str(i) for i, c in enumerate(columns, 1) if not c]
    if blank:
        raise SourceError(f"the CSV header has columns without a name (column {', '.join(blank[:10])})")
    seen: dict[str, int] = {}
    for i, name in enumerate(columns, 1):
        if name in seen:  # DictReader would silently keep the last one: the message could go to the wrong person
            raise SourceError(f"the CSV header names {name[:40]!r} twice (columns {seen[name]} and {i})")
        seen[name] = i
    if to_field not in columns:
        raise SourceError(f"the CSV header has no {to_field!r} column (columns: {_shown(columns)})")
    reader.fieldnames = columns
    for number, record in enumerate(reader, 1):
        if None in record:  # more cells than columns
            yield number, UnreadableRow(f"{len(record[None]) + len(columns)} cells for {len(columns)} columns")
        else:
            yield number, record


def rows_from_jsonl(handle: IO[str]) -> Iterator[Row]:
    """Numbered rows of a JSON Lines file, one object per non-blank line."""
    number = 0
    for line in handle:
        if not line.strip():
            continue
        number += 1
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            yield number, UnreadableRow(f"not valid JSON ({exc.msg})")
            continue
        if isinstance(record, dict):
            yield number, record
        else:
            yield number, UnreadableRow(f"expected a JSON object, got {type(record).__name__}")


def rows_from_json_array(handle: IO[str], chunk: int = 65536) -> Iterator[Row]:
    """The objects of one JSON array (``[{...}, {...}]``), decoded one at a time as the file streams in.

    Strict where being lenient could lose rows silently: values must be separated by commas, and nothing
    but whitespace may follow the closing bracket. No value may exceed ``MAX_OBJECT`` characters."""
    reader = _JsonArrayReader(handle, chunk)
    yield from reader.rows()


class _JsonArrayReader:
    def __init__(self, handle: IO[str], chunk: int) -> None:
        self.handle, self.chunk = handle, chunk
        self.buffer, self.position, self.eof = "", 0, False
        self.decoder = json.JSONDecoder()

    def _more(self) -> None:
        data = self.handle.read(self.chunk)
        self.buffer, self.position, self.eof = self.buffer[self.position :] + data, 0, not data
        if len(self.buffer) > MAX_OBJECT + self.chunk:
            raise SourceError(f"a value of the JSON array is larger than {MAX_OBJECT} characters, or not JSON")

    def _next_char(self) -> str:
        """The next character that is not whitespace (not consumed); "" at the end of the file."""
        while True:
            while self.position < len(self.buffer) and self.buffer[self.position].isspace():
                self.position += 1
            if self.position < len(self.buffer) or self.eof:
                return self.buffer[self.position] if self.position < len(self.buffer) else ""
            self._more()

    def _value(self, number: int) -> Any:
        while True:
            try:
                value, end = self.decoder.raw_decode(self.buffer, self.position)
            except json.JSONDecodeError as exc:
                if self.eof:
                    raise SourceError(f"not valid JSON after object {number} ({exc.msg})") from None
                self._more()
                continue
            except ValueError as exc:  # e.g. a number longer than Python converts
                raise SourceError(f"not valid JSON after object {number} ({str(exc)[:80]})") from None
            if end == len(self.buffer) and not self.eof:
                self._more()  # a number may go on in the next chunk
                continue
            self.position = end
            return value

    def rows(self) -> Iterator[Row]:
        """Numbered rows of the file's array, streamed one object at a time."""
        first = self._next_char()
        if first == "":
            return  # an empty file: no recipients (the operator warns)
        if first != "[":
            raise SourceError("a .json recipient file must hold one array of objects: [{...}, {...}]")
        self.position += 1
        number = 0
        if self._next_char() == "]":
            self.position += 1
        else:
            while True:
                value = self._value(number)
                number += 1
                yield (
                    number,
                    value
                    if isinstance(value, dict)
                    else UnreadableRow(f"expected a JSON object, got {type(value).__name__}"),
                )
                separator = self._next_char()
                self.position += 1
                if separator == "]":
                    break
                if separator != ",":
                    found = repr(separator) if separator else "the end of the file"
                    raise SourceError(f"expected ',' or ']' after object {number}, found {found}")
                self._next_char()
        if self._next_char() != "":
            raise SourceError(f"the file goes on after the array's closing bracket (after object {number})")
