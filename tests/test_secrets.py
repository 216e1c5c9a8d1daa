"""The secret never shows in logs, reprs or error texts; phone numbers show masked only."""

from __future__ import annotations

import logging
from collections.abc import Callable

import pytest

from airflow_provider_globesms.client import Credentials, GlobeSmsClient, OutcomeUnknownError, Timeout
from airflow_provider_globesms.emulator import EmulatorServer
from airflow_provider_globesms.hooks.globesms import GlobeSmsHook

SECRET = "Zk9-very-secret-VALUE-4711"
TOKEN = "sts-token-SECRET-0815"
NUMBERS = ["+85291234567", "+6591234568"]


def everything_logged(records: list[logging.LogRecord]) -> str:
    parts = []
    for record in records:
        parts.append(record.getMessage())
        parts.append(repr(record.args))
        parts.append(record.exc_text or "")
        if record.exc_info and record.exc_info[1]:
            parts.append(repr(record.exc_info[1]))
    return "\n".join(parts)


def test_no_secret_and_no_full_number_in_any_debug_log_of_a_full_send(
    globesms_conn: Callable[..., EmulatorServer], caplog: pytest.LogCaptureFixture
) -> None:
    emulator = globesms_conn(password=SECRET, security_token=TOKEN)
    emulator.gateway.config.keys["AKID"] = SECRET  # the emulator knows the same secret
    emulator.set_faults(script=["throttle", "reset"])  # retries log too
    caplog.set_level(logging.DEBUG)  # every logger, urllib3 and Airflow's included
    hook = GlobeSmsHook()
    result = hook.send_message(NUMBERS[0], "Your code is 1234", sender="Shop", task_id="campaign-1")
    hook.batch_send(NUMBERS, "Batch hello")
    assert result.message_id
    hook.query_message(result.message_id)
    assert hook.test_connection()[0]
    logged = everything_logged(caplog.records)
    assert caplog.records, "the send logged nothing at all"
    assert "+852****4567" in logged  # masked numbers are what people see
    for needle in (SECRET, TOKEN, *NUMBERS, "85291234567", "6591234568"):
        assert needle not in logged, needle


def test_reprs_hide_the_secret(globesms_conn: Callable[..., EmulatorServer]) -> None:
    globesms_conn(password=SECRET, security_token=TOKEN)
    hook = GlobeSmsHook()
    shown = " ".join(repr(x) for x in (hook, hook.settings, hook.client, hook.client.credentials))
    assert SECRET not in shown
    assert TOKEN not in shown
    assert "AKID" in shown


def test_error_texts_hide_the_secret_and_the_number(globesms_emulator: EmulatorServer) -> None:
    globesms_emulator.gateway.config.keys["AKID"] = SECRET
    globesms_emulator.set_faults(script=["hang"], hang_seconds=2)
    client = GlobeSmsClient(
        Credentials("AKID", SECRET, TOKEN), endpoint=globesms_emulator.url, timeout=Timeout(connect=1, read=0.3)
    )
    with client, pytest.raises(OutcomeUnknownError) as caught:
        client.send_message(NUMBERS[0], "hello")
    text = f"{caught.value} {caught.value!r}"
    for needle in (SECRET, TOKEN, "91234567"):
        assert needle not in text


def test_server_texts_are_scrubbed_of_numbers_but_not_of_ids_or_hashes() -> None:
    from airflow_provider_globesms.client.rules.phone import scrub_numbers

    text = "To 85291234567 failed; MessageId 17953042422300000001; hash 8b41ce375c997162000; +852 9123 4567"
    assert scrub_numbers(text) == (
        "To +852****4567 failed; MessageId 17953042422300000001; hash 8b41ce375c997162000; +852****4567"
    )
