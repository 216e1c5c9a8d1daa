"""The emulator speaks the API: the official SDK works against it, and it refuses as the gateway does."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from email.utils import parsedate_to_datetime

import pytest
from alibabacloud_dysmsapi20180501 import models as sms_models
from alibabacloud_dysmsapi20180501.client import Client as SdkClient
from alibabacloud_tea_openapi import models as openapi_models
from alibabacloud_tea_openapi.exceptions import ClientException

from airflow_provider_globesms.client import Credentials, GlobeSmsClient, count_segments
from airflow_provider_globesms.client.wire.signing import utc_timestamp
from airflow_provider_globesms.emulator import EmulatorConfig, EmulatorServer
from airflow_provider_globesms.emulator.gateway import FAILURE_CODES
from tests.emulator_helpers import StoppedClock, call, send, sign


@pytest.fixture
def emulator() -> Iterator[EmulatorServer]:
    with EmulatorServer(EmulatorConfig(delivery_delay=0.3, seed=7)) as server:
        yield server


def sdk(emulator: EmulatorServer, algorithm: str | None = None, secret: str = "SECRET") -> SdkClient:
    config = openapi_models.Config(
        access_key_id="AKID",
        access_key_secret=secret,
        endpoint=f"127.0.0.1:{emulator.port}",
        protocol="HTTP",
        signature_algorithm=algorithm,
    )
    return SdkClient(config)


TEXTS = {
    "gsm_one": "Your parcel arrives today.",
    "gsm_two": "x" * 161,
    "ucs2_emoji": "Parcel 📦 arrives today, 你好" * 3,
}


@pytest.mark.parametrize("algorithm", [None, "v2"], ids=["sdk-v3", "sdk-v1"])
def test_official_sdk_sends_and_queries_through_the_emulator(emulator: EmulatorServer, algorithm: str | None) -> None:
    client = sdk(emulator, algorithm)
    # Receipts after 2 s of the gateway's clock, which stands still until moved: "sending" first, however slow.
    emulator.set_settings(delivery_delay=2.0)
    clock = StoppedClock(emulator)
    for name, text in TEXTS.items():
        request = sms_models.SendMessageToGlobeRequest(
            to="85291234567", message=text, from_="Alicloud321", task_id=name, type="NOTIFY"
        )
        response = client.send_message_to_globe(request)
        body = response.body
        assert response.status_code == 200
        assert body.response_code == "OK"
        assert body.message_id
        assert body.request_id
        assert body.segments == str(count_segments(text).segments)
        assert (body.number_detail.country, body.number_detail.region) == ("China", "HongKong")
        query = client.query_message(sms_models.QueryMessageRequest(message_id=body.message_id)).body
        assert (query.status, query.error_code) == ("3", "")  # the carrier has not answered yet
    clock.advance(3)  # past every receipt (2 s, give or take a fifth)
    for stored in emulator.messages():
        query = client.query_message(sms_models.QueryMessageRequest(message_id=stored["message_id"])).body
        assert (query.status, query.error_code) == ("1", "DELIVERED")
        assert query.message == stored["message"]
        assert parsedate_to_datetime(query.receive_date) >= parsedate_to_datetime(query.send_date)


def test_official_sdk_batch_send(emulator: EmulatorServer) -> None:
    request = sms_models.BatchSendMessageToGlobeRequest(
        to=json.dumps(["85291234567", "6591234567", "8613800138000"]),
        message=json.dumps(["Hi Ann", "Hi Bo", "Hi Cy"]),
        from_="Shop",
    )
    body = sdk(emulator).batch_send_message_to_globe(request).body
    assert body.response_code == "OK"
    assert body.success_count == "2"
    assert json.loads(body.failed_list) == ["8613800138000"]
    assert len(json.loads(body.message_id_list)) == 2


def test_official_sdk_sees_a_wrong_secret_refused(emulator: EmulatorServer) -> None:
    request = sms_models.SendMessageToGlobeRequest(to="85291234567", message="hi")
    with pytest.raises(ClientException) as caught:
        sdk(emulator, secret="WRONG").send_message_to_globe(request)
    assert caught.value.code == "SignatureDoesNotMatch"
    assert caught.value.status_code == 400


def test_receipts_fail_at_the_configured_rate() -> None:
    with EmulatorServer(EmulatorConfig(delivery_delay=0.1, failure_rate=1.0, seed=1)) as emulator:
        client = GlobeSmsClient(Credentials("AKID", "SECRET"), endpoint=emulator.url)
        sent = client.send_message("+85291234567", "hello")
        time.sleep(0.3)
        result = client.query_message(sent.message_id)
    assert result.status == 2
    assert result.failed
    assert not result.delivered
    assert result.error_code in {code for code, _, _ in FAILURE_CODES}


# --- refusals, each with the gateway's code and HTTP status ------------------------------------------

SEND_PARAMS = {"To": "85291234567", "Message": "hello"}


@pytest.mark.parametrize("scheme", ["v3", "v1"])
def test_expired_timestamp(emulator: EmulatorServer, scheme: str) -> None:
    stale = utc_timestamp(time.time() - 16 * 60)
    stamp = {"date": stale} if scheme == "v3" else {"timestamp": stale}
    answer = call(emulator, "SendMessageToGlobe", SEND_PARAMS, scheme=scheme, **stamp)
    assert (answer.status, answer.code) == (400, "InvalidTimeStamp.Expired")


@pytest.mark.parametrize("scheme", ["v3", "v1"])
def test_nonce_reuse(emulator: EmulatorServer, scheme: str) -> None:
    request = sign(emulator, "SendMessageToGlobe", SEND_PARAMS, scheme=scheme)
    assert send(emulator, request).status == 200
    answer = send(emulator, request)
    assert (answer.status, answer.code) == (400, "SignatureNonceUsed")
    assert len(emulator.messages()) == 1


@pytest.mark.parametrize("scheme", ["v3", "v1"])
def test_unknown_key(emulator: EmulatorServer, scheme: str) -> None:
    answer = call(
        emulator, "SendMessageToGlobe", SEND_PARAMS, scheme=scheme, credentials=Credentials("NOBODY", "SECRET")
    )
    assert (answer.status, answer.code) == (404, "InvalidAccessKeyId.NotFound")


@pytest.mark.parametrize("scheme", ["v3", "v1"])
def test_bad_signature(emulator: EmulatorServer, scheme: str) -> None:
    request = sign(emulator, "SendMessageToGlobe", SEND_PARAMS, scheme=scheme)
    tampered = type(request)(request.method, request.target.replace("hello", "HELLO"), request.headers)
    answer = send(emulator, tampered)
    assert (answer.status, answer.code) == (400, "SignatureDoesNotMatch")
    assert "server string to sign is:" in answer.body["Message"]
    assert emulator.messages() == []


def test_unsigned_acs_header_is_refused(emulator: EmulatorServer) -> None:
    request = sign(emulator, "SendMessageToGlobe", SEND_PARAMS)
    request.headers["x-acs-extra"] = "smuggled"
    answer = send(emulator, request)
    assert (answer.status, answer.code) == (400, "IncompleteSignature")


def test_no_signature_at_all(emulator: EmulatorServer) -> None:
    request = sign(emulator, "SendMessageToGlobe", SEND_PARAMS)
    del request.headers["authorization"]
    answer = send(emulator, request)
    assert (answer.status, answer.code) == (400, "MissingSignature")


@pytest.mark.parametrize(
    ("action", "params", "code"),
    [
        ("SendMessageToGlobe", {"Message": "hello"}, "MissingTo"),
        ("SendMessageToGlobe", {"To": "85291234567"}, "MissingMessage"),
        ("BatchSendMessageToGlobe", {"Message": "hello"}, "MissingTo"),
        ("QueryMessage", {}, "MissingMessageId"),
    ],
)
def test_missing_parameters(emulator: EmulatorServer, action: str, params: dict[str, str], code: str) -> None:
    answer = call(emulator, action, params)
    assert (answer.status, answer.code) == (400, code)


def test_wrong_version(emulator: EmulatorServer) -> None:
    answer = call(emulator, "SendMessageToGlobe", SEND_PARAMS, version="2017-05-25")
    assert (answer.status, answer.code) == (400, "InvalidVersion")


def test_unknown_action(emulator: EmulatorServer) -> None:
    answer = call(emulator, "SendSms", SEND_PARAMS)
    assert (answer.status, answer.code) == (404, "InvalidAction.NotFound")


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"To": "8613800138000", "Message": "hi"}, "MOBILE_NUMBER_ILLEGAL"),  # the Chinese mainland
        ({"To": "85212345678", "Message": "hi"}, "MOBILE_NUMBER_ILLEGAL"),  # not a valid number
        ({"To": "hello", "Message": "hi"}, "MOBILE_NUMBER_ILLEGAL"),
        ({"To": "85291234567", "Message": "hi", "From": "Way-Too-Long-Sender"}, "INVALID_SENDERID"),
        ({"To": "85291234567", "Message": "x" * 2001}, "INVALID_PARAMETERS"),
        ({"To": "85291234567", "Message": "hi", "Type": "PROMO"}, "INVALID_PARAMETERS"),
    ],
)
def test_business_refusals(emulator: EmulatorServer, params: dict[str, str], code: str) -> None:
    answer = call(emulator, "SendMessageToGlobe", params)
    assert (answer.status, answer.code) == (200, code)
    assert answer.body["RequestId"]
    assert emulator.messages() == []


def test_allowed_regions_outside_the_mainland(emulator: EmulatorServer) -> None:
    for number in ("85291234567", "85366123456", "886912345678"):
        assert call(emulator, "SendMessageToGlobe", {"To": number, "Message": "hi"}).code == "OK"


def test_batch_over_1000_numbers(emulator: EmulatorServer) -> None:
    numbers = [f"8529{n:07d}" for n in range(1001)]
    answer = call(emulator, "BatchSendMessageToGlobe", {"To": json.dumps(numbers), "Message": "hi"})
    assert (answer.status, answer.code) == (200, "MOBILE_COUNT_OVER_LIMIT")


def test_batch_with_bad_json(emulator: EmulatorServer) -> None:
    answer = call(emulator, "BatchSendMessageToGlobe", {"To": "85291234567,85291234568", "Message": "hi"})
    assert answer.code == "INVALID_JSON_PARAM"


# --- QPS caps per key and action ---------------------------------------------------------------------


def test_a_burst_over_the_cap_is_throttled() -> None:
    with EmulatorServer(EmulatorConfig(qps=20, delivery_delay=0)) as emulator:
        StoppedClock(emulator)  # all 60 in one second, however slow the machine
        requests = [sign(emulator, "SendMessageToGlobe", {"To": f"8529123{n:04d}", "Message": "hi"}) for n in range(60)]
        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(lambda r: send(emulator, r), requests))
        throttled = [a for a in answers if a.status == 400]
        assert {a.code for a in throttled} == {"Throttling.User"}
        assert len(throttled) == 40  # 60 in one second against a cap of 20
        assert all("TimeLeft:" in a.headers["x-ratelimit-user-api"] for a in throttled)
        assert all(int(a.headers["x-acs-retry-after"]) > 0 for a in throttled)
        assert len(emulator.messages()) == 60 - len(throttled)


def test_a_client_under_the_cap_is_never_throttled() -> None:
    with EmulatorServer(EmulatorConfig(qps=20, delivery_delay=0)) as emulator:
        client = GlobeSmsClient(Credentials("AKID", "SECRET"), endpoint=emulator.url, max_qps=15)
        with client, ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda n: client.send_message(f"+8529123{n:04d}", "hi"), range(40)))
        stats = emulator.stats()
    assert stats["actions"]["SendMessageToGlobe"].get("throttled", 0) == 0
    assert stats["actions"]["SendMessageToGlobe"]["ok"] == 40
    assert stats["windows"]["SendMessageToGlobe"]["AKID"]["peak_offered_1s"] <= 20


def test_batch_cap_is_one_call_per_second(emulator: EmulatorServer) -> None:
    params = {"To": json.dumps(["85291234567"]), "Message": "hi"}
    assert call(emulator, "BatchSendMessageToGlobe", params).code == "OK"
    assert call(emulator, "BatchSendMessageToGlobe", params).code == "Throttling.User"


def test_caps_are_per_key() -> None:
    config = EmulatorConfig(qps=1, delivery_delay=0, keys={"A": "a", "B": "b"})
    with EmulatorServer(config) as emulator:
        for key in ("A", "B"):
            credentials = Credentials(key, key.lower())
            assert call(emulator, "SendMessageToGlobe", SEND_PARAMS, credentials=credentials).code == "OK"
        assert call(emulator, "SendMessageToGlobe", SEND_PARAMS, credentials=Credentials("A", "a")).code == (
            "Throttling.User"
        )
