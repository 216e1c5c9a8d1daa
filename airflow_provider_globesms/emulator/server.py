"""Running the emulator: in the foreground (the CLI) or in a background thread (tests, the demo)."""

from __future__ import annotations

import contextlib
import json
import signal
import socket
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Any

import uvicorn

from airflow_provider_globesms.client.wire.endpoint import is_loopback
from airflow_provider_globesms.emulator.app import EmulatorApp
from airflow_provider_globesms.emulator.config import REQUEST_TIMEOUT, EmulatorConfig
from airflow_provider_globesms.emulator.gateway import Gateway
from airflow_provider_globesms.emulator.protocol import deadline_protocol


class _Server(uvicorn.Server):
    """uvicorn's server, telling us when its sockets accept connections.

    Stopping on SIGINT/SIGTERM is a normal end for the emulator: the first signal shuts it down
    gracefully and the command exits 0 (uvicorn would re-raise the signal afterwards); a second one
    forces the exit.
    """

    def __init__(
        self, config: uvicorn.Config, on_ready: Callable[[], None] | None = None, gateway: Gateway | None = None
    ) -> None:
        super().__init__(config)
        self.on_ready = on_ready
        self.gateway = gateway

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        """Stop on SIGINT/SIGTERM (a second one forces the exit); only in the main thread."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def stop(signum: int, frame: FrameType | None) -> None:
            if self.should_exit:
                self.force_exit = True
            self.should_exit = True

        previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        """Tell open event streams to end (within a tick), then shut down as uvicorn does."""
        if self.gateway is not None:
            self.gateway.closing = True
        await super().shutdown(sockets)

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        """Start, then call ``on_ready`` unless already stopping."""
        await super().startup(sockets)
        if self.on_ready is not None and not self.should_exit:
            self.on_ready()


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host`` and ``port`` (IPv6 when ``host`` holds ':')."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def uvicorn_config(app: EmulatorApp, request_timeout: float = REQUEST_TIMEOUT) -> uvicorn.Config:
    """How the emulator runs uvicorn: quiet, on uvloop, each request due within ``request_timeout`` s."""
    return uvicorn.Config(
        app,
        log_config=None,  # never reconfigure the host process's logging (Airflow, pytest)
        log_level="warning",
        access_log=False,
        proxy_headers=False,
        lifespan="off",
        http=deadline_protocol(request_timeout),
        loop="uvloop",
        backlog=2048,
        timeout_keep_alive=75,
        timeout_graceful_shutdown=2,
    )


def serve_forever(config: EmulatorConfig, host: str, port: int, on_ready: Callable[[str], None]) -> None:
    """Serve in this (main) thread until SIGINT/SIGTERM; uvicorn handles the signals."""
    gateway = Gateway(config)
    sock = bind(host, port)
    actual = sock.getsockname()[1]
    url = f"http://{host if ':' not in host else f'[{host}]'}:{actual}"
    app = EmulatorApp(gateway, loopback_only=is_loopback(host))
    server = _Server(uvicorn_config(app, config.request_timeout), on_ready=lambda: on_ready(url), gateway=gateway)
    try:
        server.run(sockets=[sock])
    finally:
        app.pusher.close()
        sock.close()
        gateway.store.close()


class EmulatorServer:
    """The emulator on a free loopback port in a background thread: ``start()`` and ``stop()``, or a context
    manager; point a connection's ``endpoint`` at its ``url``. The docs' emulator page shows it in a test."""

    def __init__(self, config: EmulatorConfig | None = None, host: str = "127.0.0.1", port: int = 0) -> None:
        self.config = config or EmulatorConfig()
        self.host = host
        self.gateway = Gateway(self.config)
        self._sock = bind(host, port)
        self.port: int = self._sock.getsockname()[1]
        self.url = f"http://{host}:{self.port}"
        self._ready = threading.Event()
        self.app = EmulatorApp(self.gateway, loopback_only=is_loopback(host))
        self._server = _Server(
            uvicorn_config(self.app, self.config.request_timeout), on_ready=self._ready.set, gateway=self.gateway
        )
        self._thread: threading.Thread | None = None

    def start(self, timeout: float = 10.0) -> EmulatorServer:
        """Serve in a background thread; raise ``RuntimeError`` unless ready within ``timeout`` seconds."""
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._sock]}, name="globesms-emulator", daemon=True
        )
        self._thread.start()
        if not self._ready.wait(timeout):
            self.stop()
            raise RuntimeError(f"the emulator did not start within {timeout} s")
        return self

    def stop(self) -> None:
        """Stop the server and the receipt pushes, write buffered messages and close the socket."""
        self._server.should_exit = True
        self.app.pusher.close()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
            self.gateway.store.close()  # writes buffered messages (matters with a db file)
        self._sock.close()

    def __enter__(self) -> EmulatorServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- the inspection API, over HTTP (thread-safe by construction) ------------------------------

    def _call(self, method: str, path: str, payload: dict[str, Any] | None = None) -> Any:
        data = json.dumps(payload).encode() if payload is not None else None
        headers = {"content-type": "application/json"}
        if self.config.inspection_token:
            headers["authorization"] = f"Bearer {self.config.inspection_token}"
        request = urllib.request.Request(  # noqa: S310 - our own loopback URL
            self.url + path, data=data, method=method, headers=headers
        )
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
            return json.loads(response.read())

    def messages(
        self, *, to: str | None = None, task_id: str | None = None, limit: int = 100_000
    ) -> list[dict[str, Any]]:
        """The stored messages, optionally only those to ``to`` or of ``task_id``."""
        query = urllib.parse.urlencode({k: v for k, v in {"to": to, "task_id": task_id, "limit": limit}.items() if v})
        return list(self._call("GET", f"/_emulator/messages?{query}")["messages"])

    def stats(self) -> dict[str, Any]:
        """The emulator's statistics (``/_emulator/stats``)."""
        return dict(self._call("GET", "/_emulator/stats"))

    def set_faults(self, **faults: Any) -> dict[str, Any]:
        """Shares (``throttle=0.3``), ``hang_seconds``, or ``script=["throttle", "hang"]`` for the next calls."""
        return dict(self._call("PATCH", "/_emulator/faults", faults))

    def set_settings(self, **settings: float) -> dict[str, Any]:
        """Change run-time settings; return the settings now in force."""
        return dict(self._call("PATCH", "/_emulator/settings", settings))

    def push_settings(self) -> dict[str, Any]:
        """The receipt push settings (``push_url``, ``push_interval``, ``push_batch``, ...)."""
        return dict(self._call("GET", "/_emulator/push")["settings"])

    def set_push(self, **settings: Any) -> dict[str, Any]:
        """Change push settings (``push_url="http://127.0.0.1:9000/receipts"``, ``push_retry=[0.2, 0.5]``;
        ``push_url=None`` stops new pushes); return the settings now in force. A bad value raises
        ``urllib.error.HTTPError`` 422, its body saying why."""
        return dict(self._call("PATCH", "/_emulator/push", settings)["settings"])

    def push_stats(self) -> dict[str, Any]:
        """The receipt pushes' statistics (``/_emulator/push``): counters, what is under way, the MessageIds
        dropped or given up."""
        return dict(self._call("GET", "/_emulator/push")["stats"])

    def wait_for_pushes(self, timeout: float = 10.0) -> dict[str, Any]:
        """Wait until no receipt or push is under way (every retry done); return ``push_stats()``. Raise
        ``TimeoutError`` after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            stats = self.push_stats()
            if not (stats["receipts_waiting"] or stats["pushes_queued"] or stats["pushes_in_flight"]):
                return stats
            if time.monotonic() > deadline:
                raise TimeoutError(f"receipt pushes still under way after {timeout} s: {stats}")
            time.sleep(0.05)

    def clear(self) -> int:
        """Delete every stored message; return how many were deleted."""
        return int(self._call("DELETE", "/_emulator/messages")["deleted"])
