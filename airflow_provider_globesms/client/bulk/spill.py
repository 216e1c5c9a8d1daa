"""The validated messages, spilled to disk between the validation pass and the sending pass (constant memory)."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any

import msgspec

from airflow_provider_globesms.client.bulk.prepare import (
    Campaign,
    Held,
    PreparedMessage,
    PreparedRow,
    RowError,
    Suppressed,
    message_of,
)
from airflow_provider_globesms.client.ledger.sqlite_ledger import Status


class Spill:
    """The validated messages of the first pass, on disk, streamed back by the send pass.

    The send pass then neither renders nor validates again: it sends exactly what was validated,
    and memory stays flat for any number of rows.
    """

    def __init__(self, campaign: Campaign, directory: str | None = None) -> None:
        self._file = tempfile.TemporaryFile(mode="w+b", dir=directory, prefix="globesms-spill-")  # noqa: SIM115
        self._options = campaign.check_options()
        self._encode = msgspec.json.Encoder().encode

    def add(self, outcome: PreparedRow) -> None:
        """Write one validation outcome (a message, a row error, a suppressed message) to the spill file."""
        if isinstance(outcome, RowError):
            record: list[Any] = [outcome.row, None, outcome.to, outcome.field, outcome.reason]
        else:
            m = message_of(outcome)
            assert m is not None
            record = [m.row, m.to, m.text, m.segments, m.encoding, m.key]
            if isinstance(outcome, Suppressed):
                record.append(Status.SUPPRESSED.value)
            elif isinstance(outcome, PreparedMessage) and outcome.closes_at is not None:
                record += ["open", outcome.closes_at, outcome.reopens_at]
            elif isinstance(outcome, Held):
                opens = outcome.opens_at.timestamp() if outcome.opens_at else None
                record += [Status.HELD.value, opens, outcome.unknown_zone]
        self._file.write(self._encode(record) + b"\n")

    def __iter__(self) -> Iterator[PreparedRow]:
        self._file.flush()
        self._file.seek(0)
        decode = msgspec.json.Decoder().decode
        for line in self._file:
            record = decode(line)
            if record[1] is None:
                yield RowError(record[0], record[2], record[3], record[4])
            else:
                row, to, text, segments, encoding, key = record[:6]
                params = {**self._options, "To": to, "Message": text}
                window = record[7:9] if record[6:7] == ["open"] else ()  # closes_at, reopens_at
                message = PreparedMessage(row, to, params, key, segments, encoding, *window)
                if len(record) == 6 or window:
                    yield message
                elif record[6] == Status.SUPPRESSED:
                    yield Suppressed(message)
                else:
                    opens = datetime.fromtimestamp(record[7], timezone.utc) if record[7] is not None else None
                    yield Held(message, opens, record[8])

    def close(self) -> None:
        """Close the spill file."""
        self._file.close()

    def __enter__(self) -> Spill:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
