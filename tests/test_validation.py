"""Every validation rule refuses a bad value before anything reaches the API (the emulator counts)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from airflow_provider_globesms.client import (
    Credentials,
    GlobeSmsClient,
    InvalidFieldError,
    mask_number,
    parse_number,
)
from airflow_provider_globesms.emulator import EmulatorConfig, EmulatorServer


@pytest.fixture(scope="module")
def emulator() -> Iterator[EmulatorServer]:
    with EmulatorServer(EmulatorConfig(delivery_delay=0)) as server:
        yield server


@pytest.fixture
def client(emulator: EmulatorServer) -> Iterator[GlobeSmsClient]:
    emulator.clear()
    with GlobeSmsClient(Credentials("AKID", "SECRET"), endpoint=emulator.url) as c:
        yield c


def requests_received(emulator: EmulatorServer) -> int:
    return sum(counts.get("requests", 0) for counts in emulator.stats()["actions"].values())


GOOD = {"to": "+85291234567", "message": "Your report is ready."}

# (field, value, phrase the reason must contain, the field name in the error)
BAD_SEND_VALUES: list[tuple[str, Any, str, str]] = [
    ("to", "", "empty", "to"),
    ("to", "hello", "only digits", "to"),
    ("to", "91234567", "include the country dialing code", "to"),  # Hong Kong number, national form
    ("to", "+85212345678", "not a valid international number", "to"),  # no such HK range
    ("to", "+8613800138000", "Chinese mainland", "to"),
    ("to", "8613800138000", "Chinese mainland", "to"),  # Alibaba's bare form, still +86
    ("to", "0085291234567", "00 prefix", "to"),
    ("to", None, "expected a phone number", "to"),
    ("to", ["+85291234567"], "expected a phone number", "to"),
    ("message", "", "empty", "message"),
    ("message", "   \n ", "empty", "message"),
    ("message", "x" * 2001, "2001 characters", "message"),
    ("message", 42, "expected text", "message"),
    ("sender", "ABCDEFGHIJKL", "at most 11", "sender"),  # 12 letters
    ("sender", "1234567890123456", "at most 15", "sender"),  # 16 digits
    ("sender", "Ali-Cloud", "only the letters", "sender"),
    ("sender", "Alibaba Cloud", "only the letters", "sender"),
    ("sender", "", "empty", "sender"),
    ("task_id", "", "empty", "campaign_id"),
    ("task_id", "t" * 256, "more than 255", "campaign_id"),
    ("validity_period", 0, "positive", "validity_period"),
    ("validity_period", -60, "positive", "validity_period"),
    ("validity_period", "ten", "positive whole number", "validity_period"),
    ("validity_period", 1.5, "positive whole number", "validity_period"),
    ("validity_period", True, "positive", "validity_period"),
    ("sms_type", "PROMO", "OTP, NOTIFY, MKT", "sms_type"),
    ("sms_type", 1, "OTP, NOTIFY, MKT", "sms_type"),
    ("channel_id", "", "non-empty", "channel_id"),
]


@pytest.mark.parametrize(("field", "value", "reason", "error_field"), BAD_SEND_VALUES)
def test_send_refuses_bad_value_before_any_request(
    client: GlobeSmsClient, emulator: EmulatorServer, field: str, value: Any, reason: str, error_field: str
) -> None:
    with pytest.raises(InvalidFieldError) as caught:
        client.send_message(**{**GOOD, field: value})
    assert caught.value.field == error_field
    assert reason in caught.value.reason
    assert requests_received(emulator) == 0


def test_refused_numbers_are_masked_in_the_error(client: GlobeSmsClient) -> None:
    with pytest.raises(InvalidFieldError) as caught:
        client.send_message("+8613800138000", "hello")
    assert "13800138000" not in str(caught.value)
    assert "+86****8000" in str(caught.value)


def test_message_length_limit_is_configurable(emulator: EmulatorServer) -> None:
    emulator.clear()
    with GlobeSmsClient(Credentials("AKID", "SECRET"), endpoint=emulator.url, max_message_length=1500) as client:
        with pytest.raises(InvalidFieldError, match="more than the 1500 allowed"):
            client.send_message("+85291234567", "x" * 1501)
        assert requests_received(emulator) == 0
        assert client.send_message("+85291234567", "x" * 1500).response_code == "OK"


@pytest.mark.parametrize(
    ("to", "message", "reason"),
    [
        (["+85291234567"] * 1001, "hi", "more than the 1000"),
        ([], "hi", "no phone numbers"),
        ("+85291234567", "hi", "expected a list"),
        (["+85291234567", "+8613800138000"], "hi", "Chinese mainland"),
        (["+85291234567", "+85291234568"], ["a", "b", "c"], "one text for all numbers or one per number"),
        (["+85291234567"], [""], "empty"),
    ],
)
def test_batch_refuses_before_any_request(
    client: GlobeSmsClient, emulator: EmulatorServer, to: Any, message: Any, reason: str
) -> None:
    with pytest.raises(InvalidFieldError, match=reason):
        client.batch_send(to, message)
    assert requests_received(emulator) == 0


def test_batch_names_the_bad_number_by_position(client: GlobeSmsClient) -> None:
    with pytest.raises(InvalidFieldError) as caught:
        client.batch_send(["+85291234567", "+85291234568", "bad"], "hi")
    assert caught.value.field == "to[2]"


@pytest.mark.parametrize("message_id", ["", "   ", None])
def test_query_refuses_empty_message_id(client: GlobeSmsClient, emulator: EmulatorServer, message_id: Any) -> None:
    with pytest.raises(InvalidFieldError):
        client.query_message(message_id)
    assert requests_received(emulator) == 0


def test_good_values_pass_and_reach_the_api(client: GlobeSmsClient, emulator: EmulatorServer) -> None:
    result = client.send_message(
        "+852 9123-4567",
        "Hello",
        sender="Alicloud321",
        sms_type="notify",
        task_id="t" * 255,
        validity_period="600",
        channel_id="3790",
    )
    assert result.response_code == "OK"
    (stored,) = emulator.messages()
    assert stored["to"] == "85291234567"
    assert stored["type"] == "NOTIFY"
    assert stored["validity_period"] == 600
    assert requests_received(emulator) == 1


@pytest.mark.parametrize(
    ("raw", "wire"),
    [
        ("+85291234567", "85291234567"),
        ("85291234567", "85291234567"),  # Alibaba's own form
        ("+852 9123 4567", "85291234567"),
        ("+852-9123-4567", "85291234567"),
        ("+85366123456", "85366123456"),  # Macao
        ("+886912345678", "886912345678"),  # Taiwan
        ("+14155552671", "14155552671"),
        ("+447911123456", "447911123456"),
        ("+390612345678", "390612345678"),  # Italian fixed line keeps its leading zero
    ],
)
def test_accepted_number_forms(raw: str, wire: str) -> None:
    assert parse_number(raw).wire == wire


@pytest.mark.parametrize(
    ("raw", "masked"),
    [
        ("+85291235678", "+852****5678"),
        ("85291235678", "+852****5678"),
        ("+14155552671", "+1****2671"),
        ("garbage-value", "****alue"),
        ("12", "****"),
    ],
)
def test_masking(raw: str, masked: str) -> None:
    assert mask_number(raw) == masked
