"""The push receiver over real HTTP (uvicorn on 127.0.0.1): pushes stored before the 200, a failing store
answered 503, the plugin's app in Airflow's api-server mounting with its access log redacted, the standalone
``globesms-receiver`` command, and that command SIGKILLed again and again under a retrying pusher.

The hostile requests are in ``test_push_receiver_hostile.py``; the helpers here serve both files.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import importlib
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from fastapi import FastAPI

from airflow_provider_globesms.client.receipts.push_store import PushStore
from airflow_provider_globesms.client.receipts.pushed import PushedReceipt
from airflow_provider_globesms.receiver import receiver_app

SECRET = "s3cr3t-Push-URL-0123456789abcdefghijKLMN"
PUSH = f"/globesms/push/{SECRET}/receipts"
RECEIVER_BIN = Path(sys.executable).with_name("globesms-receiver")


def secret_forms(secret: str = SECRET) -> list[str]:
    """The secret as it could leak: plain, URL-encoded (every character), base64."""
    raw = secret.encode()
    return [
        secret,
        urllib.parse.quote(secret, safe=""),
        "".join(f"%{b:02X}" for b in raw),
        base64.b64encode(raw).decode(),
        base64.urlsafe_b64encode(raw).decode().rstrip("="),
    ]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def receipt(message_id: str, task_id: str = "campaign-1", *, snake: bool = False, **extra: str) -> dict[str, str]:
    """One pushed receipt as Alibaba writes it (or in the queue's snake case)."""
    fields = {
        "To": "85291234567",
        "Status": "1",
        "MessageId": message_id,
        "TaskId": task_id,
        "SmsSize": "1",
        "SendDate": "Thu, 25 Nov 2021 10:27:00 +0800",
        "ReceiveDate": "Thu, 25 Nov 2021 10:27:33 +0800",
        "ErrorCode": "success",
        "ErrorDescription": "success",
        **extra,
    }
    if snake:
        names = {"MessageId": "message_id", "To": "to", "Status": "status", "TaskId": "task_id"}
        fields = {names.get(k, k): v for k, v in fields.items()}
    return fields


class LogCapture(logging.Handler):
    """Every record of the receiver's and uvicorn's loggers, as each handler would see it (filters applied)."""

    NAMES = ("uvicorn.access", "uvicorn.error", "airflow_provider_globesms")

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(f"{record.name} {record.getMessage()}")

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


@contextlib.contextmanager
def captured_logs() -> Iterator[LogCapture]:
    capture = LogCapture()
    saved = {}
    for name in LogCapture.NAMES:
        logger = logging.getLogger(name)
        saved[name] = logger.level
        logger.setLevel(logging.INFO)
        logger.addHandler(capture)
    try:
        yield capture
    finally:
        for name in LogCapture.NAMES:
            logging.getLogger(name).removeHandler(capture)
            logging.getLogger(name).setLevel(saved[name])


class Served:
    """An ASGI app served by uvicorn on 127.0.0.1 in a background thread."""

    def __init__(self, app: Any, **config: Any) -> None:
        self.port = free_port()
        settings = {"log_config": None, "log_level": "info", "lifespan": "off", "timeout_keep_alive": 2, **config}
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, **settings))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> Served:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)


def mounted(app: FastAPI) -> FastAPI:
    """The receiver under ``/globesms``, as the api-server and the standalone command mount it."""
    root = FastAPI()
    root.mount("/globesms", app)
    return root


@contextlib.contextmanager
def serve_receiver(store: PushStore, **options: Any) -> Iterator[Served]:
    with Served(mounted(receiver_app(store, SECRET, **options))) as served:
        yield served


def post(
    port: int, path: str, body: bytes | str | Any, headers: dict[str, str] | None = None, method: str = "POST"
) -> tuple[int, dict[str, str], bytes]:
    """One request on a fresh connection: status, headers (lower-case names), body."""
    data = body if isinstance(body, bytes) else body.encode() if isinstance(body, str) else json.dumps(body).encode()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=15)
    try:
        conn.request(method, path, body=data, headers={"Content-Type": "application/json", **(headers or {})})
        reply = conn.getresponse()
        return reply.status, {k.lower(): v for k, v in reply.getheaders()}, reply.read()
    finally:
        conn.close()


def stored_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


def all_receipts(store: PushStore, task_ids: list[str]) -> list[PushedReceipt]:
    return [r for task_id in task_ids for _, batch in store.receipts(task_id) for r in batch]


# --- pushes stored --------------------------------------------------------------------------------


def test_a_push_is_stored_by_campaign_with_its_dead_letters(tmp_path: Path) -> None:
    store = PushStore(tmp_path / "push")
    good = [receipt(f"m{n}", "campaign-a" if n % 2 else "campaign-b", snake=n % 3 == 0) for n in range(40)]
    broken: list[Any] = [{"To": "85291234567", "Status": "1"}, {"MessageId": "x", "To": "12", "Status": "1"}, [1], 7]
    with captured_logs() as logs, serve_receiver(store) as served:
        status, _, body = post(served.port, PUSH, good[:20] + broken + good[20:])
    assert (status, json.loads(body)) == (200, {"code": 0, "msg": "OK"})
    (name_a,) = store.names("campaign-a")
    (name_b,) = store.names("campaign-b")
    assert name_a != name_b
    assert sorted(r.message_id for r in all_receipts(store, ["campaign-a"])) == sorted(f"m{n}" for n in range(1, 40, 2))
    assert sorted(r.message_id for r in all_receipts(store, ["campaign-b"])) == sorted(f"m{n}" for n in range(0, 40, 2))
    (letter,) = store.dead_letters()
    assert letter["source"] == "127.0.0.1"
    assert [(r["index"], r["reason"]) for r in letter["records"]] == [
        (20, "MessageId is missing or not an id"),
        (21, "To is missing or not a number"),
        (22, "not an object of plain values"),
        (23, "not an object of plain values"),
    ]
    assert "Push stored: 40 receipts, 4 dead letters, 3 objects written" in logs.text
    assert "85291234567" not in logs.text


def test_an_empty_push_answers_200_and_stores_nothing(tmp_path: Path) -> None:
    store = PushStore(tmp_path / "push")
    with serve_receiver(store) as served:
        status, _, body = post(served.port, PUSH, b"[]")
        assert (status, json.loads(body)) == (200, {"code": 0, "msg": "OK"})
        status, headers, body = post(served.port, PUSH, b"", method="GET")
    assert (status, headers["allow"], json.loads(body)["code"]) == (405, "POST", 1)
    assert stored_files(tmp_path / "push") == []


class FailingStore(PushStore):
    """A store whose writes fail (the disk full, the bucket unreachable) until ``healed``."""

    healed = False

    def write(self, receipts: Any, dead: Any = (), source: str = "") -> int:
        if not self.healed:
            raise OSError(28, "No space left on device")
        return super().write(receipts, dead, source)


def test_a_store_that_fails_answers_503_and_holds_nothing_until_the_retry(tmp_path: Path) -> None:
    push = [receipt("m1", "campaign-a"), receipt("m2", "campaign-b"), {"broken": True}]
    (tmp_path / "file").write_text("a file, not a folder")
    store = FailingStore(tmp_path / "push")
    with captured_logs() as logs:
        with serve_receiver(PushStore(tmp_path / "file")) as served:  # its root is a file: every write fails
            status, _, body = post(served.port, PUSH, push)
        assert (status, json.loads(body)) == (503, {"code": 1, "msg": "not stored; push again"})
        assert (tmp_path / "file").read_text() == "a file, not a folder"
        with serve_receiver(store) as served:
            assert post(served.port, PUSH, push)[0] == 503
            assert stored_files(tmp_path / "push") == []
            store.healed = True  # Alibaba's retry, a minute later
            assert post(served.port, PUSH, push)[0] == 200
    assert [r.message_id for r in all_receipts(store, ["campaign-a", "campaign-b"])] == ["m1", "m2"]
    assert len(store.dead_letters()) == 1
    assert "Push not stored (OSError)" in logs.text
    assert "No space left" not in logs.text  # the error's text may quote a path or a value: only its type


# --- the plugin, in Airflow's api-server mounting ---------------------------------------------------


@pytest.fixture
def plugin_module(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Any]:
    from airflow_provider_globesms import plugins

    monkeypatch.setenv("AIRFLOW__GLOBESMS__PUSH_URI", str(tmp_path / "push"))
    yield plugins
    monkeypatch.undo()
    importlib.reload(plugins)  # as the environment left it, for the tests that follow in this process


def test_the_plugin_serves_the_receiver_only_with_a_secret(
    plugin_module: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.delenv("AIRFLOW__GLOBESMS__PUSH_SECRET", raising=False)
    assert importlib.reload(plugin_module).GlobeSmsSandboxPlugin.fastapi_apps == []
    monkeypatch.setenv("AIRFLOW__GLOBESMS__PUSH_SECRET", "short")
    with caplog.at_level(logging.ERROR):
        assert importlib.reload(plugin_module).GlobeSmsSandboxPlugin.fastapi_apps == []
    assert "at least 32 are needed" in caplog.text
    monkeypatch.setenv("AIRFLOW__GLOBESMS__PUSH_SECRET", SECRET)
    (entry,) = importlib.reload(plugin_module).GlobeSmsSandboxPlugin.fastapi_apps
    assert (entry["url_prefix"], entry["name"], type(entry["app"])) == ("/globesms", "globesms push receiver", FastAPI)


def test_the_secret_can_come_from_a_command(plugin_module: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AIRFLOW__GLOBESMS__PUSH_SECRET", raising=False)
    monkeypatch.setenv("AIRFLOW__GLOBESMS__PUSH_SECRET_CMD", f"echo {SECRET}")
    monkeypatch.setenv("AIRFLOW__GLOBESMS__PUSH_ALLOW", "10.0.0.0/8, 127.0.0.1")
    (entry,) = importlib.reload(plugin_module).GlobeSmsSandboxPlugin.fastapi_apps
    with Served(mounted(entry["app"])) as served:
        assert post(served.port, PUSH, [receipt("m1")])[0] == 200


def test_the_api_servers_access_log_never_holds_the_secret(
    plugin_module: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Airflow 3.2+: uvicorn's access log is off; ``HttpAccessLogMiddleware`` logs ``scope["path"]`` by
    structlog after the app answered. Airflow's own ``init_plugins`` mounts the plugin's app here."""
    import structlog.testing

    # Before 3.2 the api-server logged requests by uvicorn's access log, which SecretPathFilter redacts (the
    # command's test reads a real one).
    access_log = pytest.importorskip("airflow.api_fastapi.common.http_access_log", reason="Airflow 3.2+")
    from airflow.api_fastapi import app as api_app

    monkeypatch.setenv("AIRFLOW__GLOBESMS__PUSH_SECRET", SECRET)
    apps = importlib.reload(plugin_module).GlobeSmsSandboxPlugin.fastapi_apps
    monkeypatch.setattr("airflow.plugins_manager.get_fastapi_plugins", lambda: (apps, []))
    root = FastAPI()
    api_app.init_plugins(root)
    root.add_middleware(access_log.HttpAccessLogMiddleware)
    encoded = "".join(f"%{b:02X}" for b in SECRET.encode())
    paths = [PUSH, f"/globesms/%70ush/{encoded}/receipts", f"/globesms/push/{SECRET}%2Freceipts", PUSH[:-1]]
    with structlog.testing.capture_logs() as events, captured_logs() as logs, Served(root) as served:
        answers = [post(served.port, path, [receipt("m1")])[0] for path in paths]
    assert answers == [200, 200, 200, 404]
    access = [e for e in events if e.get("event") == "request finished"]
    assert [e["path"] for e in access] == ["/globesms/push/***/receipts"] * 3 + ["/globesms/push/***"]
    text = repr(events) + logs.text
    assert not [form for form in secret_forms() if form in text]
    assert len(PushStore(tmp_path / "push").names("campaign-1")) == 3


# --- the standalone command ------------------------------------------------------------------------


def receiver_command() -> list[str]:
    # The console script when the venv has it; the module otherwise (an install older than the script).
    if RECEIVER_BIN.exists():
        return [str(RECEIVER_BIN)]
    return [sys.executable, "-m", "airflow_provider_globesms.receiver.cli"]


class Receiver:
    """``globesms-receiver`` in a subprocess, its output in a file."""

    def __init__(self, store: Path, log: Path, *args: str, secret: str | None = SECRET) -> None:
        self.port = free_port()
        self.args = ["--store", str(store), "--port", str(self.port), *args]
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("GLOBESMS_")}
        if secret is not None:
            self.env["GLOBESMS_PUSH_SECRET"] = secret
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, wait: bool = True) -> Receiver:
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [*receiver_command(), *self.args], env=self.env, stdout=out, stderr=subprocess.STDOUT
            )
        if wait:
            deadline = time.monotonic() + 20
            while True:
                assert self.process.poll() is None, self.log.read_text()
                with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), 0.2):
                    return self
                assert time.monotonic() < deadline, "the receiver did not start"
                time.sleep(0.02)
        return self

    def kill(self, sig: int = signal.SIGKILL) -> int:
        assert self.process is not None
        self.process.send_signal(sig)
        return self.process.wait(30)


def test_the_command_serves_and_logs_no_secret_and_stops_on_sigterm(tmp_path: Path) -> None:
    receiver = Receiver(tmp_path / "push", tmp_path / "out.log").start()
    try:
        assert post(receiver.port, PUSH, [receipt("m1"), receipt("m2", snake=True)])[0] == 200
        assert post(receiver.port, PUSH.replace(SECRET, SECRET[:-1] + "x"), b"[]")[0] == 404
        assert post(receiver.port, f"/globesms/push/{SECRET}%2Freceipts", b"[]")[0] == 200
        too_long = {"X-Filler": "a" * 200_000}  # over the header cap
        with contextlib.suppress(ConnectionError, http.client.HTTPException):
            assert post(receiver.port, PUSH, b"[]", headers=too_long)[0] >= 400
    finally:
        assert receiver.kill(signal.SIGTERM) == 0
    output = receiver.log.read_text()
    assert "receiving at http://127.0.0.1:" in output
    assert '"POST /globesms/push/***/receipts HTTP/1.1" 200' in output
    assert "Push stored: 2 receipts, 0 dead letters, 1 objects written" in output
    assert not [form for form in secret_forms() if form in output]
    assert sorted(r.message_id for r in all_receipts(PushStore(tmp_path / "push"), ["campaign-1"])) == ["m1", "m2"]


def test_the_command_refuses_what_would_leak_or_guard_nothing(tmp_path: Path) -> None:
    def refused(*args: str, secret: str | None = None) -> str:
        receiver = Receiver(tmp_path / "push", tmp_path / "refused.log", *args, secret=secret)
        receiver.log.write_bytes(b"")
        receiver.start(wait=False)
        assert receiver.process is not None
        assert receiver.process.wait(20) == 2
        return receiver.log.read_text()

    assert "no secret" in refused()
    assert "at least 32 are needed" in refused(secret="too-short")
    loose = tmp_path / "loose"
    loose.write_text(SECRET)
    loose.chmod(0o640)
    assert "readable by no one else" in refused("--secret-file", str(loose))
    assert "not an address or a network" in refused("--allow", "not-a-network", secret=SECRET)
    assert SECRET not in (tmp_path / "refused.log").read_text()
    tight = tmp_path / "tight"
    tight.write_text(SECRET + "\n")
    tight.chmod(0o600)
    receiver = Receiver(tmp_path / "push", tmp_path / "out.log", "--secret-file", str(tight), secret=None).start()
    try:
        assert post(receiver.port, PUSH, b"[]")[0] == 200
    finally:
        receiver.kill(signal.SIGTERM)


# --- SIGKILLed under a retrying pusher -------------------------------------------------------------


def push_until_answered(port_of: Any, batch: list[dict[str, str]], deadline: float, failures: list[int]) -> None:
    """Alibaba's side: push again until answered 200 (here at once, not after minutes)."""
    body = json.dumps(batch).encode()
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError, http.client.HTTPException):
            if post(port_of(), PUSH, body)[0] == 200:
                return
        failures.append(1)
        time.sleep(0.05)
    raise AssertionError("a push was never answered 200")


@pytest.mark.slow
def test_every_receipt_survives_a_receiver_killed_mid_stream(tmp_path: Path) -> None:
    store_root = tmp_path / "push"
    receiver = Receiver(store_root, tmp_path / "out.log").start()
    campaigns = [f"campaign-{n}" for n in range(3)]
    batches = [[receipt(f"b{b}-m{m}", campaigns[m % 3]) for m in range(25)] for b in range(120)]
    answered: list[list[dict[str, str]]] = []
    failures: list[int] = []
    deadline = time.monotonic() + 45

    def pusher(mine: list[list[dict[str, str]]]) -> None:
        for batch in mine:
            push_until_answered(lambda: receiver.port, batch, deadline, failures)
            answered.append(batch)

    threads = [threading.Thread(target=pusher, args=(batches[n::4],)) for n in range(4)]
    for thread in threads:
        thread.start()
    kills = 0
    for progress in (15, 40, 65, 90):  # kill points spread over the stream, each after some pushes landed
        while len(answered) < progress:
            assert time.monotonic() < deadline, "the pushes stalled"
            time.sleep(0.002)
        receiver.kill(signal.SIGKILL)  # mid-stream: four pushers keep a push in flight nearly always
        kills += 1
        receiver.start()  # the same port: the pushers' retries find it again
    for thread in threads:
        thread.join(60)
    receiver.kill(signal.SIGTERM)
    assert kills == 4
    assert failures  # the kills did cut pushes off, and the retries took them
    assert len(answered) == len(batches)
    store = PushStore(store_root)
    stored = {r.message_id for r in all_receipts(store, campaigns)}
    assert len(stored) == sum(len(b) for b in batches)
    for batch in answered:  # each push answered 200 is there whole
        assert {r["MessageId"] for r in batch} <= stored
