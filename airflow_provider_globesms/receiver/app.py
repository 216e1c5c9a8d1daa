"""The push receiver's ASGI app: ``POST /push/{secret}/receipts`` stores a push durably, then answers.

Alibaba signs nothing and sends no header we could check, so the URL's secret is the whole of the
authentication: it is checked (and the optional source allowlist) before a byte of the body is read,
and a failed check answers exactly what an unknown path answers. The body is capped in size and in
time, read by ``parse_push``, and written by ``PushStore.write`` in a worker thread; ``200 {"code": 0}``
only once the write returned, ``503`` when it raised (Alibaba pushes again after 1, 5 and 10 minutes).
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import logging
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from airflow_provider_globesms.client.receipts.push_store import PushStore
from airflow_provider_globesms.client.receipts.pushed import MAX_BODY_BYTES, MAX_RECORDS, PushRefused, parse_push
from airflow_provider_globesms.receiver.redaction import RedactPathMiddleware, install_log_redaction

log = logging.getLogger("airflow_provider_globesms.receiver")

MIN_SECRET_CHARS = 32
PUSH_PATH = "/push/{secret}/receipts"
URL_PREFIX = "/globesms"  # where the api-server mounts the app; the standalone server mounts it there too
DEFAULT_BODY_TIMEOUT = 10.0
# URL-unreserved characters only: the secret then reads the same in the console, the URL and the config.
_SECRET_CHARS = re.compile(r"[A-Za-z0-9._~-]+")
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

OK = {"code": 0, "msg": "OK"}
NOT_STORED = {"code": 1, "msg": "not stored; push again"}


class BodyRefused(Exception):
    """The body was not taken whole: ``status`` is the answer (413 too large, 408 too slow)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def check_secret(secret: str) -> str:
    """``secret`` if it can guard the URL (at least 32 URL-safe characters); else ``ValueError`` saying why
    (never quoting it)."""
    if len(secret) < MIN_SECRET_CHARS:
        raise ValueError(
            f"the push secret has {len(secret)} characters; at least {MIN_SECRET_CHARS} are needed "
            "(generate one: python -c 'import secrets; print(secrets.token_urlsafe(32))')"
        )
    if not _SECRET_CHARS.fullmatch(secret):
        raise ValueError("the push secret may hold only letters, digits and - . _ ~ (it is part of a URL)")
    return secret


def parse_allow(entries: Sequence[str]) -> tuple[Network, ...]:
    """Addresses or CIDR networks (``47.74.0.0/16``, ``2001:db8::/32``, ``10.0.0.1``); ``ValueError`` names
    the entry that is neither."""
    networks = []
    for entry in (e.strip() for e in entries):
        if not entry:
            continue
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            raise ValueError(f"push allowlist entry {entry!r} is not an address or a network") from None
    return tuple(networks)


@dataclass(frozen=True)
class _Gate:
    """Who may push: the secret, and the networks (none: any address)."""

    secret: bytes
    allow: tuple[Network, ...]

    def admits(self, request: Request, given: str) -> bool:
        # The source first: cheap, and a refused source learns nothing about the secret.
        if self.allow and not _source_allowed(request, self.allow):
            return False
        return hmac.compare_digest(given.encode("utf-8", "surrogateescape"), self.secret)


def _client_host(request: Request) -> str:
    client = request.scope.get("client")
    return str(client[0]) if client else ""


def _source_allowed(request: Request, allow: tuple[Network, ...]) -> bool:
    try:
        address = ipaddress.ip_address(_client_host(request))
    except ValueError:  # no client address (a Unix socket) or not an IP: not provably inside
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped  # a dual-stack socket reports IPv4 clients as ::ffff:a.b.c.d
    return any(address in network for network in allow)


class _AnyMethod:
    """An ASGI endpoint object: Starlette gives a route to one every method, not only GET."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, send)


def _not_found() -> HTTPException:
    # Raised, not returned: FastAPI's own 404 handler then answers it, byte for byte as an unknown path.
    return HTTPException(status_code=404)


async def read_body(request: Request, max_bytes: int, timeout: float) -> bytes:
    """The whole body, or ``BodyRefused``: over ``max_bytes`` (by ``Content-Length`` at once, else while
    counting), or not all there within ``timeout`` seconds (a slow client holds no worker for long)."""
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > max_bytes):
        raise BodyRefused(413, f"the body is over the limit of {max_bytes} bytes")

    async def collect() -> bytes:
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > max_bytes:
                raise BodyRefused(413, f"the body is over the limit of {max_bytes} bytes")
            chunks.append(chunk)
        return b"".join(chunks)

    try:
        return await asyncio.wait_for(collect(), timeout)
    except asyncio.TimeoutError:  # builtin TimeoutError only from 3.11
        raise BodyRefused(408, f"the body did not arrive within {timeout:g} seconds") from None


def _refusal(status: int, reason: str) -> JSONResponse:
    return JSONResponse({"code": 1, "msg": reason}, status_code=status)


async def _take_push(
    request: Request, store: PushStore, *, max_bytes: int, max_records: int, body_timeout: float
) -> JSONResponse:
    """Read, parse and store one admitted push; the answer says whether it is durable."""
    started = time.monotonic()
    try:
        body = await read_body(request, max_bytes, body_timeout)
        parsed = parse_push(body, max_records=max_records, max_bytes=max_bytes)
    except (BodyRefused, PushRefused) as refused:
        log.warning("Push refused (%d): %s; nothing stored", refused.status, refused.reason)
        return _refusal(refused.status, refused.reason)
    except ClientDisconnect:
        log.info("Push abandoned by the client before its body arrived; nothing stored")
        return _refusal(400, "the client went away")
    written = 0
    if parsed.receipts or parsed.dead:
        try:
            # In a worker thread: fsync and object-store PUTs block, and the loop serves other pushes meanwhile.
            written = await run_in_threadpool(store.write, parsed.receipts, parsed.dead, source=_client_host(request))
        except Exception as exc:
            log.error("Push not stored (%s); answered 503 so Alibaba pushes it again", type(exc).__name__)
            return JSONResponse(NOT_STORED, status_code=503)
    log.info(
        "Push stored: %d receipts, %d dead letters, %d objects written, %d ms",
        len(parsed.receipts),
        len(parsed.dead),
        written,
        round((time.monotonic() - started) * 1000),
    )
    return JSONResponse(OK)


def receiver_app(
    store: PushStore,
    secret: str,
    *,
    allow: Sequence[str] = (),
    max_bytes: int = MAX_BODY_BYTES,
    max_records: int = MAX_RECORDS,
    body_timeout: float = DEFAULT_BODY_TIMEOUT,
) -> FastAPI:
    """The receiver as a FastAPI app, to be mounted at ``/globesms``: ``POST /push/{secret}/receipts``.

    Answers ``200 {"code": 0, "msg": "OK"}`` once the push is durable in ``store`` (an empty array: at once,
    nothing stored); ``503`` when the store failed; ``400``/``413``/``408`` with ``{"code": 1, "msg": why}``
    for a body refused whole; ``404`` (as for any unknown path) for a wrong secret or a source outside
    ``allow``; ``405`` for another method with the right secret. ``ValueError``: a short or unusable
    secret, or an allowlist entry that is not an address or network. Installs the access log redaction.
    """
    gate = _Gate(check_secret(secret).encode(), parse_allow(allow))
    if max_bytes < 1 or max_records < 1 or body_timeout <= 0:
        raise ValueError("max_bytes, max_records and body_timeout must be positive")
    install_log_redaction()
    # No docs, no OpenAPI schema: nothing on this app but the push route (and nothing that names it).
    # redirect_slashes off: a "/receipts/" must get the unknown page's 404, not a 307 that names the route.
    app = FastAPI(
        title="globesms push receiver", docs_url=None, redoc_url=None, openapi_url=None, redirect_slashes=False
    )
    app.add_middleware(RedactPathMiddleware)

    @app.post(PUSH_PATH, include_in_schema=False)
    async def push(secret: str, request: Request) -> JSONResponse:
        if not gate.admits(request, secret):
            raise _not_found()
        return await _take_push(request, store, max_bytes=max_bytes, max_records=max_records, body_timeout=body_timeout)

    # Any other method on the route, TRACE and PROPFIND too (an ASGI app as a route's endpoint takes every
    # method; a function would take GET only): 404 like any unknown path unless the secret is right (a wrong
    # one must not learn that the route exists), then 405: the URL is right, only POST pushes.
    async def other_method(scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        if not gate.admits(request, str(request.path_params.get("secret", ""))):
            raise _not_found()
        answer = JSONResponse({"code": 1, "msg": "use POST"}, status_code=405, headers={"Allow": "POST"})
        await answer(scope, receive, send)

    app.router.routes.append(Route(PUSH_PATH, endpoint=_AnyMethod(other_method), include_in_schema=False))
    return app
