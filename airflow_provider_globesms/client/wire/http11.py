"""Minimal HTTP/1.1 framing for one request/response on a connected socket or stream.

``http.client`` parses every reply's headers with the ``email`` package and validates every header it
writes with regular expressions; on this hot path that is most of a send's CPU (measured in
``bench/client_cpu.py``). Our requests are fixed in shape (``POST /?query``, empty body, a dozen
headers we build ourselves), so writing them is one write. Replies are framed by llhttp through
``httptools`` (installed with uvicorn): ``Content-Length``, ``chunked``, or until close; interim 1xx
replies are skipped.

llhttp replaced a hand-written parser (issue 12). CPU to frame the emulator's own reply (474 bytes), in one
process, medians of 7 rounds of 20,000: hand-written 8.3 us, ``ReplyParser`` on llhttp 7.6 (0.91x), bare
httptools without our limits and dict 3.7; chunked: 13.4, 6.7 (0.50x), 3.4 (``bench/reply_parser.py``
measures the last two). On a whole send (``bench/client_cpu.py``, the commits before and after the change run
alternately, four runs of 9 rounds each): V3, the default, 237 us median before and 243 after, 0.28-0.33x and
0.28-0.34x of the official SDK in the same runs; V1 241 and 298 us, 0.28-0.30x and 0.31-0.38x, its runs after
the change spreading widely. The default send path is as fast; V1 may have lost a few percent to noise or to
the parser, which this host cannot tell apart.

``ReplyParser`` holds no I/O: the blocking transport feeds it from ``socket.recv`` and the asyncio
transport from ``StreamReader.read``, so both frame replies identically.
"""

from __future__ import annotations

import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass

import httptools

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


class ReplyParser:
    """Incremental parser of one reply: ``feed`` bytes until it returns the ``Reply``; ``eof`` when the
    peer closed. llhttp (through ``httptools``) does the framing; this adds the limits, the skipping of
    interim replies, close-delimited bodies and the errors our transports map to phases."""

    def __init__(self) -> None:
        self.received = 0
        self._relay = _Relay()
        self._llhttp = httptools.HttpResponseParser(self._relay)
        self._status = 0
        self._headers: dict[str, str] = {}
        self._body = bytearray()
        self._head_done = False
        self._until_close = False
        self._reply: Reply | None = None
        self._after_reply = False

    def feed(self, data: bytes) -> Reply | None:
        """Parse more bytes; the ``Reply`` once it is complete, else ``None``."""
        self.received += len(data)
        if not self._head_done and self.received > MAX_HEAD_BYTES:
            raise ProtocolViolation("reply headers larger than 64 KiB")
        self._relay.parser = self
        try:
            self._llhttp.feed_data(data)
        except httptools.HttpParserError as exc:
            if self._reply is None:
                raise self._violation(exc) from None
            self._after_reply = True  # garbage after a whole reply: the reply stands, the connection does not
        finally:
            self._relay.parser = None
        if self._reply is not None and self._after_reply:
            self._reply.keep_alive = False
        return self._reply

    def eof(self) -> Reply:
        """The peer closed the connection: finish a close-delimited body or explain what was cut."""
        if self.received == 0:
            raise PeerClosed("connection closed before any reply")
        if self._head_done and self._until_close:
            return Reply(self._status, self._headers, bytes(self._body), keep_alive=False)
        where = "body" if self._head_done else "headers"
        raise ProtocolViolation(f"connection closed inside the reply {where}")

    def _violation(self, exc: httptools.HttpParserError) -> ProtocolViolation:
        if isinstance(exc.__context__, ProtocolViolation):  # raised by one of our callbacks
            return exc.__context__
        if self._head_done:
            return ProtocolViolation(f"malformed reply body ({exc})")
        return ProtocolViolation(f"not an HTTP/1.x status line and headers ({exc})")

    # llhttp's callbacks
    def on_message_begin(self) -> None:
        """A new message starts; after a whole reply, that is bytes nobody asked for."""
        self._after_reply = self._reply is not None
        self._headers = {}

    def on_header(self, name: bytes, value: bytes) -> None:
        """Collect one header: lower-case name, repeated headers joined with ", "."""
        key = name.decode("latin-1").lower()
        text = value.decode("latin-1").strip()
        self._headers[key] = f"{self._headers[key]}, {text}" if key in self._headers else text

    def on_headers_complete(self) -> None:
        """Note the status and how the body ends; refuse a declared body over the limit."""
        status = self._llhttp.get_status_code()
        if 100 <= status < 200 and status != 101:
            return  # interim reply; the real one follows
        self._status, self._head_done = status, True
        length = self._headers.get("content-length")
        chunked = "chunked" in self._headers.get("transfer-encoding", "").lower()
        self._until_close = length is None and not chunked and status not in (204, 304)
        if length is not None and not chunked and int(length.split(",")[0]) > MAX_BODY_BYTES:
            raise ProtocolViolation(f"reply body of {length} bytes is larger than we accept")

    def on_body(self, body: bytes) -> None:
        """Collect body bytes, within the limit."""
        self._body += body
        if len(self._body) > MAX_BODY_BYTES:
            raise ProtocolViolation("reply body larger than we accept")

    def on_message_complete(self) -> None:
        """The reply is whole (an interim one is dropped and parsing goes on)."""
        if not self._head_done or self._reply is not None:
            return
        keep_alive = self._llhttp.should_keep_alive()
        self._reply = Reply(self._status, self._headers, bytes(self._body), keep_alive)


class _Relay:
    """llhttp's callbacks, passed on to the parser being fed. llhttp holds its callbacks for good: given the
    parser's own methods it would make a reference cycle per reply, which only the garbage collector frees
    (measured: a full collection of 25-60 ms every second at 2,000 sends/s, stalling the event loop)."""

    __slots__ = ("parser",)

    def __init__(self) -> None:
        self.parser: ReplyParser | None = None

    def on_message_begin(self) -> None:
        assert self.parser is not None
        self.parser.on_message_begin()

    def on_header(self, name: bytes, value: bytes) -> None:
        assert self.parser is not None
        self.parser.on_header(name, value)

    def on_headers_complete(self) -> None:
        assert self.parser is not None
        self.parser.on_headers_complete()

    def on_body(self, body: bytes) -> None:
        assert self.parser is not None
        self.parser.on_body(body)

    def on_message_complete(self) -> None:
        assert self.parser is not None
        self.parser.on_message_complete()


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
