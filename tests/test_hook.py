"""GlobeSmsHook: connection forms, fallbacks, lazy client, test_connection, operations on the emulator."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from airflow_provider_globesms import CONNECTION_FIELDS, CONNECTION_UI, get_provider_info
from airflow_provider_globesms.client import ConfigurationError, InvalidFieldError
from airflow_provider_globesms.emulator import EmulatorServer
from airflow_provider_globesms.hooks.globesms import GlobeSmsHook
from tests.conftest import _forget_cached_connections


def set_conn(monkeypatch: pytest.MonkeyPatch, conn_id: str, payload: dict[str, object]) -> None:
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(payload))
    _forget_cached_connections()


def test_the_readme_connection_variable_alone_is_enough(globesms_conn: Callable[..., EmulatorServer]) -> None:
    hook = GlobeSmsHook()
    result = hook.send_message(to="+85291234567", message="Your report is ready")
    assert result.response_code == "OK"
    assert result.segments == 1
    assert result.message_id
    assert hook.query_message(result.message_id).message_id == result.message_id


def test_settings_from_extras(monkeypatch: pytest.MonkeyPatch) -> None:
    set_conn(
        monkeypatch,
        "sms",
        {
            "conn_type": "globesms",
            "login": "LTAIid",
            "password": "s3cret",
            "extra": {
                "region_id": "eu-central-1",
                "signature_version": "V1",
                "timeout": "7.5",
                "max_qps": 50,
                "security_token": "sts-token",
            },
        },
    )
    hook = GlobeSmsHook("sms")
    settings = hook.settings
    assert (settings.access_key_id, settings.region_id, settings.signature_version) == ("LTAIid", "eu-central-1", "v1")
    assert (settings.timeout, settings.max_qps, settings.security_token) == (7.5, 50.0, "sts-token")
    client = hook.get_conn()
    assert client.endpoint.url == "https://dysmsapi.eu-central-1.aliyuncs.com"
    assert client.max_qps == 50.0
    assert client.timeout.read == 7.5


def test_prefixed_extras_from_older_forms(monkeypatch: pytest.MonkeyPatch) -> None:
    set_conn(
        monkeypatch,
        "sms",
        {
            "conn_type": "globesms",
            "login": "id",
            "password": "pw",
            "extra": {"extra__globesms__endpoint": "http://127.0.0.1:9"},
        },
    )
    assert GlobeSmsHook("sms").settings.endpoint == "http://127.0.0.1:9"


def test_official_alibaba_cloud_connection_type(monkeypatch: pytest.MonkeyPatch) -> None:
    set_conn(
        monkeypatch,
        "alibaba_default",
        {
            "conn_type": "alibaba_cloud",
            "extra": {"access_key_id": "LTAIx", "access_key_secret": "sec", "region": "us-east-1"},
        },
    )
    settings = GlobeSmsHook("alibaba_default").settings
    assert (settings.access_key_id, settings.access_key_secret, settings.region_id) == ("LTAIx", "sec", "us-east-1")


def test_environment_fallback_when_the_connection_has_no_key(
    monkeypatch: pytest.MonkeyPatch, globesms_emulator: EmulatorServer
) -> None:
    set_conn(monkeypatch, "sms", {"conn_type": "globesms", "extra": {"endpoint": globesms_emulator.url}})
    monkeypatch.setenv("ALIBABA_CLOUD_ACCESS_KEY_ID", "AKID")
    monkeypatch.setenv("ALIBABA_CLOUD_ACCESS_KEY_SECRET", "SECRET")
    monkeypatch.setenv("ALIBABA_CLOUD_SECURITY_TOKEN", "tok")
    hook = GlobeSmsHook("sms")
    assert hook.settings.credentials_from == "environment"
    assert hook.settings.security_token == "tok"
    assert hook.send_message("+85291234567", "hi").response_code == "OK"


def test_no_key_anywhere_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    set_conn(monkeypatch, "sms", {"conn_type": "globesms"})
    with pytest.raises(ConfigurationError, match="ALIBABA_CLOUD_ACCESS_KEY_ID"):
        _ = GlobeSmsHook("sms").settings


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"signature_version": "v2"}, "'signature_version' must be one of v3, v1"),
        ({"timeout": "soon"}, "'timeout' must be a finite number above 0"),
        ({"max_qps": 0}, "'max_qps' must be a finite number above 0"),
        ({"timeout": "nan"}, "'timeout' must be a finite number above 0"),
        ({"max_qps": "inf"}, "'max_qps' must be a finite number above 0"),
        ({"timeout": -1}, "'timeout' must be a finite number above 0"),
        ({"endpoint": "http://dysmsapi.aliyuncs.com"}, "plain HTTP to a non-loopback host"),
        # A misspelt endpoint would send through Alibaba's default region, for real: refused, with the fix.
        ({"endpiont": "http://127.0.0.1:8787"}, "extra 'endpiont' is not a setting .*did you mean 'endpoint'"),
        ({"extra__globesms__regoin_id": "us-east-1"}, "extra 'regoin_id' is not a setting .* 'region_id'"),
        ({"endpoint": "http://127.0.0.1:8787", "proxy": "x"}, "extra 'proxy' is not a setting of a globesms"),
    ],
)
def test_bad_extras_name_the_field(monkeypatch: pytest.MonkeyPatch, extra: dict[str, object], message: str) -> None:
    set_conn(monkeypatch, "sms", {"conn_type": "globesms", "login": "id", "password": "pw", "extra": extra})
    with pytest.raises(ConfigurationError, match=message):
        _ = GlobeSmsHook("sms").settings


def test_no_connection_or_network_work_in_init() -> None:
    hook = GlobeSmsHook("does_not_exist")  # would raise if it looked the connection up
    assert "client" not in hook.__dict__
    assert "settings" not in hook.__dict__


def test_the_client_is_built_once_and_shared(globesms_conn: Callable[..., EmulatorServer]) -> None:
    hook = GlobeSmsHook()
    assert hook.client is hook.get_conn()
    hook.close()
    assert "client" not in hook.__dict__


def test_test_connection_proves_credentials_without_sending(globesms_conn: Callable[..., EmulatorServer]) -> None:
    emulator = globesms_conn()
    ok, message = GlobeSmsHook().test_connection()
    assert ok, message
    assert "Authenticated" in message
    assert emulator.messages() == []
    assert "SendMessageToGlobe" not in emulator.stats()["actions"]


def test_test_connection_reports_a_wrong_secret(globesms_conn: Callable[..., EmulatorServer]) -> None:
    globesms_conn(password="not-the-secret")
    ok, message = GlobeSmsHook().test_connection()
    assert not ok
    assert "SignatureDoesNotMatch" in message
    assert "not-the-secret" not in message


def test_test_connection_reports_an_unknown_key(globesms_conn: Callable[..., EmulatorServer]) -> None:
    globesms_conn(login="NOBODY")
    ok, message = GlobeSmsHook().test_connection()
    assert not ok
    assert "InvalidAccessKeyId.NotFound" in message


def test_v1_signature_through_the_connection(globesms_conn: Callable[..., EmulatorServer]) -> None:
    globesms_conn(signature_version="v1")
    assert GlobeSmsHook().send_message("+85291234567", "hello").response_code == "OK"


def test_batch_send(globesms_conn: Callable[..., EmulatorServer]) -> None:
    emulator = globesms_conn()
    result = GlobeSmsHook().batch_send(["+85291234567", "+6591234567"], ["Hi Ann", "Hi Bo"], sender="Shop")
    assert result.success_count == 2
    assert len(result.message_id_list) == 2
    assert sorted(m["message"] for m in emulator.messages()) == ["Hi Ann", "Hi Bo"]


def test_validation_errors_surface_unchanged(globesms_conn: Callable[..., EmulatorServer]) -> None:
    with pytest.raises(InvalidFieldError, match="Chinese mainland"):
        GlobeSmsHook().send_message("+8613800138000", "hello")


def test_connection_form_metadata_is_consistent() -> None:
    (conn_type,) = get_provider_info()["connection-types"]
    assert conn_type["connection-type"] == GlobeSmsHook.conn_type == "globesms"
    assert conn_type["hook-class-name"] == "airflow_provider_globesms.hooks.globesms.GlobeSmsHook"
    assert set(conn_type["conn-fields"]) == {
        "region_id",
        "endpoint",
        "security_token",
        "signature_version",
        "timeout",
        "max_qps",
        "default_region",
    }
    assert conn_type["conn-fields"]["security_token"]["schema"]["format"] == "password"
    behaviour = GlobeSmsHook.get_ui_field_behaviour()
    assert behaviour["relabeling"] == {"login": "AccessKey ID", "password": "AccessKey Secret"}
    assert set(behaviour["hidden_fields"]) == set(CONNECTION_UI["hidden-fields"])
    assert all(field["label"] and field["description"] for field in CONNECTION_FIELDS.values())


def test_the_uri_form_from_the_readme(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "AIRFLOW_CONN_SMS_URI", "globesms://LTAI5tXXXX:s%2Fecr%2Bet@/?region_id=eu-central-1&signature_version=v1"
    )
    _forget_cached_connections()
    hook = GlobeSmsHook("sms_uri")
    assert (hook.settings.access_key_id, hook.settings.access_key_secret) == ("LTAI5tXXXX", "s/ecr+et")
    assert hook.client.endpoint.url == "https://dysmsapi.eu-central-1.aliyuncs.com"
    assert hook.client.signature_version == "v1"
