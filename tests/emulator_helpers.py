"""Raw signed calls to the emulator, for tests that need to see the wire answer itself, and its clock stopped."""

from __future__ import annotations

import http.client
import json
import time
from dataclasses import dataclass
from typing import Any

from airflow_provider_globesms.client.wire.signing import API_VERSION, Credentials, SignedRequest, sign_v1, sign_v3
from airflow_provider_globesms.emulator import EmulatorServer

KEY = Credentials("AKID", "SECRET")


class StoppedClock:
    """The emulator's clock, stopped at the wall clock's now until the test moves it: "within one second"
    (rate windows, receipts not yet final) holds however slow the machine."""

    def __init__(self, emulator: EmulatorServer) -> None:
        self.now = time.time()
        emulator.gateway.clock = self

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        """Move the clock on (also usable as a client's injected ``sleep``)."""
        self.now += seconds


@dataclass
class Answer:
    status: int
    body: dict[str, Any]
    headers: dict[str, str]

    @property
    def code(self) -> str:
        return str(self.body.get("Code") or self.body.get("ResponseCode"))


def sign(
    emulator: EmulatorServer,
    action: str,
    params: dict[str, str],
    *,
    scheme: str = "v3",
    credentials: Credentials = KEY,
    version: str = API_VERSION,
    **stamp: str,
) -> SignedRequest:
    host = f"127.0.0.1:{emulator.port}"
    if scheme == "v3":
        return sign_v3(credentials, host=host, action=action, params=params, version=version, **stamp)
    return sign_v1(credentials, host=host, action=action, params=params, version=version, **stamp)


def send(emulator: EmulatorServer, request: SignedRequest, timeout: float = 10) -> Answer:
    conn = http.client.HTTPConnection("127.0.0.1", emulator.port, timeout=timeout)
    try:
        conn.request(request.method, request.target, body=request.body, headers=request.headers)
        reply = conn.getresponse()
        return Answer(reply.status, json.loads(reply.read() or b"{}"), {k.lower(): v for k, v in reply.getheaders()})
    finally:
        conn.close()


def call(emulator: EmulatorServer, action: str, params: dict[str, str], **options: Any) -> Answer:
    return send(emulator, sign(emulator, action, params, **options))
