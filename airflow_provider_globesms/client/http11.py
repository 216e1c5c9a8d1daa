"""Minimal HTTP/1.1 framing for one request/response on an already connected socket.

``http.client`` parses every reply's headers with the ``email`` package and validates every header it
writes with regular expressions; on this hot path that is most of a send's CPU (measured in
``bench/client_cpu.py``). Our requests are fixed in shape (``POST /?query``, empty body, a dozen
headers we build ourselves), so writing them is one ``sendall``. Replies are read per RFC 9112:
``Content-Length``, ``chunked``, or until close; interim 1xx replies are skipped.
"""

from __future__ import annotations

import socket
from collections.abc import Mapping
from dataclasses import dataclass

MAX_HEAD_BYTES = 64 * 1024
MAX_BODY_BYTES = 16 * 1024 * 1024
_RECV = 65536


class ProtocolViolation(OSError):
    """The peer's reply is not valid HTTP/1.1 (or is larger than we accept)."""


class PeerClosed(ConnectionResetError):
    """The peer closed the connection before sending a single byte of a reply."""


@dataclass(slots=True)
class Reply:
    status: int
    headers: dict[str, str]  # lower-case names; repeated headers joined with ", "
    body: bytes
    keep_alive: bool


def encode_request(method: str, target: str, headers: Mapping[str, str], body: bytes = b"") -> bytes:
    """Serialise a request. Header names and values are ours, never user input with CR/LF in it."""
    head = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    return f"{method} {target} HTTP/1.1\r\n{head}content-length: {len(body)}\r\n\r\n".encode() + body


class _Reader:
    __slots__ = ("buf", "received", "sock")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = bytearray()
        self.received = 0

    def fill(self) -> bool:
        chunk = self.sock.recv(_RECV)
        if not chunk:
            return False
        self.received += len(chunk)
        self.buf += chunk
        return True

    def head(self) -> bytes:
        while True:
            end = self.buf.find(b"\r\n\r\n")
            if end >= 0:
                head = bytes(self.buf[:end])
                del self.buf[: end + 4]
                return head
            if len(self.buf) > MAX_HEAD_BYTES:
                raise ProtocolViolation("reply headers larger than 64 KiB")
            if not self.fill():
                if self.received == 0:
                    raise PeerClosed("connection closed before any reply")
                raise ProtocolViolation("connection closed inside the reply headers")

    def exactly(self, size: int) -> bytes:
        if size > MAX_BODY_BYTES:
            raise ProtocolViolation(f"reply body of {size} bytes is larger than we accept")
        while len(self.buf) < size:
            if not self.fill():
                raise ProtocolViolation("connection closed inside the reply body")
        data = bytes(self.buf[:size])
        del self.buf[:size]
        return data

    def line(self) -> bytes:
        while True:
            end = self.buf.find(b"\r\n")
            if end >= 0:
                line = bytes(self.buf[:end])
                del self.buf[: end + 2]
                return line
            if len(self.buf) > MAX_HEAD_BYTES or not self.fill():
                raise ProtocolViolation("bad chunked encoding")

    def chunked(self) -> bytes:
        body = bytearray()
        while True:
            size_text = self.line().split(b";", 1)[0].strip()
            try:
                size = int(size_text, 16)
            except ValueError:
                raise ProtocolViolation("bad chunk size") from None
            if size == 0:
                while self.line():  # trailers, up to the empty line
                    pass
                return bytes(body)
            body += self.exactly(size)
            if len(body) > MAX_BODY_BYTES:
                raise ProtocolViolation("reply body larger than we accept")
            if self.exactly(2) != b"\r\n":
                raise ProtocolViolation("bad chunk terminator")

    def until_close(self) -> bytes:
        while self.fill():
            if len(self.buf) > MAX_BODY_BYTES:
                raise ProtocolViolation("reply body larger than we accept")
        data = bytes(self.buf)
        self.buf.clear()
        return data


def _parse_head(head: bytes) -> tuple[str, int, dict[str, str]]:
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
        raise ProtocolViolation(f"not an HTTP/1.x status line: {lines[0][:60]!r}")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep:
            raise ProtocolViolation("malformed reply header")
        key = name.strip().lower()
        value = value.strip()
        headers[key] = f"{headers[key]}, {value}" if key in headers else value
    return parts[0], int(parts[1]), headers


def read_reply(sock: socket.socket, method: str = "POST") -> Reply:
    """Read one reply. Raises ``PeerClosed`` when the peer closed or reset the connection before a
    single reply byte, ``ProtocolViolation`` on malformed or truncated replies (a reset mid-reply
    included), and socket timeouts as they are."""
    reader = _Reader(sock)
    try:
        return _read(reader, method)
    except (ConnectionResetError, ConnectionAbortedError, BrokenPipeError) as exc:
        if isinstance(exc, PeerClosed):
            raise
        if reader.received == 0:
            raise PeerClosed(f"connection reset before any reply ({exc})") from exc
        raise ProtocolViolation(f"connection reset inside the reply ({exc})") from exc


def _read(reader: _Reader, method: str) -> Reply:
    while True:
        version, status, headers = _parse_head(reader.head())
        if 100 <= status < 200 and status != 101:
            continue  # interim reply; the real one follows
        break
    connection = headers.get("connection", "").lower()
    keep_alive = "close" not in connection and (version != "HTTP/1.0" or "keep-alive" in connection)
    if method == "HEAD" or status in (204, 304):
        body = b""
    elif "chunked" in headers.get("transfer-encoding", "").lower():
        body = reader.chunked()
    elif "content-length" in headers:
        try:
            length = int(headers["content-length"].split(",")[0])
        except ValueError:
            raise ProtocolViolation("bad Content-Length") from None
        body = reader.exactly(length)
    else:
        body = reader.until_close()
        keep_alive = False
    if reader.buf:
        keep_alive = False  # bytes nobody asked for: do not trust this connection again
    return Reply(status, headers, body, keep_alive)
