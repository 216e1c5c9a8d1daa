"""HTTP transport: a keep-alive connection pool to an ``endpoint.Endpoint``, and an exact record of how far a call got.

Why not ``requests`` or ``urllib3.PoolManager``: every SMS is billed on submission and the API has no
idempotency key, so after a failure we must know whether the request could have reached the API. A
pool's ``urlopen`` folds connect, write and read failures into one error. Here each exchange runs in
explicit phases on urllib3's connection classes (which bring TLS verification and socket options):

* ``Phase.CONNECT``: connecting (TCP, TLS) failed: no byte of the request left this machine.
* ``Phase.WRITE``: writing the request failed: part or all of it may have left.
* ``Phase.WAIT``: sent, then reset, closed or timed out before the first reply byte.
* ``Phase.READ``: the reply began, then was cut, malformed or timed out.

What each phase proves about arrival, and what happens next, is ``call``'s table.

Skipping the pool's per-call machinery also keeps the hot path cheap (see ``bench/client_cpu.py``).
"""

from __future__ import annotations

import enum
import socket
import ssl
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import certifi
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.exceptions import HTTPError as Urllib3Error

from airflow_provider_globesms.client.wire.endpoint import Endpoint, Timeout
from airflow_provider_globesms.client.wire.http11 import ReplyParser, encode_request, read_reply
from airflow_provider_globesms.client.wire.signing import SignedRequest


class Phase(enum.Enum):
    """How far an exchange got when it failed."""

    CONNECT = "connect"
    WRITE = "write"
    WAIT = "waiting for the first reply byte"
    READ = "reading the reply"


class ExchangeError(Exception):
    """An exchange failed in ``phase``; the send state machine (``call``) decides what that means."""

    def __init__(self, phase: Phase, cause: BaseException) -> None:
        self.phase = phase
        self.cause = cause
        super().__init__(f"{phase.value}: {type(cause).__name__}: {cause}")

    @property
    def timed_out(self) -> bool:
        """Whether the cause is a timeout."""
        return isinstance(self.cause, TimeoutError | socket.timeout)


@dataclass(frozen=True, slots=True)
class RawResponse:
    """An HTTP response as received: status, headers and body."""

    status: int
    headers: dict[str, str]  # lower-case names
    body: bytes


_ssl_context: ssl.SSLContext | None = None
_ssl_lock = threading.Lock()


def default_ssl_context() -> ssl.SSLContext:
    """The shared TLS context, trusting ``certifi``'s certificates (created once)."""
    global _ssl_context
    with _ssl_lock:
        if _ssl_context is None:
            _ssl_context = ssl.create_default_context(cafile=certifi.where())
        return _ssl_context


class ConnectionPool:
    """Thread-safe LIFO pool of keep-alive connections to one endpoint.

    The pool never blocks: callers bring their own concurrency (threads) and the pool keeps up to
    ``maxsize`` idle connections for them; surplus connections are closed when released.
    """

    def __init__(self, endpoint: Endpoint, timeout: Timeout, maxsize: int = 10, user_agent: str = "") -> None:
        self.endpoint = endpoint
        self.timeout = timeout
        self.maxsize = max(1, maxsize)
        self.user_agent = user_agent
        self._idle: deque[HTTPConnection] = deque()
        self._closed = False

    def _new_connection(self) -> HTTPConnection:
        if self.endpoint.scheme == "https":
            return HTTPSConnection(
                self.endpoint.host,
                self.endpoint.port,
                timeout=self.timeout.connect,
                ssl_context=default_ssl_context(),
            )
        return HTTPConnection(self.endpoint.host, self.endpoint.port, timeout=self.timeout.connect)

    def _checkout(self) -> HTTPConnection:
        while True:
            try:
                conn = self._idle.pop()
            except IndexError:
                return self._new_connection()
            # A keep-alive connection the server has closed shows as readable: drop it unused.
            if conn.is_connected:
                return conn
            conn.close()

    def _release(self, conn: HTTPConnection, reusable: bool) -> None:
        if reusable and not self._closed and len(self._idle) < self.maxsize:
            self._idle.append(conn)
        else:
            conn.close()

    def exchange(self, request: SignedRequest, before_write: Callable[[], None] | None = None) -> RawResponse:
        """Send one request and read the whole reply, or raise ``ExchangeError`` naming the phase.

        ``before_write`` runs once the connection is ready, just before the request is written (the
        rate limiter's admission: it should count the moment the gateway will count).
        """
        headers = request.headers
        if self.user_agent and "user-agent" not in headers:
            headers = {**headers, "user-agent": self.user_agent}
        payload = encode_request(request.method, request.target, headers, request.body)
        conn = self._checkout()
        if conn.sock is None:
            try:
                conn.connect()
            except (OSError, Urllib3Error) as exc:
                conn.close()
                raise ExchangeError(Phase.CONNECT, exc) from None
        sock = conn.sock
        assert sock is not None
        if before_write is not None:
            before_write()
        try:
            sock.settimeout(self.timeout.read)
            sock.sendall(payload)
        except OSError as exc:
            conn.close()
            raise ExchangeError(Phase.WRITE, exc) from None
        parser = ReplyParser()
        try:
            reply = read_reply(sock, parser)
        except OSError as exc:  # resets, timeouts, TLS errors, malformed or truncated replies
            conn.close()
            raise ExchangeError(Phase.WAIT if parser.received == 0 else Phase.READ, exc) from None
        self._release(conn, reply.keep_alive)
        return RawResponse(reply.status, reply.headers, reply.body)

    def close(self) -> None:
        """Close the idle connections; connections returned later are closed too."""
        self._closed = True
        while self._idle:
            self._idle.pop().close()
