"""Where the recipients come from: numbers given as ``to``, rows (a list, XCom, a mapped upstream's lazy
sequence) or a CSV, JSON Lines or JSON-array file at a path or any ``ObjectStoragePath`` URI, streamed."""

from __future__ import annotations

import os
import zlib
from collections.abc import Iterator, Mapping
from typing import IO, Any, cast

from airflow.sdk import ObjectStoragePath, XComArg

from airflow_provider_globesms.client.errors import SourceError
from airflow_provider_globesms.client.rules.recipients import (
    MAX_SHOWN,
    Row,
    file_format,
    rows_from_csv,
    rows_from_json_array,
    rows_from_jsonl,
    rows_from_records,
)
from airflow_provider_globesms.operators.rendering import ShownMasked, is_rows
from airflow_provider_globesms.storage import storage_path


def open_rows(to: Any, recipients: Any, to_field: str) -> tuple[Iterator[Row], str, str]:
    """The rows, the field that holds the number, and a description for the log."""
    if to is not None:
        to = to.value if isinstance(to, ShownMasked) else to
        if isinstance(to, XComArg):  # execute() called without Airflow's rendering
            raise ValueError("`to` is an XComArg that was never resolved: run the task in Airflow")
        numbers = [to] if isinstance(to, str | int) else list(to)
        return rows_from_records({"to": n} for n in numbers), "to", f"{len(numbers)} number(s)"
    source = recipients.value if isinstance(recipients, ShownMasked) else recipients
    if isinstance(source, Mapping):
        source = [source]
    if isinstance(source, str | os.PathLike | ObjectStoragePath):
        return file_rows(str(source), to_field), to_field, f"file {source}"
    if is_rows(source):  # a list, a tuple, or the lazy sequence of a mapped upstream's XComs
        return rows_from_records(source), to_field, f"{len(source)} row(s)"
    raise ValueError(f"recipients must be a list of rows, an XComArg or a CSV/JSONL path, got {type(source).__name__}")


def open_text(location: str) -> IO[str]:
    """A text file at a path or any ``ObjectStoragePath`` URI, as people export them: UTF-8 with or without
    Excel's byte-order mark (which would stick to the first column), gzip-compressed when it ends in ``.gz``.
    Recipient files, suppression lists and price lists are all opened here."""
    compression = "gzip" if location.lower().endswith(".gz") else None
    handle = storage_path(location).open("rt", encoding="utf-8-sig", newline="", compression=compression)  # type: ignore[no-untyped-call]
    return cast(IO[str], handle)


def file_rows(location: str, to_field: str) -> Iterator[Row]:
    """Rows of a CSV, JSON Lines or JSON-array file; any failure to read it is one ``SourceError`` that
    names the file, how far it got and why (a bad encoding, a truncated archive, a missing file...)."""
    kind = file_format(location)
    shown, read = location[:MAX_SHOWN], 0
    try:
        with open_text(location) as handle:
            reader = {
                "csv": lambda: rows_from_csv(handle, to_field),
                "json": lambda: rows_from_json_array(handle),
            }
            for row in reader.get(kind, lambda: rows_from_jsonl(handle))():
                yield row
                read += 1
    except SourceError as exc:
        raise SourceError(f"{shown}: {exc}") from None
    except (OSError, EOFError, UnicodeError, ValueError, ImportError, zlib.error) as exc:
        raise SourceError(f"{shown}: cannot be read after {read} rows ({_reading_error(exc)})") from None


def _reading_error(exc: BaseException) -> str:
    """Why a recipient file could not be read, in a line a user can act on."""
    if isinstance(exc, FileNotFoundError):
        return "no such file"
    if isinstance(exc, UnicodeDecodeError):
        return f"not UTF-8 text at byte {exc.start} of a block; save the file as UTF-8"
    if isinstance(exc, EOFError | zlib.error) or "gzip" in type(exc).__name__.lower():
        return f"the compressed file is truncated or damaged ({type(exc).__name__})"
    if isinstance(exc, ImportError) or "protocol" in str(exc).lower() or "filesystem" in str(exc).lower():
        return f"no file system for this URI; install the provider for its scheme ({str(exc)[:120]})"
    return f"{type(exc).__name__}: {str(exc)[:MAX_SHOWN]}"
