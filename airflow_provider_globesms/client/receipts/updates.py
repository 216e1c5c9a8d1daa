"""What one look at receipts changes: QueryMessage answers and pushed receipts as tracker updates, and
the log lines of a polling round and of a read of pushed receipts."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import IO, Any, NamedTuple

import msgspec

from airflow_provider_globesms.client.errors import BusinessError
from airflow_provider_globesms.client.receipts.pushed import PushedReceipt
from airflow_provider_globesms.client.rules.models import DeliveryStatus, QueryMessageResult, parse_receipt_date

# A receipt's state: the API's final statuses by their DeliveryStatus names, and the tracker's own.
DELIVERED, FAILED, EXPIRED = DeliveryStatus.DELIVERED.label, DeliveryStatus.FAILED.label, DeliveryStatus.EXPIRED.label
PENDING, QUERY_FAILED, UNTRACKED = "pending", "query_failed", "untracked"
FINAL = (DELIVERED, FAILED, EXPIRED, QUERY_FAILED)


@dataclass(frozen=True, slots=True)
class Round:
    """What one polling round did: queries made, receipts that became final, failed queries and time taken."""

    queried: int
    became_final: int
    errors: int
    seconds: float
    errors_by_code: dict[str, int] = field(default_factory=dict)

    def describe(self, pending: int) -> str:
        """A log line for the round, given how many messages are still ``pending``."""
        text = (
            f"receipts: queried {self.queried} in {self.seconds:.1f} s, {self.became_final} became final, "
            f"{pending} still pending"
        )
        if self.errors:
            codes = ", ".join(f"{code} x{n}" for code, n in sorted(self.errors_by_code.items()))
            text += f"; {self.errors} queries failed and will be asked again ({codes})"
        return text


def receipt_status(result: QueryMessageResult) -> str:
    """The tracker's status of a ``QueryMessage`` answer: delivered, failed, expired or pending."""
    if result.delivered:
        return DELIVERED
    if result.failed:
        return EXPIRED if result.status == DeliveryStatus.EXPIRED else FAILED
    return PENDING


def read_jsonl(handle: IO[bytes] | IO[str]) -> Iterator[dict[str, Any]]:
    """The JSON objects of a JSON Lines file, skipping blank lines and values that are not objects."""
    decode = msgspec.json.Decoder().decode
    for line in handle:
        if line.strip():
            record = decode(line)
            if isinstance(record, dict):
                yield record


@dataclass(frozen=True, slots=True)
class PushRound:
    """What reading the pushed receipts did: objects and receipts read, messages that became final, time."""

    objects: int
    receipts: int
    became_final: int
    seconds: float

    def describe(self, pending: int) -> str:
        """A log line for the read, given how many messages are still ``pending``."""
        return (
            f"pushed receipts: read {self.receipts} in {self.objects} new object(s) in {self.seconds:.1f} s, "
            f"{self.became_final} became final, {pending} still pending"
        )


def seconds_to_deliver(receipt: PushedReceipt) -> float | None:
    """Time to deliver of a delivered receipt, from its dates."""
    if receipt.status != DELIVERED or receipt.send_ts is None or receipt.receive_ts is None:
        return None
    return receipt.receive_ts - receipt.send_ts


def epoch(text: str | None) -> float | None:
    """A receipt date as epoch seconds, or ``None``."""
    moment = parse_receipt_date(text)
    return moment.timestamp() if moment is not None else None


class ReceiptUpdate(NamedTuple):
    """A receipts row's new values, in the order of the tracker's UPDATE statement."""

    status: str
    error_code: str | None
    error_description: str | None
    send_date: str | None
    receive_date: str | None
    seconds: float | None
    to_number: str | None


def receipt_update(answer: QueryMessageResult | BusinessError) -> ReceiptUpdate:
    """What one QueryMessage answer (or its refusal) changes in the message's receipts row."""
    if isinstance(answer, BusinessError):  # e.g. a MessageId the API does not know
        return ReceiptUpdate(QUERY_FAILED, answer.code, answer.message, None, None, None, None)
    status = receipt_status(answer)
    sent, received = answer.sent_at, answer.received_at
    seconds = (received - sent).total_seconds() if status == DELIVERED and sent and received else None
    return ReceiptUpdate(
        status,
        answer.error_code or None,
        answer.error_description or None,
        answer.send_date,
        answer.receive_date or None,
        seconds,
        answer.to,
    )
