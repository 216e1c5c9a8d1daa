"""Secrets never leak through error texts, and never reach the wire as extra headers.

The gateway's answer to a bad signature echoes its string to sign: with V1 that holds the STS token and the
full number, percent- and double-encoded. Such texts went into the task log, the results file, the ledger
and the connection Test message. A secret or token read from a file with its newline put a header of the
sender's choosing on the wire.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from airflow.sdk import DAG
from hypothesis import given, settings
from hypothesis import strategies as st

from airflow_provider_globesms.client import ConfigurationError, Credentials, GlobeSmsClient, GlobeSmsError
from airflow_provider_globesms.client.wire.http_replies import scrub_gateway_text
from airflow_provider_globesms.emulator import EmulatorServer
from airflow_provider_globesms.hooks.globesms import GlobeSmsHook
from airflow_provider_globesms.operators.globesms import SendGlobeSmsOperator
from airflow_provider_globesms.testing import xcom_values

TOKEN = "STS.AdvT0kenSecretValue+/="
NUMBER = "85291234560"


def encodings(value: str) -> list[str]:
    once = quote(value, safe="")
    return [value, once, quote(once, safe="")]


@settings(max_examples=300, deadline=None)
@given(
    token=st.text(st.characters(min_codepoint=33, max_codepoint=126, exclude_characters="&;,"), min_size=8),
    number=st.from_regex(r"[1-9]\d{7,14}", fullmatch=True),
    encoding=st.sampled_from([0, 1, 2]),
    with_plus=st.booleans(),
)
def test_no_encoding_of_a_token_or_number_survives_the_scrub(
    token: str, number: str, encoding: int, with_plus: bool
) -> None:
    to = ("+" if with_plus else "") + number
    query = f"AccessKeyId=AKID&SecurityToken={token}&To={to}&Version=2018-05-01"
    carried = encodings(query)[encoding]
    for text in (
        f"refused: {carried}",
        f"Specified signature does not match. server string to sign is:POST&%2F&{carried}",
    ):
        scrubbed = scrub_gateway_text(text)
        assert number not in scrubbed
        assert not any(form in scrubbed for form in encodings(token) if len(form) >= 8), scrubbed


@pytest.mark.parametrize("scheme", ["v1", "v3"])
def test_a_wrong_secret_with_a_token_leaks_neither_and_says_what_to_check(
    globesms_emulator: EmulatorServer, scheme: str
) -> None:
    client = GlobeSmsClient(
        Credentials("AKID", "WRONG", TOKEN), endpoint=globesms_emulator.url, signature_version=scheme
    )
    with client, pytest.raises(GlobeSmsError) as caught:
        client.send_message(f"+{NUMBER}", "hi")
    text = str(caught.value)
    assert "check the AccessKey Secret" in text
    assert not any(form in text for form in [*encodings(TOKEN), NUMBER, NUMBER[-8:]])


def test_the_task_log_results_and_xcom_hold_no_token_and_no_number_in_an_error(
    run_dag: Callable[..., Any],
    globesms_conn: Callable[..., EmulatorServer],
    capfd: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    globesms_conn(password="WRONG", security_token=TOKEN, signature_version="v1")
    with DAG("leak_wrong_secret", schedule=None) as dag:
        SendGlobeSmsOperator(task_id="send", to=f"+{NUMBER}", message="hi", ledger_uri=str(tmp_path))
    dag_run = run_dag(dag)
    logged = capfd.readouterr().out + capfd.readouterr().err
    assert "SignatureDoesNotMatch" in logged
    (summary,) = xcom_values(dag_run, "send", key="summary")
    (result,) = [json.loads(line) for line in Path(summary["results_uri"]).read_text().splitlines()]
    assert result["status"] == "failed"
    for where, text in [("log", logged), ("xcom", json.dumps(summary)), ("results error", result["error"])]:
        leaked = [form for form in [*encodings(TOKEN), NUMBER, NUMBER[-8:]] if form in text]
        assert not leaked, f"{where} holds {leaked}"


def test_the_connection_test_button_leaks_nothing_and_names_the_secret(
    globesms_conn: Callable[..., EmulatorServer],
) -> None:
    globesms_conn(password="WRONG", security_token=TOKEN, signature_version="v1")
    ok, message = GlobeSmsHook().test_connection()
    assert not ok
    assert "check the AccessKey Secret" in message
    assert not any(form in message for form in encodings(TOKEN))


@pytest.mark.parametrize("field", ["access_key_id", "access_key_secret", "security_token"])
@pytest.mark.parametrize("tail", ["\n", "\r\nX-Injected: yes", "\t", "\x00"])
def test_credentials_with_control_characters_are_refused_before_any_request(field: str, tail: str) -> None:
    values = {"access_key_id": "AKID", "access_key_secret": "SECRET", "security_token": "STS.token"}
    values[field] += tail
    with pytest.raises(ConfigurationError, match=f"{field} holds a control character") as caught:
        Credentials(**values)
    assert "SECRET" not in str(caught.value)


def test_a_newline_terminated_secret_in_the_connection_sends_nothing(
    globesms_conn: Callable[..., EmulatorServer],
) -> None:
    emulator = globesms_conn(password="SECRET\r\nX-Injected: yes")
    with pytest.raises(ConfigurationError, match="access_key_secret holds a control character"):
        GlobeSmsHook().send_message(to="+85291234567", message="hi")
    assert emulator.stats()["actions"] == {} or not emulator.stats()["actions"].get("SendMessageToGlobe")


# --- connection settings that silently went elsewhere ----------------------------------------------------


@pytest.mark.parametrize("region", ["AP-SOUTHEAST-1", " eu-central-1 ", "Us-East-1"])
def test_region_ids_match_whatever_their_case(region: str) -> None:
    from airflow_provider_globesms.client.wire.endpoint import REGION_HOSTS, Endpoint

    assert Endpoint.resolve(region).host == REGION_HOSTS[region.strip().lower()]


@pytest.mark.parametrize("region", ["ap-southeast-9", "ap-southeast1", "cn-hangzhou", ""])
def test_an_unknown_region_is_an_error_listing_the_known_ones(
    globesms_conn: Callable[..., EmulatorServer], monkeypatch: pytest.MonkeyPatch, region: str
) -> None:
    monkeypatch.setenv(
        "AIRFLOW_CONN_GLOBESMS_DEFAULT",
        json.dumps({"conn_type": "globesms", "login": "AKID", "password": "SECRET", "extra": {"region_id": region}}),
    )
    if not region:  # blank means the default region
        assert GlobeSmsHook().client.endpoint.host == "dysmsapi.ap-southeast-1.aliyuncs.com"
        return
    with pytest.raises(ConfigurationError, match="has no international SMS endpoint; use one of ap-southeast-1"):
        _ = GlobeSmsHook().settings


@pytest.mark.parametrize("period", [259_201, 10**30, "999999999999999999999"])
def test_a_validity_period_beyond_72_hours_is_refused_before_sending(
    globesms_emulator: EmulatorServer, period: object
) -> None:
    from airflow_provider_globesms.client import InvalidFieldError

    with GlobeSmsClient(Credentials("AKID", "SECRET"), endpoint=globesms_emulator.url) as client:
        with pytest.raises(InvalidFieldError, match="at most 259200 seconds"):
            client.send_message("+85291234567", "hi", validity_period=period)
        client.send_message("+85291234567", "hi", validity_period=259_200)
    assert len(globesms_emulator.messages()) == 1


def test_the_emulator_refuses_the_same_bound_and_keeps_working(globesms_emulator: EmulatorServer) -> None:
    from tests.emulator_helpers import call

    answer = call(
        globesms_emulator, "SendMessageToGlobe", {"To": "85291234567", "Message": "hi", "ValidityPeriod": str(10**30)}
    )
    assert answer.code == "INVALID_PARAMETERS"
    assert call(globesms_emulator, "SendMessageToGlobe", {"To": "85291234567", "Message": "hi"}).code == "OK"
    assert len(globesms_emulator.messages()) == 1


@pytest.mark.parametrize("where", ["header", "target", "user_agent"])
def test_the_framing_refuses_cr_lf_so_no_header_of_anyone_elses_reaches_the_wire(
    globesms_emulator: EmulatorServer, where: str
) -> None:
    import asyncio

    from airflow_provider_globesms.client.aio import AsyncConnectionPool
    from airflow_provider_globesms.client.wire.endpoint import Endpoint, Timeout
    from airflow_provider_globesms.client.wire.signing import SignedRequest
    from airflow_provider_globesms.client.wire.transport import ConnectionPool

    endpoint = Endpoint("http", "127.0.0.1", globesms_emulator.port)
    headers = {"host": endpoint.host_header, "x-acs-action": "SendMessageToGlobe"}
    target, agent = "/?Action=SendMessageToGlobe", "airflow-provider-globesms"
    if where == "header":
        headers["x-acs-security-token"] = "STS.token\r\nX-Injected: yes"
    elif where == "target":
        target += "\r\nX-Injected: yes"
    else:
        agent += "\r\nX-Injected: yes"
    request = SignedRequest("POST", target, headers)
    with pytest.raises(ConfigurationError, match="CR, LF or NUL; nothing was sent"):
        ConnectionPool(endpoint, Timeout(), user_agent=agent).exchange(request)

    async def via_asyncio() -> None:
        await AsyncConnectionPool(endpoint, Timeout(), user_agent=agent).exchange(request)

    with pytest.raises(ConfigurationError, match="CR, LF or NUL"):
        asyncio.run(via_asyncio())
    assert globesms_emulator.stats()["actions"] == {} or not globesms_emulator.stats()["actions"].get(
        "SendMessageToGlobe"
    )


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (400, {"Code": "InvalidSecurityToken.Malformed", "Message": f"SecurityToken = {TOKEN} is malformed"}),
        (400, {"Code": "IncompleteSignature", "Message": f"canonical headers: x-acs-security-token%3A{quote(TOKEN)}"}),
        (200, {"ResponseCode": "MOBILE_NUMBER_ILLEGAL", "ResponseDescription": f"number %2B{NUMBER} is illegal"}),
        (200, {"ResponseCode": "MOBILE_NUMBER_ILLEGAL", "ResponseDescription": "To=+852+9123+4560 is illegal"}),
        (500, {"Code": f"InternalError:{NUMBER}", "Message": "failed"}),
        (400, {"Code": "Forbidden", "Message": f'{{"SecurityToken": "{TOKEN}"}}'}),
    ],
)
def test_what_the_client_sent_is_redacted_by_value_from_any_gateway_text(status: int, body: dict[str, str]) -> None:
    """Found by an adversarial review: patterns alone missed spaced, %3A, %2B and '+'-separated echoes."""
    from airflow_provider_globesms.client import SendMessageResult
    from airflow_provider_globesms.client.wire.call import Call
    from airflow_provider_globesms.client.wire.retry import RetryPolicy
    from airflow_provider_globesms.client.wire.signing import sign_v1
    from airflow_provider_globesms.client.wire.transport import RawResponse

    signed = sign_v1(
        Credentials("AKID", "SECRET", TOKEN),
        host="h",
        action="SendMessageToGlobe",
        params={"To": NUMBER, "Message": "hi"},
        version="2018-05-01",
    )
    call = Call(
        "SendMessageToGlobe",
        SendMessageResult,
        RetryPolicy(confirm_by_replay=False),
        lambda: signed,
        known=(NUMBER, "SECRET", TOKEN),
    )
    call.attempt()
    verdict = call.replied(RawResponse(status, {}, json.dumps(body).encode()))
    text = str(verdict.error)
    assert not [form for form in [*encodings(TOKEN), NUMBER, NUMBER[-8:], "9123+4560"] if form in text], text
