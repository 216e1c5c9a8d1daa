"""The asyncio face of the client: for bulk sends and for the deferrable trigger.

At the account's 2,000/s cap and 100-300 ms of latency, several hundred requests are in flight at
once. Threads pay for that in GIL contention (measured: twice the CPU per send); one event loop
does not. ``AsyncDysmsClient`` wraps a ``DysmsClient`` and shares everything with it except the
I/O: signing, validation, reply parsing, the retry rule, the rate limiters and the counters.
"""

from __future__ import annotations

import asyncio
import ssl
import sys
import time
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from typing import Any, TypeVar

from pydantic import BaseModel

from airflow_provider_globesms.client.client import QUERY, SEND, Attempts, DysmsClient
from airflow_provider_globesms.client.errors import GlobeSmsError
from airflow_provider_globesms.client.http11 import RECV_SIZE, PeerClosed, ReplyParser, encode_request, reset_error
from airflow_provider_globesms.client.models import (
    QueryMessageRequest,
    QueryMessageResult,
    SendMessageRequest,
    SendMessageResult,
)
from airflow_provider_globesms.client.phone import mask_number
from airflow_provider_globesms.client.signing import SignedRequest
from airflow_provider_globesms.client.transport import (
    Endpoint,
    ExchangeError,
    Phase,
    RawResponse,
    Timeout,
    default_ssl_context,
)

T = TypeVar("T")
R = TypeVar("R", bound=BaseModel)
Connection = tuple[asyncio.StreamReader, asyncio.StreamWriter]


async def _within(seconds: float, awaitable: Awaitable[T]) -> T:
    if sys.version_info >= (3, 11):
        async with asyncio.timeout(seconds):  # no extra task per call, unlike wait_for
            return await awaitable
    return await asyncio.wait_for(awaitable, seconds)


class AsyncConnectionPool:
    """Keep-alive connections to one endpoint, for one event loop. Same phases as ``ConnectionPool``."""

    def __init__(self, endpoint: Endpoint, timeout: Timeout, maxsize: int = 100, user_agent: str = "") -> None:
        self.endpoint = endpoint
        self.timeout = timeout
        self.maxsize = max(1, maxsize)
        self.user_agent = user_agent
        self._idle: list[Connection] = []

    async def _connect(self) -> Connection:
        secure = self.endpoint.scheme == "https"
        return await _within(
            self.timeout.connect,
            asyncio.open_connection(
                self.endpoint.host,
                self.endpoint.port,
                ssl=default_ssl_context() if secure else None,
                server_hostname=self.endpoint.host if secure else None,
            ),
        )

    def _checkout(self) -> Connection | None:
        while self._idle:
            reader, writer = self._idle.pop()
            if not writer.is_closing() and not reader.at_eof():
                return reader, writer
            writer.close()
        return None

    def _release(self, conn: Connection, reusable: bool) -> None:
        if reusable and len(self._idle) < self.maxsize:
            self._idle.append(conn)
        else:
            conn[1].close()

    async def exchange(
        self, request: SignedRequest, before_write: Callable[[], Awaitable[None]] | None = None
    ) -> RawResponse:
        """See ``ConnectionPool.exchange``."""
        conn = self._checkout()
        if conn is None:
            try:
                conn = await self._connect()
            except (OSError, asyncio.TimeoutError, ssl.SSLError) as exc:
                raise ExchangeError(Phase.CONNECT, exc) from None
        reader, writer = conn
        headers = request.headers
        if self.user_agent and "user-agent" not in headers:
            headers = {**headers, "user-agent": self.user_agent}
        payload = encode_request(request.method, request.target, headers, request.body)
        if before_write is not None:
            await before_write()
        try:
            writer.write(payload)
            await writer.drain()
        except OSError as exc:
            writer.close()
            raise ExchangeError(Phase.WRITE, exc) from None
        parser = ReplyParser(request.method)
        try:
            reply = await _within(self.timeout.read, self._read(reader, parser))
        except (ConnectionResetError, ConnectionAbortedError, BrokenPipeError) as exc:
            writer.close()
            error = reset_error(parser, exc)
            raise ExchangeError(Phase.DROPPED if isinstance(error, PeerClosed) else Phase.READ, error) from None
        except (OSError, asyncio.TimeoutError) as exc:
            writer.close()
            raise ExchangeError(Phase.READ, exc) from None
        self._release(conn, reply.keep_alive)
        return RawResponse(reply.status, reply.headers, reply.body)

    @staticmethod
    async def _read(reader: asyncio.StreamReader, parser: ReplyParser) -> Any:
        while True:
            data = await reader.read(RECV_SIZE)
            if not data:
                return parser.eof()
            reply = parser.feed(data)
            if reply is not None:
                return reply

    async def aclose(self) -> None:
        while self._idle:
            _, writer = self._idle.pop()
            writer.close()


class AsyncDysmsClient:
    """SendMessageToGlobe and QueryMessage from coroutines, with the blocking client's rules."""

    def __init__(self, client: DysmsClient, max_connections: int = 100) -> None:
        self.client = client
        self._pool = AsyncConnectionPool(
            client.endpoint, client.timeout, maxsize=max_connections, user_agent=client.user_agent
        )

    async def send(
        self, request: SendMessageRequest, before_exchange: Callable[[SignedRequest], Awaitable[None]] | None = None
    ) -> SendMessageResult:
        return await self.send_params(request.to_params(), before_exchange)

    async def send_params(
        self,
        params: Mapping[str, str],
        before_exchange: Callable[[SignedRequest], Awaitable[None]] | None = None,
        after_refusal: Callable[[SignedRequest], Awaitable[None]] | None = None,
    ) -> SendMessageResult:
        """Send SendMessageToGlobe parameters validated earlier (``SendMessageRequest.to_params()``).

        ``before_exchange`` sees each newly signed attempt before its bytes leave; ``after_refusal`` sees
        an attempt the API refused (throttled, 503...) before the retry signs a new one.
        """
        return await self._call(
            SEND,
            params,
            SendMessageResult,
            masked_to=mask_number(params["To"]),
            before_exchange=before_exchange,
            after_refusal=after_refusal,
        )

    async def replay_send(self, signed: SignedRequest) -> SendMessageResult:
        """See ``DysmsClient.replay_send``."""
        limiter = self.client.limiters[SEND]
        await limiter.pace_async()
        try:
            raw = await self._pool.exchange(signed, before_write=limiter.admit_async)
        except ExchangeError as exc:
            raise self.client._exchange_error(SEND, exc, idempotent=False) from None
        return self.client._parse(SEND, raw, SendMessageResult)

    async def query_message(self, message_id: object) -> QueryMessageResult:
        request = self.client._validated(QueryMessageRequest, {"message_id": message_id})
        return await self._call(QUERY, request.to_params(), QueryMessageResult, idempotent=True)

    async def _call(
        self,
        action: str,
        params: Mapping[str, str],
        model: type[R],
        *,
        masked_to: str = "",
        idempotent: bool = False,
        before_exchange: Callable[[SignedRequest], Awaitable[None]] | None = None,
        after_refusal: Callable[[SignedRequest], Awaitable[None]] | None = None,
    ) -> R:
        """See ``DysmsClient._call``; the callbacks are awaited."""
        client = self.client
        limiter = client.limiters[action]
        attempts = Attempts()
        while True:
            attempts.total += 1
            await limiter.pace_async()
            signed = attempts.replay or client.sign(action, params)
            if attempts.replay is None and before_exchange is not None:
                await before_exchange(signed)
            started = time.perf_counter()
            try:
                raw = await self._pool.exchange(signed, before_write=limiter.admit_async)
                result = client._parse(action, raw, model)
            except (ExchangeError, GlobeSmsError) as exc:
                wait = client._retry_or_raise(action, exc, attempts, idempotent, masked_to, signed)
                if attempts.replay is None and after_refusal is not None:
                    await after_refusal(signed)
                await asyncio.sleep(wait)
                continue
            client._succeeded(action, result, masked_to, started, attempts.total)
            return result

    async def aclose(self) -> None:
        await self._pool.aclose()


def run(main: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine on uvloop when it is installed (it is, with Airflow), else on asyncio."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover
        return asyncio.run(main)
    return uvloop.run(main)
