"""The client's HTTP/1.1 reply parser beside bare httptools (llhttp), in the same run, on the emulator's replies.

``client/wire/http11.py``'s ``ReplyParser`` is llhttp (through httptools) plus what the transports need: limits,
interim replies skipped, close-delimited bodies, headers as a dict, errors by phase. This measures the CPU
to frame one reply with it and with httptools driven as bare as a caller can (a callback per header and
body piece, a fresh parser per reply), on bytes captured from a real emulator (a SendMessageToGlobe reply
with Content-Length, as the send path sees it) and on a chunked variant. Rounds alternate; medians compared.
The hand-written parser that ``ReplyParser`` replaced (issue 12) was measured with this script before it
went: its figures are in ``client/wire/http11.py``'s docstring.

    python bench/reply_parser.py [--replies 20000] [--rounds 7]
"""

from __future__ import annotations

import argparse
import functools
import socket
import sys
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent))

import httptools
from _common import cpu_per_call, emulator_process, median, save, table

from airflow_provider_globesms.client import Credentials, GlobeSmsClient
from airflow_provider_globesms.client.wire.http11 import ReplyParser, encode_request


class _LlhttpReply:
    """What a caller of httptools must write to get status, headers and body out of one reply."""

    def __init__(self) -> None:
        self.headers: dict[bytes, bytes] = {}
        self.body = bytearray()
        self.complete = False

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers[name.lower()] = value

    def on_body(self, body: bytes) -> None:
        self.body += body

    def on_message_complete(self) -> None:
        self.complete = True


def parse_with_httptools(data: bytes) -> int:
    reply = _LlhttpReply()
    parser = httptools.HttpResponseParser(reply)
    parser.feed_data(data)
    assert reply.complete
    return parser.get_status_code()


def parse_with_ours(data: bytes) -> int:
    reply = ReplyParser().feed(data)
    assert reply is not None
    return reply.status


def captured_reply(url: str) -> bytes:
    """The raw bytes of one SendMessageToGlobe reply, as the emulator sends them."""
    client = GlobeSmsClient(Credentials("AKID", "SECRET"), endpoint=url)
    signed = client.sign("SendMessageToGlobe", {"To": "85291234567", "Message": "hello", "TaskId": "bench"})
    parts = urlsplit(url)
    assert parts.hostname is not None
    assert parts.port is not None
    with socket.create_connection((parts.hostname, parts.port)) as sock:
        sock.sendall(encode_request(signed.method, signed.target, signed.headers, signed.body))
        received = b""
        while ReplyParser().feed(received) is None:
            received += sock.recv(65536)
    return received


def chunked(reply: bytes) -> bytes:
    head, body = reply.split(b"\r\n\r\n", 1)
    lines = [line for line in head.split(b"\r\n") if not line.lower().startswith(b"content-length")]
    half = len(body) // 2
    pieces = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in (body[:half], body[half:]))
    return b"\r\n".join([*lines, b"transfer-encoding: chunked"]) + b"\r\n\r\n" + pieces + b"0\r\n\r\n"


def _parse_ignoring_n(parse: Callable[[bytes], int], data: bytes, _n: int) -> int:
    return parse(data)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--replies", type=int, default=20000, help="replies per parser per round")
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    with emulator_process("--qps", "1000000000", "--delivery-delay", "0") as (url, _pid):
        plain = captured_reply(url)
    inputs = {"content-length": plain, "chunked": chunked(plain)}
    parsers = {"ReplyParser (llhttp + ours)": parse_with_ours, "bare httptools": parse_with_httptools}
    for data in inputs.values():
        assert {parse(data) for parse in parsers.values()} == {200}
    samples: dict[tuple[str, str], list[float]] = {(i, p): [] for i in inputs for p in parsers}
    for _ in range(args.rounds):
        for (shape, name), values in samples.items():
            values.append(
                cpu_per_call(functools.partial(_parse_ignoring_n, parsers[name], inputs[shape]), args.replies)
            )
    us = {key: median(values) * 1e6 for key, values in samples.items()}
    rows = [[shape, name, f"{us[(shape, name)]:.2f}"] for shape, name in us]
    print(f"CPU to frame one reply ({len(plain)} bytes), median of {args.rounds} rounds x {args.replies}")
    print(table(["reply", "parser", "microseconds"], rows))
    ratios = {shape: us[(shape, "bare httptools")] / us[(shape, "ReplyParser (llhttp + ours)")] for shape in inputs}
    for shape, ratio in ratios.items():
        print(f"bare httptools / ReplyParser, {shape}: {ratio:.2f}x")
    save("reply_parser", {"microseconds": {f"{s} / {p}": v for (s, p), v in us.items()}, "ratios": ratios})
    return 0


if __name__ == "__main__":
    sys.exit(main())
