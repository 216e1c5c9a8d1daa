"""Endpoint resolution and the HTTP/1.1 framing of replies, on real sockets."""

from __future__ import annotations

import itertools
import socket
import threading
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from airflow_provider_globesms.client import ConfigurationError, Endpoint
from airflow_provider_globesms.client.wire.http11 import (
    MAX_BODY_BYTES,
    MAX_HEAD_BYTES,
    PeerClosed,
    ProtocolViolation,
    ReplyParser,
    encode_request,
    read_reply,
)


@pytest.mark.parametrize(
    ("region", "url"),
    [
        (None, "https://dysmsapi.ap-southeast-1.aliyuncs.com"),
        ("ap-southeast-1", "https://dysmsapi.ap-southeast-1.aliyuncs.com"),
        ("ap-southeast-5", "https://dysmsapi.ap-southeast-5.aliyuncs.com"),
        ("eu-central-1", "https://dysmsapi.eu-central-1.aliyuncs.com"),
        ("us-east-1", "https://dysmsapi.us-east-1.aliyuncs.com"),
        ("cn-hongkong", "https://dysmsapi-xman.cn-hongkong.aliyuncs.com"),
        ("cn-beijing", "https://dysmsapi-proxy.cn-beijing.aliyuncs.com"),
    ],
)
def test_endpoint_from_region(region: str | None, url: str) -> None:
    assert Endpoint.resolve(region).url == url


@pytest.mark.parametrize(
    ("endpoint", "url", "host_header"),
    [
        ("http://127.0.0.1:8787", "http://127.0.0.1:8787", "127.0.0.1:8787"),
        ("127.0.0.1:8787", "http://127.0.0.1:8787", "127.0.0.1:8787"),  # the official SDK's form
        ("http://localhost:8787/", "http://localhost:8787", "localhost:8787"),
        ("http://[::1]:8787", "http://::1:8787", "::1:8787"),
        ("https://sms.example.com", "https://sms.example.com", "sms.example.com"),
        ("sms.example.com", "https://sms.example.com", "sms.example.com"),
        ("https://sms.example.com:8443", "https://sms.example.com:8443", "sms.example.com:8443"),
    ],
)
def test_explicit_endpoint_wins(endpoint: str, url: str, host_header: str) -> None:
    resolved = Endpoint.resolve("eu-central-1", endpoint)
    assert resolved.url == url
    assert resolved.host_header == host_header


@pytest.mark.parametrize(
    ("endpoint", "reason"),
    [
        ("http://dysmsapi.aliyuncs.com", "plain HTTP to a non-loopback host"),
        ("http://10.0.0.5:8787", "plain HTTP to a non-loopback host"),
        ("ftp://127.0.0.1", r"not an http\(s\) URL"),
        ("https://sms.example.com/api", "without a path"),
        ("https://sms.example.com:99999", "Port out of range"),
    ],
)
def test_bad_endpoints_are_refused_clearly(endpoint: str, reason: str) -> None:
    with pytest.raises(ConfigurationError, match=reason):
        Endpoint.resolve(None, endpoint)


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    a, b = socket.socketpair()
    a.settimeout(5)
    yield a, b
    a.close()
    b.close()


def serve(sock: socket.socket, *chunks: bytes, close: bool = False) -> threading.Thread:
    def run() -> None:
        for chunk in chunks:
            sock.sendall(chunk)
        if close:
            sock.shutdown(socket.SHUT_WR)

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def test_content_length_reply(pair: tuple[socket.socket, socket.socket]) -> None:
    client, server = pair
    serve(server, b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: 1\r\nx-a: 2\r\n\r\nhe", b"llo").join()
    reply = read_reply(client, ReplyParser())
    assert (reply.status, reply.body, reply.keep_alive) == (200, b"hello", True)
    assert reply.headers["x-a"] == "1, 2"


def test_chunked_reply_with_extensions_and_trailers(pair: tuple[socket.socket, socket.socket]) -> None:
    client, server = pair
    serve(
        server,
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"4;ext=1\r\nWiki\r\n5\r\npedia\r\n",
        b"0\r\nTrailer: x\r\n\r\n",
    ).join()
    assert read_reply(client, ReplyParser()).body == b"Wikipedia"


def test_interim_reply_is_skipped(pair: tuple[socket.socket, socket.socket]) -> None:
    client, server = pair
    serve(server, b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n").join()
    assert read_reply(client, ReplyParser()).status == 201


def test_close_delimited_reply_is_not_kept_alive(pair: tuple[socket.socket, socket.socket]) -> None:
    client, server = pair
    serve(server, b'HTTP/1.0 200 OK\r\n\r\n{"a": 1}', close=True).join()
    reply = read_reply(client, ReplyParser())
    assert reply.body == b'{"a": 1}'
    assert reply.keep_alive is False


def test_connection_close_header(pair: tuple[socket.socket, socket.socket]) -> None:
    client, server = pair
    serve(server, b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n").join()
    assert read_reply(client, ReplyParser()).keep_alive is False


def test_nothing_at_all_is_peer_closed(pair: tuple[socket.socket, socket.socket]) -> None:
    client, server = pair
    serve(server, close=True).join()
    with pytest.raises(PeerClosed):
        read_reply(client, ReplyParser())


def test_truncated_body_is_a_protocol_violation(pair: tuple[socket.socket, socket.socket]) -> None:
    client, server = pair
    serve(server, b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", close=True).join()
    with pytest.raises(ProtocolViolation, match="inside the reply body"):
        read_reply(client, ReplyParser())


def test_garbage_is_a_protocol_violation(pair: tuple[socket.socket, socket.socket]) -> None:
    client, server = pair
    serve(server, b"SSH-2.0-OpenSSH_9.2\r\n\r\n").join()
    with pytest.raises(ProtocolViolation, match="status line"):
        read_reply(client, ReplyParser())


def test_request_encoding() -> None:
    raw = encode_request("POST", "/?a=1", {"host": "h", "x-acs-action": "QueryMessage"})
    assert raw == b"POST /?a=1 HTTP/1.1\r\nhost: h\r\nx-acs-action: QueryMessage\r\ncontent-length: 0\r\n\r\n"


def test_a_status_code_must_be_ascii_digits(pair: tuple[socket.socket, socket.socket]) -> None:
    client, server = pair
    serve(server, "HTTP/1.1 2² OK\r\nContent-Length: 0\r\n\r\n".encode("latin-1")).join()
    with pytest.raises(ProtocolViolation, match="status line"):
        read_reply(client, ReplyParser())


_header_names = st.text(alphabet="abcdefghijklmnopqrstuvwxyz-", min_size=1, max_size=12).filter(
    lambda name: name not in ("content-length", "transfer-encoding", "connection")
)
_header_values = st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=20)


def _wire(status: int, headers: list[tuple[str, str]], body: bytes, pieces: list[int] | None) -> bytes:
    head = f"HTTP/1.1 {status} X\r\n" + "".join(f"{n}: {v}\r\n" for n, v in headers)
    if pieces is None:
        return f"{head}Content-Length: {len(body)}\r\n\r\n".encode() + body
    chunks, at = b"", 0
    for size in [*pieces, len(body)]:
        part = body[at : at + size]
        at += len(part)
        if part:
            chunks += b"%x\r\n%s\r\n" % (len(part), part)
    return f"{head}Transfer-Encoding: chunked\r\n\r\n".encode() + chunks + b"0\r\n\r\n"


@given(
    status=st.sampled_from([200, 400, 403, 404, 500, 503]),
    headers=st.lists(st.tuples(_header_names, _header_values), max_size=6),
    body=st.binary(max_size=300),
    pieces=st.none() | st.lists(st.integers(1, 50), max_size=5),
    cuts=st.lists(st.integers(0, 2000), max_size=8),
    interim=st.booleans(),
)
@settings(max_examples=300, deadline=None)
def test_any_split_of_a_reply_parses_the_same(
    status: int,
    headers: list[tuple[str, str]],
    body: bytes,
    pieces: list[int] | None,
    cuts: list[int],
    interim: bool,
) -> None:
    """However TCP cuts a reply (an interim 100 before it or not), the parser returns the same whole reply
    only once its last byte is in, and the headers and body it built."""
    data = (b"HTTP/1.1 100 Continue\r\n\r\n" if interim else b"") + _wire(status, headers, body, pieces)
    bounds = sorted({0, *(c % (len(data) + 1) for c in cuts), len(data)})
    parser, replies = ReplyParser(), []
    for start, end in itertools.pairwise(bounds):
        replies.append(parser.feed(data[start:end]))
    assert all(r is None for r in replies[:-1])
    reply = replies[-1]
    assert reply is not None
    assert (reply.status, reply.body, reply.keep_alive) == (status, body, True)
    expected: dict[str, list[str]] = {}
    for name, value in headers:
        expected.setdefault(name, []).append(value.strip())
    assert {k: v for k, v in reply.headers.items() if k in expected} == {k: ", ".join(v) for k, v in expected.items()}


def test_bytes_after_the_reply_make_the_connection_untrusted() -> None:
    reply = ReplyParser().feed(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 200 OK\r\n")
    assert reply is not None
    assert reply.body == b"ok"
    assert reply.keep_alive is False
    reply = ReplyParser().feed(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok\x00garbage")
    assert reply is not None
    assert reply.keep_alive is False


def test_limits_on_head_and_body() -> None:
    with pytest.raises(ProtocolViolation, match="64 KiB"):
        ReplyParser().feed(b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * MAX_HEAD_BYTES)
    with pytest.raises(ProtocolViolation, match="larger than we accept"):
        ReplyParser().feed(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % (MAX_BODY_BYTES + 1))
    parser = ReplyParser()
    parser.feed(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
    chunk = b"10000\r\n" + b"x" * 65536 + b"\r\n"
    for _ in range(MAX_BODY_BYTES // 65536 - 1):
        parser.feed(chunk)
    with pytest.raises(ProtocolViolation, match="larger than we accept"):
        parser.feed(chunk * 2)


def test_bad_chunk_framing_is_a_protocol_violation() -> None:
    parser = ReplyParser()
    with pytest.raises(ProtocolViolation, match="malformed reply body"):
        parser.feed(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n")
