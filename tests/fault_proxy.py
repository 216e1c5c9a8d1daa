"""A fault-injecting HTTP/1.1 TCP proxy for chaos tests, between an SMS client and the emulator.

The proxy reads one whole request at a time from a (keep-alive) client connection and applies the
next action of a schedule to it: pass it on, refuse, reset before or after forwarding, hang, cut the
reply short, or delay it. Every request that is forwarded goes over a fresh upstream connection, so
the emulator always sees complete requests and its own counters stay exact. Usage::

    with EmulatorServer(EmulatorConfig(delivery_delay=0)) as emulator, FaultProxy(emulator.port) as proxy:
        proxy.set_schedule(["forward_reset"])  # the first send is accepted, but its answer is lost
        GlobeSmsClient(credentials, endpoint=proxy.url).send_message("+85291234567", "hello")
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import struct
import threading
import time
from collections import Counter, deque
from collections.abc import Iterable
from types import TracebackType

ACTIONS = ("pass", "refuse", "reset_before", "forward_reset", "forward_hang", "cut_body", "delay")
_HOST = "127.0.0.1"
_MAX_HEAD = 64 * 1024
_UPSTREAM_TIMEOUT = 30.0


class _Closed(Exception):
    """The peer closed the connection (or it was shut down) before a whole message arrived."""


class _Message:
    """One HTTP message as raw bytes: the head (start line and headers, with CRLFCRLF) and the body."""

    def __init__(self, head: bytes, body: bytes, framed: bool) -> None:
        self.head = head
        self.body = body
        self.framed = framed  # False: the body ran until the connection closed
        lines = head.decode("latin-1").split("\r\n")
        self.start_line = lines[0]
        self.headers = {
            name.strip().lower(): value.strip()
            for name, _, value in (line.partition(":") for line in lines[1:] if line)
        }

    def wants_close(self) -> bool:
        """Whether this message ends its connection (``Connection: close``, HTTP/1.0, or unframed)."""
        if not self.framed or "close" in self.headers.get("connection", "").lower():
            return True
        return self.start_line.startswith("HTTP/1.0") or self.start_line.endswith("HTTP/1.0")


def _recv_more(sock: socket.socket, buf: bytearray) -> None:
    chunk = sock.recv(65536)
    if not chunk:
        raise _Closed
    buf += chunk


def _take_until(sock: socket.socket, buf: bytearray, marker: bytes, limit: int = _MAX_HEAD) -> bytes:
    while (end := buf.find(marker)) < 0:
        if len(buf) > limit:
            raise _Closed("head too long")
        _recv_more(sock, buf)
    data = bytes(buf[: end + len(marker)])
    del buf[: end + len(marker)]
    return data


def _take_exact(sock: socket.socket, buf: bytearray, size: int) -> bytes:
    while len(buf) < size:
        _recv_more(sock, buf)
    data = bytes(buf[:size])
    del buf[:size]
    return data


def _take_chunked(sock: socket.socket, buf: bytearray) -> bytes:
    """The raw bytes of a chunked body, chunk sizes and trailers included."""
    parts: list[bytes] = []
    while True:
        size_line = _take_until(sock, buf, b"\r\n")
        parts.append(size_line)
        size = int(size_line.split(b";")[0].strip() or b"0", 16)
        if size == 0:
            while (trailer := _take_until(sock, buf, b"\r\n")) != b"\r\n":
                parts.append(trailer)
            parts.append(trailer)
            return b"".join(parts)
        parts.append(_take_exact(sock, buf, size + 2))


def _read_message(sock: socket.socket, buf: bytearray, *, is_reply: bool) -> _Message:
    """Read one whole message from ``sock``; bytes after it stay in ``buf`` for the next one."""
    head = _take_until(sock, buf, b"\r\n\r\n")
    message = _Message(head, b"", True)
    status = message.start_line.split(" ", 2)[1] if is_reply else ""
    if is_reply and (status.startswith("1") or status in ("204", "304")):
        return message
    if "chunked" in message.headers.get("transfer-encoding", "").lower():
        message.body = _take_chunked(sock, buf)
    elif "content-length" in message.headers:
        message.body = _take_exact(sock, buf, int(message.headers["content-length"]))
    elif is_reply:
        with contextlib.suppress(_Closed):
            while True:
                _recv_more(sock, buf)
        message.body, message.framed = bytes(buf), False
        buf.clear()
    return message


def _reset(sock: socket.socket) -> None:
    """Close with SO_LINGER 0: the peer gets a TCP RST rather than a FIN."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


class FaultProxy:
    """A TCP proxy on 127.0.0.1 in front of ``upstream_port`` that injects the scheduled faults.

    Use it as a context manager; ``url`` is what the client under test is pointed at. See
    :meth:`set_schedule` for the actions and :meth:`stats` for what was done.
    """

    def __init__(
        self, upstream_port: int, *, hang_seconds: float = 5.0, delay_seconds: float = 0.2, refuse_seconds: float = 0.1
    ) -> None:
        self.upstream_port = upstream_port
        self.hang_seconds = hang_seconds
        self.delay_seconds = delay_seconds
        self.refuse_seconds = refuse_seconds
        self._lock = threading.Lock()  # schedule, counters, refusal window, the listener itself
        self._schedule: deque[str] = deque()
        self._default = "pass"
        self._counts: Counter[str] = Counter()
        self._stopping = threading.Event()
        self._listener_down = threading.Event()
        self._refuse_until = 0.0
        self._sockets: set[socket.socket] = set()
        self._threads: list[threading.Thread] = []
        self._selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._selector.register(self._wake_r, selectors.EVENT_READ)
        self._listener: socket.socket | None = self._listen(0)
        self.port: int = self._listener.getsockname()[1]
        self.url = f"http://{_HOST}:{self.port}"
        self._acceptor = threading.Thread(target=self._accept_loop, name=f"fault-proxy-{self.port}", daemon=True)

    # --- public API ------------------------------------------------------------------------------

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def start(self) -> FaultProxy:
        """Start accepting connections in a background thread."""
        self._acceptor.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop: end every hang and delay, close every socket, and join every thread. Idempotent."""
        if self._stopping.is_set():
            return
        self._stopping.set()
        self._listener_down.set()  # nobody waits for a refusal window any more
        self._wake()
        if self._acceptor.is_alive():
            self._acceptor.join(timeout)
        with self._lock:
            for sock in self._sockets:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
            threads = list(self._threads)
        deadline = time.monotonic() + timeout
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        with self._lock:
            for sock in self._sockets:
                sock.close()
            self._sockets.clear()
            if self._listener is not None:
                self._listener.close()
                self._listener = None
        self._selector.close()
        self._wake_r.close()
        self._wake_w.close()

    def wait_until_listening(self, timeout: float = 10.0) -> None:
        """Return once no refusal window is open and the port listens again (a fixed sleep is a race)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if self._listener is not None and self._refuse_until <= time.monotonic():
                    return
            time.sleep(0.01)
        raise TimeoutError(f"the proxy on port {self.port} did not listen again within {timeout} s")

    def set_schedule(self, actions: Iterable[str], default: str = "pass") -> None:
        """Replace the schedule: one action per request, in arrival order; then ``default`` for the rest.

        Actions: ``pass``, ``refuse`` (reset, and stop listening for ``refuse_seconds``), ``reset_before``
        (reset without forwarding), ``forward_reset`` (forward, read the reply, reset), ``forward_hang``
        (forward, then send nothing for ``hang_seconds`` and close), ``cut_body`` (forward, send the
        head and half the body, close), ``delay`` (forward, wait ``delay_seconds``, reply).
        """
        planned = list(actions)
        unknown = sorted({a for a in [*planned, default] if a not in ACTIONS})
        if unknown:
            raise ValueError(f"unknown actions {unknown}; known: {', '.join(ACTIONS)}")
        with self._lock:
            self._schedule = deque(planned)
            self._default = default

    def stats(self) -> dict[str, int]:
        """Counts: ``requests`` read from clients, ``forwarded`` upstream, and one per action applied."""
        with self._lock:
            out = {"requests": 0, "forwarded": 0, **dict.fromkeys(ACTIONS, 0)}
            out.update(self._counts)
            return out

    # --- listening and accepting ---------------------------------------------------------------------

    def _listen(self, port: int) -> socket.socket:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            listener.bind((_HOST, port))
            listener.listen(256)
        except OSError:
            listener.close()
            raise
        listener.setblocking(False)
        self._selector.register(listener, selectors.EVENT_READ)
        return listener

    def _wake(self) -> None:
        with contextlib.suppress(OSError):
            self._wake_w.send(b"x")

    def _accept_loop(self) -> None:
        while not self._stopping.is_set():
            for key, _ in self._selector.select():
                if key.fileobj is self._wake_r:
                    self._wake_r.recv(4096)
                    if not self._stopping.is_set() and self._refusing():
                        self._refuse_window()
                elif key.fileobj is self._listener:
                    self._accept(self._listener)
                break  # the listener may have changed: select again

    def _refusing(self) -> bool:
        with self._lock:
            return self._refuse_until > time.monotonic()

    def _accept(self, listener: socket.socket) -> None:
        try:
            client, _ = listener.accept()
        except (BlockingIOError, InterruptedError, ConnectionAbortedError):
            return
        client.setblocking(True)
        client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if not self._track(client):
            return
        thread = threading.Thread(target=self._serve, args=(client,), name=f"fault-proxy-{self.port}-conn", daemon=True)
        with self._lock:
            self._threads = [t for t in self._threads if t.is_alive()]
            self._threads.append(thread)
        thread.start()

    def _refuse_window(self) -> None:
        """Close the listener until the refusal window ends, then listen again on the same port."""
        with self._lock:
            if self._listener is not None:
                self._selector.unregister(self._listener)
                self._listener.close()
                self._listener = None
            self._listener_down.set()
        while True:
            with self._lock:
                remaining = self._refuse_until - time.monotonic()
                if remaining <= 0:
                    with contextlib.suppress(OSError):  # the port is briefly busy: try again shortly
                        self._listener = self._listen(self.port)
                        self._listener_down.clear()
                        return
                    remaining = 0.01
            if self._stopping.wait(remaining):
                return

    # --- one client connection -------------------------------------------------------------------

    def _track(self, sock: socket.socket) -> bool:
        with self._lock:
            if self._stopping.is_set():
                sock.close()
                return False
            self._sockets.add(sock)
            return True

    def _untrack(self, sock: socket.socket, *, reset: bool = False) -> None:
        with self._lock:
            self._sockets.discard(sock)
        if reset:
            _reset(sock)
        else:
            sock.close()

    def _next_action(self) -> str:
        with self._lock:
            action = self._schedule.popleft() if self._schedule else self._default
            self._counts["requests"] += 1
            self._counts[action] += 1
            return action

    def _serve(self, client: socket.socket) -> None:
        buf = bytearray()
        reset = False
        try:
            while not self._stopping.is_set():
                request = _read_message(client, buf, is_reply=False)
                action = self._next_action()
                reset = action in ("refuse", "reset_before", "forward_reset")
                if not self._apply(action, client, request):
                    return
        except (_Closed, OSError, ValueError, IndexError):
            reset = False
        finally:
            self._untrack(client, reset=reset)

    def _apply(self, action: str, client: socket.socket, request: _Message) -> bool:
        """Carry out ``action``; True when the client connection stays open for the next request."""
        if action == "refuse":
            self._stop_listening()
            return False
        if action == "reset_before":
            return False
        reply = self._forward(request)
        if reply is None:
            client.sendall(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            return False
        if action == "forward_reset":
            return False
        if action == "forward_hang":
            self._stopping.wait(self.hang_seconds)
            return False
        if action == "cut_body":
            client.sendall(reply.head + reply.body[: len(reply.body) // 2])
            return False
        if action == "delay" and self._stopping.wait(self.delay_seconds):
            return False
        client.sendall(reply.head + reply.body)
        return not (reply.wants_close() or request.wants_close())

    def _stop_listening(self) -> None:
        """Open (or extend) the refusal window and wait until the listener is really closed."""
        with self._lock:
            self._refuse_until = max(self._refuse_until, time.monotonic() + self.refuse_seconds)
        self._wake()
        self._listener_down.wait(timeout=2.0)

    def _forward(self, request: _Message) -> _Message | None:
        """Send ``request`` upstream on a fresh connection and read the whole reply; None if that failed."""
        try:
            upstream = socket.create_connection((_HOST, self.upstream_port), timeout=_UPSTREAM_TIMEOUT)
        except OSError:
            return None
        if not self._track(upstream):
            return None
        try:
            upstream.sendall(request.head + request.body)
            with self._lock:
                self._counts["forwarded"] += 1
            return _read_message(upstream, bytearray(), is_reply=True)
        except (_Closed, OSError, ValueError, IndexError):
            return None
        finally:
            self._untrack(upstream)
