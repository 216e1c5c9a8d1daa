"""Signing: the published vectors, and our signatures equal the official SDK's on randomized requests."""

from __future__ import annotations

import hashlib
import random
from urllib.parse import urlsplit

import pytest
from alibabacloud_tea_openapi.utils import Utils as SdkUtils
from darabonba.request import DaraRequest

from airflow_provider_globesms.client.wire.signing import (
    EMPTY_BODY_SHA256,
    Credentials,
    canonical_query,
    percent_encode,
    sign_v1,
    sign_v3,
    v1_signature,
    v1_string_to_sign,
    v3_canonical_request,
    v3_signature,
    v3_string_to_sign,
)
from airflow_provider_globesms.emulator.verify import parse_wire_query

# --- published vectors (reference: shared/reference/alibaba-sms-api.md) ----------------------------


def test_v3_published_vector() -> None:
    headers = {
        "host": "ecs.cn-shanghai.aliyuncs.com",
        "x-acs-action": "RunInstances",
        "x-acs-content-sha256": EMPTY_BODY_SHA256,
        "x-acs-date": "2023-10-26T10:22:32Z",
        "x-acs-signature-nonce": "3156853299f313e23d1673dc12e1703d",
        "x-acs-version": "2014-05-26",
    }
    query = canonical_query(
        {"ImageId": "win2019_1809_x64_dtc_zh-cn_40G_alibase_20230811.vhd", "RegionId": "cn-shanghai"}
    )
    canonical = v3_canonical_request("POST", "/", query, headers, sorted(headers), EMPTY_BODY_SHA256)
    assert hashlib.sha256(canonical.encode()).hexdigest() == (
        "7ea06492da5221eba5297e897ce16e55f964061054b7695beedaac1145b1e259"
    )
    assert v3_signature("YourAccessKeySecret", v3_string_to_sign(canonical)) == (
        "06563a9e1b43f5dfe96b81484da74bceab24a1d853912eee15083a6f0f3283c0"
    )


def test_v3_published_vector_through_sign_v3() -> None:
    """The full signer (not just its parts) reproduces the vector's signature."""
    signed = sign_v3(
        Credentials("YourAccessKeyId", "YourAccessKeySecret"),
        host="ecs.cn-shanghai.aliyuncs.com",
        action="RunInstances",
        version="2014-05-26",
        params={"ImageId": "win2019_1809_x64_dtc_zh-cn_40G_alibase_20230811.vhd", "RegionId": "cn-shanghai"},
        date="2023-10-26T10:22:32Z",
        nonce="3156853299f313e23d1673dc12e1703d",
    )
    assert signed.headers["authorization"] == (
        "ACS3-HMAC-SHA256 Credential=YourAccessKeyId,"
        "SignedHeaders=host;x-acs-action;x-acs-content-sha256;x-acs-date;x-acs-signature-nonce;x-acs-version,"
        "Signature=06563a9e1b43f5dfe96b81484da74bceab24a1d853912eee15083a6f0f3283c0"
    )


V1_COMMON = {
    "AccessKeyId": "testid",
    "SignatureMethod": "HMAC-SHA1",
    "SignatureVersion": "1.0",
    "Version": "2014-05-26",
}


def test_v1_published_vector_describe_dedicated_hosts() -> None:
    params = {
        **V1_COMMON,
        "Action": "DescribeDedicatedHosts",
        "Format": "JSON",
        "RegionId": "cn-beijing",
        "SignatureNonce": "edb2b34af0af9a6d14deaf7c1a5315eb",
        "Timestamp": "2023-03-13T08:34:30Z",
    }
    assert v1_signature("testsecret", v1_string_to_sign("GET", params)) == "9NaGiOspFP5UPcwX8Iwt2YJXXuk="


def test_v1_published_vector_describe_regions() -> None:
    # The classic ECS example has no RegionId (the reference's "otherwise the same" would add one).
    params = {
        **V1_COMMON,
        "Action": "DescribeRegions",
        "Format": "XML",
        "SignatureNonce": "3ee8c1b8-83d3-44af-a94f-4e0ad82fd6cf",
        "Timestamp": "2016-02-23T12:46:24Z",
    }
    assert v1_string_to_sign("GET", params) == (
        "GET&%2F&AccessKeyId%3Dtestid%26Action%3DDescribeRegions%26Format%3DXML%26SignatureMethod%3DHMAC-SHA1"
        "%26SignatureNonce%3D3ee8c1b8-83d3-44af-a94f-4e0ad82fd6cf%26SignatureVersion%3D1.0"
        "%26Timestamp%3D2016-02-23T12%253A46%253A24Z%26Version%3D2014-05-26"
    )
    assert v1_signature("testsecret", v1_string_to_sign("GET", params)) == "OLeaidS1JvxuMvnyHOwuJ+uX5qY="


@pytest.mark.parametrize(
    ("raw", "encoded"),
    [
        ("a b", "a%20b"),
        ("*", "%2A"),
        ("~", "~"),
        ("+&=/%", "%2B%26%3D%2F%25"),
        ("你", "%E4%BD%A0"),
        ("😀", "%F0%9F%98%80"),
        ("A-z_0.9", "A-z_0.9"),
    ],
)
def test_percent_encoding_is_rfc3986(raw: str, encoded: str) -> None:
    assert percent_encode(raw) == encoded


# --- randomized agreement with the official SDK ------------------------------------------------------

PIECES = [
    *"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789",
    *" *~+&=/%?#:;@!$'(),[]{}|\\^`\"<>-_.\n\t",
    *"你好世界短信éüßñçÆØÅΩΣ€£¥",
    "😀",
    "🎉",
    "👍🏽",
    "🇭🇰",
    "\u200b",
    "\u00a0",
]


def random_text(rng: random.Random) -> str:
    length = rng.choice([1, 3, 10, 40, 70, 160, 161, 500, 2000])
    return "".join(rng.choice(PIECES) for _ in range(length))


def random_request(rng: random.Random) -> tuple[Credentials, dict[str, str]]:
    secret = "".join(rng.choice(PIECES[:70]) for _ in range(rng.randint(8, 40)))
    # Tokens are printable (control characters are refused at configuration: header injection).
    printable = "".join(c for c in random_text(rng) if ord(c) >= 32 and ord(c) != 127)[:200] or "STS.token"
    token = printable if rng.random() < 0.3 else None
    credentials = Credentials(f"LTAI{rng.randrange(10**12)}", secret, token)
    params = {"To": f"852{rng.randrange(10**8):08d}", "Message": random_text(rng)}
    for name in ("From", "TaskId", "ChannelId", "Type", "ValidityPeriod"):
        if rng.random() < 0.5:
            params[name] = random_text(rng)[:60]
    return credentials, params


def sdk_request(method: str, query: dict[str, str], headers: dict[str, str]) -> DaraRequest:
    request = DaraRequest()
    request.method = method
    request.pathname = "/"
    request.query = dict(query)
    request.headers = dict(headers)
    return request


def test_v3_authorization_equals_official_sdk_on_1000_random_requests() -> None:
    rng = random.Random(20260501)
    for _ in range(1000):
        credentials, params = random_request(rng)
        signed = sign_v3(
            credentials, host="dysmsapi.ap-southeast-1.aliyuncs.com", action="SendMessageToGlobe", params=params
        )
        headers = {k: v for k, v in signed.headers.items() if k != "authorization"}
        expected = SdkUtils.get_authorization(
            sdk_request("POST", params, headers),
            "ACS3-HMAC-SHA256",
            EMPTY_BODY_SHA256,
            credentials.access_key_id,
            credentials.access_key_secret,
        )
        assert signed.headers["authorization"] == expected, params
        # What we put on the wire decodes back to exactly the signed parameters.
        assert parse_wire_query(urlsplit(signed.target).query) == params


def test_v1_signature_equals_official_sdk_on_1000_random_requests() -> None:
    rng = random.Random(20180501)
    for _ in range(1000):
        credentials, params = random_request(rng)
        signed = sign_v1(
            credentials, host="dysmsapi.ap-southeast-1.aliyuncs.com", action="SendMessageToGlobe", params=params
        )
        sent = parse_wire_query(urlsplit(signed.target).query)
        signature = sent.pop("Signature")
        assert signature == SdkUtils.get_rpcsignature(sent, "POST", credentials.access_key_secret), params
        assert {k: sent[k] for k in params} == params
        if credentials.security_token:
            assert sent["SecurityToken"] == credentials.security_token


def test_v3_signs_the_sts_token_and_key_headers() -> None:
    signed = sign_v3(Credentials("id", "secret", "token"), host="h", action="QueryMessage", params={"MessageId": "1"})
    signed_names = signed.headers["authorization"].split("SignedHeaders=")[1].split(",")[0].split(";")
    assert "x-acs-security-token" in signed_names
    assert "x-acs-accesskey-id" in signed_names
    assert signed.headers["x-acs-security-token"] == "token"


def test_each_request_gets_a_fresh_nonce() -> None:
    credentials = Credentials("id", "secret")
    nonces = {
        sign_v3(credentials, host="h", action="QueryMessage", params={}).headers["x-acs-signature-nonce"]
        for _ in range(1000)
    }
    assert len(nonces) == 1000
