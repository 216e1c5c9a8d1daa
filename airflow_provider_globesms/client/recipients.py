"""Recipient rows from lists, CSV and JSON Lines, read as streams (constant memory for any size).

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

Row = tuple[int, "Mapping[str, Any] | UnreadableRow"]

CSV_SUFFIXES = (".csv", ".csv.gz")
JSONL_SUFFIXES = (".jsonl", ".ndjson", ".jsonl.gz", ".ndjson.gz")


@dataclass(frozen=True, slots=True)
class UnreadableRow:
    reason: str


class SourceError(ValueError):
    """The recipient source as a whole cannot be used (wrong format, no 'to' column...)."""


def file_format(name: str) -> str:
    lowered = name.lower()
    if lowered.endswith(CSV_SUFFIXES):
        return "csv"
    if lowered.endswith(JSONL_SUFFIXES):
        return "jsonl"
    raise SourceError(f"cannot tell the format of {name!r}: name recipient files *.csv or *.jsonl (optionally .gz)")


def rows_from_records(records: Iterable[Any]) -> Iterator[Row]:
    for number, record in enumerate(records, 1):
        if isinstance(record, Mapping):
            yield number, record
        elif isinstance(record, str):
            yield number, {"to": record}  # a bare list of numbers
        else:
            yield number, UnreadableRow(f"expected a mapping with a 'to' field, got {type(record).__name__}")


def rows_from_csv(handle: IO[str], to_field: str = "to") -> Iterator[Row]:
    reader = csv.DictReader(handle)
    if reader.fieldnames is None:
        return
    columns = [c.strip() for c in reader.fieldnames]
    if to_field not in columns:
        raise SourceError(f"the CSV header has no {to_field!r} column (columns: {', '.join(columns)})")
    reader.fieldnames = columns
    for number, record in enumerate(reader, 1):
        if None in record:  # more cells than columns
            yield number, UnreadableRow(f"{len(record[None]) + len(columns)} cells for {len(columns)} columns")
        else:
            yield number, record


def rows_from_jsonl(handle: IO[str]) -> Iterator[Row]:
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
