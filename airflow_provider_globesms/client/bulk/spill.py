"""The validated messages, spilled to disk between the validation pass and the sending pass (constant memory)."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from typing import Any

import msgspec

from airflow_provider_globesms.client.bulk.prepare import Campaign, PreparedMessage, RowError


class Spill:
    """The validated messages of the first pass, on disk, streamed back by the send pass.

    The send pass then neither renders nor validates again: it sends exactly what was validated,
    and memory stays flat for any number of rows.
    """

    def __init__(self, campaign: Campaign, directory: str | None = None) -> None:
        self._file = tempfile.TemporaryFile(mode="w+b", dir=directory, prefix="globesms-spill-")  # noqa: SIM115
        self._options = campaign.check_options()
        self._encode = msgspec.json.Encoder().encode

    def add(self, outcome: PreparedMessage | RowError) -> None:
        """Write one validation outcome (a message or a row error) to the spill file."""
        if isinstance(outcome, RowError):
            record: list[Any] = [outcome.row, None, outcome.to, outcome.field, outcome.reason]
        else:
            record = [outcome.row, outcome.to, outcome.text, outcome.segments, outcome.encoding, outcome.key]
        self._file.write(self._encode(record) + b"\n")

    def __iter__(self) -> Iterator[PreparedMessage | RowError]:
        self._file.flush()
        self._file.seek(0)
        decode = msgspec.json.Decoder().decode
        for line in self._file:
            record = decode(line)
            if record[1] is None:
                yield RowError(record[0], record[2], record[3], record[4])
            else:
                row, to, text, segments, encoding, key = record
                params = {**self._options, "To": to, "Message": text}
                yield PreparedMessage(row, to, params, key, segments, encoding)

    def close(self) -> None:
        """Close the spill file."""
        self._file.close()

    def __enter__(self) -> Spill:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
