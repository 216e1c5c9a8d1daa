"""The emulator's ASGI application.

``POST /`` (the API) is served by a plain ASGI handler: it is the hot path, and routing, dependency
injection and response models would cost more than the gateway's own work. Everything under
``/_emulator/`` is a small FastAPI app: inspection, statistics and run-time fault control, and the sandbox
inbox's pages (``/_emulator/ui``, where a plain ``GET /`` leads).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import socket
import struct
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import urlsplit

import msgspec
from fastapi import APIRouter, Body, FastAPI, HTTPException, Query

from airflow_provider_globesms.client.errors import InvalidFieldError
from airflow_provider_globesms.client.rules.phone import parse_number
from airflow_provider_globesms.client.wire.endpoint import is_loopback
from airflow_provider_globesms.emulator.gateway import Gateway
from airflow_provider_globesms.emulator.inbox import UI, access, inbox_router
from airflow_provider_globesms.emulator.push import ReceiptPusher
from airflow_provider_globesms.emulator.store import MessageFilter

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

SQLITE_MAX_INTEGER = 2**63 - 1
_encode_json = msgspec.json.Encoder().encode  # UTF-8 JSON, a few times faster than json.dumps


def reset_connection(send: Send) -> bool:
    """Abort the client's TCP connection with a RST (SO_LINGER 0), as a failing load balancer would.

    ASGI has no such verb; uvicorn's ``send`` is a method of the request cycle that owns the transport.
    """
    transport = getattr(getattr(send, "__self__", None), "transport", None)
    if transport is None:
        return False
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()
    return True


def build_inspection_app(gateway: Gateway, pusher: ReceiptPusher | None = None) -> FastAPI:
    """The inspection and control API under ``/_emulator/`` (messages, stats, faults, settings, and the
    receipt pushes of ``pusher`` when given)."""
    app = FastAPI(
        title="globesms emulator",
        description="Inspection and control of the local Alibaba Cloud SMS (international) emulator.",
        docs_url="/_emulator/docs",
        openapi_url="/_emulator/openapi.json",
        redoc_url=None,
    )
    app.include_router(_messages_router(gateway))
    app.include_router(_controls_router(gateway))
    app.include_router(inbox_router(gateway))
    if pusher is not None:
        app.include_router(_push_router(gateway, pusher))
    return app


# Every endpoint is async: it runs on the event loop thread, the only one touching the gateway.


def _messages_router(gateway: Gateway) -> APIRouter:
    router = APIRouter(prefix="/_emulator")

    @router.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @router.get("/messages")
    async def messages(
        to: str | None = Query(None, description="a phone number, with or without '+'"),
        task_id: str | None = Query(None, description="the TaskId (campaign id) sent with the messages"),
        limit: int = Query(1000, ge=1, le=100_000),
        offset: int = Query(0, ge=0, le=SQLITE_MAX_INTEGER),
    ) -> dict[str, Any]:
        wire = None
        if to:
            try:
                wire = parse_number(to, refuse_ambiguous=False).wire
            except InvalidFieldError:
                wire = to.lstrip("+")
        now = gateway.clock()
        match = MessageFilter(to=wire, task_id=task_id or None)
        found = gateway.store.find(match, limit=limit, offset=offset)
        return {
            "count": gateway.store.count(match),
            "messages": [m.as_json(now) for m in found],
        }

    @router.delete("/messages")
    async def clear_messages() -> dict[str, int]:
        return {"deleted": gateway.reset_state()}

    @router.get("/stats")
    async def stats() -> dict[str, Any]:
        return gateway.stats()

    return router


def _controls_router(gateway: Gateway) -> APIRouter:
    router = APIRouter(prefix="/_emulator")

    @router.get("/faults")
    async def get_faults() -> dict[str, Any]:
        return gateway.config.faults.as_dict()

    @router.patch("/faults")
    async def set_faults(values: dict[str, Any] = Body(...)) -> dict[str, Any]:  # noqa: B008
        try:
            gateway.config.faults.update(values)
        except (ValueError, TypeError) as exc:
            raise HTTPException(status_code=422, detail=str(exc)) from None
        return gateway.config.faults.as_dict()

    @router.get("/settings")
    async def get_settings() -> dict[str, Any]:
        return gateway.config.public()

    @router.patch("/settings")
    async def set_settings(values: dict[str, float] = Body(...)) -> dict[str, Any]:  # noqa: B008
        try:
            gateway.config.update(values)
        except (ValueError, TypeError) as exc:
            raise HTTPException(status_code=422, detail=str(exc)) from None
        return gateway.config.public()

    return router


def _push_router(gateway: Gateway, pusher: ReceiptPusher) -> APIRouter:
    router = APIRouter(prefix="/_emulator")

    def state() -> dict[str, Any]:
        return {"settings": gateway.config.push_settings(), "stats": pusher.stats()}

    @router.get("/push")
    async def get_push() -> dict[str, Any]:
        return state()

    @router.patch("/push")
    async def set_push(values: dict[str, Any] = Body(...)) -> dict[str, Any]:  # noqa: B008
        try:
            gateway.config.update_push(values)
        except (ValueError, TypeError) as exc:
            raise HTTPException(status_code=422, detail=str(exc)) from None
        pusher.wake()
        return state()

    return router


MAX_BODY_BYTES = 1024 * 1024  # far above any real request (a 1,000-number batch is a few dozen KiB)


def _is_a_browser_at_the_root(scope: Scope) -> bool:
    """A person opening the emulator's URL, not an API call (which has a query, or a body, and never asks
    for HTML): they are sent to the inbox."""
    headers = dict(scope["headers"])
    return (
        scope["method"] == "GET"
        and not scope["query_string"]
        and b"text/html" in headers.get(b"accept", b"")
        and b"authorization" not in headers
    )


async def _redirect(send: Send, location: str) -> None:
    headers = [(b"location", location.encode()), (b"content-length", b"0")]
    await send({"type": "http.response.start", "status": 303, "headers": headers})
    await send({"type": "http.response.body", "body": b""})


async def _answer(send: Send, status: int, body: dict[str, Any]) -> None:
    payload = _encode_json(body)
    headers = [(b"content-type", b"application/json;charset=utf-8"), (b"content-length", str(len(payload)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})


log = logging.getLogger(__name__)


# One Host header: a name (letters, digits, dots, dashes) or a bracketed IPv6 address, then maybe a port.
_HOST = re.compile(r"(?:\[(?P<ip6>[0-9A-Fa-f:.]+)\]|(?P<name>[A-Za-z0-9.\-]+))(?::[0-9]{1,5})?")


def _host_name(scope: Scope) -> str | None:
    """The name the request was addressed to, lower case, without its port or a final dot; ``None`` when it
    carries no ``Host``, ``""`` when it carries several or one that is not a plain host name or address."""
    hosts = [value for name, value in scope["headers"] if name == b"host"]
    if not hosts:
        return None
    found = _HOST.fullmatch(hosts[0].decode("latin-1")) if len(hosts) == 1 else None
    if found is None:
        return ""
    return str(found["ip6"] or found["name"]).rstrip(".").lower()


def _names_this_machine(scope: Scope, also: tuple[str, ...] = ()) -> bool:
    """The request was addressed to this machine by an address or ``localhost``, or by a name in ``also``.

    A web page can point a name it owns at 127.0.0.1 (DNS rebinding) and then read same-origin what that name
    serves; the ``Host`` header still carries its name, so an emulator on loopback answers its inspection
    API (every number and text sent) only to loopback names, and to those a reverse proxy in front uses.
    """
    name = _host_name(scope)
    return name is None or is_loopback(name) or name.endswith(".localhost") or (bool(name) and name in also)


_STATE_CHANGES = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_DEFAULT_PORTS = {"http": 80, "https": 443}


def _from_another_origin(scope: Scope, proxied: tuple[str, ...] = ()) -> bool:
    """A state change sent by a page of another origin. Browsers send ``Origin`` with every POST, PUT, PATCH
    and DELETE, same-origin included; tests, the CLI and SDKs send none. A page on another port of 127.0.0.1 is
    the *same site* to a browser (``Sec-Fetch-Site: same-site``), so only the origin itself is trusted: its
    host and port must be the ``Host`` this request was addressed to. Independent of FastAPI's version (which
    parsed a body without a JSON content type, a CORS "simple request", before 0.132). Behind a reverse proxy
    named in ``proxied`` (``--allowed-host``), which often passes on the name without the port (nginx's
    ``$host``), the name alone must match. A browser's own word on the request's site (``Sec-Fetch-Site``,
    which no page can set) must be same-origin when it gives one."""
    if scope["method"] not in _STATE_CHANGES:
        return False
    headers = scope["headers"]
    origins = [value.decode("latin-1").strip().lower() for name, value in headers if name == b"origin"]
    sites = [value for name, value in headers if name == b"sec-fetch-site"]
    if not origins or origins == ["null"]:
        # No Origin: not a browser (a browser always sends one). "null": a browser keeping the origin to itself
        # (a form under a strict referrer policy; a sandboxed frame, a file): its own word on the request's
        # site decides, which no page can forge (Sec-Fetch-Site is a forbidden header name).
        return bool(origins or sites) and sites != [b"same-origin"]
    hosts = [value.decode("latin-1").strip().lower() for name, value in headers if name == b"host"]
    if len(origins) != 1 or len(hosts) != 1 or any(site not in (b"same-origin", b"none") for site in sites):
        return True
    origin = urlsplit(origins[0])
    if origin.scheme not in _DEFAULT_PORTS or origin.path or origin.query or "@" in origin.netloc:
        return True  # "null" (a sandboxed frame, a file), or no origin at all
    mine, theirs = _host_and_port(hosts[0], origin.scheme), _host_and_port(origin.netloc, origin.scheme)
    if mine is None or theirs is None:
        return True
    return theirs[0] != mine[0] or (theirs[1] != mine[1] and mine[0] not in proxied)


def _host_and_port(netloc: str, scheme: str) -> tuple[str, int] | None:
    """``netloc``'s host name (no final dot) and port (the scheme's default when none is written)."""
    try:
        parts = urlsplit(f"//{netloc}")
        return (parts.hostname or "").rstrip("."), parts.port or _DEFAULT_PORTS[scheme]
    except ValueError:  # a port that is no number, or out of range
        return None


def _never_framed_elsewhere(send: Send) -> Send:
    """Answers of the JSON API and its docs page (whose "Try it out" sends same-origin changes) framed by no
    other page; the inbox's pages set their own policy (Airflow's UI frames them, read-only)."""

    async def sending(message: MutableMapping[str, Any]) -> None:
        if message["type"] == "http.response.start":
            headers = list(message.get("headers", []))
            if not any(name.lower() == b"content-security-policy" for name, _ in headers):
                headers += [(b"content-security-policy", b"frame-ancestors 'none'"), (b"x-frame-options", b"DENY")]
                message = {**message, "headers": headers}
        await send(message)

    return sending


class EmulatorApp:
    """The ASGI app: ``POST /`` to the gateway, everything else to the inspection API (token, if set).

    ``loopback_only``: the emulator listens on loopback, so its inspection API and inbox answer only requests
    addressed to a loopback name (see ``_names_this_machine``). ``pusher`` pushes the gateway's receipts once a
    push URL is set; whoever runs the app closes it (``pusher.close()``) when the app stops.
    """

    def __init__(self, gateway: Gateway, *, loopback_only: bool = True) -> None:
        self.gateway = gateway
        # The gateway's clock read at each use: a test may swap it (receipts are final in its time).
        self.pusher = ReceiptPusher(
            gateway.config, gateway.store, clock=lambda: gateway.clock(), seed=gateway.config.seed
        )
        self.inspection = build_inspection_app(gateway, self.pusher)
        self.loopback_only = loopback_only

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        token = self.gateway.config.inspection_token
        if scope["type"] != "http":  # no WebSocket endpoint exists: refuse before any route or check is reached
            await send({"type": "websocket.close", "code": 1008})
        elif scope["path"] == "/":
            if _is_a_browser_at_the_root(scope):
                await _redirect(send, UI)
            else:
                await self.api(scope, receive, send)
        elif self.loopback_only and not _names_this_machine(scope, self.gateway.config.allowed_hosts):
            await _answer(send, 421, {"Code": "MisdirectedRequest", "Message": "this emulator answers loopback names"})
        elif _from_another_origin(scope, self.gateway.config.allowed_hosts):
            message = "state changes come from the emulator's own pages (or from clients that send no Origin)"
            await _answer(send, 403, {"Code": "Forbidden", "Message": message})
        elif token and await access.answer_browser(scope, receive, send, token):
            return
        elif not access.allowed(scope, token):
            payload = _encode_json({"Code": "Unauthorized", "Message": "the inspection API needs its token"})
            headers = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
            await send({"type": "http.response.start", "status": 401, "headers": headers})
            await send({"type": "http.response.body", "body": payload})
        else:
            await self.inspection(scope, receive, _never_framed_elsewhere(send))

    async def api(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one API call: read the body (up to ``MAX_BODY_BYTES``) and answer the gateway's reply."""
        parts: list[bytes] = []  # joined once: appending to bytes made a 100 MiB body take 17 s
        size = 0
        while True:
            message = await receive()
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > MAX_BODY_BYTES:
                await _answer(
                    send, 413, {"Code": "RequestEntityTooLarge", "Message": f"body over {MAX_BODY_BYTES} bytes"}
                )
                return
            parts.append(chunk)
            if not message.get("more_body"):
                break
        body = b"".join(parts)
        headers: dict[str, str] = {}
        for raw_name, raw_value in scope["headers"]:
            name = raw_name.decode("latin-1").lower()
            value = raw_value.decode("latin-1")
            headers[name] = f"{headers[name]},{value}" if name in headers else value
        try:
            reply = self.gateway.handle(scope["method"], scope["query_string"], headers, body)
        except Exception as exc:  # a bug of ours: still the API's JSON shape, never a plain-text 500
            log.exception("emulator: error while handling a request")
            await _answer(send, 500, {"Code": "InternalError", "Message": f"emulator error ({type(exc).__name__})"})
            return
        if reply.reset and reset_connection(send):
            return
        if reply.latency:
            await asyncio.sleep(reply.latency)
        if reply.hold:
            await asyncio.sleep(reply.hold)
        payload = _encode_json(reply.body)
        response_headers = [
            (b"content-type", b"application/json;charset=utf-8"),
            (b"content-length", str(len(payload)).encode()),
            *((name.encode(), value.encode()) for name, value in reply.headers.items()),
        ]
        await send({"type": "http.response.start", "status": reply.status or 503, "headers": response_headers})
        await send({"type": "http.response.body", "body": payload})
