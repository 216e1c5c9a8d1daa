"""The records of ``bench/receipts_push.py``: pushed receipts as Alibaba writes them, their push bodies, and a
campaign's results file as ``SendGlobeSmsOperator`` writes it."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
from pathlib import Path

import msgspec
from _common import number

GATEWAY_TZ = timezone(timedelta(hours=8))
SENT_AT = datetime(2026, 5, 11, 9, 30, tzinfo=GATEWAY_TZ)
ERRORS = [("", ""), ("", ""), ("", ""), ("IS_CLOSE", "The number is switched off"), ("MO_BLACK", "Blocked")]


def message_id(campaign: int, n: int) -> str:
    """The MessageId of message ``n`` of campaign number ``campaign``: distinct across campaigns."""
    return f"{1_000_000 + campaign}{n:012d}"


def to_number(n: int) -> str:
    """Distinct valid Hong Kong mobile numbers, as a receipt's ``To`` carries them (digits only)."""
    return number(n)


@functools.lru_cache(maxsize=4096)
def dates(sent_second: int, delay: int) -> tuple[str, str]:
    """SendDate and ReceiveDate, RFC 2822 in +0800; cached, as a million receipts share a few thousand."""
    sent = SENT_AT + timedelta(seconds=sent_second)
    return format_datetime(sent), format_datetime(sent + timedelta(seconds=delay))


def receipt(campaign_id: str, campaign: int, n: int) -> dict[str, str]:
    """A pushed receipt as Alibaba writes it: every value a string, dates RFC 2822 in +0800."""
    code, description = ERRORS[n // 20 % len(ERRORS)] if n % 20 == 0 else ("", "")
    send_date, receive_date = dates(n // 2000, 2 + n % 17)
    return {
        "To": to_number(n),
        "Status": "2" if code else "1",
        "MessageId": message_id(campaign, n),
        "SmsSize": str(1 + n % 3 // 2),
        "TaskId": campaign_id,
        "SendDate": send_date,
        "ReceiveDate": receive_date,
        "ErrorCode": code,
        "ErrorDescription": description,
    }


def bodies(receipts: Sequence[dict[str, str]], size: int) -> list[bytes]:
    """The push bodies: JSON arrays of ``size`` receipts each (the last one shorter)."""
    encode = msgspec.json.encode
    return [encode(receipts[i : i + size]) for i in range(0, len(receipts), size)]


def ingest_records(count: int, campaigns: int) -> list[dict[str, str]]:
    """``count`` receipts of ``campaigns`` campaigns, interleaved as one push carries several campaigns."""
    return [receipt(f"bench-campaign-{n % campaigns}", n % campaigns, n) for n in range(count)]


def write_results(path: Path, campaign_id: str, count: int) -> None:
    """The operator's results file: one JSON line per accepted message, its keys in the operator's order.

    Written here, not sent: a million sends would take over eight minutes at the account's cap."""
    encode = msgspec.json.Encoder().encode
    with path.open("wb") as handle:
        for n in range(count):
            line = {
                "row": n + 1,
                "to": "+" + to_number(n),
                "status": "accepted",
                "campaign_id": campaign_id,
                "message_id": message_id(0, n),
                "segments": 1 + n % 3 // 2,
            }
            handle.write(encode(line) + b"\n")
