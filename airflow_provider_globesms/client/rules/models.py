"""Pydantic models of the three operations: validated requests, tolerant responses.

Requests validate every field with the rules in ``validation`` and ``phone`` (raising
``InvalidFieldError``, which pydantic lets through untouched) and render the API's query parameters.
Responses accept the API's string-typed numbers (``"Segments": "1"``) and ignore unknown fields, so a
new field on Alibaba's side never breaks a send.
"""

from __future__ import annotations

import json
from datetime import datetime
from email.utils import parsedate_to_datetime
from enum import IntEnum
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, field_validator

from airflow_provider_globesms.client.errors import InvalidFieldError
from airflow_provider_globesms.client.rules.phone import parse_number
from airflow_provider_globesms.client.rules.validation import (
    check_channel_id,
    check_message,
    check_message_id,
    check_sender,
    check_sms_type,
    check_task_id,
    check_validity_period,
)

MAX_BATCH_NUMBERS = 1000


class _Request(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    _wire: ClassVar[dict[str, str]] = {}

    def to_params(self) -> dict[str, str]:
        """Query parameters for the API, optional ones left out when unset."""
        out: dict[str, str] = {}
        for name, wire in self._wire.items():
            value = getattr(self, name)
            if value is not None:
                out[wire] = value if isinstance(value, str) else str(value)
        return out


class _SendOptions(_Request):
    sender: str | None = None
    sms_type: str | None = None
    task_id: str | None = None
    validity_period: int | None = None
    channel_id: str | None = None

    @field_validator("sender", mode="before")
    @classmethod
    def _sender(cls, v: object) -> str | None:
        return None if v is None else check_sender(v)

    @field_validator("sms_type", mode="before")
    @classmethod
    def _sms_type(cls, v: object) -> str | None:
        return None if v is None else check_sms_type(v)

    @field_validator("task_id", mode="before")
    @classmethod
    def _task_id(cls, v: object) -> str | None:
        return None if v is None else check_task_id(v)

    @field_validator("validity_period", mode="before")
    @classmethod
    def _validity(cls, v: object) -> int | None:
        return None if v is None else check_validity_period(v)

    @field_validator("channel_id", mode="before")
    @classmethod
    def _channel(cls, v: object) -> str | None:
        return None if v is None else check_channel_id(v)


def _region(info: Any) -> str | None:
    context = info.context or {}
    region = context.get("default_region")
    return str(region) if region else None


def _max_length(info: Any) -> int:
    context = info.context or {}
    return int(context.get("max_message_length", 2000))


class SendMessageRequest(_SendOptions):
    """SendMessageToGlobe. Build with ``model_validate(data, context={"max_message_length": n})``."""

    _wire: ClassVar[dict[str, str]] = {
        "to": "To",
        "message": "Message",
        "sender": "From",
        "sms_type": "Type",
        "task_id": "TaskId",
        "validity_period": "ValidityPeriod",
        "channel_id": "ChannelId",
    }

    to: str
    message: str

    @field_validator("to", mode="before")
    @classmethod
    def _to(cls, v: object, info: Any) -> str:
        return parse_number(v, "to", default_region=_region(info)).wire

    @field_validator("message", mode="before")
    @classmethod
    def _message(cls, v: object, info: Any) -> str:
        return check_message(v, _max_length(info))


class BatchSendRequest(_SendOptions):
    """BatchSendMessageToGlobe: up to 1,000 numbers, one text for all or one text per number."""

    _wire: ClassVar[dict[str, str]] = {
        "sender": "From",
        "sms_type": "Type",
        "task_id": "TaskId",
        "validity_period": "ValidityPeriod",
        "channel_id": "ChannelId",
    }

    to: tuple[str, ...]
    messages: tuple[str, ...]

    @field_validator("to", mode="before")
    @classmethod
    def _to(cls, v: object, info: Any) -> tuple[str, ...]:
        if isinstance(v, str) or not hasattr(v, "__iter__"):
            raise InvalidFieldError("to", None, "expected a list of phone numbers")
        region = _region(info)
        numbers = tuple(parse_number(n, f"to[{i}]", default_region=region).wire for i, n in enumerate(v))
        if not numbers:
            raise InvalidFieldError("to", None, "no phone numbers given")
        if len(numbers) > MAX_BATCH_NUMBERS:
            raise InvalidFieldError(
                "to", None, f"{len(numbers)} numbers, more than the {MAX_BATCH_NUMBERS} a batch may hold"
            )
        return numbers

    @field_validator("messages", mode="before")
    @classmethod
    def _messages(cls, v: object, info: Any) -> tuple[str, ...]:
        limit = _max_length(info)
        if isinstance(v, str):
            return (check_message(v, limit),)
        if not hasattr(v, "__iter__"):
            raise InvalidFieldError("message", None, "expected a text or a list of texts")
        return tuple(check_message(m, limit, f"message[{i}]") for i, m in enumerate(v))

    def model_post_init(self, __context: Any) -> None:
        """Refuse a number of texts that is neither one nor one per number."""
        if len(self.messages) not in (1, len(self.to)):
            raise InvalidFieldError(
                "message",
                None,
                f"give one text for all numbers or one per number: {len(self.messages)} texts, {len(self.to)} numbers",
            )

    def to_params(self) -> dict[str, str]:
        """The API parameters: ``To`` and ``Message`` as JSON lists, one text per number."""
        params = super().to_params()
        texts = self.messages if len(self.messages) == len(self.to) else self.messages * len(self.to)
        params["To"] = json.dumps(list(self.to))
        params["Message"] = json.dumps(list(texts), ensure_ascii=False)
        return params


class QueryMessageRequest(_Request):
    """QueryMessage: the delivery receipt of one ``MessageId``."""

    _wire: ClassVar[dict[str, str]] = {"message_id": "MessageId"}

    message_id: str

    @field_validator("message_id", mode="before")
    @classmethod
    def _message_id(cls, v: object) -> str:
        return check_message_id(v)


# --- Responses ---------------------------------------------------------------------------------------


class _Response(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True, frozen=True)

    request_id: str | None = Field(default=None, alias="RequestId")
    response_code: str | None = Field(default=None, alias="ResponseCode")
    response_description: str | None = Field(default=None, alias="ResponseDescription")


class NumberDetail(BaseModel):
    """The country, region and carrier of a phone number, as the API reports them."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True, frozen=True)

    country: str | None = Field(default=None, alias="Country")
    region: str | None = Field(default=None, alias="Region")
    carrier: str | None = Field(default=None, alias="Carrier")


class SendMessageResult(_Response):
    """The answer to SendMessageToGlobe: the ``MessageId``, segments billed and number details."""

    message_id: str | None = Field(default=None, alias="MessageId")
    segments: int = Field(default=0, alias="Segments")
    to: str | None = Field(default=None, alias="To")
    sender: str | None = Field(default=None, alias="From")
    number_detail: NumberDetail | None = Field(default=None, alias="NumberDetail")


def _json_list(value: object) -> list[str]:
    """Batch fields arrive as JSON-array strings (``"[\\"1\\",\\"2\\"]"``), sometimes as real lists."""
    if value is None or value == "":
        return []
    if isinstance(value, str):
        value = json.loads(value)
    if not isinstance(value, list):
        return [str(value)]
    return [str(v) for v in value]


class BatchSendResult(_Response):
    """The answer to BatchSendMessageToGlobe: how many were accepted, the failed numbers and the MessageIds."""

    sender: str | None = Field(default=None, alias="From")
    success_count: int = Field(default=0, alias="SuccessCount")
    failed_list: list[str] = Field(default_factory=list, alias="FailedList")
    message_id_list: list[str] = Field(default_factory=list, alias="MessageIdList")

    @field_validator("failed_list", "message_id_list", mode="before")
    @classmethod
    def _lists(cls, v: object) -> list[str]:
        return _json_list(v)


class DeliveryStatus(IntEnum):
    """A message's Status in QueryMessage and receipts, as the API numbers it (one vocabulary for the
    client, the receipts tracker and the emulator)."""

    DELIVERED = 1
    FAILED = 2
    SENDING = 3
    EXPIRED = 6  # pushed receipts only

    @property
    def label(self) -> str:
        """The status as the receipts tracker and the emulator name it: ``delivered``, ``sending``..."""
        return self.name.lower()


def parse_receipt_date(value: str | None) -> datetime | None:
    """``Mon, 24 Dec 2018 16:58:22 +0800`` (RFC 2822), tolerating an empty value."""
    if not value:
        return None
    try:
        return parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None


class QueryMessageResult(_Response):
    """The answer to QueryMessage: one message's delivery status and dates."""

    message_id: str | None = Field(default=None, alias="MessageId")
    status: int | None = Field(default=None, alias="Status")
    error_code: str | None = Field(default=None, alias="ErrorCode")
    error_description: str | None = Field(default=None, alias="ErrorDescription")
    message: str | None = Field(default=None, alias="Message")
    to: str | None = Field(default=None, alias="To")
    send_date: str | None = Field(default=None, alias="SendDate")
    receive_date: str | None = Field(default=None, alias="ReceiveDate")
    number_detail: NumberDetail | None = Field(default=None, alias="NumberDetail")

    @field_validator("status", mode="before")
    @classmethod
    def _status(cls, v: object) -> int | None:
        if v is None or v == "":
            return None
        return int(str(v))

    @property
    def delivered(self) -> bool:
        """Whether the receipt says delivered (``ErrorCode`` ``DELIVERED``)."""
        # Pages disagree on what Status 3 means; ErrorCode DELIVERED is unambiguous.
        return (self.error_code or "").upper() == "DELIVERED"

    @property
    def failed(self) -> bool:
        """Whether delivery failed or expired."""
        return not self.delivered and self.status in (DeliveryStatus.FAILED, DeliveryStatus.EXPIRED)

    @property
    def final(self) -> bool:
        """Whether the receipt is final (delivered or failed)."""
        return self.delivered or self.failed

    @property
    def sent_at(self) -> datetime | None:
        """``SendDate`` parsed, or ``None``."""
        return parse_receipt_date(self.send_date)

    @property
    def received_at(self) -> datetime | None:
        """``ReceiveDate`` parsed, or ``None``."""
        return parse_receipt_date(self.receive_date)
