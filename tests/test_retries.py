"""What the client retries, and what it must never resend, against the emulator on 127.0.0.1."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from airflow_provider_globesms.client import (
    AuthenticationError,
    BusinessError,
    Credentials,
    DysmsClient,
    OutcomeUnknownError,
    RequestNotSentError,
    RetryPolicy,
    SendMessageResult,
    ThrottlingError,
    Timeout,
)
from airflow_provider_globesms.client.client import SEND
from airflow_provider_globesms.emulator import EmulatorConfig, EmulatorServer

FAST = RetryPolicy(max_attempts=4, max_throttled_attempts=4, backoff_base=0.01, backoff_cap=0.05)


@pytest.fixture
def emulator() -> Iterator[EmulatorServer]:
    with EmulatorServer(EmulatorConfig(delivery_delay=0)) as server:
        yield server


def client_for(url: str, **kwargs: object) -> DysmsClient:
    options: dict[str, object] = {"retry": FAST, "timeout": Timeout(connect=1, read=2)}
    options.update(kwargs)
    return DysmsClient(Credentials("AKID", "SECRET"), endpoint=url, **options)  # type: ignore[arg-type]


def send_requests(emulator: EmulatorServer) -> int:
    return int(emulator.stats()["actions"].get(SEND, {}).get("requests", 0))


def test_throttled_then_ok_sends_one_message(emulator: EmulatorServer) -> None:
    emulator.set_faults(script=["throttle"])
    with client_for(emulator.url) as client:
        result = client.send_message("+85291234567", "hello")
    assert result.response_code == "OK"
    assert send_requests(emulator) == 2
    assert [m["message_id"] for m in emulator.messages()] == [result.message_id]


def test_the_gateways_own_qps_cap_is_waited_out(emulator: EmulatorServer) -> None:
    """A real cap hit: the time-left header says how long; the retry lands after it."""
    emulator.set_settings(qps=1)
    with client_for(emulator.url, max_qps=1000) as client:
        first = client.send_message("+85291234567", "one")
        second = client.send_message("+85291234568", "two")
        assert client.stats[f"{SEND}.retry"] >= 1
    assert first.message_id != second.message_id
    assert len(emulator.messages()) == 2
    assert emulator.stats()["actions"][SEND]["throttled"] >= 1


def test_503_then_ok_sends_one_message(emulator: EmulatorServer) -> None:
    emulator.set_faults(script=["error_5xx"])
    with client_for(emulator.url) as client:
        client.send_message("+85291234567", "hello")
    assert send_requests(emulator) == 2
    assert len(emulator.messages()) == 1


def test_connection_refused_then_ok_sends_one_message() -> None:
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()  # nothing listens on this port now
    started: list[EmulatorServer] = []

    def start_emulator_while_backing_off(_seconds: float) -> None:
        if not started:
            started.append(EmulatorServer(EmulatorConfig(delivery_delay=0), port=port).start())

    client = client_for(f"http://127.0.0.1:{port}", sleep=start_emulator_while_backing_off)
    try:
        result = client.send_message("+85291234567", "hello")
        (emulator,) = started
        assert result.response_code == "OK"
        assert send_requests(emulator) == 1
        assert len(emulator.messages()) == 1
        assert client.stats[f"{SEND}.retry"] == 1
    finally:
        client.close()
        for server in started:
            server.stop()


def test_read_timeout_after_the_request_was_received_is_never_resent(emulator: EmulatorServer) -> None:
    emulator.set_faults(script=["hang"], hang_seconds=3)
    with client_for(emulator.url, timeout=Timeout(connect=1, read=0.5)) as client:
        with pytest.raises(OutcomeUnknownError, match="may have been accepted"):
            client.send_message("+85291234567", "hello")
        assert client.stats[f"{SEND}.unknown"] == 1
    assert send_requests(emulator) == 1
    assert len(emulator.messages()) == 1  # it was accepted: resending would have billed it twice


def test_500_after_acceptance_is_never_resent(emulator: EmulatorServer) -> None:
    emulator.set_faults(script=["internal_error"])
    with client_for(emulator.url) as client, pytest.raises(OutcomeUnknownError, match="InternalError"):
        client.send_message("+85291234567", "hello")
    assert send_requests(emulator) == 1
    assert len(emulator.messages()) == 1


def test_reset_before_any_reply_is_retried(emulator: EmulatorServer) -> None:
    emulator.set_faults(script=["reset"])
    with client_for(emulator.url) as client:
        assert client.send_message("+85291234567", "hello").response_code == "OK"
    assert send_requests(emulator) == 2
    assert len(emulator.messages()) == 1


def test_strict_policy_treats_a_reset_as_unknown(emulator: EmulatorServer) -> None:
    emulator.set_faults(script=["reset"])
    strict = RetryPolicy(max_attempts=4, backoff_base=0.01, treat_reset_as_unsent=False)
    with client_for(emulator.url, retry=strict) as client, pytest.raises(OutcomeUnknownError):
        client.send_message("+85291234567", "hello")
    assert send_requests(emulator) == 1


def test_query_message_is_retried_even_after_a_timeout(emulator: EmulatorServer) -> None:
    """QueryMessage bills nothing, so an unanswered query is simply asked again."""
    with client_for(emulator.url, timeout=Timeout(connect=1, read=0.5)) as client:
        sent = client.send_message("+85291234567", "hello")
        emulator.set_faults(script=["hang:QueryMessage"], hang_seconds=2)
        result = client.query_message(sent.message_id)
    assert result.message_id == sent.message_id
    assert emulator.stats()["actions"]["QueryMessage"]["requests"] == 2


def test_retries_are_bounded(emulator: EmulatorServer) -> None:
    emulator.set_faults(script=["throttle"] * 4)
    with client_for(emulator.url) as client, pytest.raises(ThrottlingError):
        client.send_message("+85291234567", "hello")
    assert send_requests(emulator) == FAST.max_attempts
    assert emulator.messages() == []


def test_business_refusals_are_not_retried(emulator: EmulatorServer) -> None:
    with client_for(emulator.url) as client:
        # Bypass our own validation to see the API's answer to a sender ID it refuses.
        params = {"To": "85291234567", "Message": "hi", "From": "Not-Valid!"}
        with pytest.raises(BusinessError) as caught:
            client._call(SEND, params, SendMessageResult)
    assert caught.value.code == "INVALID_SENDERID"
    assert send_requests(emulator) == 1


def test_wrong_secret_is_an_authentication_error_not_retried(emulator: EmulatorServer) -> None:
    client = DysmsClient(Credentials("AKID", "WRONG"), endpoint=emulator.url, retry=FAST)
    with client, pytest.raises(AuthenticationError) as caught:
        client.send_message("+85291234567", "hello")
    assert caught.value.code == "SignatureDoesNotMatch"
    assert send_requests(emulator) == 1


def test_an_unreachable_endpoint_gives_up_with_a_clear_error() -> None:
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    with (
        client_for(f"http://127.0.0.1:{port}") as client,
        pytest.raises(RequestNotSentError, match="could not connect"),
    ):
        client.send_message("+85291234567", "hello")
