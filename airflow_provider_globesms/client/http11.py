"""Minimal HTTP/1.1 framing for one request/response on a connected socket or stream.

``http.client`` parses every reply's headers with the ``email`` package and validates every header it
writes with regular expressions; on this hot path that is most of a send's CPU (measured in
``bench/client_cpu.py``). Our requests are fixed in shape (``POST /?query``, empty body, a dozen
headers we build ourselves), so writing them is one write. Replies are read per RFC 9112:
``Content-Length``, ``chunked``, or until close; interim 1xx replies are skipped.

``ReplyParser`` holds no I/O: the blocking transport feeds it from ``socket.recv`` and the asyncio
transport from ``StreamReader.read``, so both frame replies identically.
"""

from __future__ import annotations

import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass

from airflow_provider_globesms.client.errors import ConfigurationError

_SAFE = re.compile(r"[^\r\n\0 ]*").fullmatch
MAX_HEAD_BYTES = 64 * 1024
MAX_BODY_BYTES = 16 * 1024 * 1024
RECV_SIZE = 65536


class ProtocolViolation(OSError):
    """The peer's reply is not valid HTTP/1.1, is cut short, or is larger than we accept."""


class PeerClosed(ConnectionResetError):
    """The peer closed or reset the connection before sending a single byte of a reply."""


@dataclass(slots=True)
class Reply:
    """A parsed HTTP/1.1 reply, and whether the connection can be kept alive."""

    status: int
    headers: dict[str, str]  # lower-case names; repeated headers joined with ", "
    body: bytes
    keep_alive: bool


class UnsafeHeader(ConfigurationError):
    """A header name or value, or the request target, holds CR, LF or NUL: it would split the request."""


def encode_request(method: str, target: str, headers: Mapping[str, str], body: bytes = b"") -> bytes:
    """Serialise a request; refuse any CR, LF or NUL in the target or a header (credentials are checked
    at configuration already: this is the last line, where no byte has left yet)."""
    head = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    if head.count("\r") != len(headers) or head.count("\n") != len(headers) or "\0" in head or not _SAFE(target):
        raise UnsafeHeader("a request header or the target holds CR, LF or NUL; nothing was sent")
    return f"{method} {target} HTTP/1.1\r\n{head}content-length: {len(body)}\r\n\r\n".encode() + body


def _parse_head(head: bytes) -> tuple[str, int, dict[str, str]]:
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not (parts[1].isascii() and parts[1].isdigit()):
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


class ReplyParser:
    """Incremental parser of one reply: ``feed`` bytes until it returns the ``Reply``; ``eof`` when the
    peer closed."""

    _HEAD, _LENGTH, _CHUNK_SIZE, _CHUNK_DATA, _TRAILERS, _UNTIL_CLOSE = range(6)

    def __init__(self, method: str = "POST") -> None:
        self.method = method
        self.received = 0
        self._buf = bytearray()
        self._state = self._HEAD
        self._status = 0
        self._headers: dict[str, str] = {}
        self._keep_alive = True
        self._body = bytearray()
        self._need = 0

    def feed(self, data: bytes) -> Reply | None:
        """Parse more bytes; the ``Reply`` once it is complete, else ``None``."""
        self.received += len(data)
        self._buf += data
        return self._advance()

    def eof(self) -> Reply:
        """The peer closed the connection: finish a close-delimited body or explain what was cut."""
        if self.received == 0:
            raise PeerClosed("connection closed before any reply")
        if self._state == self._UNTIL_CLOSE:
            self._body += self._buf
            self._buf.clear()
            return self._done(keep_alive=False)
        where = "headers" if self._state == self._HEAD else "body"
        raise ProtocolViolation(f"connection closed inside the reply {where}")

    def _done(self, keep_alive: bool) -> Reply:
        # Bytes after the reply were never asked for: do not trust this connection again.
        return Reply(self._status, self._headers, bytes(self._body), keep_alive and not self._buf)

    def _line(self) -> bytes | None:
        end = self._buf.find(b"\r\n")
        if end < 0:
            if len(self._buf) > MAX_HEAD_BYTES:
                raise ProtocolViolation("bad chunked encoding")
            return None
        line = bytes(self._buf[:end])
        del self._buf[: end + 2]
        return line

    def _take_body(self) -> bool:
        take = min(self._need, len(self._buf))
        self._body += self._buf[:take]
        del self._buf[:take]
        self._need -= take
        if len(self._body) > MAX_BODY_BYTES:
            raise ProtocolViolation("reply body larger than we accept")
        return self._need == 0

    def _advance(self) -> Reply | None:
        while True:
            if self._state == self._HEAD:
                end = self._buf.find(b"\r\n\r\n")
                if end < 0:
                    if len(self._buf) > MAX_HEAD_BYTES:
                        raise ProtocolViolation("reply headers larger than 64 KiB")
                    return None
                version, status, headers = _parse_head(bytes(self._buf[:end]))
                del self._buf[: end + 4]
                if 100 <= status < 200 and status != 101:
                    continue  # interim reply; the real one follows
                self._status, self._headers = status, headers
                connection = headers.get("connection", "").lower()
                self._keep_alive = "close" not in connection and (version != "HTTP/1.0" or "keep-alive" in connection)
                if self.method == "HEAD" or status in (204, 304):
                    return self._done(self._keep_alive)
                if "chunked" in headers.get("transfer-encoding", "").lower():
                    self._state = self._CHUNK_SIZE
                elif "content-length" in headers:
                    try:
                        self._need = int(headers["content-length"].split(",")[0])
                    except ValueError:
                        raise ProtocolViolation("bad Content-Length") from None
                    if self._need > MAX_BODY_BYTES:
                        raise ProtocolViolation(f"reply body of {self._need} bytes is larger than we accept")
                    self._state = self._LENGTH
                else:
                    self._state = self._UNTIL_CLOSE
            elif self._state == self._LENGTH:
                if not self._take_body():
                    return None
                return self._done(self._keep_alive)
            elif self._state == self._CHUNK_SIZE:
                line = self._line()
                if line is None:
                    return None
                try:
                    self._need = int(line.split(b";", 1)[0].strip(), 16)
                except ValueError:
                    raise ProtocolViolation("bad chunk size") from None
                self._state = self._TRAILERS if self._need == 0 else self._CHUNK_DATA
            elif self._state == self._CHUNK_DATA:
                if not self._take_body():
                    return None
                if len(self._buf) < 2:
                    self._need = 0
                    return None
                if self._buf[:2] != b"\r\n":
                    raise ProtocolViolation("bad chunk terminator")
                del self._buf[:2]
                self._state = self._CHUNK_SIZE
            elif self._state == self._TRAILERS:
                line = self._line()
                if line is None:
                    return None
                if not line:  # the empty line after any trailers ends the reply
                    return self._done(self._keep_alive)
            else:  # _UNTIL_CLOSE
                self._body += self._buf
                self._buf.clear()
                if len(self._body) > MAX_BODY_BYTES:
                    raise ProtocolViolation("reply body larger than we accept")
                return None


def read_reply(sock: socket.socket, parser: ReplyParser) -> Reply:
    """Read one reply from a blocking socket into ``parser`` (whose ``received`` tells how far it got).
    Raises ``PeerClosed`` when the peer closed or reset the connection before a single reply byte,
    ``ProtocolViolation`` on malformed or truncated replies (a reset mid-reply included), and socket
    timeouts as they are."""
    try:
        while True:
            data = sock.recv(RECV_SIZE)
            if not data:
                return parser.eof()
            reply = parser.feed(data)
            if reply is not None:
                return reply
    except (ConnectionResetError, ConnectionAbortedError, BrokenPipeError) as exc:
        raise reset_error(parser, exc) from exc


def reset_error(parser: ReplyParser, exc: BaseException) -> OSError:
    """A reset is ``PeerClosed`` before any reply byte, a truncated reply after."""
    if isinstance(exc, PeerClosed):
        return exc
    if parser.received == 0:
        return PeerClosed(f"connection reset before any reply ({exc})")
    return ProtocolViolation(f"connection reset inside the reply ({exc})")
