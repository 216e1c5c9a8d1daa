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

Row = tuple[int, "Mapping[str, Any] | UnreadableRow"]

CSV_SUFFIXES = (".csv", ".csv.gz")
JSONL_SUFFIXES = (".jsonl", ".ndjson", ".jsonl.gz", ".ndjson.gz")
JSON_SUFFIXES = (".json", ".json.gz")
MAX_SHOWN = 200  # characters of a header or a value an error text may quote
MAX_OBJECT = 1024 * 1024  # one recipient object of a .json array; beyond it the JSON is taken as broken


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
    """The objects of one JSON array (``[{...}, {...}]``), decoded one at a time as the file streams in."""
    decoder = json.JSONDecoder()
    buffer, position, number, started, done = "", 0, 0, False, False
    while not done:
        data = handle.read(chunk)
        buffer = buffer[position:] + data
        position = 0
        while True:
            while position < len(buffer) and (buffer[position].isspace() or (started and buffer[position] == ",")):
                position += 1
            if position == len(buffer):
                break
            if not started:
                if buffer[position] != "[":
                    raise SourceError("a .json recipient file must hold one array of objects: [{...}, {...}]")
                started, position = True, position + 1
                continue
            if buffer[position] == "]":
                done = True
                break
            try:
                record, end = decoder.raw_decode(buffer, position)
            except json.JSONDecodeError as exc:
                if data and len(buffer) - position <= MAX_OBJECT:
                    break  # the object may go on in the next chunk
                raise SourceError(f"not valid JSON after object {number} ({exc.msg})") from None
            if end == len(buffer) and data:
                break  # a number or literal may go on in the next chunk
            number, position = number + 1, end
            if isinstance(record, dict):
                yield number, record
            else:
                yield number, UnreadableRow(f"expected a JSON object, got {type(record).__name__}")
        if not data and not done:
            if started:
                raise SourceError("the JSON array is not closed: the file ends early")
            return  # an empty file: no recipients (the operator warns)
