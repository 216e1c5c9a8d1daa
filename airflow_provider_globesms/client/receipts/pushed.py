"""Delivery receipts as Alibaba pushes them: one POST's body read into receipts, or refused whole.

A push is a JSON array of receipts (many per POST), every field a string: ``To``, ``Status``,
``MessageId``, ``SmsSize``, ``TaskId``, ``SendDate``, ``ReceiveDate``, ``ErrorCode``, ``ErrorDescription``.
The older queue format names the same fields in snake case (``to``, ``message_id``...): both are read.
Nothing here trusts the body: its size and record count are capped before anything is decoded further,
values are read as plain scalars only (a nested value cannot recurse), and a record that cannot be
read is kept apart with the reason (for the dead-letter area), never dropped and never guessed at.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass

import msgspec

from airflow_provider_globesms.client.errors import GlobeSmsError
from airflow_provider_globesms.client.rules.models import DeliveryStatus, parse_receipt_date

MAX_BODY_BYTES = 4 * 1024 * 1024  # about 15,000 receipts; Alibaba merges far fewer into one push
MAX_RECORDS = 10_000
MAX_FIELD_CHARS = 1_000  # a dead letter keeps at most this much of each value
MAX_TASK_ID_CHARS = 255  # the send's TaskId: 1 to 255 characters

# Each field's spellings: the HTTP push's, then the queue message's.
_FIELDS: dict[str, tuple[str, ...]] = {
    "message_id": ("MessageId", "message_id"),
    "to": ("To", "to"),
    "status": ("Status", "status"),
    "task_id": ("TaskId", "task_id"),
    "send_date": ("SendDate", "send_date"),
    "receive_date": ("ReceiveDate", "receive_date"),
    "error_code": ("ErrorCode", "error_code"),
    "error_description": ("ErrorDescription", "error_description"),
    "segments": ("SmsSize", "sms_size"),
}
Scalar = str | int | float | bool | None
_records = msgspec.json.Decoder(list[msgspec.Raw])
_record = msgspec.json.Decoder(dict[str, Scalar])


class PushRefused(GlobeSmsError, ValueError):
    """The whole body is refused (not JSON, not an array, too large, too many records): nothing is stored.

    ``status`` is the HTTP status to answer; ``reason`` says why, without quoting the body.
    """

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class PushedReceipt(msgspec.Struct, frozen=True, array_like=True):
    """One delivery receipt as pushed, its status already one of the tracker's labels.

    ``to`` is digits only (dialing code and number, as pushed); ``send_ts`` and ``receive_ts`` are
    epoch seconds (``None`` when the push gave no readable date).
    """

    message_id: str
    to: str
    status: str
    task_id: str = ""
    send_date: str = ""
    receive_date: str = ""
    error_code: str = ""
    error_description: str = ""
    segments: int = 0
    send_ts: float | None = None
    receive_ts: float | None = None

    @property
    def final(self) -> bool:
        """Delivered, failed or expired (a pushed ``sending`` is not final)."""
        return self.status != DeliveryStatus.SENDING.label

    def supersedes(self, status: str, receive_ts: float | None) -> bool:
        """Whether this receipt should replace a stored one with ``status`` and ``receive_ts``: a final one
        replaces a pending one; between final ones, only a strictly later ``ReceiveDate`` wins, so an older
        or repeated receipt never overwrites a newer final state."""
        if not self.final:
            return False
        if status in ("pending", "query_failed", DeliveryStatus.SENDING.label):
            return True
        return self.receive_ts is not None and (receive_ts is None or self.receive_ts > receive_ts)


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A record that could not be read: its place in the push, the reason, and what it held (values cut)."""

    index: int
    reason: str
    record: dict[str, str]


@dataclass(frozen=True, slots=True)
class ParsedPush:
    """A push read: the receipts, and the records kept apart as dead letters."""

    receipts: list[PushedReceipt]
    dead: list[DeadLetter]


def parse_push(body: bytes, *, max_records: int = MAX_RECORDS, max_bytes: int = MAX_BODY_BYTES) -> ParsedPush:
    """Read one push's body; raise ``PushRefused`` when the body as a whole cannot be taken."""
    if len(body) > max_bytes:
        raise PushRefused(413, f"body of {len(body)} bytes is over the limit of {max_bytes}")
    try:
        raws = _records.decode(body)
    except msgspec.ValidationError:
        raise PushRefused(400, "the body is not a JSON array") from None
    except (msgspec.DecodeError, RecursionError):
        raise PushRefused(400, "the body is not JSON (or is nested too deeply)") from None
    if len(raws) > max_records:
        raise PushRefused(413, f"{len(raws)} records in one push, over the limit of {max_records}")
    receipts: list[PushedReceipt] = []
    dead: list[DeadLetter] = []
    for index, raw in enumerate(raws):
        try:
            fields = _record.decode(raw)
        except (msgspec.DecodeError, msgspec.ValidationError, RecursionError):
            text = bytes(raw)[:MAX_FIELD_CHARS].decode("utf-8", "replace")
            dead.append(DeadLetter(index, "not an object of plain values", {"raw": text}))
            continue
        try:
            receipts.append(read_receipt(fields))
        except ValueError as exc:
            dead.append(DeadLetter(index, str(exc), _cut(fields)))
    return ParsedPush(receipts, dead)


def _field(record: Mapping[str, Scalar], name: str, *, exact: bool = False) -> str:
    """A field's value as text, from its first spelling present; stripped unless ``exact`` (a TaskId is
    compared as the send gave it: `` sale`` and ``sale`` are two campaigns)."""
    for spelling in _FIELDS[name]:
        value = record.get(spelling)
        if value is not None and not isinstance(value, bool):
            return str(value) if exact else str(value).strip()
    return ""


_ASCII_DIGITS = re.compile(r"[0-9]+")
_STATUSES = {str(int(status)): status for status in DeliveryStatus}


def pushed_status(value: str) -> DeliveryStatus:
    """A pushed ``Status`` (``1`` delivered, ``2`` failed, ``6`` expired; ``3`` sending, if ever pushed)."""
    status = _STATUSES.get(value)  # exactly as written: int() would also read "٢" or "0_1"
    if status is None:
        raise ValueError(f"Status {value[:20]!r} is not a known receipt status (1, 2, 3 or 6)")
    return status


def read_receipt(record: Mapping[str, Scalar]) -> PushedReceipt:
    """One receipt from a pushed record's fields; ``ValueError`` names what is missing or wrong."""
    message_id = _field(record, "message_id")
    if not message_id or len(message_id) > 64 or not message_id.isascii() or not message_id.isprintable():
        raise ValueError("MessageId is missing or not an id")
    to = _field(record, "to").removeprefix("+")
    if not _ASCII_DIGITS.fullmatch(to) or not 6 <= len(to) <= 17:  # str.isdigit() takes any script's digits
        raise ValueError("To is missing or not a number")
    task_id = _field(record, "task_id", exact=True)
    if len(task_id) > MAX_TASK_ID_CHARS:  # cut, it could name another campaign
        raise ValueError(f"TaskId is longer than {MAX_TASK_ID_CHARS} characters")
    status = pushed_status(_field(record, "status"))
    segments = _field(record, "segments")
    send_date, receive_date = _field(record, "send_date")[:64], _field(record, "receive_date")[:64]
    return PushedReceipt(
        message_id=message_id,
        to=to,
        status=status.label,
        task_id=task_id,
        send_date=send_date,
        receive_date=receive_date,
        error_code=_field(record, "error_code")[:64],
        error_description=_field(record, "error_description")[:MAX_FIELD_CHARS],
        segments=int(segments) if _ASCII_DIGITS.fullmatch(segments) and len(segments) < 4 else 0,
        send_ts=_epoch(send_date),
        receive_ts=_epoch(receive_date),
    )


@functools.lru_cache(maxsize=4096)
def _epoch(text: str) -> float | None:
    # Cached: a push's dates repeat (whole seconds), and parsing one took half of a push's reading.
    moment = parse_receipt_date(text)
    return moment.timestamp() if moment is not None and moment.tzinfo is not None else None


def _cut(record: Mapping[str, Scalar]) -> dict[str, str]:
    return {str(k)[:100]: str(v)[:MAX_FIELD_CHARS] for k, v in list(record.items())[:50]}
