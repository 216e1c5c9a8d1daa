"""Who may see ``/_emulator/``: the JSON API takes ``Authorization: Bearer TOKEN``; a browser cannot send that
header with a page or an event stream, so the inbox also takes a cookie, set once by a login form or by
opening any inbox URL with ``?token=TOKEN`` (then redirected without it, so the token leaves the address bar).

The cookie holds an HMAC of the token, never the token. It is HttpOnly and SameSite=Strict, and every
endpoint that changes something needs PATCH or DELETE with JSON, which another origin cannot send without a
CORS preflight the emulator never grants.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import quote_from_bytes, unquote_to_bytes

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

COOKIE = "globesms_inspection"
UI = "/_emulator/ui"
LOGIN = f"{UI}/login"
STATIC = f"{UI}/static/"  # the login form and the script and style hold no data
MAX_FORM_BYTES = 4096


def cookie_value(token: str) -> str:
    """What the cookie holds for ``token``: a keyed digest, useless to anyone who reads it elsewhere."""
    return hmac.new(token.encode(), b"globesms sandbox inbox", hashlib.sha256).hexdigest()


def _same(given: str | bytes, expected: str) -> bool:
    """Constant-time equality on bytes (``compare_digest`` refuses non-ASCII text with a ``TypeError``)."""
    raw = given.encode("utf-8", "surrogateescape") if isinstance(given, str) else given
    return hmac.compare_digest(raw, expected.encode("utf-8", "surrogateescape"))


def _cookies(scope: Scope) -> dict[str, str]:
    raw = dict(scope["headers"]).get(b"cookie", b"").decode("latin-1")
    pairs = (part.strip().partition("=") for part in raw.split(";"))
    return {name: value for name, _, value in pairs if name}


def allowed(scope: Scope, token: str | None) -> bool:
    """The request may see ``/_emulator/``: no token is set, or it carries the bearer token or the cookie."""
    if not token:
        return True
    if scope["path"] == LOGIN or scope["path"].startswith(STATIC):
        return True
    given = dict(scope["headers"]).get(b"authorization", b"").decode("latin-1")
    if _same(given, f"Bearer {token}"):
        return True
    return _same(_cookies(scope).get(COOKIE, ""), cookie_value(token))


async def _redirect(send: Send, location: str, cookie: str | None = None) -> None:
    headers = [(b"location", location.encode()), (b"content-length", b"0"), (b"cache-control", b"no-store")]
    if cookie is not None:
        attributes = f"{COOKIE}={cookie}; Path=/_emulator; HttpOnly; SameSite=Strict"
        headers.append((b"set-cookie", attributes.encode()))
    await send({"type": "http.response.start", "status": 303, "headers": headers})
    await send({"type": "http.response.body", "body": b""})


async def _form_token(receive: Receive) -> bytes:
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if len(body) > MAX_FORM_BYTES or not message.get("more_body"):
            break
    return _split_token(body[:MAX_FORM_BYTES])[0] or b""


def _split_token(query: bytes) -> tuple[bytes | None, bytes]:
    """The ``token`` a query (or form) carries, as bytes, and the query without it, left as it was written."""
    given: bytes | None = None
    kept: list[bytes] = []
    for part in query.split(b"&"):
        key, _, value = part.partition(b"=")
        if unquote_to_bytes(key.replace(b"+", b" ")) == b"token":
            given = unquote_to_bytes(value.replace(b"+", b" "))
        elif part:
            kept.append(part)
    return given, b"&".join(kept)


def _location(scope: Scope, query: bytes) -> str:
    """The request's own URL, as it was written (``raw_path``: still percent-encoded), with ``query``."""
    raw_path = scope.get("raw_path") or scope["path"].encode()
    path = quote_from_bytes(raw_path, safe="/%:@!$&'()*+,;=-._~")
    return path + ("?" + quote_from_bytes(query, safe="=&%+/:@!$'()*,;-._~") if query else "")


async def answer_browser(scope: Scope, receive: Receive, send: Send, token: str) -> bool:
    """Log a browser in, or send it to the login form; ``False`` when the request is not the inbox's."""
    path, method = scope["path"], scope["method"]
    if not path.startswith(UI):
        return False
    if path == LOGIN and method == "POST":
        good = _same(await _form_token(receive), token)
        await _redirect(send, UI if good else f"{LOGIN}?failed=true", cookie_value(token) if good else None)
        return True
    given, rest = _split_token(scope["query_string"])
    if given is not None and _same(given, token):
        await _redirect(send, _location(scope, rest), cookie_value(token))
        return True
    if method == "GET" and not allowed(scope, token):
        await _redirect(send, LOGIN)
        return True
    return False
