"""The emulator pushes delivery receipts as Alibaba's HTTP batch push does: a JSON array of string records,
merged, retried on a schedule, with drop / duplicate / reorder faults, to a real receiver on 127.0.0.1."""

from __future__ import annotations

import itertools
import json
import socket
import threading
import time
import urllib.error
import urllib.request
from collections import Counter, deque
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from airflow_provider_globesms.emulator import EmulatorConfig, EmulatorServer
from airflow_provider_globesms.emulator import cli as emulator_cli
from airflow_provider_globesms.emulator import server as emulator_server
from tests.emulator_helpers import call

RECORD_FIELDS = {"To", "Status", "MessageId", "SmsSize", "TaskId", "SendDate", "ReceiveDate", "ErrorCode",
                 "ErrorDescription"}  # fmt: skip
# Fast settings: receipts final after ~0.1 s, merged over 0.1 s, retries a fraction of a second apart.
FAST: dict[str, Any] = {
    "delivery_delay": 0.1,
    "push_interval": 0.1,
    "push_timeout": 0.5,
    "push_retry": (0.1, 0.2, 0.3),
    "seed": 7,
}


class Receiver:
    """A receipt endpoint on 127.0.0.1: records every push and answers as told.

    Answers: ``"ok"`` (200 ``{"code": 0}``), ``"500"``, ``"hang"`` (no answer until the test ends),
    ``"code_string"`` (200 ``{"code": "0"}``: not a number), ``"not_json"``. ``script`` answers the next
    pushes in turn, then ``default`` answers the rest.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.script: deque[str] = deque()
        self.default = "ok"
        self.requests: list[tuple[float, str, list[dict[str, Any]], dict[str, str]]] = []  # (when, answer, body, hdrs)
        self.release = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with receiver.lock:
                    answer = receiver.script.popleft() if receiver.script else receiver.default
                    receiver.requests.append((time.monotonic(), answer, body, dict(self.headers)))
                if answer == "hang":
                    receiver.release.wait(10)
                    return
                status, payload = {
                    "ok": (200, b'{"code": 0, "msg": "received"}'),
                    "500": (500, b'{"code": 1, "msg": "could not store"}'),
                    "code_string": (200, b'{"code": "0", "msg": "a string"}'),
                    "not_json": (200, b"OK"),
                }[answer]
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/sms/receipts"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def answer(self, *script: str, default: str = "ok") -> None:
        with self.lock:
            self.script = deque(script)
            self.default = default

    def bodies(self, *, taken_only: bool = True) -> list[list[dict[str, Any]]]:
        """The pushes received (only those answered ``ok``, unless told otherwise), in arrival order."""
        with self.lock:
            return [body for _, answer, body, _ in self.requests if answer == "ok" or not taken_only]

    def received(self, *, taken_only: bool = True) -> Counter[str]:
        """How many times each MessageId arrived."""
        return Counter(record["MessageId"] for body in self.bodies(taken_only=taken_only) for record in body)

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


@pytest.fixture
def pushing(
    receiver: Receiver, globesms_emulator_factory: Callable[..., EmulatorServer]
) -> Callable[..., EmulatorServer]:
    """``pushing(**settings)``: an emulator pushing to ``receiver`` with the fast settings, changed as given."""

    def start(**settings: Any) -> EmulatorServer:
        return globesms_emulator_factory(**{**FAST, "push_url": receiver.url, **settings})

    return start


def send_messages(emulator: EmulatorServer, count: int, *, first: int = 0, **params: str) -> list[str]:
    """Send ``count`` messages (SendMessageToGlobe, over HTTP); their MessageIds."""
    ids = []
    for n in range(first, first + count):
        answer = call(emulator, "SendMessageToGlobe", {"To": f"8529123{n:04d}", "Message": f"hi {n}", **params})
        assert answer.body["ResponseCode"] == "OK", answer.body
        ids.append(answer.body["MessageId"])
    return ids


def free_port() -> int:
    """A loopback port nothing listens on (bound, then closed)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- what is pushed --------------------------------------------------------------------------------------


def test_every_receipt_is_pushed_once_and_says_what_query_message_says(
    receiver: Receiver, pushing: Callable[..., EmulatorServer]
) -> None:
    emulator = pushing(failure_rate=0.4)
    ids = send_messages(emulator, 8)
    ids += send_messages(emulator, 4, first=8, TaskId="campaign-42")
    ids += send_messages(emulator, 2, first=12, Message="x" * 200)  # two segments
    stats = emulator.wait_for_pushes()

    assert receiver.received() == Counter(ids)  # each exactly once
    stored = {m["message_id"]: m for m in emulator.messages()}
    for body in receiver.bodies():
        for record in body:
            assert set(record) == RECORD_FIELDS
            assert all(isinstance(value, str) for value in record.values()), record
            query = call(emulator, "QueryMessage", {"MessageId": record["MessageId"]}).body
            for name in ("To", "Status", "SendDate", "ReceiveDate", "ErrorCode", "ErrorDescription"):
                assert record[name] == query[name], (name, record, query)
            message = stored[record["MessageId"]]
            assert record["SmsSize"] == str(message["segments"])
            assert record["TaskId"] == (message["task_id"] or "")
            assert not record["To"].startswith("+")
    statuses = Counter(r["Status"] for body in receiver.bodies() for r in body)
    assert set(statuses) <= {"1", "2"}
    assert statuses["2"] > 0
    assert {r["SmsSize"] for body in receiver.bodies() for r in body} == {"1", "2"}
    assert all(headers["Content-Type"] == "application/json" for *_, headers in receiver.requests)
    assert stats["receipts_pushed"] == stats["receipts_tracked"] == len(ids)
    assert stats["pushes_attempted"] == stats["pushes_ok"] == len(receiver.bodies())
    assert stats["attempts_failed"] == stats["pushes_retried"] == stats["pushes_given_up"] == 0
    # Without the reorder fault, a push's records come in the order their receipts became final.
    final_at = {m["message_id"]: m["final_at"] for m in stored.values()}
    for body in receiver.bodies():
        moments = [final_at[r["MessageId"]] for r in body]
        assert moments == sorted(moments)


def test_receipts_final_close_together_are_merged(receiver: Receiver, pushing: Callable[..., EmulatorServer]) -> None:
    emulator = pushing(push_interval=0.6)
    ids = send_messages(emulator, 30)
    emulator.wait_for_pushes()
    assert receiver.received() == Counter(ids)
    assert len(receiver.bodies()) < 10  # 30 receipts, final within ~0.3 s of each other: a few pushes


def test_a_push_holds_at_most_push_batch_records(receiver: Receiver, pushing: Callable[..., EmulatorServer]) -> None:
    emulator = pushing(push_interval=0.6, push_batch=4)
    ids = send_messages(emulator, 18)
    emulator.wait_for_pushes()
    assert receiver.received() == Counter(ids)
    sizes = [len(body) for body in receiver.bodies()]
    assert max(sizes) <= 4
    assert len(sizes) >= 5


def test_nothing_is_pushed_before_a_url_is_set_then_pushes_start_at_run_time(
    receiver: Receiver, globesms_emulator_factory: Callable[..., EmulatorServer]
) -> None:
    emulator = globesms_emulator_factory(**FAST)
    before = send_messages(emulator, 3)
    time.sleep(0.4)  # final, and past any merge window
    assert emulator.push_stats()["receipts_tracked"] == 0
    settings = emulator.set_push(push_url=receiver.url, push_batch=50)
    assert settings["push_url"] == receiver.url
    assert settings["push_batch"] == 50
    after = send_messages(emulator, 3, first=3)
    emulator.wait_for_pushes()
    assert receiver.received() == Counter(after)
    assert not set(before) & set(receiver.received())
    emulator.set_push(push_url=None)  # stopped: later messages are not pushed
    send_messages(emulator, 2, first=6)
    time.sleep(0.4)
    assert receiver.received() == Counter(after)


# --- answers and retries ---------------------------------------------------------------------------------


@pytest.mark.parametrize("failure", ["500", "hang", "code_string", "not_json"])
def test_a_push_not_taken_is_retried_on_the_schedule_and_nothing_is_lost(
    receiver: Receiver, pushing: Callable[..., EmulatorServer], failure: str
) -> None:
    emulator = pushing(push_interval=0.5, push_timeout=0.3, push_retry=(0.2, 0.4, 0.6))
    receiver.answer(failure, failure)  # the first two attempts fail, the third is taken
    ids = send_messages(emulator, 5)
    stats = emulator.wait_for_pushes()

    assert receiver.received() == Counter(ids)
    attempts = [(when, answer) for when, answer, body, _ in receiver.requests]
    assert [answer for _, answer in attempts] == [failure, failure, "ok"]  # one push, tried three times
    assert receiver.bodies(taken_only=False)[0] == receiver.bodies(taken_only=False)[2]  # the same push
    gaps = [later - earlier for (earlier, _), (later, _) in itertools.pairwise(attempts)]
    waited = 0.3 if failure == "hang" else 0.0  # a hang is a failure only once push_timeout passed
    assert gaps[0] >= 0.2 + waited - 0.02, gaps
    assert gaps[1] >= 0.4 + waited - 0.02, gaps
    assert stats["pushes_attempted"] == 3
    assert stats["attempts_failed"] == 2
    assert stats["pushes_retried"] == 2
    assert stats["pushes_ok"] == 1
    assert stats["receipts_pushed"] == 5
    assert stats["pushes_given_up"] == stats["receipts_given_up"] == 0


def test_a_receiver_down_for_the_whole_schedule_gets_the_receipts_given_up_and_counted(
    pushing: Callable[..., EmulatorServer],
) -> None:
    emulator = pushing(push_url=f"http://127.0.0.1:{free_port()}/receipts", push_interval=0.5, push_retry=(0.1, 0.2))
    ids = send_messages(emulator, 6)
    stats = emulator.wait_for_pushes()
    assert stats["receipts_given_up"] == 6
    assert sorted(stats["given_up_message_ids"]) == sorted(ids)
    assert stats["pushes_attempted"] == 3 * stats["pushes_given_up"]  # the first try and two retries each
    assert stats["attempts_failed"] == stats["pushes_attempted"]
    assert stats["pushes_ok"] == 0
    assert stats["pushes_retried"] == 2 * stats["pushes_given_up"]


def test_a_receiver_that_hangs_throughout_is_given_up_after_the_timeouts(
    receiver: Receiver, pushing: Callable[..., EmulatorServer]
) -> None:
    emulator = pushing(push_interval=0.5, push_timeout=0.2, push_retry=(0.1,))
    receiver.answer(default="hang")
    ids = send_messages(emulator, 3)
    started = time.monotonic()
    stats = emulator.wait_for_pushes()
    assert sorted(stats["given_up_message_ids"]) == sorted(ids)
    assert len(receiver.requests) == 2
    assert time.monotonic() - started < 5


# --- faults ----------------------------------------------------------------------------------------------


def test_push_drop_drops_pushes_and_says_which_receipts(
    receiver: Receiver, pushing: Callable[..., EmulatorServer]
) -> None:
    emulator = pushing()
    assert emulator.set_faults(push_drop=1.0)["push_drop"] == 1.0
    ids = send_messages(emulator, 7)
    stats = emulator.wait_for_pushes()
    time.sleep(0.2)
    assert receiver.requests == []  # never sent
    assert stats["receipts_dropped"] == 7
    assert sorted(stats["dropped_message_ids"]) == sorted(ids)
    assert stats["pushes_dropped"] >= 1
    assert stats["pushes_attempted"] == stats["pushes_retried"] == 0


def test_push_duplicate_sends_every_receipt_twice(receiver: Receiver, pushing: Callable[..., EmulatorServer]) -> None:
    emulator = pushing()
    emulator.set_faults(push_duplicate=1.0)
    ids = send_messages(emulator, 6)
    stats = emulator.wait_for_pushes()
    assert receiver.received() == Counter({message_id: 2 for message_id in ids})
    assert stats["pushes_duplicated"] * 2 == stats["pushes_ok"] == len(receiver.bodies())
    assert stats["receipts_pushed"] == 12


def test_push_reorder_shuffles_records_and_pushes(receiver: Receiver, pushing: Callable[..., EmulatorServer]) -> None:
    emulator = pushing(push_interval=0.3)
    emulator.set_faults(push_reorder=1.0)
    ids = send_messages(emulator, 40)
    stats = emulator.wait_for_pushes()
    assert receiver.received() == Counter(ids)  # nothing lost or doubled, only the order changes
    final_at = {m["message_id"]: m["final_at"] for m in emulator.messages()}
    received_order = [final_at[r["MessageId"]] for body in receiver.bodies() for r in body]
    assert received_order != sorted(received_order)
    assert any(len(body) > 2 for body in receiver.bodies())
    assert stats["pushes_reordered"] == stats["pushes_ok"] == len(receiver.bodies())


# --- settings and protection -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "http://example.com/receipts",
        "http://10.0.0.8:8080/receipts",
        "http://localhost.example.com/receipts",
        "http://127.0.0.1@example.com/receipts",
        "ftp://127.0.0.1/receipts",
        "127.0.0.1:8080/receipts",
        "http://127.0.0.1:99999/receipts",
    ],
)
def test_a_push_url_off_this_machine_is_refused(
    url: str, globesms_emulator: EmulatorServer, receiver: Receiver
) -> None:
    globesms_emulator.set_push(push_url=receiver.url)
    with pytest.raises(urllib.error.HTTPError) as refused:
        globesms_emulator.set_push(push_url=url, push_batch=5)
    assert refused.value.code == 422
    assert "push_url" in json.loads(refused.value.read())["detail"]
    assert globesms_emulator.push_settings()["push_url"] == receiver.url  # unchanged, wholly
    assert globesms_emulator.push_settings()["push_batch"] == 100
    with pytest.raises(ValueError, match="push_url"):
        EmulatorConfig(push_url=url)
    with pytest.raises(SystemExit):
        emulator_cli.parser().parse_args(["--push-url", url])


def test_bad_push_settings_and_faults_are_refused(globesms_emulator: EmulatorServer) -> None:
    for bad in ({"push_batch": 0}, {"push_interval": -1}, {"push_timeout": 0}, {"push_retry": "1,x"}, {"nope": 1}):
        with pytest.raises(urllib.error.HTTPError) as refused:
            globesms_emulator.set_push(**bad)
        assert refused.value.code == 422
    for fault in ("push_drop", "push_duplicate", "push_reorder"):
        with pytest.raises(urllib.error.HTTPError):
            globesms_emulator.set_faults(**{fault: 1.5})
    assert globesms_emulator.set_push(push_retry="0.5, 1")["push_retry"] == [0.5, 1.0]


def test_the_push_endpoint_needs_the_inspection_token(
    globesms_emulator_factory: Callable[..., EmulatorServer],
) -> None:
    emulator = globesms_emulator_factory(inspection_token="s3cret")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(f"{emulator.url}/_emulator/push", timeout=10)
    assert refused.value.code == 401
    patch = urllib.request.Request(
        f"{emulator.url}/_emulator/push", data=b'{"push_url": "http://127.0.0.1:1/"}', method="PATCH"
    )
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(patch, timeout=10)
    assert refused.value.code == 401
    assert emulator.push_settings()["push_url"] is None  # with the token (the helper sends it)
    assert emulator.push_stats()["receipts_tracked"] == 0


def test_the_cli_flags_configure_the_pushes(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[EmulatorConfig] = []
    monkeypatch.setattr(emulator_server, "serve_forever", lambda config, *_: seen.append(config))
    argv = ["--push-url", "http://localhost:9000/r", "--push-interval", "0.5", "--push-batch", "20"]
    argv += ["--push-retry", "1,2.5", "--push-timeout", "1", "--push-drop", "0.1", "--push-duplicate", "0.2"]
    assert emulator_cli.main([*argv, "--push-reorder", "0.3"]) == 0
    config = seen[0]
    assert (config.push_url, config.push_interval, config.push_batch) == ("http://localhost:9000/r", 0.5, 20)
    assert config.push_retry == (1.0, 2.5)
    assert config.push_timeout == 1.0
    assert (config.faults.push_drop, config.faults.push_duplicate, config.faults.push_reorder) == (0.1, 0.2, 0.3)
    for bad in (["--push-retry", "1,-2"], ["--push-batch", "0"], ["--push-drop", "2"]):
        with pytest.raises(SystemExit):
            emulator_cli.parser().parse_args(bad)


def test_stopping_the_emulator_stops_the_pushes(receiver: Receiver) -> None:
    receiver.answer(default="500")
    emulator = EmulatorServer(EmulatorConfig(**{**FAST, "push_url": receiver.url, "push_retry": (0.2,) * 10}))
    with emulator:
        send_messages(emulator, 2)
        time.sleep(0.5)
    threads = emulator.app.pusher._threads
    assert threads
    assert not any(thread.is_alive() for thread in threads)
    count = len(receiver.requests)
    time.sleep(0.5)
    assert len(receiver.requests) == count


# --- never lost silently ---------------------------------------------------------------------------------

ANSWERS = st.sampled_from(["ok", "500", "code_string", "hang"])
SHARES = st.sampled_from([0.0, 0.0, 0.3, 0.7, 1.0])


@pytest.fixture(scope="module")
def shared() -> Iterator[tuple[EmulatorServer, Receiver]]:
    receiver = Receiver()
    config = EmulatorConfig(**{**FAST, "delivery_delay": 0.05, "push_interval": 0.05, "push_timeout": 0.15})
    config.push_retry = (0.05, 0.1)
    config.push_url = receiver.url
    with EmulatorServer(config) as emulator:
        yield emulator, receiver
    receiver.close()


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    count=st.integers(1, 8),
    drop=SHARES,
    duplicate=SHARES,
    reorder=SHARES,
    script=st.lists(ANSWERS, max_size=6),
    default=st.sampled_from(["ok", "ok", "500"]),
)
def test_every_receipt_arrives_or_is_reported_never_lost_silently(
    shared: tuple[EmulatorServer, Receiver],
    count: int,
    drop: float,
    duplicate: float,
    reorder: float,
    script: list[str],
    default: str,
) -> None:
    emulator, receiver = shared
    emulator.wait_for_pushes()  # the previous example's pushes are over
    emulator.set_faults(push_drop=drop, push_duplicate=duplicate, push_reorder=reorder)
    receiver.answer(*script, default=default)
    before = emulator.push_stats()
    ids = send_messages(emulator, count, first=len(emulator.messages()))
    stats = emulator.wait_for_pushes()

    received = receiver.received()  # taken by the receiver (answered ok), however often
    # This example's: earlier examples' duplicates may have delivered receipts given up then.
    dropped, given_up = set(stats["dropped_message_ids"]) & set(ids), set(stats["given_up_message_ids"]) & set(ids)
    for message_id in ids:
        assert received[message_id] >= 1 or message_id in dropped | given_up, message_id
    assert not dropped & set(received)  # a dropped push is never sent, nor copied
    if not duplicate:
        assert not given_up & set(received)  # given up: no attempt of it was taken
        assert all(received[message_id] <= 1 for message_id in ids)
    if not drop and default == "ok" and len(script) <= 2:  # the receiver takes one of three attempts
        assert all(received[message_id] >= 1 for message_id in ids)
    assert stats["receipts_tracked"] - before["receipts_tracked"] == count
    assert stats["receipts_dropped"] - before["receipts_dropped"] == len(dropped)
    assert stats["receipts_given_up"] - before["receipts_given_up"] == len(given_up)


def test_the_start_up_lines_never_show_the_receivers_secret(capsys: pytest.CaptureFixture[str]) -> None:
    from airflow_provider_globesms.emulator.cli import announce

    secret = "s3cr3t-" + "x" * 40
    announce("http://127.0.0.1:8787", EmulatorConfig(push_url=f"http://127.0.0.1:8788/globesms/push/{secret}/receipts"))
    shown = capsys.readouterr().out
    assert "receipts pushed to http://127.0.0.1:8788/..." in shown
    assert secret not in shown
