"""The sandbox holds against what older clients and careless callers send (issue 10, part): the signed
Action decides the operation, settings must be finite, and arbitrary action names cannot grow the stats."""

from __future__ import annotations

import dataclasses
import urllib.error

import pytest

from airflow_provider_globesms.emulator import EmulatorServer
from tests.emulator_helpers import send, sign


@pytest.mark.parametrize("scheme", ["v1", "v3"])
def test_an_unsigned_action_header_cannot_pick_the_operation(globesms_emulator: EmulatorServer, scheme: str) -> None:
    """@alicloud/pop-core sends an x-acs-action header that V1 does not sign; it used to select the handler
    (a plain-text HTTP 500 from a KeyError when it differed from the signed Action)."""
    signed = sign(globesms_emulator, "SendMessageToGlobe", {"To": "85291234567", "Message": "hi"}, scheme=scheme)
    if scheme == "v1":
        signed = dataclasses.replace(signed, headers={**signed.headers, "x-acs-action": "NotAnAction"})
    answer = send(globesms_emulator, signed)
    assert (answer.status, answer.code) == (200, "OK")
    assert len(globesms_emulator.messages()) == 1


@pytest.mark.parametrize("value", ["NaN", "inf", "-inf", "fast", None])
def test_settings_must_be_finite_numbers(globesms_emulator: EmulatorServer, value: object) -> None:
    before = globesms_emulator.stats()["settings"]["qps"] if "settings" in globesms_emulator.stats() else None
    with pytest.raises(urllib.error.HTTPError) as caught:
        globesms_emulator.set_settings(qps=value)  # type: ignore[arg-type]
    assert caught.value.code in (400, 422)  # refused (it used to be accepted: NaN disabled the cap)
    if before is not None:
        assert globesms_emulator.stats()["settings"]["qps"] == before


def test_arbitrary_action_names_share_one_bucket(globesms_emulator: EmulatorServer) -> None:
    for n in range(40):
        signed = sign(globesms_emulator, f"Made{n}Up", {"To": "85291234567"}, scheme="v1")
        assert send(globesms_emulator, signed).code == "InvalidAction.NotFound"
    assert set(globesms_emulator.stats()["actions"]) <= {"Unknown", "SendMessageToGlobe", "QueryMessage"}
    assert globesms_emulator.stats()["actions"]["Unknown"]["requests"] == 40


def test_the_inspection_api_can_require_a_token() -> None:
    import urllib.request

    from airflow_provider_globesms.emulator import EmulatorConfig

    with EmulatorServer(EmulatorConfig(delivery_delay=0, inspection_token="t0ken")) as emulator:
        answer = send(emulator, sign(emulator, "SendMessageToGlobe", {"To": "85291234567", "Message": "hi"}))
        assert answer.code == "OK"  # the API itself is open to the configured keys, as Alibaba's is
        with pytest.raises(urllib.error.HTTPError) as caught:
            urllib.request.urlopen(f"{emulator.url}/_emulator/messages", timeout=10)
        assert caught.value.code == 401
        wrong = urllib.request.Request(f"{emulator.url}/_emulator/messages", headers={"authorization": "Bearer x"})
        with pytest.raises(urllib.error.HTTPError):
            urllib.request.urlopen(wrong, timeout=10)
        assert [m["to"] for m in emulator.messages()] == ["85291234567"]  # the helper sends the token


@pytest.mark.parametrize(
    ("host", "token", "expected"),
    [
        ("127.0.0.1", False, None),
        ("localhost", False, None),
        ("::1", False, None),
        ("0.0.0.0", False, "has no authentication: use --inspection-token"),
        ("0.0.0.0", True, "is protected by its token"),
    ],
)
def test_listening_beyond_loopback_is_said_out_loud(host: str, token: bool, expected: str | None) -> None:
    from airflow_provider_globesms.emulator.cli import exposure_warning

    warning = exposure_warning(host, token)
    assert (warning is None) if expected is None else (warning is not None and expected in warning)


def test_a_huge_body_is_refused_fast_with_413(globesms_emulator: EmulatorServer) -> None:
    import socket
    import time

    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", globesms_emulator.port), timeout=10) as sock:
        head = f"POST / HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-length: {8 * 1024 * 1024}\r\n\r\n"
        sock.sendall(head.encode() + b"x" * (2 * 1024 * 1024))  # past the limit, far from the declared end
        reply = b""
        while b"\r\n\r\n" not in reply or b"RequestEntityTooLarge" not in reply:
            chunk = sock.recv(65536)
            if not chunk:
                break
            reply += chunk
    assert reply.startswith(b"HTTP/1.1 413")
    assert b"RequestEntityTooLarge" in reply
    assert time.monotonic() - started < 5
    ok = send(globesms_emulator, sign(globesms_emulator, "SendMessageToGlobe", {"To": "85291234567", "Message": "hi"}))
    assert ok.code == "OK"  # and it keeps working


def test_an_unexpected_error_is_a_json_500_not_plain_text(
    globesms_emulator: EmulatorServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*_args: object, **_kwargs: object) -> None:
        raise KeyError("a bug")

    monkeypatch.setattr(globesms_emulator.gateway, "handle", broken)
    answer = send(globesms_emulator, sign(globesms_emulator, "SendMessageToGlobe", {"To": "85291234567"}))
    assert (answer.status, answer.body["Code"]) == (500, "InternalError")
    assert "KeyError" in answer.body["Message"]
