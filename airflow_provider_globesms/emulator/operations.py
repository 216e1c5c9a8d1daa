"""The three operations, SendMessageToGlobe, BatchSendMessageToGlobe and QueryMessage, after the request
is authenticated and within its cap. Business rules reuse the client's validators and segment counter, so
both sides agree by construction; a business refusal is an HTTP 200 with its ResponseCode."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from airflow_provider_globesms.client.errors import InvalidFieldError
from airflow_provider_globesms.client.rules.models import MAX_BATCH_NUMBERS, DeliveryStatus
from airflow_provider_globesms.client.rules.phone import parse_number
from airflow_provider_globesms.client.rules.validation import (
    check_channel_id,
    check_sender,
    check_sms_type,
    check_task_id,
    check_validity_period,
)
from airflow_provider_globesms.client.wire.signing import BATCH_SEND, SEND
from airflow_provider_globesms.emulator.carrier import Carrier
from airflow_provider_globesms.emulator.config import EmulatorConfig
from airflow_provider_globesms.emulator.store import MessageStore, StoredMessage, receipt_date
from airflow_provider_globesms.emulator.verify import GatewayRefusal


@dataclass
class GatewayReply:
    """A reply, and how to deliver it: after added latency, held, or a reset connection instead."""

    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)
    action: str = ""
    reset: bool = False  # reset the TCP connection instead of replying (nothing was processed)
    hold: float = 0.0  # seconds to hold the reply (the message was accepted)
    latency: float = 0.0  # seconds of simulated network latency before replying


class Operations:
    """The API's operations over the message store and the simulated carrier."""

    def __init__(self, config: EmulatorConfig, store: MessageStore, carrier: Carrier) -> None:
        self.config = config
        self.store = store
        self.carrier = carrier

    @staticmethod
    def _business(code: str, description: str) -> GatewayReply:
        return GatewayReply(200, {"ResponseCode": code, "ResponseDescription": description})

    def _options(self, params: Mapping[str, str]) -> dict[str, Any] | GatewayReply:
        """Optional fields, checked with the client's own rules; a refusal is a business answer."""
        options: dict[str, Any] = {}
        checks: tuple[tuple[str, str, Callable[[Any], Any], str], ...] = (
            ("From", "sender", check_sender, "INVALID_SENDERID"),
            ("Type", "sms_type", check_sms_type, "INVALID_PARAMETERS"),
            ("TaskId", "task_id", check_task_id, "INVALID_PARAMETERS"),
            ("ValidityPeriod", "validity_period", check_validity_period, "INVALID_PARAMETERS"),
            ("ChannelId", "channel_id", check_channel_id, "INVALID_PARAMETERS"),
        )
        for wire, name, check, code in checks:
            if wire in params:
                try:
                    options[name] = check(params[wire])
                except InvalidFieldError as exc:
                    return self._business(code, f"{wire}: {exc.reason}")
        return options

    def _text(self, text: str, field: str = "Message") -> GatewayReply | None:
        if len(text) > self.config.max_message_length:
            return self._business(
                "INVALID_PARAMETERS",
                f"{field} has {len(text)} characters, more than {self.config.max_message_length}.",
            )
        return None

    def send(self, key_id: str, params: Mapping[str, str], now: float, request_id: str) -> GatewayReply:
        """SendMessageToGlobe: one number, one text."""
        _require(params, "To", "Message")
        try:
            number = parse_number(params["To"], refuse_ambiguous=False)
        except InvalidFieldError as exc:
            return self._business("MOBILE_NUMBER_ILLEGAL", f"To {exc.value}: {exc.reason}")
        options = self._options(params)
        if isinstance(options, GatewayReply):
            return options
        text = params["Message"]
        too_long = self._text(text)
        if too_long:
            return too_long
        message, detail = self.carrier.accept(key_id, SEND, number, text, options, now, request_id)
        self.store.add(message)
        return GatewayReply(
            200,
            {
                "ResponseCode": "OK",
                "ResponseDescription": "The SMS Send Request was accepted",
                "MessageId": message.message_id,
                "Segments": str(message.segments),
                "To": number.wire,
                "From": options.get("sender", ""),
                "NumberDetail": detail,
            },
        )

    def _batch_texts(self, raw_message: str, count: int) -> list[str] | GatewayReply:
        """One text for every number, or one per number (a JSON array), each within the length limit."""
        try:
            decoded = json.loads(raw_message) if raw_message.lstrip().startswith("[") else raw_message
        except ValueError:
            return self._business("INVALID_JSON_PARAM", "Message must be a text or a JSON array of texts.")
        texts = [str(t) for t in decoded] if isinstance(decoded, list) else [raw_message]
        if len(texts) not in (1, count):
            return self._business("INVALID_PARAMETERS", "Give one text, or one text per number.")
        for index, text in enumerate(texts):
            too_long = self._text(text, f"Message[{index}]")
            if too_long:
                return too_long
        return texts

    def batch_send(self, key_id: str, params: Mapping[str, str], now: float, request_id: str) -> GatewayReply:
        """BatchSendMessageToGlobe: up to 1,000 numbers, one text or one per number."""
        _require(params, "To", "Message")
        try:
            numbers = json.loads(params["To"])
        except ValueError:
            return self._business("INVALID_JSON_PARAM", "To must be a JSON array of numbers.")
        if not isinstance(numbers, list) or not numbers:
            return self._business("INVALID_JSON_PARAM", "To must be a non-empty JSON array of numbers.")
        if len(numbers) > MAX_BATCH_NUMBERS:
            return self._business("MOBILE_COUNT_OVER_LIMIT", f"{len(numbers)} numbers; at most {MAX_BATCH_NUMBERS}.")
        texts = self._batch_texts(params["Message"], len(numbers))
        if isinstance(texts, GatewayReply):
            return texts
        options = self._options(params)
        if isinstance(options, GatewayReply):
            return options
        accepted: list[StoredMessage] = []
        failed: list[str] = []
        for index, raw in enumerate(numbers):
            try:
                number = parse_number(str(raw), refuse_ambiguous=False)
            except InvalidFieldError:
                failed.append(str(raw))
                continue
            text = texts[index] if len(texts) > 1 else texts[0]
            accepted.append(self.carrier.accept(key_id, BATCH_SEND, number, text, options, now, request_id)[0])
        if accepted:
            self.store.add_many(accepted)
        return GatewayReply(
            200,
            {
                "ResponseCode": "OK",
                "ResponseDescription": "The SMS Send Request was accepted",
                "From": options.get("sender", ""),
                "SuccessCount": str(len(accepted)),
                "FailedList": json.dumps(failed),
                "MessageIdList": json.dumps([m.message_id for m in accepted]),
            },
        )

    def query(self, key_id: str, params: Mapping[str, str], now: float, request_id: str) -> GatewayReply:
        """QueryMessage: a message's status as the carrier has it now (3 sending, 1 delivered, 2 failed)."""
        message_id = params.get("MessageId", "")
        if not message_id:
            raise GatewayRefusal(400, "MissingMessageId", "MessageId is mandatory for this action.")
        message = self.store.get(message_id)
        if message is None or message.access_key_id != key_id:
            return self._business("INVALID_PARAMETERS", f"MessageId {message_id} is not found.")
        status = message.status(now)
        final = status != DeliveryStatus.SENDING
        return GatewayReply(
            200,
            {
                "ResponseCode": "OK",
                "ResponseDescription": "success",
                "MessageId": message.message_id,
                "To": message.to_number,
                "Message": message.message,
                "Status": str(int(status)),  # str() of an IntEnum is its name before Python 3.11
                "ErrorCode": message.error_code if final else "",
                "ErrorDescription": message.error_description if final else "",
                "SendDate": receipt_date(message.submitted_at),
                "ReceiveDate": receipt_date(message.final_at) if final else "",
                "NumberDetail": {"Country": message.country, "Region": message.region, "Carrier": message.carrier},
            },
        )


def _require(params: Mapping[str, str], *names: str) -> None:
    """Refuse a request without a parameter its action needs, as the gateway does (HTTP 400)."""
    for name in names:
        if not params.get(name):
            raise GatewayRefusal(400, f"Missing{name}", f"{name} is mandatory for this action.")
