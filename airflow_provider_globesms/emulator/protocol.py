"""uvicorn's HTTP protocol with a deadline for receiving each request.

uvicorn closes a keep-alive connection that stays idle *after* a reply, but a connection that never
sends a request, or sends half of one (a slow-loris client, a crashed proxy), is held open for ever.
Each request here must arrive whole within ``request_timeout`` seconds of the connection opening or of
its first byte; otherwise the emulator answers a JSON 408 (when no reply is under way) and closes the
connection. The deadline ends when the request has been read: slow replies (``hang`` faults) are ours.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from airflow_provider_globesms.emulator.config import REQUEST_TIMEOUT

_BODY = json.dumps({"Code": "RequestTimeout", "Message": "the request did not arrive in time"}).encode()
_TIMEOUT_REPLY = (
    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\nconnection: close\r\n"
    + f"content-length: {len(_BODY)}\r\n\r\n".encode()
    + _BODY
)


class DeadlineHttpProtocol(HttpToolsProtocol):
    """A request that takes longer than ``request_timeout`` to arrive is answered 408 and closed."""

    request_timeout = REQUEST_TIMEOUT

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        """Start the deadline: a connection that sends nothing counts as a late request."""
        super().connection_made(transport)
        self._arm()  # a connection that never sends anything counts as a late request

    def connection_lost(self, exc: Exception | None) -> None:
        """Cancel the deadline."""
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        """Start the deadline for bytes that begin no request (they must not keep it open)."""
        # Bytes that begin no request (blank lines between requests) reach neither on_message_begin nor
        # the keep-alive timer, which any data cancels: they must not keep a connection open for ever.
        if self._deadline is None and (self.cycle is None or self.cycle.response_complete):
            self._arm()
        super().data_received(data)

    def on_message_begin(self) -> None:
        """Start the deadline for this request."""
        super().on_message_begin()
        self._arm()

    def on_message_complete(self) -> None:
        """Cancel the deadline: the request arrived in time."""
        self._disarm()
        super().on_message_complete()

    def _arm(self) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(self.request_timeout, self._expired)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expired(self) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete and not cycle.more_body:
            # A complete earlier request is still being answered (a pipelined late one is what expired):
            # its reply is owed and may report an accepted message. Finish it, then close.
            cycle.keep_alive = False
            self.flow.pause_reading()
            return
        if cycle is None or not cycle.response_started or cycle.response_complete:
            self.transport.write(_TIMEOUT_REPLY)
        self.transport.close()


def deadline_protocol(request_timeout: float) -> type[DeadlineHttpProtocol]:
    """The protocol class uvicorn should use, with this deadline (uvicorn takes a class, not an instance)."""
    return type("DeadlineHttpProtocol", (DeadlineHttpProtocol,), {"request_timeout": float(request_timeout)})
