"""The standalone receiver for ``bench/receipts_push.py``, in a process of its own, and the client that pushes
receipts to it over keep-alive connections.

Run as a script, it is the client process of ``--profile`` (the receiver then served in the bench's process):

    PUSH_SECRET=... python bench/_push_receiver.py PAYLOADS_MSGPACK PORT CONNECTIONS

and prints ``{"seconds": ..., "last_answer_at": ...}``."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import queue
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import msgspec

from airflow_provider_globesms.client.receipts.push_store import RECEIPTS


@contextlib.contextmanager
def receiver_process(store: Path, secret: str, log: Path) -> Iterator[int]:
    """``globesms-receiver`` as users start it (access log on), on a free port; yields the port."""
    with socket_port() as port, log.open("w") as out:
        env = {**os.environ, "GLOBESMS_PUSH_SECRET": secret}
        command = [sys.executable, "-m", "airflow_provider_globesms.receiver.cli", "--store", str(store)]
        process = subprocess.Popen([*command, "--port", str(port)], env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            wait_listening(port, process)
            yield port
        finally:
            process.terminate()
            process.wait(timeout=60)


@contextlib.contextmanager
def socket_port() -> Iterator[int]:
    """A loopback port free a moment ago (the probe socket closed before the server binds it)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    yield port


def wait_listening(port: int, process: subprocess.Popen[bytes] | None = None, seconds: float = 60) -> None:
    """Return once ``port`` takes connections; fail if ``process`` exits first or ``seconds`` pass."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"the receiver exited with {process.returncode}")
        with contextlib.suppress(OSError):
            http.client.HTTPConnection("127.0.0.1", port, timeout=1).connect()
            return
        time.sleep(0.05)
    raise RuntimeError("the receiver did not start listening")


class _Pushes:
    """The bodies still to push, shared by the connections' threads, and what their answers said."""

    def __init__(self, port: int, secret: str, payloads: Sequence[bytes], connections: int) -> None:
        self.port, self.path = port, f"/globesms/push/{secret}/receipts"
        self.work: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
        for body in payloads:
            self.work.put(body)
        for _ in range(connections):
            self.work.put(None)  # one end mark per connection
        self.failures: list[str] = []
        self.last_answer_at = 0.0

    def connection(self) -> None:
        """One keep-alive connection: POST bodies until the end mark; each answer must be ``200 {"code": 0}``."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
        try:
            while (body := self.work.get()) is not None:
                conn.request("POST", self.path, body, {"Content-Type": "application/json"})
                answer = conn.getresponse()
                data = answer.read()
                if answer.status != 200 or json.loads(data).get("code") != 0:
                    self.failures.append(f"{answer.status} {data[:200]!r}")
                self.last_answer_at = max(self.last_answer_at, time.time())
        except Exception as exc:
            self.failures.append(repr(exc))
        finally:
            conn.close()


def push_all(port: int, secret: str, payloads: Sequence[bytes], connections: int) -> dict[str, float]:
    """POST every body over ``connections`` keep-alive connections, each in a thread; each answer must be
    ``200 {"code": 0}``. Returns the seconds from the first request to the last answer, and its epoch."""
    pushes = _Pushes(port, secret, payloads, connections)
    threads = [threading.Thread(target=pushes.connection) for _ in range(connections)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - started
    if pushes.failures:
        raise RuntimeError(f"{len(pushes.failures)} pushes not taken: {pushes.failures[:3]}")
    return {"seconds": seconds, "last_answer_at": pushes.last_answer_at}


def stored_receipts(store: Path) -> int:
    """The receipts a store folder holds, counted in its objects."""
    decode = msgspec.json.Decoder(list[Any]).decode
    return sum(len(decode(p.read_bytes())) for p in (store / RECEIPTS).glob("*/*.json"))


def client_main(payload_file: str, port: str, connections: str) -> None:
    """Push the msgpack'd bodies of ``payload_file`` to ``port``; print the timing as JSON."""
    payloads = msgspec.msgpack.decode(Path(payload_file).read_bytes(), type=list[bytes])
    result = push_all(int(port), os.environ["PUSH_SECRET"], payloads, int(connections))
    print(json.dumps(result))


if __name__ == "__main__":
    client_main(*sys.argv[1:4])
