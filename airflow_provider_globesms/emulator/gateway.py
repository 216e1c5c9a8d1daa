"""The emulated gateway's front: authentication, QPS caps (``windows``), injected faults, statistics.

``Gateway.handle`` takes what arrived (method, raw query, headers, body) and returns an ``GatewayReply``:
the reply, plus how to deliver it (added latency, hold it, or reset the connection instead). It knows
nothing of HTTP servers, so it is tested directly as well as over HTTP. What a request does once it is
let through is in ``operations``; what happens to an accepted message, in ``carrier``.
"""

from __future__ import annotations

import random
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from airflow_provider_globesms.client.wire.signing import API_VERSION, BATCH_SEND, QUERY, SEND
from airflow_provider_globesms.emulator.carrier import FAILURE_CODES, Carrier
from airflow_provider_globesms.emulator.config import EmulatorConfig
from airflow_provider_globesms.emulator.operations import GatewayReply, Operations
from airflow_provider_globesms.emulator.store import MessageStore
from airflow_provider_globesms.emulator.verify import GatewayRefusal, Verifier
from airflow_provider_globesms.emulator.windows import Window

__all__ = ["ACTIONS", "FAILURE_CODES", "SEND_ACTIONS", "Gateway", "GatewayReply"]

ACTIONS = (SEND, BATCH_SEND, QUERY)
SEND_ACTIONS = (SEND, BATCH_SEND)


@dataclass(slots=True)
class Arrival:
    """One request as it arrived, with the moment and the request id the gateway gave it."""

    method: str
    query: bytes
    headers: Mapping[str, str]
    body: bytes
    now: float
    request_id: str


class Gateway:
    """The emulated API, one instance per emulator: see the module docstring."""

    def __init__(self, config: EmulatorConfig | None = None, clock: Callable[[], float] = time.time) -> None:
        self.config = config or EmulatorConfig()
        self.clock = clock
        self.store = MessageStore(self.config.db)
        self.verifier = Verifier(self.config.keys, self.config.timestamp_tolerance)
        self.random = random.Random(self.config.seed)
        self.windows: defaultdict[tuple[str, str], Window] = defaultdict(Window)
        self.counts: defaultdict[str, Counter[str]] = defaultdict(Counter)
        self.started_at = clock()
        self.operations = Operations(self.config, self.store, Carrier(self.config, self.random, self.started_at))
        self.closing = False  # set when the server shuts down: long-lived replies (event streams) end

    # --- entry point ----------------------------------------------------------------------------

    def handle(self, method: str, query: bytes, headers: Mapping[str, str], body: bytes = b"") -> GatewayReply:
        """Answer one API call: the reply (status, headers, body) and its simulated latency."""
        now = self.clock()
        request_id = str(uuid.uuid4()).upper()
        # For counting only (the operation is the *signed* Action, known after verification); anything but
        # the three actions shares one bucket, so arbitrary names cannot grow the stats.
        claimed = headers.get("x-acs-action") or _query_value(query, b"Action") or "Unknown"
        action = claimed if claimed in ACTIONS else "Unknown"
        reply = self._handle(Arrival(method, query, headers, body, now, request_id), action)
        reply.action = action
        reply.body.setdefault("RequestId", request_id)
        reply.headers.setdefault("x-acs-request-id", request_id)
        cfg = self.config
        if cfg.latency_ms or cfg.latency_jitter_ms:
            jitter = self.random.uniform(-cfg.latency_jitter_ms, cfg.latency_jitter_ms)
            reply.latency = max(0.0, cfg.latency_ms + jitter) / 1000.0
        return reply

    def _handle(self, arrival: Arrival, action: str) -> GatewayReply:
        counts = self.counts[action]
        counts["requests"] += 1
        fault = self._draw_fault(action)
        if fault:
            counts[f"fault_{fault}"] += 1
        if fault == "reset":  # front-end faults: the request is dropped before anything processes it
            return GatewayReply(0, {}, reset=True)
        try:
            if fault == "unavailable":
                raise GatewayRefusal(503, "ServiceUnavailable", "The request has failed due to a temporary failure.")
            reply = self._call(arrival, throttle=fault == "throttle")
        except GatewayRefusal as refusal:
            return self._refusal(refusal, arrival, counts)
        code = reply.body.get("ResponseCode")
        counts["ok" if code == "OK" else "business_error"] += 1
        if code != "OK":
            self.counts["codes"][str(code)] += 1
        elif fault == "hang":
            reply.hold = self.config.faults.hang_seconds
        elif fault == "internal_error":  # accepted and stored, yet the caller sees a 500: the ambiguous case
            unknown = "The request processing has failed due to some unknown error."
            return self._refusal(GatewayRefusal(500, "InternalError", unknown), arrival, counts)
        return reply

    def _call(self, arrival: Arrival, *, throttle: bool) -> GatewayReply:
        """Authenticate, check the version and the cap, then run the operation the signature names."""
        method, now = arrival.method, arrival.now
        if method not in ("POST", "GET"):
            raise GatewayRefusal(405, "UnsupportedHTTPMethod", f"HTTP method {method} is not supported.")
        auth = self.verifier.verify(method, arrival.query, arrival.headers, arrival.body, now)
        if auth.action not in ACTIONS:
            raise GatewayRefusal(
                404, "InvalidAction.NotFound", "Specified api is not found, please check your url and method."
            )
        if auth.version != API_VERSION:
            raise GatewayRefusal(
                400,
                "InvalidVersion",
                f"Specified parameter Version {auth.version!r} is not valid for {auth.action}; expected {API_VERSION}.",
            )
        if throttle:
            raise self._throttled(0.05)
        signed = auth.action  # route and rate-limit by what the signature covers, not an unsigned header
        cap = {SEND: self.config.qps, BATCH_SEND: self.config.batch_qps, QUERY: self.config.query_qps}[signed]
        wait = self.windows[(auth.access_key_id, signed)].offer(now, cap)
        if wait is not None:
            raise self._throttled(wait, cap)
        ops = self.operations
        handler = {SEND: ops.send, BATCH_SEND: ops.batch_send, QUERY: ops.query}[signed]
        return handler(auth.access_key_id, auth.params, now, arrival.request_id)

    def _draw_fault(self, action: str) -> str | None:
        faults = self.config.faults
        if faults.script:
            kind, _, target = faults.script[0].partition(":")
            if (target == action) if target else action in SEND_ACTIONS:
                faults.script.popleft()
                return kind
        if action not in SEND_ACTIONS:
            return None
        for kind in faults.RATIOS:
            share = getattr(faults, kind)
            if share and self.random.random() < share:
                return kind
        return None

    def _throttled(self, wait: float, cap: float | None = None) -> GatewayRefusal:
        millis = max(1, int(wait * 1000))
        limit = f"Limit:{int(cap)}," if cap else ""
        return GatewayRefusal(
            400,
            "Throttling.User",
            "Request was denied due to user flow control.",
            {"x-ratelimit-user-api": f"{limit}Remain:0,TimeLeft:{millis}", "x-acs-retry-after": str(millis)},
        )

    def _refusal(self, refusal: GatewayRefusal, arrival: Arrival, counts: Counter[str]) -> GatewayReply:
        counts["throttled" if refusal.code.startswith("Throttling") else "refused"] += 1
        self.counts["codes"][refusal.code] += 1
        body = {
            "RequestId": arrival.request_id,
            "HostId": arrival.headers.get("host", "dysmsapi.ap-southeast-1.aliyuncs.com"),
            "Code": refusal.code,
            "Message": refusal.message,
            "Recommend": "",
        }
        return GatewayReply(refusal.status, body, dict(refusal.headers))

    # --- inspection -----------------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """Uptime, calls and codes by action, rate windows and message counts."""
        now = self.clock()
        actions = {a: dict(c) for a, c in self.counts.items() if a != "codes"}
        windows: dict[str, dict[str, Any]] = {}
        for (key_id, action), window in self.windows.items():
            windows.setdefault(action, {})[key_id] = {
                "rate_last_second": window.rate(now),
                "peak_offered_1s": window.peak_offered,
                "peak_accepted_1s": window.peak_accepted,
            }
        return {
            "uptime_seconds": round(now - self.started_at, 3),
            "actions": actions,
            "codes": dict(self.counts["codes"]),
            "windows": windows,
            "messages": {"total": self.store.count(), **self.store.status_counts(now)},
            "store_errors": self.store.store_errors,
        }

    def reset_state(self) -> int:
        """Forget messages, counters and windows (``DELETE /_emulator/messages``)."""
        removed = self.store.clear()
        self.windows.clear()
        self.counts.clear()
        return removed


def _query_value(query: bytes, name: bytes) -> str | None:
    # Cheap look-up of Action for V1 requests, before the full parse in the verifier.
    for part in query.split(b"&"):
        key, _, value = part.partition(b"=")
        if key == name:
            return value.decode("latin-1")
    return None
