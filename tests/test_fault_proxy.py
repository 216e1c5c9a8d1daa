"""Each fault of the chaos-test proxy, seen from both sides: what the client got, what the emulator kept."""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from typing import Any

import pytest

from airflow_provider_globesms.client import Credentials, GlobeSmsClient, RetryPolicy, Timeout
from airflow_provider_globesms.client.wire.signing import SignedRequest
from airflow_provider_globesms.emulator import EmulatorConfig, EmulatorServer
from tests.emulator_helpers import sign
from tests.fault_proxy import FaultProxy

SEND = "SendMessageToGlobe"
ProxyFactory = Callable[..., FaultProxy]


@pytest.fixture
def emulator() -> Iterator[EmulatorServer]:
    with EmulatorServer(EmulatorConfig(delivery_delay=0)) as server:
        yield server


@pytest.fixture
def make_proxy(emulator: EmulatorServer) -> Iterator[ProxyFactory]:
    """Started proxies in front of the emulator; on teardown each is stopped, and must leave no thread behind."""
    proxies: list[FaultProxy] = []
    with ExitStack() as stack:

        def make(**options: float) -> FaultProxy:
            proxies.append(stack.enter_context(FaultProxy(emulator.port, **options)))
            return proxies[-1]

        yield make
    for proxy in proxies:
        assert proxy_threads(proxy) == []


def proxy_threads(proxy: FaultProxy) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith(f"fault-proxy-{proxy.port}") and t.is_alive()]


def signed(emulator: EmulatorServer, to: str = "85291234567") -> SignedRequest:
    return sign(emulator, SEND, {"To": to, "Message": "hi"})


def wire(request: SignedRequest, *, close: bool = False) -> bytes:
    lines = [f"{request.method} {request.target} HTTP/1.1", *(f"{k}: {v}" for k, v in request.headers.items())]
    lines.append(f"content-length: {len(request.body)}")
    if close:
        lines.append("connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + request.body


def exchange(port: int, data: bytes, timeout: float = 5.0) -> bytes:
    """Send ``data`` on a new connection and read until the proxy closes it (RST raises ConnectionResetError)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
        return received


def split_reply(raw: bytes) -> tuple[str, dict[str, str], bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    status, *lines = head.decode("latin-1").split("\r\n")
    headers = {name.strip().lower(): value.strip() for name, _, value in (line.partition(":") for line in lines)}
    return status, headers, body


def request_over(conn: http.client.HTTPConnection, request: SignedRequest) -> tuple[int, dict[str, Any]]:
    conn.request(request.method, request.target, body=request.body, headers=request.headers)
    reply = conn.getresponse()
    return reply.status, json.loads(reply.read())


def nonzero(stats: dict[str, int]) -> dict[str, int]:
    return {name: count for name, count in stats.items() if count}


def send_requests(emulator: EmulatorServer) -> int:
    return int(emulator.stats()["actions"].get(SEND, {}).get("requests", 0))


def test_pass_returns_the_upstream_reply(emulator: EmulatorServer, make_proxy: ProxyFactory) -> None:
    proxy = make_proxy()
    status, headers, body = split_reply(exchange(proxy.port, wire(signed(emulator), close=True)))
    assert status.startswith("HTTP/1.1 200")
    assert len(body) == int(headers["content-length"])
    assert json.loads(body)["ResponseCode"] == "OK"
    assert [m["to"] for m in emulator.messages()] == ["85291234567"]
    assert nonzero(proxy.stats()) == {"requests": 1, "forwarded": 1, "pass": 1}


def test_keep_alive_carries_several_requests(emulator: EmulatorServer, make_proxy: ProxyFactory) -> None:
    proxy = make_proxy()
    proxy.set_schedule(["pass", "pass"])
    conn = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=5)
    try:
        assert request_over(conn, signed(emulator, "85291234567"))[0] == 200
        first_socket = conn.sock
        assert request_over(conn, signed(emulator, "85291234568"))[0] == 200
        assert conn.sock is first_socket is not None  # the same client connection
    finally:
        conn.close()
    assert len(emulator.messages()) == 2
    assert nonzero(proxy.stats()) == {"requests": 2, "forwarded": 2, "pass": 2}


def test_reset_before_forwards_nothing(emulator: EmulatorServer, make_proxy: ProxyFactory) -> None:
    proxy = make_proxy()
    proxy.set_schedule(["reset_before"])
    with pytest.raises(ConnectionResetError):
        exchange(proxy.port, wire(signed(emulator)))
    assert emulator.messages() == []
    assert send_requests(emulator) == 0
    assert nonzero(proxy.stats()) == {"requests": 1, "reset_before": 1}


def test_forward_reset_loses_the_reply_of_an_accepted_message(
    emulator: EmulatorServer, make_proxy: ProxyFactory
) -> None:
    proxy = make_proxy()
    proxy.set_schedule(["forward_reset"])
    with pytest.raises(ConnectionResetError):
        exchange(proxy.port, wire(signed(emulator)))
    assert [m["to"] for m in emulator.messages()] == ["85291234567"]
    assert nonzero(proxy.stats()) == {"requests": 1, "forwarded": 1, "forward_reset": 1}


def test_forward_hang_sends_nothing_then_closes(emulator: EmulatorServer, make_proxy: ProxyFactory) -> None:
    proxy = make_proxy(hang_seconds=0.8)
    proxy.set_schedule(["forward_hang"])
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=0.3) as sock:
        sock.sendall(wire(signed(emulator)))
        with pytest.raises(TimeoutError):
            sock.recv(65536)
        sock.settimeout(3)
        assert sock.recv(65536) == b""  # closed after the hang, without a byte of the reply
    assert len(emulator.messages()) == 1


def test_stopping_ends_a_hang_at_once(emulator: EmulatorServer) -> None:
    proxy = FaultProxy(emulator.port, hang_seconds=60).start()
    proxy.set_schedule(["forward_hang"])
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as sock:
        sock.sendall(wire(signed(emulator)))
        deadline = time.monotonic() + 5
        while proxy.stats()["forwarded"] < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.1)  # the reply is read, the hang has begun
        started = time.monotonic()
        proxy.stop()
        assert time.monotonic() - started < 4  # not the 60 s hang, nor stop()'s 5 s join limit
        assert sock.recv(65536) == b""
    assert proxy_threads(proxy) == []
    assert len(emulator.messages()) == 1


def test_cut_body_sends_half_the_reply(emulator: EmulatorServer, make_proxy: ProxyFactory) -> None:
    proxy = make_proxy()
    proxy.set_schedule(["cut_body"])
    status, headers, body = split_reply(exchange(proxy.port, wire(signed(emulator))))
    assert status.startswith("HTTP/1.1 200")
    assert 0 < len(body) == int(headers["content-length"]) // 2
    with pytest.raises(json.JSONDecodeError):
        json.loads(body)
    assert len(emulator.messages()) == 1


def test_cut_body_is_an_incomplete_read_for_http_client(emulator: EmulatorServer, make_proxy: ProxyFactory) -> None:
    proxy = make_proxy()
    proxy.set_schedule(["cut_body"])
    conn = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=5)
    try:
        with pytest.raises(http.client.IncompleteRead):
            request_over(conn, signed(emulator))
    finally:
        conn.close()


def test_delay_answers_late_but_normally(emulator: EmulatorServer, make_proxy: ProxyFactory) -> None:
    proxy = make_proxy(delay_seconds=0.3)
    proxy.set_schedule(["delay", "pass"])
    conn = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=5)
    try:
        started = time.monotonic()
        status, body = request_over(conn, signed(emulator, "85291234567"))
        assert time.monotonic() - started >= 0.3
        assert (status, body["ResponseCode"]) == (200, "OK")
        assert request_over(conn, signed(emulator, "85291234568"))[0] == 200  # still kept alive
    finally:
        conn.close()
    assert len(emulator.messages()) == 2


def test_refuse_resets_and_closes_the_port_for_a_while(emulator: EmulatorServer, make_proxy: ProxyFactory) -> None:
    proxy = make_proxy(refuse_seconds=3)  # seconds, not tenths: a loaded CI machine stalls threads that long
    proxy.set_schedule(["refuse"])
    established = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=5)
    established.connect()  # before the window: stays usable through it
    try:
        with pytest.raises(ConnectionResetError):
            exchange(proxy.port, wire(signed(emulator, "85291234560")))
        window_started = time.monotonic()
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", proxy.port), timeout=1).close()
        assert request_over(established, signed(emulator, "85291234561"))[0] == 200
        assert time.monotonic() - window_started < 3  # all of that happened inside the window
    finally:
        established.close()
    proxy.wait_until_listening()
    status, _, _ = split_reply(exchange(proxy.port, wire(signed(emulator, "85291234562"), close=True)))
    assert status.startswith("HTTP/1.1 200")
    assert sorted(m["to"] for m in emulator.messages()) == ["85291234561", "85291234562"]
    assert nonzero(proxy.stats()) == {"requests": 3, "forwarded": 2, "refuse": 1, "pass": 2}


def test_schedule_is_consumed_in_order_then_default_applies(emulator: EmulatorServer, make_proxy: ProxyFactory) -> None:
    proxy = make_proxy()
    proxy.set_schedule(["pass"], default="reset_before")
    assert split_reply(exchange(proxy.port, wire(signed(emulator), close=True)))[0].startswith("HTTP/1.1 200")
    for _ in range(2):
        with pytest.raises(ConnectionResetError):
            exchange(proxy.port, wire(signed(emulator)))
    assert nonzero(proxy.stats()) == {"requests": 3, "forwarded": 1, "pass": 1, "reset_before": 2}
    with pytest.raises(ValueError, match="unknown actions"):
        proxy.set_schedule(["explode"])


def test_many_concurrent_keep_alive_connections_then_a_quick_stop(emulator: EmulatorServer) -> None:
    proxy = FaultProxy(emulator.port).start()
    numbers = [[f"852912{c:03d}{r:02d}" for r in range(3)] for c in range(64)]
    requests = [[signed(emulator, to) for to in row] for row in numbers]
    barrier = threading.Barrier(64)
    conns = [http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=10) for _ in numbers]

    def one_connection(conn: http.client.HTTPConnection, row: list[SignedRequest]) -> list[int]:
        conn.connect()
        barrier.wait(timeout=10)  # all 64 connections open at once
        return [request_over(conn, request)[0] for request in row]

    try:
        with ThreadPoolExecutor(64) as pool:
            statuses = list(pool.map(one_connection, conns, requests))
        assert statuses == [[200, 200, 200]] * 64
        assert nonzero(proxy.stats()) == {"requests": 192, "forwarded": 192, "pass": 192}
        assert len(proxy_threads(proxy)) == 65  # the acceptor and one per idle keep-alive connection
        started = time.monotonic()
        proxy.stop()  # with all 64 connections still open and idle
        assert time.monotonic() - started < 4  # within stop()'s 5 s join limit: no thread waited it out
        assert proxy_threads(proxy) == []
        assert all(conn.sock is not None and conn.sock.recv(1) == b"" for conn in conns)  # all closed
    finally:
        proxy.stop()
        for conn in conns:
            conn.close()
    assert len(emulator.messages()) == 192


def test_real_client_retries_a_reset_before_and_sends_once(emulator: EmulatorServer, make_proxy: ProxyFactory) -> None:
    proxy = make_proxy()
    proxy.set_schedule(["reset_before"])
    client = GlobeSmsClient(
        Credentials("AKID", "SECRET"),
        endpoint=proxy.url,
        timeout=Timeout(connect=1, read=2),
        retry=RetryPolicy(backoff_base=0.01, backoff_cap=0.05),
    )
    with client:
        result = client.send_message("+85291234567", "hello")
    assert result.response_code == "OK"
    assert len(emulator.messages()) == 1
    assert nonzero(proxy.stats()) == {"requests": 2, "forwarded": 1, "reset_before": 1, "pass": 1}
