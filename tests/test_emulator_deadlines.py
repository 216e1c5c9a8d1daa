"""The sandbox never wedges (issue 10, part): a request must arrive whole in time, and a message the store
refuses is rolled back and counted instead of leaving a transaction open."""

from __future__ import annotations

import dataclasses
import socket
import time
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from airflow_provider_globesms.emulator import EmulatorConfig, EmulatorServer
from airflow_provider_globesms.emulator.store import MessageStore, StoredMessage
from tests.emulator_helpers import send, sign

DEADLINE = 0.5


@pytest.fixture(scope="module")
def strict_emulator() -> Iterator[EmulatorServer]:
    with EmulatorServer(EmulatorConfig(delivery_delay=0, request_timeout=DEADLINE)) as emulator:
        yield emulator


def _hi(emulator: EmulatorServer, to: str) -> str:
    return send(emulator, sign(emulator, "SendMessageToGlobe", {"To": to, "Message": "hi"})).code


def _read_until_closed(sock: socket.socket, limit: float = 10.0) -> tuple[bytes, float]:
    started = time.monotonic()
    sock.settimeout(limit)
    reply = b""
    while chunk := sock.recv(65536):
        reply += chunk
    return reply, time.monotonic() - started


def _signed_bytes(emulator: EmulatorServer) -> bytes:
    request = sign(emulator, "SendMessageToGlobe", {"To": "85291234567", "Message": "hi"})
    head = f"{request.method} {request.target} HTTP/1.1\r\n"
    headers = {**request.headers, "content-length": str(len(request.body or b""))}
    head += "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
    return head.encode() + (request.body or b"")


@pytest.mark.parametrize(
    "cut",
    [
        pytest.param(lambda raw: b"", id="idle-never-sends"),
        pytest.param(lambda raw: raw[:7], id="half-a-request-line"),
        pytest.param(lambda raw: raw[: raw.index(b"\r\n\r\n") - 5], id="headers-unfinished"),
        pytest.param(lambda raw: raw[:-3], id="body-unfinished"),
    ],
)
def test_a_request_that_does_not_arrive_in_time_gets_408_and_is_closed(strict_emulator: EmulatorServer, cut) -> None:  # type: ignore[no-untyped-def]
    before = strict_emulator.stats()["messages"]["total"]
    with socket.create_connection(("127.0.0.1", strict_emulator.port), timeout=10) as sock:
        sock.sendall(cut(_signed_bytes(strict_emulator)))
        # meanwhile the emulator serves everyone else
        assert _hi(strict_emulator, "85291234568") == "OK"
        reply, waited = _read_until_closed(sock)
    assert reply.startswith(b"HTTP/1.1 408")
    assert b'"Code": "RequestTimeout"' in reply
    assert waited < DEADLINE + 5  # closed by the deadline, not by the test's own timeout
    assert strict_emulator.stats()["messages"]["total"] == before + 1  # only the complete request counted


def test_an_idle_keep_alive_connection_that_starts_a_request_must_finish_it(strict_emulator: EmulatorServer) -> None:
    with socket.create_connection(("127.0.0.1", strict_emulator.port), timeout=10) as sock:
        sock.sendall(_signed_bytes(strict_emulator))
        first = sock.recv(65536)
        assert first.startswith(b"HTTP/1.1 200")
        sock.sendall(b"POST / HT")  # a second request, never finished
        reply, _ = _read_until_closed(sock)
    assert reply.startswith(b"HTTP/1.1 408")


def test_a_slow_reply_is_not_cut_by_the_request_deadline(strict_emulator: EmulatorServer) -> None:
    strict_emulator.set_faults(script=["hang"], hang_seconds=DEADLINE * 3)
    try:
        started = time.monotonic()
        assert _hi(strict_emulator, "85291234569") == "OK"
        assert time.monotonic() - started >= DEADLINE * 3
    finally:
        strict_emulator.set_faults(hang_seconds=30)


def _message(n: int, **poison: object) -> StoredMessage:
    fields = dict(
        message_id=f"m{n}", access_key_id="AKID", action="SendMessageToGlobe", to_number=f"8529123{n:04d}",
        sender=None, message="hi", segments=1, encoding="GSM-7", sms_type=None, task_id=None, channel_id=None,
        validity_period=None, country=None, region=None, carrier=None, submitted_at=1.0, final_at=2.0,
        final_status=1, error_code="", error_description="", request_id=f"r{n}",
    )  # fmt: skip
    return StoredMessage(**{**fields, **poison})  # type: ignore[arg-type]


POISONS = st.sampled_from(
    [{"validity_period": 10**30}, {"segments": -(2**70)}, {"message": "\ud800"}, {"sender": "\udfff"}]
)


@settings(max_examples=60, deadline=None)
@given(plan=st.lists(st.one_of(st.none(), POISONS), min_size=1, max_size=40), flush_every=st.integers(1, 50))
def test_a_message_the_store_refuses_never_wedges_it(plan: list[dict[str, object] | None], flush_every: int) -> None:
    store = MessageStore(flush_every=flush_every)
    good = set()
    for n, poison in enumerate(plan):
        store.add(_message(n, **(poison or {})))
        if poison is None:
            good.add(f"m{n}")
    store.add(_message(999))  # a write after the bad ones still lands
    assert {m.message_id for m in store.find(limit=1000)} == good | {"m999"}
    assert store.store_errors == len(plan) - len(good)
    assert not store._db.in_transaction
    store.close()


def test_store_errors_are_reported_in_the_stats(strict_emulator: EmulatorServer) -> None:
    assert strict_emulator.stats()["store_errors"] == 0
    strict_emulator.gateway.store.add(dataclasses.replace(_message(1), message_id="bad", validity_period=10**30))
    assert strict_emulator.stats()["store_errors"] == 1
    assert _hi(strict_emulator, "85291234560") == "OK"


def test_blank_lines_between_requests_do_not_keep_a_connection_open(strict_emulator: EmulatorServer) -> None:
    """Found by review: after one request, a CR/LF every 0.2 s was never closed (the parser skips blank
    lines without beginning a request, and any data cancels uvicorn's keep-alive timer)."""
    with socket.create_connection(("127.0.0.1", strict_emulator.port), timeout=10) as sock:
        sock.sendall(_signed_bytes(strict_emulator))
        assert sock.recv(65536).startswith(b"HTTP/1.1 200")
        started = time.monotonic()
        sock.settimeout(0.2)
        closed = False
        while time.monotonic() - started < DEADLINE + 4 and not closed:
            try:
                sock.sendall(b"\r\n")
                closed = sock.recv(65536) == b"" or closed
            except TimeoutError:
                continue
            except OSError:
                closed = True
        assert closed


def test_a_late_pipelined_request_never_costs_the_reply_before_it(strict_emulator: EmulatorServer) -> None:
    """Found by review: a complete request held by a `hang` fault, then half of a second one: the deadline
    answered 408 in place of the first reply, whose message had been accepted (a client would resend it)."""
    strict_emulator.set_faults(script=["hang"], hang_seconds=DEADLINE * 3)
    try:
        with socket.create_connection(("127.0.0.1", strict_emulator.port), timeout=10) as sock:
            sock.sendall(_signed_bytes(strict_emulator) + b"POST / HTTP/1.1\r\nhost: x\r\n")
            reply, _ = _read_until_closed(sock)
    finally:
        strict_emulator.set_faults(hang_seconds=30)
    assert reply.startswith(b"HTTP/1.1 200")
    assert b'"ResponseCode":"OK"' in reply.replace(b" ", b"")
    assert b"408" not in reply.split(b"\r\n", 1)[0]
