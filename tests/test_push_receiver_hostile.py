"""The push receiver against hostile requests, over real HTTP: each refused fast, nothing stored, the secret
in no log; and generated push bodies, every good record stored as parsed and every broken one kept with
its reason, answered 200 exactly when stored."""

from __future__ import annotations

import contextlib
import json
import select
import shutil
import socket
import string
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from airflow_provider_globesms.client.receipts.push_store import PushStore
from airflow_provider_globesms.client.receipts.pushed import parse_push
from airflow_provider_globesms.receiver import SecretPathFilter, receiver_app
from tests.test_push_receiver import (
    PUSH,
    SECRET,
    LogCapture,
    Served,
    captured_logs,
    mounted,
    post,
    receipt,
    secret_forms,
    serve_receiver,
    stored_files,
)

MAX_BYTES = 1024 * 1024
FAST = 2.0  # seconds: generous; each refusal takes milliseconds


@pytest.fixture
def logs() -> Iterator[LogCapture]:
    """Every test here: the receiver's and uvicorn's log lines hold the secret in no form."""
    with captured_logs() as capture:
        yield capture
    assert capture.lines, "nothing was logged: the capture did not work"
    assert not [form for form in secret_forms() if form in capture.text]


@pytest.fixture
def served(tmp_path: Path, logs: LogCapture) -> Iterator[tuple[Served, Path]]:
    root = tmp_path / "push"
    with serve_receiver(PushStore(root), max_bytes=MAX_BYTES, body_timeout=0.5) as server:
        yield server, root
    assert stored_files(root) == [], "a refused request stored something"


def exchange(port: int, head: bytes, parts: Sequence[bytes] = (), interval: float = 0.0) -> tuple[bytes, float]:
    """A raw request: ``head``, then each of ``parts`` ``interval`` seconds apart, stopping as soon as the
    server answers; the whole answer (the connection is closed after it) and the seconds it took."""
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(head)
        for part in parts:
            if select.select([sock], [], [], interval)[0]:
                break  # answered already: the rest is never read
            try:
                sock.sendall(part)
            except OSError:  # the server closed on us, having answered
                break
        answer = b""
        with contextlib.suppress(ConnectionResetError):  # closed with our unread bytes: the kernel resets
            while chunk := sock.recv(65536):
                answer += chunk
    return answer, time.monotonic() - started


def request_head(path: str, *headers: str, method: str = "POST") -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", "Connection: close", *headers, "", ""]
    return "\r\n".join(lines).encode()


def without_date(answer: bytes) -> bytes:
    return b"\r\n".join(line for line in answer.split(b"\r\n") if not line.lower().startswith(b"date:"))


def status_of(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1])


def body_of(answer: bytes) -> Any:
    return json.loads(answer.split(b"\r\n\r\n", 1)[1])


def with_body(path: str, body: bytes) -> bytes:
    return request_head(path, f"Content-Length: {len(body)}", "Content-Type: application/json") + body


def test_a_wrong_or_missing_secret_answers_as_an_unknown_path(served: tuple[Served, Path]) -> None:
    server, _ = served
    unknown, _ = exchange(server.port, with_body("/globesms/nothing-here", b"[]"))
    assert status_of(unknown) == 404
    near = SECRET[:-1] + ("A" if SECRET[-1] != "A" else "B")
    paths = [
        "/globesms/push/receipts",
        "/globesms/push//receipts",
        PUSH.replace(SECRET, "wrong"),
        PUSH.replace(SECRET, near),  # one last character off
        PUSH.replace(SECRET, SECRET + "x"),
        PUSH.replace(SECRET, SECRET.upper()),
    ]
    for path in paths:
        answer, took = exchange(server.port, with_body(path, b"[]"))
        assert without_date(answer) == without_date(unknown), path
        assert took < FAST
    for method in ("GET", "PUT", "DELETE"):  # the route's other methods learn nothing either
        answer, _ = exchange(server.port, request_head(PUSH.replace(SECRET, near), method=method))
        assert without_date(answer) == without_date(unknown)
    # A wrong secret is refused before the body: a huge declared body, never sent, is not waited for.
    answer, took = exchange(server.port, request_head(PUSH.replace(SECRET, near), "Content-Length: 999999999"))
    assert (without_date(answer), took < FAST) == (without_date(unknown), True)


def test_an_address_outside_the_allowlist_answers_as_an_unknown_path(tmp_path: Path, logs: LogCapture) -> None:
    root = tmp_path / "push"
    app = receiver_app(PushStore(root), SECRET, allow=["10.0.0.0/8", "2001:db8::/32"])
    with Served(mounted(app)) as server:
        unknown, _ = exchange(server.port, with_body("/globesms/other", b"[]"))
        answer, took = exchange(server.port, with_body(PUSH, json.dumps([receipt("m1")]).encode()))
    assert (without_date(answer), took < FAST) == (without_date(unknown), True)
    assert stored_files(root) == []
    with Served(mounted(receiver_app(PushStore(root), SECRET, allow=[" 127.0.0.0/8"]))) as server:
        assert post(server.port, PUSH, [receipt("m1")])[0] == 200


@pytest.mark.parametrize(
    ("body", "status", "reason"),
    [
        pytest.param(b"[" + b"{}," * 99_999 + b"{}]", 413, "100000 records in one push", id="100000-records"),
        pytest.param(b"[" * 100_000 + b"]" * 100_000, 400, "not JSON (or is nested too deeply)", id="nested"),
        pytest.param(b'[{"MessageId": "m1", "To": "8529', 400, "not JSON", id="malformed"),
        pytest.param(b'{"MessageId": "m1"}', 400, "not a JSON array", id="not-an-array"),
        pytest.param(b"\xff\xfe[]", 400, "not JSON", id="not-utf8"),
        pytest.param(b"null", 400, "not a JSON array", id="null"),
    ],
)
def test_a_body_refused_whole_stores_nothing(
    served: tuple[Served, Path], body: bytes, status: int, reason: str
) -> None:
    server, _ = served
    answer, took = exchange(server.port, with_body(PUSH, body))
    assert status_of(answer) == status
    assert body_of(answer)["code"] == 1
    assert reason in body_of(answer)["msg"]
    assert took < FAST


def test_an_oversized_body_is_refused_by_its_length_or_while_read(served: tuple[Served, Path]) -> None:
    server, _ = served
    declared = request_head(PUSH, f"Content-Length: {50 * MAX_BYTES}")  # announced, never sent
    answer, took = exchange(server.port, declared)
    assert (status_of(answer), body_of(answer)["code"], took < FAST) == (413, 1, True)
    chunk = b"[" + b"1," * 32_000
    chunked = [f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n"] * 200  # 12 MB, announced by no length
    answer, took = exchange(server.port, request_head(PUSH, "Transfer-Encoding: chunked"), chunked, interval=0.005)
    assert took < FAST
    # The server answers 413 and closes with our unsent megabytes unread, so the kernel may reset the
    # connection before the answer is read: refused either way (the fixture checks nothing was stored).
    if answer:
        assert status_of(answer) == 413
        assert "over the limit" in body_of(answer)["msg"]


def test_a_slow_client_is_cut_off(served: tuple[Served, Path]) -> None:
    server, _ = served
    body = json.dumps([receipt("m1")]).encode()
    head = request_head(PUSH, f"Content-Length: {len(body)}")
    answer, took = exchange(server.port, head, [bytes([b]) for b in body], interval=0.05)  # 10 s at this pace
    assert status_of(answer) == 408
    assert took < FAST
    chunked_head = request_head(PUSH, "Transfer-Encoding: chunked")
    answer, took = exchange(server.port, chunked_head, [b"1\r\n[\r\n"] * 200, interval=0.05)
    assert (status_of(answer), took < FAST) == (408, True)


def test_the_filter_masks_any_push_path_in_a_record() -> None:
    import logging

    record = logging.LogRecord(
        "uvicorn.access", logging.INFO, "", 0, '%s - "%s %s" %d', ("1.2.3.4:5", "POST", PUSH + "?a=1", 200), None
    )
    SecretPathFilter().filter(record)
    # A query is masked with the rest: after a decoded path, nothing can be trusted to end the secret.
    assert record.getMessage() == '1.2.3.4:5 - "POST /globesms/push/***" 200'
    for path in (f"/globesms/%70ush/{SECRET}/receipts", f"/globesms/push/{SECRET}%2Freceipts", f"/push/{SECRET}"):
        record = logging.LogRecord("x", logging.INFO, "", 0, "GET " + path, None, None)
        SecretPathFilter().filter(record)
        assert SECRET not in record.getMessage()


# --- generated pushes ------------------------------------------------------------------------------

TASK_IDS = ["campaign-a", "campaign/b ä", ""]


@st.composite
def good_records(draw: st.DrawFn) -> dict[str, str]:
    message_id = draw(st.text(string.ascii_letters + string.digits + "-", min_size=1, max_size=30))
    number = draw(st.from_regex(r"\+?[1-9][0-9]{7,13}", fullmatch=True))
    extra = {"Status": draw(st.sampled_from(["1", "2", "6", "3"])), "To": number}
    record = receipt(message_id, draw(st.sampled_from(TASK_IDS)), snake=draw(st.booleans()), **extra)
    dropped = draw(st.sets(st.sampled_from(["SendDate", "ReceiveDate", "SmsSize", "ErrorCode"])))
    return {k: v for k, v in record.items() if k not in dropped}


broken_records = st.one_of(
    st.builds(lambda r: {k: v for k, v in r.items() if k not in ("MessageId", "message_id")}, good_records()),
    st.builds(lambda r: {**r, "To": "12", "to": "12"}, good_records()),
    st.builds(lambda r: {**r, "Status": "9", "status": "9"}, good_records()),
    st.builds(lambda r: {**r, "ErrorCode": {"nested": [1]}}, good_records()),
    st.integers(),
    st.text(max_size=10),
    st.lists(st.integers(), max_size=3),
    st.none(),
)


@st.composite
def pushes(draw: st.DrawFn) -> tuple[list[Any], list[bool]]:
    """A push body's records, and which of them are good; with duplicates of good ones."""
    records = [(r, True) for r in draw(st.lists(good_records(), max_size=12))]
    records += [(r, False) for r in draw(st.lists(broken_records, max_size=5))]
    if records and records[0][1]:
        records += [records[0]] * draw(st.integers(0, 2))  # pushes are not idempotent: the same receipt twice
    order = draw(st.permutations(range(len(records))))
    return [records[i][0] for i in order], [records[i][1] for i in order]


class SwitchedStore(PushStore):
    """A store whose writes fail while ``failing`` (an unreachable bucket)."""

    failing = False

    def write(self, receipts: Any, dead: Any = (), source: str = "") -> int:
        if self.failing:
            raise OSError("the bucket is unreachable")
        return super().write(receipts, dead, source)


def test_generated_pushes_are_stored_exactly_as_parsed(tmp_path: Path, logs: LogCapture) -> None:
    root = tmp_path / "push"
    store = SwitchedStore(root)
    with serve_receiver(store) as server:

        @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
        @given(pushes(), st.booleans())
        def check(push: tuple[list[Any], list[bool]], failing: bool) -> None:
            records, good = push
            shutil.rmtree(root, ignore_errors=True)
            store.failing = failing
            body = json.dumps(records).encode()
            status = post(server.port, PUSH, body)[0]
            assert status == (503 if failing else 200)
            if failing:
                assert stored_files(root) == []
                return
            parsed = parse_push(body)
            assert [i for i, ok in enumerate(good) if not ok] == [d.index for d in parsed.dead]
            assert [r.get("MessageId", r.get("message_id")) for r, ok in zip(records, good, strict=True) if ok] == [
                r.message_id for r in parsed.receipts
            ]
            for task_id in TASK_IDS:
                stored = [r for _, batch in store.receipts(task_id) for r in batch]
                assert stored == [r for r in parsed.receipts if r.task_id == task_id]
            letters = store.dead_letters()
            assert len(letters) == (1 if parsed.dead else 0)
            if parsed.dead:
                kept = [(r["index"], r["reason"]) for r in letters[0]["records"]]
                assert kept == [(d.index, d.reason) for d in parsed.dead]
                assert all(r["reason"] for r in letters[0]["records"])

        check()
