"""Numbers never misroute: a Chinese mainland mobile written without +86 is refused, not sent to whoever
holds the same digits under +1; ``default_region`` reads national forms for one country; the emulator,
like the API, still reads bare digits as international."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import phonenumbers
import pytest
from airflow.sdk import DAG
from hypothesis import given, settings
from hypothesis import strategies as st

from airflow_provider_globesms.client import ConfigurationError, Credentials, GlobeSmsClient, InvalidFieldError
from airflow_provider_globesms.client.rules.phone import parse_number
from airflow_provider_globesms.emulator import EmulatorServer
from airflow_provider_globesms.operators.globesms import SendGlobeSmsOperator
from airflow_provider_globesms.testing import task_states


def mainland_mobile(digits: str) -> bool:
    try:
        parsed = phonenumbers.parse(digits, "CN")
    except phonenumbers.NumberParseException:
        return False
    return (
        phonenumbers.is_valid_number(parsed) and phonenumbers.number_type(parsed) == phonenumbers.PhoneNumberType.MOBILE
    )


def test_none_of_20000_random_mainland_mobiles_in_national_form_is_accepted() -> None:
    rng = random.Random(20261122)
    candidates = (f"1{rng.randint(3, 9)}{rng.randrange(10**9):09d}" for _ in range(40_000))
    mobiles = [d for d in candidates if mainland_mobile(d)][:20_000]
    assert len(mobiles) == 20_000
    reasons = []
    for digits in mobiles:
        with pytest.raises(InvalidFieldError) as caught:
            parse_number(digits)  # before: 9,063 of them went to North American numbers
        reasons.append(caught.value.reason)
    assert all("Chinese mainland mobile without +86" in reason for reason in reasons)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(sorted(phonenumbers.SUPPORTED_REGIONS - {"CN", "001"})))
def test_the_plus_form_of_any_countrys_example_mobile_is_never_called_ambiguous(region: str) -> None:
    example = phonenumbers.example_number_for_type(region, phonenumbers.PhoneNumberType.MOBILE)
    if example is None or not phonenumbers.is_valid_number(example):
        return
    e164 = phonenumbers.format_number(example, phonenumbers.PhoneNumberFormat.E164)
    assert parse_number(e164).e164 == e164
    # Read as a national number of its own country, it is the same number.
    national = str(example.national_number)
    if example.italian_leading_zero:
        national = "0" * (example.number_of_leading_zeros or 1) + national
    assert parse_number(national, default_region=region).e164 == e164


def test_the_refusal_says_what_to_write_and_nothing_reaches_the_emulator(
    globesms_emulator: EmulatorServer,
) -> None:
    with GlobeSmsClient(Credentials("AKID", "SECRET"), endpoint=globesms_emulator.url) as client:
        with pytest.raises(InvalidFieldError, match=r"write \+13123456789 if you mean that number") as caught:
            client.send_message("13123456789", "Hi Li, your code is 4711")
        assert caught.value.field == "to"
        assert caught.value.value == "+1****6789"
        assert client.send_message("+13123456789", "meant for North America").response_code == "OK"
    assert [m["to"] for m in globesms_emulator.messages()] == ["13123456789"]


def test_default_region_reads_national_forms_and_an_unknown_region_is_refused(
    globesms_emulator: EmulatorServer,
) -> None:
    with GlobeSmsClient(Credentials("AKID", "SECRET"), endpoint=globesms_emulator.url, default_region="hk") as client:
        client.send_message("9123 4567", "national form")
        client.send_message("85291234568", "bare international form still works")
    assert sorted(m["to"] for m in globesms_emulator.messages()) == ["85291234567", "85291234568"]
    with pytest.raises(ConfigurationError, match="default_region 'XX'"):
        GlobeSmsClient(Credentials("AKID", "SECRET"), endpoint=globesms_emulator.url, default_region="XX")


def test_the_emulator_reads_bare_digits_as_the_api_does() -> None:
    assert parse_number("13123456789", refuse_ambiguous=False).e164 == "+13123456789"


def test_a_campaign_row_in_national_mainland_form_is_an_invalid_row_before_any_send(
    run_dag: Callable[..., Any], globesms_conn: Callable[..., EmulatorServer], capfd: pytest.CaptureFixture[str]
) -> None:
    emulator = globesms_conn()
    rows = [{"to": "+85291234567", "name": "Ann"}, {"to": "13123456789", "name": "Li"}]
    with DAG("numbers_national_mainland", schedule=None) as dag:
        SendGlobeSmsOperator(task_id="send", recipients=rows, message="Hi {{ recipient.name }}")
    assert task_states(run_dag(dag)) == {"send": "failed"}
    assert emulator.messages() == []
    logged = capfd.readouterr().out
    assert "Chinese mainland mobile without +86" in logged
    assert "+1****6789" in logged


def test_the_operator_and_the_connection_take_a_default_region(
    run_dag: Callable[..., Any], globesms_conn: Callable[..., EmulatorServer]
) -> None:
    emulator = globesms_conn(default_region="SG")
    with DAG("numbers_default_region", schedule=None) as dag:
        SendGlobeSmsOperator(task_id="sg", to="8123 4567", message="from the connection")
        SendGlobeSmsOperator(task_id="hk", to="9123 4567", message="from the task", default_region="HK")
    assert set(task_states(run_dag(dag)).values()) == {"success"}
    assert sorted(m["to"] for m in emulator.messages()) == ["6581234567", "85291234567"]


@pytest.mark.parametrize("raw", ["１３１２３４５６７８９", "١٣١٢٣٤٥٦٧٨٩", "۱۳۱۲۳۴۵۶۷۸۹", "１3123456789"])
def test_a_mainland_mobile_in_other_scripts_digits_is_refused_too(raw: str) -> None:
    """Found by an adversarial review: full-width digits (Chinese input methods) slipped past to +1."""
    with pytest.raises(InvalidFieldError, match="Chinese mainland mobile without \\+86"):
        parse_number(raw)
    assert parse_number("+８５２９１２３４５６７").e164 == "+85291234567"


@pytest.mark.parametrize("raw", ["²13123456789", "¹³¹²³⁴⁵⁶⁷⁸⁹"])
def test_digit_like_symbols_are_refused_cleanly(raw: str) -> None:
    with pytest.raises(InvalidFieldError, match="only digits"):
        parse_number(raw)
