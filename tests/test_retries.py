"""What the client retries, and what it must never resend, against the emulator on 127.0.0.1."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from airflow_provider_globesms.client import (
    AuthenticationError,
    BusinessError,
    Credentials,
    GlobeSmsClient,
    OutcomeUnknownError,
    ReceivedWithoutAnswerError,
    RequestNotSentError,
    RetryPolicy,
    SendMessageResult,
    ThrottlingError,
    Timeout,
)
from airflow_provider_globesms.client.wire.signing import SEND
from airflow_provider_globesms.emulator import EmulatorConfig, EmulatorServer
from tests.emulator_helpers import StoppedClock

FAST = RetryPolicy(max_attempts=4, max_throttled_attempts=4, backoff_base=0.01, backoff_cap=0.05)


@pytest.fixture
def emulator() -> Iterator[EmulatorServer]:
    with EmulatorServer(EmulatorConfig(delivery_delay=0)) as server:
        yield server


def client_for(url: str, **kwargs: object) -> GlobeSmsClient:
    options: dict[str, object] = {"retry": FAST, "timeout": Timeout(connect=1, read=2)}
    options.update(kwargs)
    return GlobeSmsClient(Credentials("AKID", "SECRET"), endpoint=url, **options)  # type: ignore[arg-type]


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
    clock = StoppedClock(emulator)  # the second send comes within the same second, however slow
    with client_for(emulator.url, max_qps=1000, sleep=clock.advance) as client:  # its wait moves that clock
        first = client.send_message("+85291234567", "one")
        second = client.send_message("+85291234568", "two")
        assert client.stats[f"{SEND}.retry"] >= 1
    assert first.message_id != second.message_id
    assert len(emulator.messages()) == 2
    assert emulator.stats()["actions"][SEND]["throttled"] >= 1


def test_503_then_ok_sends_one_message(emulator: EmulatorServer) -> None:
    emulator.set_faults(script=["unavailable"])
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


def test_read_timeout_after_the_request_was_received_is_settled_by_replay_never_resent(
    emulator: EmulatorServer,
) -> None:
    emulator.set_faults(script=["hang"], hang_seconds=5)
    with client_for(emulator.url, timeout=Timeout(connect=1, read=2)) as client:
        with pytest.raises(ReceivedWithoutAnswerError, match="may have been accepted"):
            client.send_message("+85291234567", "hello")
        assert client.stats[f"{SEND}.unknown"] == 1
    assert send_requests(emulator) == 2  # the original, and its byte-identical replay
    assert emulator.stats()["codes"]["SignatureNonceUsed"] == 1
    assert len(emulator.messages()) == 1  # it was accepted: a new signature would have billed it twice


def test_500_after_acceptance_is_settled_by_replay_never_resent(emulator: EmulatorServer) -> None:
    emulator.set_faults(script=["internal_error"])
    with client_for(emulator.url) as client, pytest.raises(ReceivedWithoutAnswerError):
        client.send_message("+85291234567", "hello")
    assert send_requests(emulator) == 2
    assert len(emulator.messages()) == 1


def test_reset_before_any_reply_is_retried(emulator: EmulatorServer) -> None:
    emulator.set_faults(script=["reset"])
    with client_for(emulator.url) as client:
        assert client.send_message("+85291234567", "hello").response_code == "OK"
    assert send_requests(emulator) == 2
    assert len(emulator.messages()) == 1


def test_without_replay_a_reset_is_unknown_and_keeps_its_request(emulator: EmulatorServer) -> None:
    emulator.set_faults(script=["reset"])
    strict = RetryPolicy(max_attempts=4, backoff_base=0.01, confirm_by_replay=False)
    with client_for(emulator.url, retry=strict) as client, pytest.raises(OutcomeUnknownError) as caught:
        client.send_message("+85291234567", "hello")
    assert send_requests(emulator) == 1
    assert caught.value.request is not None  # a later try can still settle it by replay


def test_query_message_is_retried_even_after_a_timeout(emulator: EmulatorServer) -> None:
    """QueryMessage bills nothing, so an unanswered query is simply asked again."""
    with client_for(emulator.url, timeout=Timeout(connect=1, read=2)) as client:
        sent = client.send_message("+85291234567", "hello")
        emulator.set_faults(script=["hang:QueryMessage"], hang_seconds=5)
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
            client._run(client.new_call(SEND, params, SendMessageResult))
    assert caught.value.code == "INVALID_SENDERID"
    assert send_requests(emulator) == 1


def test_wrong_secret_is_an_authentication_error_not_retried(emulator: EmulatorServer) -> None:
    client = GlobeSmsClient(Credentials("AKID", "WRONG"), endpoint=emulator.url, retry=FAST)
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


class ForwardThenReset:
    """A loopback proxy that hands the first ``resets`` requests to the emulator, then resets the client's
    connection instead of relaying the answer: a load balancer failing after the API accepted."""

    def __init__(self, target_port: int, resets: int = 1) -> None:
        import threading

        self.target_port = target_port
        self.resets = resets
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(16)
        self.port = self.listener.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        import struct

        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            with client:
                while True:
                    request = b""
                    while b"\r\n\r\n" not in request:
                        chunk = client.recv(65536)
                        if not chunk:
                            break
                        request += chunk
                    if not request:
                        break
                    with socket.create_connection(("127.0.0.1", self.target_port)) as upstream:
                        upstream.sendall(request)
                        answer = b""
                        while b"\r\n\r\n" not in answer or len(answer) < answer.index(b"\r\n\r\n") + 4 + int(
                            answer.split(b"content-length: ")[1].split(b"\r\n")[0]
                        ):
                            answer += upstream.recv(65536)
                    if self.resets > 0:
                        self.resets -= 1
                        client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                        break  # closing with linger 0: a reset, the accepted request's answer lost
                    client.sendall(answer)

    def close(self) -> None:
        self.listener.close()


def test_a_reset_after_the_api_accepted_is_not_sent_twice(emulator: EmulatorServer) -> None:
    """The retry after a reset resends the same signed bytes: the gateway knows the nonce, so no second SMS."""
    proxy = ForwardThenReset(emulator.port)
    try:
        with client_for(f"http://127.0.0.1:{proxy.port}") as client, pytest.raises(ReceivedWithoutAnswerError):
            client.send_message("+85291234567", "hello")
    finally:
        proxy.close()
    assert len(emulator.messages()) == 1
    assert send_requests(emulator) == 2  # the original, and its byte-identical replay
    assert emulator.stats()["codes"]["SignatureNonceUsed"] == 1


def test_a_reset_before_the_api_saw_it_is_sent_once(emulator: EmulatorServer) -> None:
    emulator.set_faults(script=["reset"])  # dropped before processing: the nonce is still fresh
    with client_for(emulator.url) as client:
        assert client.send_message("+85291234567", "hello").response_code == "OK"
    assert len(emulator.messages()) == 1
