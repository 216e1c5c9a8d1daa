"""A neutral HTTP/1.1 stand-in for Alibaba's SMS API, for benchmarks (not the project's emulator).

Neutral: every request but the ``/_neutral/`` control paths gets the same ``200`` accepted-send JSON a fixed
``--latency-ms`` after it arrived; it throttles nothing, verifies nothing and checks no signature.
Timestamps (CLOCK_REALTIME, ns): each accepted socket has ``SO_TIMESTAMPNS`` on and is read with ``recvmsg``; a
request's arrival is the ``SCM_TIMESTAMPNS`` kernel receive time of the read that brought its first bytes, not when
this loop read them (TCP stamps a read with its newest segment: exact when a request starts in one segment, as on
loopback); lacking one, ``time.time_ns()``, counted as ``fallback_timestamps``. Answers: ``time.time_ns()`` right
after the ``send()`` that completes them returns. Control: ``GET /_neutral/stats``, ``POST /_neutral/reset``.
"""

import argparse
import heapq
import json
import selectors
import signal
import socket
import struct
import subprocess
import sys
import time
from array import array
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.request import Request, urlopen

SO_TIMESTAMPNS: int = getattr(socket, "SO_TIMESTAMPNS", 35)  # also the SCM_TIMESTAMPNS control message type
ANCILLARY, MAX_HEAD, SECOND_NS = socket.CMSG_SPACE(16), 65536, 1_000_000_000
READ, WRITE = selectors.EVENT_READ, selectors.EVENT_WRITE
ANSWER = (
    '{{"RequestId":"{}","ResponseCode":"OK","ResponseDescription":"The SMS Send Request was accepted",'
    '"MessageId":"{}","Segments":"1","To":"","From":""}}'
)


class Conn:
    __slots__ = ("buf", "buf_ts", "close_when_sent", "closing", "counted_unsent", "last_due", "out", "sock", "writing")

    def __init__(self, sock: socket.socket) -> None:
        self.sock, self.buf, self.out = sock, bytearray(), bytearray()  # incomplete requests; unsent answers
        self.buf_ts = self.last_due = 0  # arrival of buf's first byte; due time of the newest answer (keeps order)
        self.closing = self.close_when_sent = self.counted_unsent = self.writing = False  # closing: read no more


def parse_head(raw: bytes) -> tuple[str, str, int, bool] | None:
    """Method, path, content length, close; None for anything refused (chunked bodies included)."""
    lines = raw.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    length, close = 0, parts[-1] == "HTTP/1.0"
    for line in lines[1:]:
        name, _, value = line.partition(":")
        name, value = name.strip().lower(), value.strip().lower()
        if name == "content-length":
            length = int(value) if value.isdigit() and length >= 0 else -1
        elif name == "connection":
            close = "close" in value or (close and "keep-alive" not in value)
        elif name == "transfer-encoding" and "chunked" in value:
            length = -1
    return (parts[0], parts[1].split("?", 1)[0], length, close) if len(parts) == 3 and length >= 0 else None


def response(status: str, body: bytes, close: bool, request_id: str = "") -> bytes:
    head = f"HTTP/1.1 {status}\r\nContent-Type: application/json;charset=utf-8\r\nContent-Length: {len(body)}\r\n"
    connection, extra = "close" if close else "keep-alive", f"x-acs-request-id: {request_id}\r\n" if request_id else ""
    return f"{head}Connection: {connection}\r\n{extra}\r\n".encode() + body


def peak_1s(times: list[int]) -> int:
    """Most of the sorted times in any half-open interval [t, t + 1 s)."""
    best = start = 0
    for end, t in enumerate(times):
        while times[start] <= t - SECOND_NS:
            start += 1
        best = max(best, end - start + 1)
    return best


class NeutralServer:
    def __init__(self, latency_ms: float, listener: socket.socket) -> None:
        self.latency_ns, self.listener = int(latency_ms * 1_000_000), listener
        self.sel = selectors.DefaultSelector()
        self.sel.register(listener, READ, None)
        self.heap: list[tuple[int, int, Conn, bytes, bool, bool]] = []  # due, seq, conn, answer, close, counted
        self.seq = self.ids = self.open = 0
        self.reset()

    def reset(self) -> None:
        self.arrivals, self.last_answer, self.fallbacks, self.conn_max = array("q"), 0, 0, self.open

    def stats(self) -> dict[str, object]:
        times = sorted(self.arrivals)
        first, last = (times[0], times[-1]) if times else (0, 0)
        ns = {"first_arrival_ns": first, "last_arrival_ns": last, "last_answer_ns": self.last_answer}
        counts = {"peak_1s": peak_1s(times), "fallback_timestamps": self.fallbacks, "connections_max": self.conn_max}
        per_second = [0] * ((last - first) // SECOND_NS + 1) if times else []  # from the first arrival
        for moment in times:
            per_second[(moment - first) // SECOND_NS] += 1
        return {"requests": len(times), **ns, **counts, "per_second": per_second}

    def run(self) -> None:
        while True:
            timeout = max(0.0, (self.heap[0][0] - time.time_ns()) / 1e9) if self.heap else None
            for key, mask in self.sel.select(timeout):
                if key.data is None:
                    self.accept()
                    continue
                if mask & WRITE:
                    self.flush(key.data)
                if mask & READ and key.data.sock.fileno() >= 0:
                    self.read(key.data)
            self.deliver_due()

    def accept(self) -> None:
        while True:
            try:
                sock, _ = self.listener.accept()
            except OSError:  # BlockingIOError: none left
                return
            sock.setblocking(False)
            sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.sel.register(sock, READ, Conn(sock))
            self.open += 1
            self.conn_max = max(self.conn_max, self.open)

    def close(self, conn: Conn) -> None:
        if conn.sock.fileno() >= 0:
            self.sel.unregister(conn.sock)
            conn.sock.close()
            self.open -= 1

    def read(self, conn: Conn) -> None:
        """One recvmsg; every request completed by it is handled, stamped with its first bytes' arrival."""
        try:
            data, ancillary, _, _ = conn.sock.recvmsg(65536, ANCILLARY)
        except BlockingIOError:
            return None
        except OSError:
            data, ancillary = b"", []
        if not data:
            return self.close(conn)
        if conn.closing:
            return None
        ts, buf = 0, conn.buf
        for level, kind, raw in ancillary:
            if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(raw) >= 16:
                seconds, nanoseconds = struct.unpack_from("qq", raw)
                ts = seconds * SECOND_NS + nanoseconds
        if not buf:
            self.fallbacks += not ts
            conn.buf_ts = ts or time.time_ns()
        buf += data
        while buf and not conn.closing:
            end = buf.find(b"\r\n\r\n")
            if end < 0 and len(buf) <= MAX_HEAD:
                return None
            head = parse_head(bytes(buf[:end])) if end >= 0 else None
            if head is None:
                return self.queue(conn, 0, response("400 Bad Request", b"{}", True), True, False)
            if len(buf) < end + 4 + head[2]:
                return None
            del buf[: end + 4 + head[2]]
            self.handle(conn, head[0], head[1], head[3], conn.buf_ts)
            conn.buf_ts = ts or time.time_ns()  # what is left came with this read
        return None

    def handle(self, conn: Conn, method: str, path: str, close: bool, arrival: int) -> None:
        if path == "/_neutral/stats" and method == "GET":
            self.queue(conn, 0, response("200 OK", json.dumps(self.stats()).encode(), close), close, False)
        elif path == "/_neutral/reset" and method == "POST":
            self.reset()
            self.queue(conn, 0, response("200 OK", b'{"ok": true}', close), close, False)
        else:
            self.arrivals.append(arrival)
            self.ids += 1
            request_id = f"{self.ids:032x}"
            body = ANSWER.format(request_id, f"{self.ids:020d}").encode()
            self.queue(conn, arrival + self.latency_ns, response("200 OK", body, close, request_id), close, True)

    def queue(self, conn: Conn, due: int, data: bytes, close: bool, counted: bool) -> None:
        conn.last_due = due = max(due, conn.last_due)
        conn.closing = conn.closing or close
        self.seq += 1
        heapq.heappush(self.heap, (due, self.seq, conn, data, close, counted))

    def deliver_due(self) -> None:
        heap, now = self.heap, time.time_ns()
        while heap and heap[0][0] <= now:
            _, _, conn, data, close, counted = heapq.heappop(heap)
            if conn.sock.fileno() >= 0:  # else closed meanwhile
                conn.out += data
                conn.close_when_sent |= close
                conn.counted_unsent |= counted
                if not conn.writing:
                    self.flush(conn)

    def flush(self, conn: Conn) -> None:
        try:
            del conn.out[: conn.sock.send(conn.out)]
        except BlockingIOError:
            pass
        except OSError:
            return self.close(conn)
        if bool(conn.out) != conn.writing:  # partly sent: wait for write events; all sent: stop waiting
            conn.writing = bool(conn.out)
            self.sel.modify(conn.sock, READ | WRITE if conn.writing else READ, conn)
        if not conn.out and conn.counted_unsent:
            self.last_answer, conn.counted_unsent = time.time_ns(), False
        return self.close(conn) if not conn.out and conn.close_when_sent else None


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Neutral stand-in for Alibaba's SMS API, for benchmarks.")
    parser.add_argument("--latency-ms", type=float, default=200.0, help="answer this long after each arrival")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--host", default="127.0.0.1", choices=["127.0.0.1"], help="binds 127.0.0.1 only")
    args = parser.parse_args(argv)
    listener = socket.create_server((args.host, args.port), backlog=4096)  # sets SO_REUSEADDR (POSIX)
    listener.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)  # kernel stamping on before the first client
    listener.setblocking(False)
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: sys.exit(0))  # SystemExit unwinds the loop: a clean exit, status 0
    print(f"neutral server listening on http://127.0.0.1:{listener.getsockname()[1]}", flush=True)
    with listener:
        NeutralServer(args.latency_ms, listener).run()


@contextmanager
def neutral_server(latency_ms: float) -> Iterator[str]:
    """This server in its own process on a free loopback port; yields its URL, terminates it afterwards."""
    command = [sys.executable, __file__, "--latency-ms", str(latency_ms)]
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True) as process:  # exit closes the pipe and waits
        try:
            line = process.stdout.readline() if process.stdout else ""
            if "listening on " not in line:
                raise RuntimeError(f"neutral server did not start: {line!r}")
            yield line.split("listening on ", 1)[1].strip()
        finally:
            process.terminate()


def stats(url: str) -> dict[str, Any]:
    with urlopen(f"{url}/_neutral/stats", timeout=30) as answer:  # noqa: S310 - our loopback server
        counted: dict[str, Any] = json.loads(answer.read())
    return counted


def reset(url: str) -> None:
    urlopen(Request(f"{url}/_neutral/reset", data=b"", method="POST"), timeout=30).close()  # noqa: S310 - loopback


if __name__ == "__main__":
    main()
