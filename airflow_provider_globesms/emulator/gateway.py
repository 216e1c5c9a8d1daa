"""The emulated gateway: authentication, QPS caps, faults, business rules and the simulated carrier.

``Gateway.handle`` takes what arrived (method, raw query, headers, body) and returns an ``Outcome``:
the reply, plus how to deliver it (added latency, hold it, or reset the connection instead). It knows
nothing of HTTP servers, so it is tested directly as well as over HTTP. Business rules reuse the
client's validators and segment counter, so both sides agree by construction.
"""

from __future__ import annotations

import json
import random
import time
import uuid
from collections import Counter, defaultdict, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from phonenumbers import PhoneNumber as PhoneNumberObject
from phonenumbers import carrier as phone_carrier

from airflow_provider_globesms.client.client import BATCH_SEND, QUERY, SEND
from airflow_provider_globesms.client.errors import InvalidFieldError
from airflow_provider_globesms.client.models import MAX_BATCH_NUMBERS
from airflow_provider_globesms.client.phone import PhoneNumber, parse_number
from airflow_provider_globesms.client.segments import count_segments
from airflow_provider_globesms.client.signing import API_VERSION
from airflow_provider_globesms.client.validation import (
    check_channel_id,
    check_sender,
    check_sms_type,
    check_task_id,
    check_validity_period,
)
from airflow_provider_globesms.emulator.config import EmulatorConfig
from airflow_provider_globesms.emulator.store import (
    STATUS_DELIVERED,
    STATUS_FAILED,
    MessageStore,
    StoredMessage,
    receipt_date,
)
from airflow_provider_globesms.emulator.verify import GatewayRefusal, Verifier

ACTIONS = (SEND, BATCH_SEND, QUERY)
SEND_ACTIONS = (SEND, BATCH_SEND)

# Receipt error codes a carrier reports for failed messages (SMPP-style), with their weights.
FAILURE_CODES = (
    ("UNDELIV", "The message could not be delivered to the handset.", 5),
    ("EXPIRED", "The message validity period expired before delivery.", 2),
    ("REJECTD", "The carrier rejected the message.", 2),
    ("BLACKLIST", "The number is on the carrier's block list.", 1),
)

# Enough country names for realistic NumberDetail without phonenumbers.geocoder (~100 MB).
COUNTRY_NAMES = {
    "HK": ("China", "HongKong"),
    "MO": ("China", "Macao"),
    "TW": ("China", "Taiwan"),
    "SG": ("Singapore", "Singapore"),
    "MY": ("Malaysia", "Malaysia"),
    "ID": ("Indonesia", "Indonesia"),
    "TH": ("Thailand", "Thailand"),
    "PH": ("Philippines", "Philippines"),
    "VN": ("Vietnam", "Vietnam"),
    "JP": ("Japan", "Japan"),
    "KR": ("Korea", "Korea"),
    "IN": ("India", "India"),
    "AU": ("Australia", "Australia"),
    "NZ": ("New Zealand", "New Zealand"),
    "US": ("United States", "United States"),
    "CA": ("Canada", "Canada"),
    "GB": ("United Kingdom", "United Kingdom"),
    "DE": ("Germany", "Germany"),
    "FR": ("France", "France"),
    "ES": ("Spain", "Spain"),
    "IT": ("Italy", "Italy"),
    "BR": ("Brazil", "Brazil"),
    "MX": ("Mexico", "Mexico"),
    "AE": ("United Arab Emirates", "United Arab Emirates"),
    "SA": ("Saudi Arabia", "Saudi Arabia"),
}


@dataclass
class Outcome:
    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)
    action: str = ""
    reset: bool = False  # reset the TCP connection instead of replying (nothing was processed)
    hold: float = 0.0  # seconds to hold the reply (the message was accepted)
    latency: float = 0.0  # seconds of simulated network latency before replying


class Window:
    """Arrivals of one (AccessKeyId, action) over the last second: the gateway's QPS counter."""

    __slots__ = ("accepted", "offered", "peak_accepted", "peak_offered")

    def __init__(self) -> None:
        self.accepted: deque[float] = deque()
        self.offered: deque[float] = deque()
        self.peak_accepted = 0
        self.peak_offered = 0

    @staticmethod
    def _trim(times: deque[float], now: float) -> None:
        edge = now - 1.0
        while times and times[0] <= edge:
            times.popleft()

    def offer(self, now: float, cap: float) -> float | None:
        """Count an arrival; return the seconds left until a slot frees if it is over the cap."""
        self._trim(self.offered, now)
        self.offered.append(now)
        self.peak_offered = max(self.peak_offered, len(self.offered))
        self._trim(self.accepted, now)
        if len(self.accepted) >= cap:
            return max(0.001, self.accepted[0] + 1.0 - now)
        self.accepted.append(now)
        self.peak_accepted = max(self.peak_accepted, len(self.accepted))
        return None

    def rate(self, now: float) -> int:
        self._trim(self.offered, now)
        return len(self.offered)


def number_detail(number: PhoneNumber) -> dict[str, str]:
    region = number.region
    country, area = COUNTRY_NAMES.get(region, (region, region))
    numobj = PhoneNumberObject(country_code=number.country_code, national_number=int(number.national_number))
    return {"Country": country, "Region": area, "Carrier": phone_carrier.name_for_valid_number(numobj, "en")}


class Gateway:
    def __init__(self, config: EmulatorConfig | None = None, clock: Callable[[], float] = time.time) -> None:
        self.config = config or EmulatorConfig()
        self.clock = clock
        self.store = MessageStore(self.config.db)
        self.verifier = Verifier(self.config.keys, self.config.timestamp_tolerance)
        self.random = random.Random(self.config.seed)
        self.windows: defaultdict[tuple[str, str], Window] = defaultdict(Window)
        self.counts: defaultdict[str, Counter[str]] = defaultdict(Counter)
        self.started_at = clock()
        self._id_prefix = f"{int(self.started_at * 1000) % 10**13:013d}"
        self._id_counter = 0

    # --- entry point ----------------------------------------------------------------------------

    def handle(self, method: str, query: bytes, headers: Mapping[str, str], body: bytes = b"") -> Outcome:
        now = self.clock()
        request_id = str(uuid.uuid4()).upper()
        # For counting only (the operation is the *signed* Action, known after verification); anything but
        # the three actions shares one bucket, so arbitrary names cannot grow the stats.
        claimed = headers.get("x-acs-action") or _query_value(query, b"Action") or "Unknown"
        action = claimed if claimed in ACTIONS else "Unknown"
        outcome = self._handle(method, query, headers, body, now, request_id, action)
        outcome.action = action
        outcome.body.setdefault("RequestId", request_id)
        outcome.headers.setdefault("x-acs-request-id", request_id)
        cfg = self.config
        if cfg.latency_ms or cfg.latency_jitter_ms:
            jitter = self.random.uniform(-cfg.latency_jitter_ms, cfg.latency_jitter_ms)
            outcome.latency = max(0.0, cfg.latency_ms + jitter) / 1000.0
        return outcome

    def _handle(
        self,
        method: str,
        query: bytes,
        headers: Mapping[str, str],
        body: bytes,
        now: float,
        request_id: str,
        action: str,
    ) -> Outcome:
        counts = self.counts[action]
        counts["requests"] += 1
        fault = self._draw_fault(action)
        if fault:
            counts[f"fault_{fault}"] += 1
        # Front-end faults: the request is dropped before anything processes it.
        if fault == "reset":
            return Outcome(0, {}, reset=True)
        if fault == "error_5xx":
            unavailable = GatewayRefusal(
                503, "ServiceUnavailable", "The request has failed due to a temporary failure."
            )
            return self._refusal(unavailable, headers, request_id, counts)
        try:
            if method not in ("POST", "GET"):
                raise GatewayRefusal(405, "UnsupportedHTTPMethod", f"HTTP method {method} is not supported.")
            auth = self.verifier.verify(method, query, headers, body, now)
            if auth.action not in ACTIONS:
                raise GatewayRefusal(
                    404, "InvalidAction.NotFound", "Specified api is not found, please check your url and method."
                )
            if auth.version != API_VERSION:
                raise GatewayRefusal(
                    400,
                    "InvalidVersion",
                    f"Specified parameter Version {auth.version!r} is not "
                    f"valid for {auth.action}; expected {API_VERSION}.",
                )
            if fault == "throttle":
                raise self._throttled(0.05)
            signed = auth.action  # route and rate-limit by what the signature covers, not an unsigned header
            cap = {SEND: self.config.qps, BATCH_SEND: self.config.batch_qps, QUERY: self.config.query_qps}[signed]
            wait = self.windows[(auth.access_key_id, signed)].offer(now, cap)
            if wait is not None:
                raise self._throttled(wait, cap)
            handler = {SEND: self._send, BATCH_SEND: self._batch_send, QUERY: self._query}[signed]
            outcome = handler(auth.access_key_id, auth.params, now, request_id)
        except GatewayRefusal as refusal:
            return self._refusal(refusal, headers, request_id, counts)
        code = outcome.body.get("ResponseCode")
        counts["ok" if code == "OK" else "business_error"] += 1
        if code != "OK":
            self.counts["codes"][str(code)] += 1
        elif fault == "hang":
            outcome.hold = self.config.faults.hang_seconds
        elif fault == "internal_error":
            # Accepted and stored, yet the caller sees a 500: the ambiguous case.
            internal = GatewayRefusal(
                500, "InternalError", "The request processing has failed due to some unknown error."
            )
            return self._refusal(internal, headers, request_id, counts)
        return outcome

    def _draw_fault(self, action: str) -> str | None:
        faults = self.config.faults
        if faults.script:
            kind, _, target = faults.script[0].partition(":")
            if (target == action) if target else action in SEND_ACTIONS:
                faults.script.popleft()
                return kind
        if action not in SEND_ACTIONS:
            return None
        for kind in faults.RATIOS:
            share = getattr(faults, kind)
            if share and self.random.random() < share:
                return kind
        return None

    def _throttled(self, wait: float, cap: float | None = None) -> GatewayRefusal:
        millis = max(1, int(wait * 1000))
        limit = f"Limit:{int(cap)}," if cap else ""
        return GatewayRefusal(
            400,
            "Throttling.User",
            "Request was denied due to user flow control.",
            {"x-ratelimit-user-api": f"{limit}Remain:0,TimeLeft:{millis}", "x-acs-retry-after": str(millis)},
        )

    def _refusal(
        self, refusal: GatewayRefusal, headers: Mapping[str, str], request_id: str, counts: Counter[str]
    ) -> Outcome:
        counts["throttled" if refusal.code.startswith("Throttling") else "refused"] += 1
        self.counts["codes"][refusal.code] += 1
        body = {
            "RequestId": request_id,
            "HostId": headers.get("host", "dysmsapi.ap-southeast-1.aliyuncs.com"),
            "Code": refusal.code,
            "Message": refusal.message,
            "Recommend": "",
        }
        return Outcome(refusal.status, body, dict(refusal.headers))

    # --- operations -----------------------------------------------------------------------------

    def _next_id(self) -> str:
        self._id_counter += 1
        return f"{self._id_prefix}{self._id_counter:07d}"

    def _verdict(self) -> tuple[int, str, str]:
        if self.config.failure_rate and self.random.random() < self.config.failure_rate:
            codes = [c[:2] for c in FAILURE_CODES]
            code, text = self.random.choices(codes, weights=[c[2] for c in FAILURE_CODES])[0]
            return STATUS_FAILED, code, text
        return STATUS_DELIVERED, "DELIVERED", "success"

    def _accept(
        self,
        key_id: str,
        action: str,
        number: PhoneNumber,
        text: str,
        options: dict[str, Any],
        now: float,
        request_id: str,
    ) -> tuple[StoredMessage, dict[str, str]]:
        segments = count_segments(text)
        detail = number_detail(number)
        status, code, description = self._verdict()
        delay = self.config.delivery_delay * self.random.uniform(0.8, 1.2) if self.config.delivery_delay else 0.0
        message = StoredMessage(
            message_id=self._next_id(),
            access_key_id=key_id,
            action=action,
            to_number=number.wire,
            sender=options.get("sender"),
            message=text,
            segments=segments.segments,
            encoding=segments.encoding,
            sms_type=options.get("sms_type"),
            task_id=options.get("task_id"),
            channel_id=options.get("channel_id"),
            validity_period=options.get("validity_period"),
            country=detail["Country"],
            region=detail["Region"],
            carrier=detail["Carrier"],
            submitted_at=now,
            final_at=now + delay,
            final_status=status,
            error_code=code,
            error_description=description,
            request_id=request_id,
        )
        return message, detail

    @staticmethod
    def _business(code: str, description: str) -> Outcome:
        return Outcome(200, {"ResponseCode": code, "ResponseDescription": description})

    def _options(self, params: Mapping[str, str]) -> dict[str, Any] | Outcome:
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

    def _text(self, text: str, field: str = "Message") -> Outcome | None:
        if len(text) > self.config.max_message_length:
            return self._business(
                "INVALID_PARAMETERS",
                f"{field} has {len(text)} characters, more than {self.config.max_message_length}.",
            )
        return None

    def _send(self, key_id: str, params: Mapping[str, str], now: float, request_id: str) -> Outcome:
        for required in ("To", "Message"):
            if not params.get(required):
                raise GatewayRefusal(400, f"Missing{required}", f"{required} is mandatory for this action.")
        try:
            number = parse_number(params["To"], refuse_ambiguous=False)
        except InvalidFieldError as exc:
            return self._business("MOBILE_NUMBER_ILLEGAL", f"To {exc.value}: {exc.reason}")
        options = self._options(params)
        if isinstance(options, Outcome):
            return options
        text = params["Message"]
        too_long = self._text(text)
        if too_long:
            return too_long
        message, detail = self._accept(key_id, SEND, number, text, options, now, request_id)
        self.store.add(message)
        return Outcome(
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

    def _batch_send(self, key_id: str, params: Mapping[str, str], now: float, request_id: str) -> Outcome:
        for required in ("To", "Message"):
            if not params.get(required):
                raise GatewayRefusal(400, f"Missing{required}", f"{required} is mandatory for this action.")
        try:
            numbers = json.loads(params["To"])
        except ValueError:
            return self._business("INVALID_JSON_PARAM", "To must be a JSON array of numbers.")
        if not isinstance(numbers, list) or not numbers:
            return self._business("INVALID_JSON_PARAM", "To must be a non-empty JSON array of numbers.")
        if len(numbers) > MAX_BATCH_NUMBERS:
            return self._business("MOBILE_COUNT_OVER_LIMIT", f"{len(numbers)} numbers; at most {MAX_BATCH_NUMBERS}.")
        raw_message = params["Message"]
        texts: list[str]
        try:
            decoded = json.loads(raw_message) if raw_message.lstrip().startswith("[") else raw_message
        except ValueError:
            return self._business("INVALID_JSON_PARAM", "Message must be a text or a JSON array of texts.")
        texts = [str(t) for t in decoded] if isinstance(decoded, list) else [raw_message]
        if len(texts) not in (1, len(numbers)):
            return self._business("INVALID_PARAMETERS", "Give one text, or one text per number.")
        for index, text in enumerate(texts):
            too_long = self._text(text, f"Message[{index}]")
            if too_long:
                return too_long
        options = self._options(params)
        if isinstance(options, Outcome):
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
            accepted.append(self._accept(key_id, BATCH_SEND, number, text, options, now, request_id)[0])
        if accepted:
            self.store.add_many(accepted)
        return Outcome(
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

    def _query(self, key_id: str, params: Mapping[str, str], now: float, request_id: str) -> Outcome:
        message_id = params.get("MessageId", "")
        if not message_id:
            raise GatewayRefusal(400, "MissingMessageId", "MessageId is mandatory for this action.")
        message = self.store.get(message_id)
        if message is None or message.access_key_id != key_id:
            return self._business("INVALID_PARAMETERS", f"MessageId {message_id} is not found.")
        status = message.status(now)
        final = status != 3
        return Outcome(
            200,
            {
                "ResponseCode": "OK",
                "ResponseDescription": "success",
                "MessageId": message.message_id,
                "To": message.to_number,
                "Message": message.message,
                "Status": str(status),
                "ErrorCode": message.error_code if final else "",
                "ErrorDescription": message.error_description if final else "",
                "SendDate": receipt_date(message.submitted_at),
                "ReceiveDate": receipt_date(message.final_at) if final else "",
                "NumberDetail": {"Country": message.country, "Region": message.region, "Carrier": message.carrier},
            },
        )

    # --- inspection -----------------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        now = self.clock()
        actions = {a: dict(c) for a, c in self.counts.items() if a != "codes"}
        windows: dict[str, dict[str, Any]] = {}
        for (key_id, action), window in self.windows.items():
            windows.setdefault(action, {})[key_id] = {
                "rate_last_second": window.rate(now),
                "peak_offered_1s": window.peak_offered,
                "peak_accepted_1s": window.peak_accepted,
            }
        return {
            "uptime_seconds": round(now - self.started_at, 3),
            "actions": actions,
            "codes": dict(self.counts["codes"]),
            "windows": windows,
            "messages": {"total": self.store.count(), **self.store.status_counts(now)},
            "store_errors": self.store.store_errors,
        }

    def reset_state(self) -> int:
        """Forget messages, counters and windows (``DELETE /_emulator/messages``)."""
        removed = self.store.clear()
        self.windows.clear()
        self.counts.clear()
        return removed


def _query_value(query: bytes, name: bytes) -> str | None:
    # Cheap look-up of Action for V1 requests, before the full parse in the verifier.
    for part in query.split(b"&"):
        key, _, value = part.partition(b"=")
        if key == name:
            return value.decode("latin-1")
    return None
