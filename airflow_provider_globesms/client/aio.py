"""The asyncio face of the client: for bulk sends and for the deferrable trigger.

At the account's 2,000/s cap and 100-300 ms of latency, several hundred requests are in flight at
once. Threads pay for that in GIL contention (measured: twice the CPU per send); one event loop
does not. ``AsyncGlobeSmsClient`` wraps a ``GlobeSmsClient`` and shares everything with it except the
I/O: signing, validation, the rate limiters, the counters and, through ``GlobeSmsClient.new_call``, the
send state machine (``call``) that decides every retry.
"""

from __future__ import annotations

import asyncio
import ssl
import sys
import warnings
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from typing import Any, TypeVar

from pydantic import BaseModel

from airflow_provider_globesms.client.blocking import GlobeSmsClient
from airflow_provider_globesms.client.rules.models import QueryMessageResult, SendMessageRequest, SendMessageResult
from airflow_provider_globesms.client.rules.phone import mask_number
from airflow_provider_globesms.client.wire.call import Call
from airflow_provider_globesms.client.wire.endpoint import Endpoint, Timeout
from airflow_provider_globesms.client.wire.http11 import RECV_SIZE, ReplyParser, encode_request, reset_error
from airflow_provider_globesms.client.wire.retry import RetryPolicy
from airflow_provider_globesms.client.wire.signing import QUERY, SEND, SignedRequest
from airflow_provider_globesms.client.wire.transport import ExchangeError, Phase, RawResponse, default_ssl_context

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
        headers = request.headers
        if self.user_agent and "user-agent" not in headers:
            headers = {**headers, "user-agent": self.user_agent}
        payload = encode_request(request.method, request.target, headers, request.body)
        conn = self._checkout()
        if conn is None:
            try:
                conn = await self._connect()
            except (OSError, asyncio.TimeoutError, ssl.SSLError) as exc:
                raise ExchangeError(Phase.CONNECT, exc) from None
        reader, writer = conn
        if before_write is not None:
            await before_write()
        try:
            writer.write(payload)
            await writer.drain()
        except OSError as exc:
            writer.close()
            raise ExchangeError(Phase.WRITE, exc) from None
        parser = ReplyParser()
        try:
            reply = await _within(self.timeout.read, self._read(reader, parser))
        except (ConnectionResetError, ConnectionAbortedError, BrokenPipeError) as exc:
            writer.close()
            phase = Phase.WAIT if parser.received == 0 else Phase.READ
            raise ExchangeError(phase, reset_error(parser, exc)) from None
        except (OSError, asyncio.TimeoutError) as exc:
            writer.close()
            cause = TimeoutError(str(exc)) if isinstance(exc, asyncio.TimeoutError) else exc
            raise ExchangeError(Phase.WAIT if parser.received == 0 else Phase.READ, cause) from None
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
        """Close every idle connection."""
        while self._idle:
            _, writer = self._idle.pop()
            writer.close()


class AsyncGlobeSmsClient:
    """SendMessageToGlobe and QueryMessage from coroutines, with the blocking client's rules.

    ``retry`` overrides the wrapped client's policy (the bulk sender sets ``confirm_by_replay`` there).
    """

    def __init__(self, client: GlobeSmsClient, max_connections: int = 100, retry: RetryPolicy | None = None) -> None:
        self.client = client
        self.retry = retry or client.retry
        self._pool = AsyncConnectionPool(
            client.endpoint, client.timeout, maxsize=max_connections, user_agent=client.user_agent
        )

    async def send(
        self, request: SendMessageRequest, before_exchange: Callable[[SignedRequest], Awaitable[None]] | None = None
    ) -> SendMessageResult:
        """Send a validated request; see ``send_params``."""
        return await self.send_params(request.to_params(), before_exchange)

    async def send_params(
        self,
        params: Mapping[str, str],
        before_exchange: Callable[[SignedRequest], Awaitable[None]] | None = None,
        after_refusal: Callable[[SignedRequest], Awaitable[None]] | None = None,
        before_attempt: Callable[[], None] | None = None,
    ) -> SendMessageResult:
        """Send SendMessageToGlobe parameters validated earlier (``SendMessageRequest.to_params()``).

        ``before_exchange`` sees each newly signed attempt before its bytes leave; ``after_refusal`` sees
        a fresh attempt the API turned away (throttled, 503) before the retry signs a new one;
        ``before_attempt`` runs before every attempt, fresh or a re-send, and may raise to stop the call.
        """
        call = self.client.new_call(
            SEND, params, SendMessageResult, masked_to=mask_number(params["To"]), retry=self.retry
        )
        return await self._run(call, before_exchange, after_refusal, before_attempt)

    async def replay_send(
        self, signed: SignedRequest, before_attempt: Callable[[], None] | None = None
    ) -> SendMessageResult:
        """See ``GlobeSmsClient.replay_send``; ``before_attempt`` as in ``send_params``."""
        call = self.client.new_call(
            SEND, {}, SendMessageResult, in_doubt=signed, masked_to=mask_number(signed.param("To")), retry=self.retry
        )
        return await self._run(call, before_attempt=before_attempt)

    async def query_message(self, message_id: object) -> QueryMessageResult:
        """See ``GlobeSmsClient.query_message``."""
        params = self.client.build_query_request(message_id).to_params()
        return await self._run(self.client.new_call(QUERY, params, QueryMessageResult, idempotent=True))

    async def _run(
        self,
        call: Call[R],
        before_exchange: Callable[[SignedRequest], Awaitable[None]] | None = None,
        after_refusal: Callable[[SignedRequest], Awaitable[None]] | None = None,
        before_attempt: Callable[[], None] | None = None,
    ) -> R:
        """The asyncio loop around ``call``: the blocking client's ``_run``, awaited."""
        limiter = self.client.limiters[call.action]
        while True:
            await limiter.pace_async()
            if before_attempt is not None:
                before_attempt()  # e.g. the recipient's quiet hours began while this call waited
            attempt = call.attempt()
            if attempt.fresh and before_exchange is not None:
                await before_exchange(attempt.signed)
            try:
                verdict = call.replied(await self._pool.exchange(attempt.signed, before_write=limiter.admit_async))
            except ExchangeError as exc:
                verdict = call.failed(exc)
            result = verdict.final()
            if result is not None:
                return result
            if verdict.refused and after_refusal is not None:
                await after_refusal(attempt.signed)
            await asyncio.sleep(verdict.wait)

    async def aclose(self) -> None:
        """Close the idle connections."""
        await self._pool.aclose()


def run(main: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine on uvloop when it is installed (it is, with Airflow), else on asyncio."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover
        return asyncio.run(main)
    return uvloop.run(main)


def __getattr__(name: str) -> Any:
    """``AsyncDysmsClient``, the client's name before 0.2: still importable, with a warning, until 0.3."""
    if name == "AsyncDysmsClient":
        message = "AsyncDysmsClient is now AsyncGlobeSmsClient; the old name goes in 0.3"
        warnings.warn(message, DeprecationWarning, stacklevel=2)
        return AsyncGlobeSmsClient
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
