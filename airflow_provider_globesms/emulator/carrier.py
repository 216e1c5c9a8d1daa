"""The simulated carrier: each accepted message gets its final verdict (delivered, or failed with a
carrier's error code, at ``failure_rate``) and the moment its receipt becomes final (``delivery_delay``)."""

from __future__ import annotations

import random
from typing import Any

from phonenumbers import PhoneNumber as PhoneNumberObject
from phonenumbers import carrier as phone_carrier

from airflow_provider_globesms.client.rules.models import DeliveryStatus
from airflow_provider_globesms.client.rules.phone import PhoneNumber
from airflow_provider_globesms.client.rules.segments import count_segments
from airflow_provider_globesms.emulator.config import EmulatorConfig
from airflow_provider_globesms.emulator.store import StoredMessage

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


def number_detail(number: PhoneNumber) -> dict[str, str]:
    """The API's NumberDetail (country, region, carrier) of a number."""
    region = number.region
    country, area = COUNTRY_NAMES.get(region, (region, region))
    numobj = PhoneNumberObject(country_code=number.country_code, national_number=int(number.national_number))
    return {"Country": country, "Region": area, "Carrier": phone_carrier.name_for_valid_number(numobj, "en")}


class Carrier:
    """Turns an accepted request into a stored message with its verdict, ids and receipt time."""

    def __init__(self, config: EmulatorConfig, rng: random.Random, started_at: float) -> None:
        self.config = config
        self.random = rng
        self._id_prefix = f"{int(started_at * 1000) % 10**13:013d}"
        self._id_counter = 0

    def _next_id(self) -> str:
        self._id_counter += 1
        return f"{self._id_prefix}{self._id_counter:07d}"

    def _verdict(self) -> tuple[int, str, str]:
        if self.config.failure_rate and self.random.random() < self.config.failure_rate:
            codes = [c[:2] for c in FAILURE_CODES]
            code, text = self.random.choices(codes, weights=[c[2] for c in FAILURE_CODES])[0]
            return DeliveryStatus.FAILED, code, text
        return DeliveryStatus.DELIVERED, "DELIVERED", "success"

    def accept(
        self,
        key_id: str,
        action: str,
        number: PhoneNumber,
        text: str,
        options: dict[str, Any],
        now: float,
        request_id: str,
    ) -> tuple[StoredMessage, dict[str, str]]:
        """The message as stored (verdict drawn now, final after the delivery delay) and its NumberDetail."""
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
